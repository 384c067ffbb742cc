//! Static-scan benchmarks, measured side by side in one run so the figures are
//! ratios, not absolute thresholds:
//!
//! * a synthetic PyTorch zip checkpoint (default 256 MiB, `PROBITY_BENCH_MB` to
//!   change): reading the whole file vs the default scan (which reads only the
//!   zip directories and the pickle), and SHA-256 of the file vs `--hash`;
//! * the pickle machine alone on a large state-dict pickle (opcodes/s);
//! * the benign fixture directory end to end.
//!
//! Run: `cargo bench --bench scan` (figures in target/criterion).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use probity_scan::Ctx;

/// Writes a stored zip in torch.save layout: `archive/data.pkl` (an
/// OrderedDict of `_rebuild_tensor_v2` entries) and `n` storage records.
/// An OrderedDict state dict of `tensors` float tensors of `numel` elements,
/// pickled as torch.save does (protocol 2, `_rebuild_tensor_v2`, BINPERSID).
fn state_dict_pickle(tensors: u64, numel: u64) -> Vec<u8> {
    let mut pkl = Vec::new();
    pkl.extend_from_slice(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01");
    for i in 0..tensors {
        let key = format!("layer{i}.weight");
        pkl.push(b'X');
        pkl.extend_from_slice(&(key.len() as u32).to_le_bytes());
        pkl.extend_from_slice(key.as_bytes());
        pkl.extend_from_slice(
            b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n",
        );
        let k = i.to_string();
        pkl.push(b'X');
        pkl.extend_from_slice(&(k.len() as u32).to_le_bytes());
        pkl.extend_from_slice(k.as_bytes());
        pkl.extend_from_slice(b"X\x03\x00\x00\x00cpuJ");
        pkl.extend_from_slice(&(numel as i32).to_le_bytes());
        pkl.extend_from_slice(b"tQK\x00J");
        pkl.extend_from_slice(&(numel as i32).to_le_bytes());
        pkl.extend_from_slice(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs");
    }
    pkl.push(b'.');
    pkl
}

/// Writes a stored zip in torch.save layout: `archive/data.pkl` and 200
/// storage records, `total_mb` MiB in all.
fn write_checkpoint(path: &Path, total_mb: u64) {
    let tensors = 200u64;
    let per = (total_mb << 20) / tensors;
    let pkl = state_dict_pickle(tensors, per / 4);

    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut central = Vec::new();
    let mut offset = 0u64;
    let mut entries = 0u16;
    let mut add = |f: &mut std::io::BufWriter<std::fs::File>,
                   name: &str,
                   data: &mut dyn FnMut(&mut dyn Write) -> (u64, u32)| {
        // local header with sizes/CRC patched through the central directory only
        let name_b = name.as_bytes();
        let start = offset;
        let mut header = Vec::new();
        header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        header.extend_from_slice(&[20, 0, 8, 0, 0, 0, 0, 0, 0, 0]); // version, flags (data descriptor), method 0, time, date
        header.extend_from_slice(&[0u8; 12]); // crc, sizes in the descriptor
        header.extend_from_slice(&(name_b.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(name_b);
        f.write_all(&header).unwrap();
        let (size, crc) = data(f);
        let mut desc = Vec::new();
        desc.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        desc.extend_from_slice(&crc.to_le_bytes());
        desc.extend_from_slice(&(size as u32).to_le_bytes());
        desc.extend_from_slice(&(size as u32).to_le_bytes());
        f.write_all(&desc).unwrap();
        offset += header.len() as u64 + size + desc.len() as u64;
        let mut c = Vec::new();
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&[20, 0, 20, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(size as u32).to_le_bytes());
        c.extend_from_slice(&(size as u32).to_le_bytes());
        c.extend_from_slice(&(name_b.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0u8; 12]);
        c.extend_from_slice(&(start as u32).to_le_bytes());
        c.extend_from_slice(name_b);
        central.extend_from_slice(&c);
        entries += 1;
    };
    add(&mut f, "archive/data.pkl", &mut |w| {
        w.write_all(&pkl).unwrap();
        (pkl.len() as u64, crc32fast::hash(&pkl))
    });
    let chunk: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for i in 0..tensors {
        add(&mut f, &format!("archive/data/{i}"), &mut |w| {
            let mut h = crc32fast::Hasher::new();
            let mut left = per;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                w.write_all(&chunk[..n]).unwrap();
                h.update(&chunk[..n]);
                left -= n as u64;
            }
            (per, h.finalize())
        });
    }
    let cd_offset = offset;
    f.write_all(&central).unwrap();
    let mut eocd = Vec::new();
    eocd.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    eocd.extend_from_slice(&[0u8; 4]);
    eocd.extend_from_slice(&entries.to_le_bytes());
    eocd.extend_from_slice(&entries.to_le_bytes());
    eocd.extend_from_slice(&(central.len() as u32).to_le_bytes());
    eocd.extend_from_slice(&(cd_offset as u32).to_le_bytes());
    eocd.extend_from_slice(&0u16.to_le_bytes());
    f.write_all(&eocd).unwrap();
    f.flush().unwrap();
}

fn read_all(path: &Path) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            return n;
        }
        n += k as u64;
    }
}

fn checkpoint(c: &mut Criterion) {
    let mb: u64 = std::env::var("PROBITY_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.pt");
    write_checkpoint(&path, mb);
    let size = std::fs::metadata(&path).unwrap().len();
    // the scan must see a clean checkpoint
    let r = probity_scan::scan_file(&path, "ckpt.pt".into(), &Ctx::default());
    assert!(
        r.findings.is_empty() && r.error.is_none(),
        "{:?}",
        r.findings
    );
    assert_eq!(r.format, "pytorch-zip");

    let mut g = c.benchmark_group(format!("checkpoint_{mb}MiB"));
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    g.bench_function("read_whole_file", |b| b.iter(|| read_all(&path)));
    g.bench_function("scan_default", |b| {
        b.iter(|| probity_scan::scan_file(&path, "c".into(), &Ctx::default()))
    });
    g.bench_function("sha256_only", |b| {
        b.iter(|| probity_scan::sha256_file(&mut std::fs::File::open(&path).unwrap()).unwrap())
    });
    let hashing = Ctx {
        hash: true,
        ..Default::default()
    };
    g.bench_function("scan_with_hash", |b| {
        b.iter(|| probity_scan::scan_file(&path, "c".into(), &hashing))
    });
    g.finish();
}

fn pickle_machine(c: &mut Criterion) {
    // a 20k-tensor state dict pickle (about 2 MB)
    let pkl = state_dict_pickle(20_000, 1024);
    let mut g = c.benchmark_group("pickle_machine");
    g.throughput(Throughput::Bytes(pkl.len() as u64));
    g.bench_with_input(BenchmarkId::new("state_dict", pkl.len()), &pkl, |b, p| {
        b.iter(|| {
            let mut out = Vec::new();
            probity_scan::pickle::scan_streams(
                &mut std::io::Cursor::new(p),
                0,
                "",
                &Ctx::default(),
                0,
                &mut out,
            );
            out.len()
        })
    });
    g.finish();
}

fn fixtures(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/benign");
    let mut g = c.benchmark_group("fixtures");
    g.sample_size(10);
    g.bench_function("benign_dir", |b| {
        b.iter(|| probity_scan::scan_paths(std::slice::from_ref(&dir), &Ctx::default()).len())
    });
    g.finish();
}

criterion_group!(benches, checkpoint, pickle_machine, fixtures);
criterion_main!(benches);
