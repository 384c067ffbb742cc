//! Differential check of the pickle machine against CPython's own
//! unpickler. `scripts/fuzz/pickle_diff.py` writes a generated set (ordinary
//! `pickle.dumps` output at every protocol and grammar streams with memo
//! indirection, STACK_GLOBAL names from the memo, INST/OBJ, NEWOBJ_EX,
//! EXT codes, frames, persistent ids, nested and concatenated pickles) and
//! records what `pickle.Unpickler` does with each, with `find_class`
//! returning inert stubs. The machine must see every global the loader
//! resolves; where CPython loads the stream, the machine must reach STOP
//! cleanly with the same globals and the same number of calls; a stream
//! CPython rejects for an extension code must not scan clean.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::PathBuf;

use probity_report::Severity;
use probity_scan::pickle::machine::{run_stream, CallKind, Options};
use probity_scan::Ctx;

#[derive(serde::Deserialize)]
struct View {
    imports: Vec<String>,
    calls: u64,
    loaded: bool,
    error: Option<String>,
}

#[test]
fn pickle_machine_agrees_with_cpython() {
    let dir = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fuzz/pickle_diff.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .args(["--n", "800", "--seed", "20261206"])
        .output()
        .expect("python3 runs (the differential check needs CPython)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views: BTreeMap<String, View> =
        serde_json::from_slice(&std::fs::read(dir.path().join("cpython.json")).unwrap()).unwrap();
    assert!(views.len() >= 800);
    let mut disagreements = Vec::new();
    let (mut loaded, mut ext) = (0, 0);
    for (name, v) in &views {
        let path = dir.path().join(name);
        let bytes = std::fs::read(&path).unwrap();
        let res = run_stream(&mut BufReader::new(bytes.as_slice()), 0, Options::default());
        let ours: BTreeSet<String> = res.imports.iter().map(|i| i.full()).collect();
        let theirs: BTreeSet<String> = v.imports.iter().cloned().collect();
        let missed: Vec<&String> = theirs.difference(&ours).collect();
        if !missed.is_empty() {
            disagreements.push(format!(
                "{name}: CPython resolved {missed:?}, the machine did not"
            ));
        }
        if v.loaded {
            loaded += 1;
            if res.stop.is_none() || res.error.is_some() {
                disagreements.push(format!(
                    "{name}: CPython loads it, the machine stops with {:?}",
                    res.error
                ));
            }
            if ours != theirs {
                disagreements.push(format!(
                    "{name}: imports differ: machine {ours:?}, CPython {theirs:?}"
                ));
            }
            let calls = res
                .calls
                .iter()
                .filter(|c| c.kind != CallKind::Build)
                .count() as u64;
            if calls != v.calls {
                disagreements.push(format!(
                    "{name}: the machine records {calls} calls, CPython made {}",
                    v.calls
                ));
            }
        }
        if v.error
            .as_deref()
            .is_some_and(|e| e.contains("extension code"))
        {
            ext += 1;
            let r = probity_scan::scan_file(&path, name.clone(), &Ctx::default());
            if r.max_severity() < Some(Severity::Warning) {
                disagreements.push(format!(
                    "{name}: uses the extension registry, scanned clean"
                ));
            }
        }
    }
    eprintln!(
        "{} pickles: {loaded} loaded by CPython, {ext} rejected for EXT codes",
        views.len()
    );
    assert!(
        loaded > 300 && ext > 20,
        "set too small: {loaded} loaded, {ext} with EXT codes"
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
