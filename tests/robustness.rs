//! Bad input never panics, hangs or errors: every fixture and corpus file is
//! truncated at many points and has bytes flipped (deterministic PRNG), and
//! each mutant must scan to a report with no error. A malicious file cut after
//! its payload must stay flagged.

use std::path::{Path, PathBuf};

use probity_report::Severity;
use probity_scan::Ctx;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn inputs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let roots = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus"),
    ];
    for root in roots {
        for e in walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            let small = e.metadata().map(|m| m.len() < 256 << 10).unwrap_or(false);
            if e.file_type().is_file() && small && !e.path().to_string_lossy().ends_with(".json") {
                v.push(e.path().to_path_buf());
            }
        }
    }
    v
}

fn scan(dir: &Path, bytes: &[u8]) -> probity_report::FileReport {
    let p = dir.join("mutant");
    std::fs::write(&p, bytes).unwrap();
    probity_scan::scan_file(&p, "mutant".into(), &Ctx::default())
}

#[test]
fn truncations_and_bit_flips_never_panic_or_error() {
    let files = inputs();
    assert!(files.len() > 200, "inputs missing: {}", files.len());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut mutants = 0;
    // PROBITY_FUZZ_ITERS raises the number of mutants per file for local runs.
    let iters: usize = std::env::var("PROBITY_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for f in &files {
        let orig = std::fs::read(f).unwrap();
        if orig.is_empty() {
            continue;
        }
        for _ in 0..iters {
            // truncation
            let cut = rng.below(orig.len());
            let r = scan(dir.path(), &orig[..cut]);
            assert!(
                r.error.is_none(),
                "{} cut at {cut}: {:?}",
                f.display(),
                r.error
            );
            // flips
            let mut m = orig.clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            let r = scan(dir.path(), &m);
            assert!(r.error.is_none(), "{} flipped: {:?}", f.display(), r.error);
            mutants += 2;
        }
    }
    assert!(mutants > 1000);
}

#[test]
fn payload_then_truncation_stays_flagged() {
    // every malicious raw pickle fixture, cut anywhere after its first dangerous
    // import, is still at least a warning (and critical when the import survives)
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/malicious/pickle");
    let mut checked = 0;
    for e in walkdir::WalkDir::new(&root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() {
            continue;
        }
        let orig = std::fs::read(e.path()).unwrap();
        let full = scan(dir.path(), &orig);
        if full.max_severity() != Some(Severity::Critical) {
            continue;
        }
        for cut in [orig.len() - 1, orig.len() * 3 / 4] {
            let r = scan(dir.path(), &orig[..cut]);
            if r.format != "pickle" {
                continue; // too short to be recognised at all
            }
            assert!(
                r.max_severity() >= Some(Severity::Warning),
                "{} cut at {cut} became clean: {:?}",
                e.path().display(),
                r.findings
            );
        }
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
}

/// The deep scan's state-dict reader (the worker's own pickle interpreter)
/// on truncated and bit-flipped `data.pkl` streams of real checkpoints:
/// names or an error, never a panic. (Coverage-guided fuzzing of the same
/// entry point: fuzz/deep, target `deep_state_dict`.)
#[cfg(feature = "deep")]
#[test]
fn state_dict_reader_survives_mutations() {
    use std::io::Read;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/benign/pytorch");
    let mut pickles = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        let Ok(mut z) = zip::ZipArchive::new(f) else {
            continue;
        };
        let names: Vec<String> = z
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.to_string())
            .collect();
        for n in names.iter().filter(|n| n.ends_with("/data.pkl")) {
            let mut b = Vec::new();
            z.by_name(n).unwrap().read_to_end(&mut b).unwrap();
            pickles.push(b);
        }
    }
    assert!(pickles.len() >= 3, "{} data.pkl streams", pickles.len());
    let read = probity_deep::models::torch_weights::state_dict_keys;
    assert!(pickles.iter().any(|p| read(p).is_ok_and(|k| !k.is_empty())));
    let mut rng = Rng(0x5eed_d00d);
    for p in &pickles {
        for _ in 0..500 {
            let cut = rng.below(p.len());
            let _ = read(&p[..cut]);
            let mut m = p.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            let _ = read(&m);
        }
    }
}

/// Found by the `scan_any` fuzz target (AddressSanitizer: stack overflow):
/// values nest without bound, and dropping a deeply nested value recursed
/// once per level until the stack ran out, killing the scan. A million
/// nested tuples, lists and objects must scan to a report.
#[test]
fn deeply_nested_pickles_do_not_overflow_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1_000_000;
    let mut tuples = b"\x80\x02K\x00".to_vec();
    tuples.extend(std::iter::repeat_n(0x85u8, n)); // TUPLE1
    tuples.push(b'.');
    let mut lists = b"\x80\x02".to_vec();
    lists.extend(std::iter::repeat_n(b']', n));
    lists.extend(std::iter::repeat_n(b'a', n - 1)); // APPEND
    lists.push(b'.');
    let mut calls = b"\x80\x02ccollections\nOrderedDict\nq\x000K\x00".to_vec();
    for _ in 0..n / 4 {
        // memo[1] = prev; OrderedDict((prev,))
        calls.extend_from_slice(b"q\x010h\x00h\x01\x85R");
    }
    calls.push(b'.');
    for (name, bytes) in [("tuples", tuples), ("lists", lists), ("calls", calls)] {
        let r = scan(dir.path(), &bytes);
        assert!(r.error.is_none(), "{name}: {:?}", r.error);
        assert_eq!(r.format, "pickle", "{name}");
    }
}
