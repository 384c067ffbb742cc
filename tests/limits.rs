//! Each resource bound in `crates/scan/src/limits.rs` that can be reached with a small
//! input is hit here: the scan must stop at the bound, say so (`SCN002` or the
//! container rule), and never report the unread part as clean.

use std::io::{Cursor, Read, Write};

use probity_report::Severity;
use probity_scan::limits;
use probity_scan::Ctx;

mod common;
use common::{rules, scan_bytes};

fn pickle_findings(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    probity_scan::pickle::scan_streams(
        &mut Cursor::new(bytes),
        0,
        "",
        &Ctx::default(),
        0,
        &mut out,
    );
    out.into_iter()
        .map(|f| format!("{} {}", f.rule, f.message))
        .collect()
}

#[test]
fn container_depth() {
    // a pickle calling os.system, gzipped more times than MAX_CONTAINER_DEPTH
    let mut data = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.".to_vec();
    for _ in 0..limits::MAX_CONTAINER_DEPTH + 2 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        data = e.finish().unwrap();
    }
    let r = scan_bytes("deep.gz", &data);
    assert!(rules(&r).contains(&"SCN002"), "{:?}", r.findings);
    assert!(r.max_severity() >= Some(Severity::Warning), "never clean");
    // within the bound the payload is found
    let mut data = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.".to_vec();
    for _ in 0..3 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        data = e.finish().unwrap();
    }
    assert_eq!(
        scan_bytes("ok.gz", &data).max_severity(),
        Some(Severity::Critical)
    );
}

/// A stream that inflates past [`limits::BOMB_RATIO_FLOOR`] at more than
/// [`limits::MAX_COMPRESSION_RATIO`] times its compressed size is a
/// decompression bomb (`ARC006`): decompression stops there, and what sits
/// behind it is not reported clean. Here a `.tar.gz` whose first member is
/// a few hundred MiB of zeros hides a pickle behind it.
#[test]
fn compression_ratio_bound() {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let size = limits::BOMB_RATIO_FLOOR + (16 << 20);
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "zeros.bin", std::io::repeat(0).take(size))
        .unwrap();
    let payload = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
    let mut h = tar::Header::new_gnu();
    h.set_size(payload.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "model.pkl", &payload[..]).unwrap();
    let data = tar.into_inner().unwrap().finish().unwrap();
    assert!((data.len() as u64) * limits::MAX_COMPRESSION_RATIO < limits::BOMB_RATIO_FLOOR);
    let r = scan_bytes("bundle.tar.gz", &data);
    assert!(rules(&r).contains(&"ARC006"), "{:?}", r.findings);
    assert!(r.max_severity() >= Some(Severity::Warning), "never clean");
}

#[test]
fn pickle_stream_count() {
    let mut data = Vec::new();
    for _ in 0..limits::MAX_STREAMS + 5 {
        data.extend_from_slice(b"N.");
    }
    let f = pickle_findings(&data);
    assert!(
        f.iter()
            .any(|x| x.starts_with("SCN002") && x.contains("pickle streams")),
        "{f:?}"
    );
}

#[test]
fn pickle_stack_depth() {
    let mut data = vec![0x80, 4];
    data.extend(std::iter::repeat_n(b'N', limits::MAX_PICKLE_STACK + 10));
    data.push(b'.');
    let f = pickle_findings(&data);
    assert!(
        f.iter()
            .any(|x| x.starts_with("SCN002") && x.contains("stack deeper")),
        "{f:?}"
    );
}

#[test]
fn pickle_memo_size() {
    let mut data = vec![0x80, 4, b'N'];
    data.extend(std::iter::repeat_n(0x94u8, limits::MAX_PICKLE_MEMO + 10));
    data.push(b'.');
    let f = pickle_findings(&data);
    assert!(
        f.iter()
            .any(|x| x.starts_with("SCN002") && x.contains("memo entries")),
        "{f:?}"
    );
}

#[test]
fn pickle_line_length() {
    let mut data = b"c".to_vec();
    data.extend(std::iter::repeat_n(b'a', limits::MAX_PICKLE_LINE + 10));
    data.extend_from_slice(b"\nsystem\n.");
    let f = pickle_findings(&data);
    assert!(
        f.iter()
            .any(|x| x.starts_with("SCN002") && x.contains("text line")),
        "{f:?}"
    );
}

#[test]
fn nested_value_size() {
    // BINBYTES holding a pickle larger than MAX_NESTED_VALUE: reported, not scanned
    let mut inner = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R".to_vec();
    inner.resize(limits::MAX_NESTED_VALUE + 100, b'N');
    inner.push(b'.');
    let mut data = vec![0x80, 4, b'B'];
    data.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    data.extend_from_slice(&inner);
    data.push(b'.');
    let f = pickle_findings(&data);
    assert!(
        f.iter()
            .any(|x| x.starts_with("SCN002") && x.contains("embedded pickle")),
        "{f:?}"
    );
}

#[test]
fn zip_central_directory_size() {
    // an end record announcing a central directory larger than the bound
    let mut z = b"PK\x03\x04".to_vec();
    z.extend_from_slice(&[0u8; 26]);
    let mut eocd = b"PK\x05\x06".to_vec();
    eocd.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    eocd.extend_from_slice(&((limits::MAX_ZIP_CENTRAL_DIR + 1) as u32).to_le_bytes());
    eocd.extend_from_slice(&0u32.to_le_bytes());
    eocd.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(&eocd);
    let r = scan_bytes("big_cd.zip", &z);
    assert!(rules(&r).contains(&"ARC008"), "{:?}", r.findings);
}

#[test]
fn npy_header_size() {
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&((limits::MAX_NPY_HEADER + 1) as u32).to_le_bytes());
    v.extend_from_slice(b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }");
    let r = scan_bytes("big_header.npy", &v);
    assert!(rules(&r).contains(&"NPY001"), "{:?}", r.findings);
}

#[test]
fn text_document_and_template_size() {
    // a JSON document one byte over the text bound is not read
    let mut big = b"{\"a\": \"".to_vec();
    big.resize(limits::MAX_TEXT_DOCUMENT as usize - 1, b' ');
    big.extend_from_slice(b"\"}");
    let r = scan_bytes("tokenizer_config.json", &big);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(rules(&r), ["CFG004"], "{:?}", r.findings);
    assert_eq!(r.max_severity(), Some(Severity::Warning));
    // a template one byte over the template bound is not judged, and says so
    let payload = "{{ cycler.__init__.__globals__.os.system('id') }}";
    let pad = " ".repeat(limits::MAX_TEMPLATE + 1 - payload.len());
    let t = format!("{payload}{pad}");
    assert_eq!(t.len(), limits::MAX_TEMPLATE + 1);
    let doc = serde_json::json!({ "chat_template": t }).to_string();
    let r = scan_bytes("tokenizer_config.json", doc.as_bytes());
    assert_eq!(rules(&r), ["CFG004"], "{:?}", r.findings);
    // just under it, the payload is found
    let t = format!(
        "{{{{ cycler.__init__.__globals__.os.system('id') }}}}{}",
        " ".repeat(limits::MAX_TEMPLATE - 100)
    );
    let doc = serde_json::json!({ "chat_template": t }).to_string();
    let r = scan_bytes("tokenizer_config.json", doc.as_bytes());
    assert_eq!(rules(&r), ["CFG001"], "{:?}", r.findings);
}

#[test]
fn safetensors_header_size() {
    // a header length over the bound is not taken for safetensors (the
    // reference loader refuses it too), whatever follows
    let mut b = (limits::MAX_SAFETENSORS_HEADER + 1).to_le_bytes().to_vec();
    b.extend_from_slice(b"{\"__metadata__\": {}}");
    let r = scan_bytes("model.safetensors", &b);
    assert_ne!(r.format, "safetensors");
    let mut b = 20u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{\"__metadata__\": {}}");
    let r = scan_bytes("model.safetensors", &b);
    assert_eq!(r.format, "safetensors");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}
