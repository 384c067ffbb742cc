//! Zip containers (PyTorch checkpoints, TorchScript archives, `.npz`, plain
//! zips), read structurally so that parser differentials are *seen*.
//!
//! Why not only the `zip` crate: the attack surface here is readers
//! disagreeing. PyTorch (miniz) and Python's `zipfile` trust the central
//! directory; streaming readers trust local headers; strict readers reject
//! CRC mismatches and flag bits that PyTorch ignores. Probity reads the end
//! record, the central directory *and* every local header itself, flags each
//! disagreement, and scans every member any of those readers would see.
//! Decompression uses maintained crates (flate2, bzip2, lzma-rust2).

use std::io::{self, Read, SeekFrom};

use super::rules;
use crate::format::{model, other, Format, Head, Label};
use crate::formats::frameworks;
use crate::io::{Bounded, CountIn, Peekable, ReadSeek, Window};
use crate::limits;
use crate::paths::escapes_root;
use crate::registry::Sniffed;
use crate::{child_member, rules as scan_rules, scan_seekable, scan_stream, sniff, Detected, Sink};
use probity_report::Finding;

const SIG_LOCAL: u32 = 0x0403_4b50;
const SIG_CENTRAL: u32 = 0x0201_4b50;
const SIG_EOCD: u32 = 0x0605_4b50;
const SIG_EOCD64: u32 = 0x0606_4b50;
const SIG_EOCD64_LOC: u32 = 0x0706_4b50;
const SIG_DESCRIPTOR: u32 = 0x0807_4b50;

/// Flags that claim encrypted (bit 0, bit 6) or patched (bit 5) data.
const FLAG_CONCEALING: u16 = 0x0001 | 0x0020 | 0x0040;
const FLAG_DESCRIPTOR: u16 = 0x0008;

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64le(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn read_at(r: &mut dyn ReadSeek, offset: u64, n: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut v = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut v[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    v.truncate(got);
    Ok(v)
}

/// Whether an end-of-central-directory record sits in the file's tail.
pub fn has_eocd(r: &mut dyn ReadSeek, len: u64) -> io::Result<bool> {
    Ok(find_eocd(r, len)?.is_some())
}

fn find_eocd(r: &mut dyn ReadSeek, len: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    if len < 22 {
        return Ok(None);
    }
    let tail_len = len.min(22 + 65535);
    let start = len - tail_len;
    let tail = read_at(r, start, tail_len as usize)?;
    // Prefer the record with no comment, then the last signature that fits.
    let no_comment = tail.len() - 22;
    if u32le(&tail, no_comment) == SIG_EOCD && u16le(&tail, no_comment + 20) == 0 {
        return Ok(Some((
            start + no_comment as u64,
            tail[no_comment..].to_vec(),
        )));
    }
    let mut i = no_comment;
    loop {
        if u32le(&tail, i) == SIG_EOCD {
            let comment = u16le(&tail, i + 20) as usize;
            if i + 22 + comment <= tail.len() {
                return Ok(Some((start + i as u64, tail[i..].to_vec())));
            }
        }
        if i == 0 {
            return Ok(None);
        }
        i -= 1;
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    local_offset: u64,
}

#[derive(Clone, Debug)]
struct Local {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    data_start: u64,
}

fn parse_local(r: &mut dyn ReadSeek, offset: u64, len: u64) -> io::Result<Option<Local>> {
    if offset.saturating_add(30) > len {
        return Ok(None);
    }
    let h = read_at(r, offset, 30)?;
    if h.len() < 30 || u32le(&h, 0) != SIG_LOCAL {
        return Ok(None);
    }
    let name_len = u16le(&h, 26) as usize;
    let extra_len = u16le(&h, 28) as usize;
    let rest = read_at(r, offset + 30, name_len + extra_len)?;
    if rest.len() < name_len + extra_len {
        return Ok(None);
    }
    let mut csize = u32le(&h, 18) as u64;
    let mut usize_ = u32le(&h, 22) as u64;
    // zip64 extra: sizes when the 32-bit fields are saturated
    let extra = &rest[name_len..];
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = u16le(extra, i);
        let sz = u16le(extra, i + 2) as usize;
        if id == 0x0001 && i + 4 + 16 <= extra.len() && sz >= 16 {
            if usize_ == 0xFFFF_FFFF {
                usize_ = u64le(extra, i + 4);
            }
            if csize == 0xFFFF_FFFF {
                csize = u64le(extra, i + 12);
            }
        }
        i += 4 + sz;
    }
    Ok(Some(Local {
        name: String::from_utf8_lossy(&rest[..name_len]).into_owned(),
        flags: u16le(&h, 6),
        method: u16le(&h, 8),
        crc: u32le(&h, 14),
        csize,
        usize: usize_,
        data_start: offset + 30 + (name_len + extra_len) as u64,
    }))
}

/// How far past the start a lenient reader's search for the first local
/// header is followed (executable stubs of self-extracting archives).
const MAX_PREFIX_SEARCH: u64 = 16 << 20;
/// How far a member's data is searched for its data descriptor.
const MAX_DESCRIPTOR_SEARCH: u64 = 64 << 20;

/// The offset of the first `sig` in `[from, to)`.
fn find_signature(r: &mut dyn ReadSeek, from: u64, to: u64, sig: u32) -> io::Result<Option<u64>> {
    let want = sig.to_le_bytes();
    let mut at = from;
    while at < to {
        let n = ((to - at).min(64 << 10) + 3) as usize;
        let buf = read_at(r, at, n)?;
        if buf.len() < 4 {
            return Ok(None);
        }
        if let Some(i) = buf.windows(4).position(|w| w == want) {
            let found = at + i as u64;
            return Ok((found < to).then_some(found));
        }
        at += (buf.len() - 3) as u64;
    }
    Ok(None)
}

/// Where a member's data ends when its sizes are in a data descriptor: the
/// first descriptor signature whose recorded compressed size is the
/// distance from `data_start` (a streaming reader's rule), else the next
/// local or central header.
fn find_descriptor(r: &mut dyn ReadSeek, data_start: u64, end: u64) -> io::Result<Option<u64>> {
    let mut at = data_start;
    while at < end {
        let Some(p) = find_signature(r, at, end, SIG_DESCRIPTOR)? else {
            break;
        };
        let d = read_at(r, p, 16)?;
        if d.len() == 16 && u32le(&d, 8) as u64 == p - data_start {
            return Ok(Some(p));
        }
        at = p + 1;
    }
    let next = [SIG_LOCAL, SIG_CENTRAL]
        .into_iter()
        .filter_map(|s| find_signature(r, data_start, end, s).ok().flatten())
        .min();
    Ok(next)
}

/// What PyTorch calls a storage record: `<archive>/data/<key>`; raw tensor
/// bytes that `torch.load` reads with `read_record`, never unpickles.
fn is_torch_storage(name: &str) -> bool {
    let mut parts = name.split('/');
    let (Some(_root), Some(d), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    d == "data" && !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub fn scan(
    r: &mut dyn ReadSeek,
    len: u64,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut detected = Detected {
        format: "zip".into(),
        joblib: false,
        ..Default::default()
    };
    if crate::formats::too_deep("zip", member, depth, sink) {
        return Ok(detected);
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut cd_start = len;
    let mut shift: u64 = 0;
    match find_eocd(r, len)? {
        None => {
            sink.findings.push(
                Finding::new(&rules::ARC008, "no end-of-central-directory record (truncated or damaged zip); members recovered from local headers")
                    .at(Some(member), None),
            );
        }
        Some((eocd_pos, eocd)) => {
            let mut count = u16le(&eocd, 10) as u64;
            let mut cd_size = u32le(&eocd, 12) as u64;
            let mut cd_offset = u32le(&eocd, 16) as u64;
            if (count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF)
                && eocd_pos >= 20
            {
                let loc = read_at(r, eocd_pos - 20, 20)?;
                if loc.len() == 20 && u32le(&loc, 0) == SIG_EOCD64_LOC {
                    let rec_off = u64le(&loc, 8);
                    let rec = read_at(r, rec_off, 56)?;
                    if rec.len() == 56 && u32le(&rec, 0) == SIG_EOCD64 {
                        count = u64le(&rec, 32);
                        cd_size = u64le(&rec, 40);
                        cd_offset = u64le(&rec, 48);
                    }
                }
            }
            // Data prepended to the archive shifts every offset (self-extracting zips).
            let expected_end = cd_offset.saturating_add(cd_size);
            if expected_end < eocd_pos
                && read_at(r, cd_offset, 4)?.as_slice() != SIG_CENTRAL.to_le_bytes()
            {
                shift = eocd_pos - expected_end;
            }
            cd_start = cd_offset.saturating_add(shift);
            if cd_size > limits::MAX_ZIP_CENTRAL_DIR || cd_start.saturating_add(cd_size) > len {
                sink.findings.push(
                    Finding::new(&rules::ARC008, format!("central directory of {cd_size} bytes at offset {cd_start} does not fit the file or the limit"))
                        .at(Some(member), None),
                );
            } else {
                let cd = read_at(r, cd_start, cd_size as usize)?;
                let mut p = 0usize;
                while p + 46 <= cd.len() {
                    if u32le(&cd, p) != SIG_CENTRAL {
                        sink.findings.push(
                            Finding::new(
                                &rules::ARC008,
                                format!(
                                    "central directory entry {} has a bad signature",
                                    entries.len()
                                ),
                            )
                            .at(Some(member), Some(cd_start + p as u64)),
                        );
                        break;
                    }
                    if entries.len() >= limits::MAX_ARCHIVE_ENTRIES {
                        sink.findings.push(
                            Finding::new(
                                &scan_rules::SCN002,
                                format!(
                                    "more than {} zip entries; the rest was not read",
                                    limits::MAX_ARCHIVE_ENTRIES
                                ),
                            )
                            .at(Some(member), None),
                        );
                        break;
                    }
                    let name_len = u16le(&cd, p + 28) as usize;
                    let extra_len = u16le(&cd, p + 30) as usize;
                    let comment_len = u16le(&cd, p + 32) as usize;
                    let end = p + 46 + name_len + extra_len + comment_len;
                    if end > cd.len() {
                        sink.findings.push(
                            Finding::new(
                                &rules::ARC008,
                                "central directory entry runs past the directory's end",
                            )
                            .at(Some(member), Some(cd_start + p as u64)),
                        );
                        break;
                    }
                    let mut e = Entry {
                        name: String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).into_owned(),
                        flags: u16le(&cd, p + 8),
                        method: u16le(&cd, p + 10),
                        crc: u32le(&cd, p + 16),
                        csize: u32le(&cd, p + 20) as u64,
                        usize: u32le(&cd, p + 24) as u64,
                        local_offset: u32le(&cd, p + 42) as u64,
                    };
                    let extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
                    let mut i = 0;
                    while i + 4 <= extra.len() {
                        let id = u16le(extra, i);
                        let sz = u16le(extra, i + 2) as usize;
                        if id == 0x0001 {
                            let mut q = i + 4;
                            let lim = (i + 4 + sz).min(extra.len());
                            for field in [&mut e.usize, &mut e.csize, &mut e.local_offset] {
                                if *field == 0xFFFF_FFFF && q + 8 <= lim {
                                    *field = u64le(extra, q);
                                    q += 8;
                                }
                            }
                        }
                        i += 4 + sz;
                    }
                    e.local_offset = e.local_offset.saturating_add(shift);
                    entries.push(e);
                    p = end;
                }
                if count != entries.len() as u64 && entries.len() < limits::MAX_ARCHIVE_ENTRIES {
                    sink.findings.push(
                        Finding::new(
                            &rules::ARC008,
                            format!(
                                "end record announces {count} entries, central directory holds {}",
                                entries.len()
                            ),
                        )
                        .at(Some(member), None),
                    );
                }
            }
        }
    }

    // Members to scan: (name, local header, sizes from the central directory when known).
    let mut members: Vec<(String, Local, Option<Entry>)> = Vec::new();
    let mut cd_offsets = std::collections::HashSet::new();
    for e in &entries {
        cd_offsets.insert(e.local_offset);
        match parse_local(r, e.local_offset, len)? {
            None => {
                sink.findings.push(
                    Finding::new(&rules::ARC001, format!("central directory entry '{}' points to offset {} where there is no local header", e.name, e.local_offset))
                        .at(Some(member), Some(e.local_offset)),
                );
            }
            Some(l) => {
                let mut diffs = Vec::new();
                if l.name != e.name {
                    diffs.push(format!("name '{}' in the local header", l.name));
                }
                if l.method != e.method {
                    diffs.push(format!("compression method {} vs {}", l.method, e.method));
                }
                if (l.flags & !FLAG_DESCRIPTOR) != (e.flags & !FLAG_DESCRIPTOR) {
                    diffs.push(format!("flags 0x{:04x} vs 0x{:04x}", l.flags, e.flags));
                }
                if l.flags & FLAG_DESCRIPTOR == 0
                    && (l.csize != e.csize || l.usize != e.usize || l.crc != e.crc)
                {
                    diffs.push(format!(
                        "sizes/CRC {}/{}/{:08x} vs {}/{}/{:08x}",
                        l.csize, l.usize, l.crc, e.csize, e.usize, e.crc
                    ));
                }
                if !diffs.is_empty() {
                    sink.findings.push(
                        Finding::new(&rules::ARC001, format!("member '{}': the local header disagrees with the central directory ({})", e.name, diffs.join(", ")))
                            .at(Some(member), Some(e.local_offset))
                            .evidence(e.name.clone()),
                    );
                }
                members.push((e.name.clone(), l.clone(), Some(e.clone())));
                // A streaming reader trusts the local header's sizes: when they differ
                // from the central directory's, it reads other bytes; scan that view too.
                if l.flags & FLAG_DESCRIPTOR == 0 && (l.csize != e.csize || l.method != e.method) {
                    members.push((format!("{} [local header view]", l.name), l.clone(), None));
                }
            }
        }
    }
    // Walk local headers from the start: members a streaming reader would see.
    let mut pos = shift;
    if parse_local(r, pos, len)?.is_none() {
        // data before the first local header (an executable stub, padding)
        // whose offsets the end record does not account for: a lenient
        // reader looks for the first signature
        let end = cd_start.min(pos.saturating_add(MAX_PREFIX_SEARCH));
        if let Some(p) = find_signature(r, pos, end, SIG_LOCAL)? {
            pos = p;
        }
    }
    let mut walked = 0usize;
    while pos < cd_start && walked < limits::MAX_ARCHIVE_ENTRIES {
        let Some(mut l) = parse_local(r, pos, len)? else {
            break;
        };
        walked += 1;
        let known = entries.iter().find(|e| e.local_offset == pos);
        if known.is_none() && l.flags & FLAG_DESCRIPTOR != 0 && l.csize == 0 {
            // sizes only in the data descriptor after the data: find it as a
            // streaming reader does
            let end = cd_start.min(l.data_start.saturating_add(MAX_DESCRIPTOR_SEARCH));
            if let Some(d) = find_descriptor(r, l.data_start, end)? {
                l.csize = d - l.data_start;
                l.usize = l.csize;
            }
        }
        let size = match known {
            Some(e) if l.flags & FLAG_DESCRIPTOR != 0 => e.csize,
            _ => l.csize,
        };
        if known.is_none() {
            sink.findings.push(
                Finding::new(&rules::ARC001, format!("member '{}' at offset {pos} has a local header but no central directory entry (visible to streaming readers only)", l.name))
                    .at(Some(member), Some(pos))
                    .evidence(l.name.clone()),
            );
            members.push((l.name.clone(), l.clone(), None));
        }
        let mut next = l.data_start.saturating_add(size);
        if l.flags & FLAG_DESCRIPTOR != 0 {
            let d = read_at(r, next, 4)?;
            next += if d.len() == 4 && u32le(&d, 0) == SIG_DESCRIPTOR {
                16
            } else {
                12
            };
        }
        if next <= pos {
            break;
        }
        pos = next;
    }

    // Names: duplicates and escapes.
    let mut seen: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in &entries {
        *seen.entry(e.name.as_str()).or_default() += 1;
    }
    for (name, n) in &seen {
        if *n > 1 {
            sink.findings.push(
                Finding::new(&rules::ARC002, format!("{n} members are named '{name}'; readers disagree on which one wins; all were scanned"))
                    .at(Some(member), None)
                    .evidence(name.to_string()),
            );
        }
    }
    let mut escaped = std::collections::BTreeSet::new();
    for (name, l, _) in &members {
        for n in [name, &l.name] {
            if escapes_root(n) && escaped.insert(n.clone()) {
                sink.findings.push(
                    Finding::new(&rules::ARC007, format!("member name '{n}' is absolute or climbs out of the extraction directory"))
                        .at(Some(member), Some(l.data_start))
                        .evidence(n.clone()),
                );
            }
        }
    }

    // What kind of zip is this?
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    let torch = names
        .iter()
        .any(|n| *n == "data.pkl" || n.ends_with("/data.pkl"));
    if torch {
        let script = names
            .iter()
            .any(|n| n.contains("/code/") || n.ends_with("constants.pkl"));
        detected.format = if script {
            "torchscript".into()
        } else {
            "pytorch-zip".into()
        };
    } else if !names.is_empty()
        && names
            .iter()
            .all(|n| n.ends_with(".npy") || n.ends_with('/'))
    {
        detected.format = "npz".into();
    }

    let kind = frameworks::zip_kind(&names, &read_at(r, 0, 8)?);

    let script = detected.format == "torchscript";
    let saved_ts = sink.ctx.torchscript;
    sink.ctx.torchscript = script || saved_ts;
    let res = scan_members(r, len, member, depth, sink, &members, torch, &mut detected);
    sink.ctx.torchscript = saved_ts;
    res?;
    if let Some(k) = kind {
        let doc = match k.document() {
            Some(name) => match members.iter().find(|m| m.0 == name) {
                Some((_, l, cd)) => {
                    let (csize, method) = match cd {
                        Some(e) => (e.csize, e.method),
                        None => (l.csize, l.method),
                    };
                    Some(
                        read_member_small(
                            r,
                            l.data_start,
                            csize,
                            method,
                            limits::MAX_TEXT_DOCUMENT,
                        )?
                        .ok_or(name),
                    )
                }
                None => None,
            },
            None => None,
        };
        if frameworks::check_archive(k, doc, &names, member, sink) {
            detected.format = k.label().into();
        }
    }
    Ok(detected)
}

#[allow(clippy::too_many_arguments)]
fn scan_members(
    r: &mut dyn ReadSeek,
    len: u64,
    member: &str,
    depth: u32,
    sink: &mut Sink,
    members: &[(String, Local, Option<Entry>)],
    torch: bool,
    detected: &mut Detected,
) -> io::Result<()> {
    for (name, l, cd) in members {
        if name.ends_with('/') && l.csize == 0 {
            continue;
        }
        if torch && is_torch_storage(name.trim_end_matches(" [local header view]")) {
            continue;
        }
        let child = child_member(member, name);
        let (csize, usize_, crc, method, flags) = match cd {
            Some(e) => (e.csize, e.usize, e.crc, e.method, e.flags | l.flags),
            None => (l.csize, l.usize, l.crc, l.method, l.flags),
        };
        if l.data_start.saturating_add(csize) > len {
            sink.findings.push(
                Finding::new(&rules::ARC008, format!("member '{name}' runs past the end of the archive ({csize} bytes from offset {})", l.data_start))
                    .at(Some(&child), Some(l.data_start)),
            );
            continue;
        }
        if torch && name.ends_with(".py") {
            if let Some(code) =
                read_member_small(r, l.data_start, csize, method, limits::MAX_CODE_MEMBER)?
            {
                crate::formats::torch::check_code(&code, &child, sink);
            }
        }
        let concealed = flags & FLAG_CONCEALING != 0;
        let scanned = match method {
            0 => {
                if concealed {
                    let head = read_at(
                        r,
                        l.data_start,
                        csize.min(limits::PICKLE_PROBE_WINDOW as u64) as usize,
                    )?;
                    let kind = sniff(&head, head.len() as u64 == csize);
                    if matches!(kind, Sniffed::Unknown) {
                        sink.findings.push(
                            Finding::new(&rules::ARC004, format!("member '{name}' is encrypted (flags 0x{flags:04x}); its content cannot be inspected"))
                                .at(Some(&child), Some(l.data_start)),
                        );
                        continue;
                    }
                    sink.findings.push(
                        Finding::new(&rules::ARC005, format!("member '{name}' has flags 0x{flags:04x} (encrypted/patched) but holds readable {} data; PyTorch ignores these flags", kind.label()))
                            .at(Some(&child), Some(l.data_start)),
                    );
                }
                let mut w = Window::new(&mut *r, l.data_start, csize)?;
                scan_seekable(&mut w, csize, &child, depth + 1, sink)
            }
            8 | 12 => {
                let w = Window::new(&mut *r, l.data_start, csize)?;
                let counter = std::rc::Rc::new(std::cell::Cell::new(0));
                let input = CountIn {
                    inner: w,
                    count: counter.clone(),
                };
                let dec: Box<dyn Read> = if method == 8 {
                    Box::new(flate2::read::DeflateDecoder::new(input))
                } else {
                    Box::new(bzip2::read::BzDecoder::new(input))
                };
                let bounded: Box<dyn Read> = Box::new(Bounded::new(
                    dec,
                    counter,
                    Some(csize),
                    sink.state.budget.clone(),
                ));
                let mut p = Peekable::new(bounded);
                let res = scan_stream(&mut p, Some(usize_), &child, depth + 1, sink);
                if concealed {
                    if res.is_ok() {
                        sink.findings.push(
                            Finding::new(&rules::ARC005, format!("member '{name}' has flags 0x{flags:04x} (encrypted/patched) but decompresses as plaintext"))
                                .at(Some(&child), Some(l.data_start)),
                        );
                    } else {
                        sink.findings.push(
                            Finding::new(&rules::ARC004, format!("member '{name}' is encrypted (flags 0x{flags:04x}); its content cannot be inspected"))
                                .at(Some(&child), Some(l.data_start)),
                        );
                        continue;
                    }
                }
                res
            }
            other => {
                sink.findings.push(
                    Finding::new(&rules::ARC004, format!("member '{name}' uses compression method {other}, which Probity does not decode; not inspected"))
                        .at(Some(&child), Some(l.data_start)),
                );
                continue;
            }
        };
        match scanned {
            Ok(d) => {
                if d.joblib {
                    detected.joblib = true;
                }
            }
            Err(e) => {
                sink.findings.push(
                    crate::formats::archive::member_failure(name, &e)
                        .at(Some(&child), Some(l.data_start)),
                );
                continue;
            }
        }
        // CRC of the members Probity analysed (bounded size; storages are never read).
        if !concealed && usize_ <= limits::MAX_CRC_CHECK {
            if let Some(actual) = member_crc(r, l.data_start, csize, method)? {
                if actual != crc {
                    sink.findings.push(
                        Finding::new(&rules::ARC003, format!("member '{name}': CRC-32 of the data is {actual:08x}, the archive records {crc:08x}"))
                            .at(Some(&child), Some(l.data_start)),
                    );
                }
            }
        }
    }
    Ok(())
}

fn decoder<'a>(
    r: &'a mut dyn ReadSeek,
    start: u64,
    csize: u64,
    method: u16,
) -> io::Result<Option<Box<dyn Read + 'a>>> {
    let w = Window::new(r, start, csize)?;
    Ok(match method {
        0 => Some(Box::new(w)),
        8 => Some(Box::new(flate2::read::DeflateDecoder::new(w))),
        12 => Some(Box::new(bzip2::read::BzDecoder::new(w))),
        _ => None,
    })
}

fn read_member_small(
    r: &mut dyn ReadSeek,
    start: u64,
    csize: u64,
    method: u16,
    max: u64,
) -> io::Result<Option<Vec<u8>>> {
    let Some(mut d) = decoder(r, start, csize, method)? else {
        return Ok(None);
    };
    match crate::io::read_bounded(&mut d, max) {
        Ok(v) => Ok(v),
        Err(_) => Ok(None),
    }
}

fn member_crc(
    r: &mut dyn ReadSeek,
    start: u64,
    csize: u64,
    method: u16,
) -> io::Result<Option<u32>> {
    let Some(mut d) = decoder(r, start, csize, method)? else {
        return Ok(None);
    };
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match d.read(&mut buf) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limits::MAX_CRC_CHECK {
            return Ok(None);
        }
        h.update(&buf[..n]);
    }
    Ok(Some(h.finalize()))
}

/// Zip archives, and the PyTorch, TorchScript and NumPy `.npz` layouts.
pub struct Zip;

impl Format for Zip {
    fn name(&self) -> &'static str {
        "zip"
    }
    fn summary(&self) -> &'static str {
        "zip archives: PyTorch zip checkpoints, TorchScript archives, NumPy .npz, Keras .keras and any zip of model files"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[
                other("zip"),
                model("pytorch-zip"),
                model("torchscript"),
                model("npz"),
                model("skops"),
                model("torchserve-mar"),
                model("llamafile"),
            ];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES
            .iter()
            .chain(crate::formats::torch::rules::RULES)
            .chain(crate::formats::frameworks::rules::ZIP_RULES)
            .copied()
            .collect()
    }
    fn sniff(&self, head: &Head) -> bool {
        let h = head.bytes;
        h.starts_with(b"PK\x03\x04") || h.starts_with(b"PK\x05\x06") || h.starts_with(b"PK\x07\x08")
    }
    fn sniff_seekable(&self, r: &mut dyn ReadSeek, len: u64) -> io::Result<bool> {
        has_eocd(r, len)
    }
    fn needs_seek(&self) -> bool {
        true
    }
    fn scan_seekable(
        &self,
        r: &mut dyn ReadSeek,
        len: u64,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        scan(r, len, member, depth, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-member stored zip whose local header and central directory
    /// disagree on the compressed size.
    fn zip_with_sizes(name: &str, data: &[u8], local_size: u32, cd_size: u32) -> Vec<u8> {
        let mut z = Vec::new();
        z.extend_from_slice(&SIG_LOCAL.to_le_bytes());
        z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        z.extend_from_slice(&local_size.to_le_bytes());
        z.extend_from_slice(&local_size.to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(data);
        let cd_at = z.len() as u32;
        let mut c = Vec::new();
        c.extend_from_slice(&SIG_CENTRAL.to_le_bytes());
        c.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&crc32fast::hash(&data[..cd_size as usize]).to_le_bytes());
        c.extend_from_slice(&cd_size.to_le_bytes());
        c.extend_from_slice(&cd_size.to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0u8; 12]);
        c.extend_from_slice(&0u32.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        z.extend_from_slice(&c);
        z.extend_from_slice(&SIG_EOCD.to_le_bytes());
        z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        z.extend_from_slice(&(c.len() as u32).to_le_bytes());
        z.extend_from_slice(&cd_at.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }

    #[test]
    fn local_header_size_view_is_scanned() {
        use crate::{Ctx, FileState};
        let mut data = b"\x80\x04N.".to_vec();
        data.extend_from_slice(b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.");
        let z = zip_with_sizes("model.pkl", &data, data.len() as u32, 4);
        let st = FileState::new();
        let mut sink = Sink {
            ctx: Ctx::default(),
            state: &st,
            findings: Vec::new(),
            file: String::new(),
        };
        scan(
            &mut std::io::Cursor::new(&z),
            z.len() as u64,
            "",
            0,
            &mut sink,
        )
        .unwrap();
        let rules: Vec<&str> = sink.findings.iter().map(|f| f.rule.as_str()).collect();
        assert!(
            rules.contains(&"ARC001") && rules.contains(&"PKL001"),
            "{:?}",
            sink.findings
        );
        let crit = sink.findings.iter().find(|f| f.rule == "PKL001").unwrap();
        assert!(crit
            .location
            .member
            .as_deref()
            .unwrap()
            .contains("local header view"));
    }

    #[test]
    fn storage_names() {
        assert!(is_torch_storage("archive/data/0"));
        assert!(is_torch_storage("my_model/data/123"));
        assert!(!is_torch_storage("archive/data.pkl"));
        assert!(!is_torch_storage("archive/data/0/x"));
        assert!(!is_torch_storage("data/0"));
    }
}
