//! Tar archives (plain; compressed ones arrive here through
//! [`super::compressed`]), read with the `tar` crate. Every member is scanned
//! by content; link members are checked for escapes. The legacy PyTorch
//! format (`sys_info`, `pickle`, `storages`, `tensors` members) is a tar too.

use std::io::{self, Read};

use super::rules;
use crate::format::{model, other, Format, Head, Label, Stream};
use crate::formats::frameworks;
use crate::formats::torch::{scan_legacy_records, LegacyMember};
use crate::io::{as_bomb, Peekable};
use crate::limits;
use crate::paths::escapes_root;
use crate::{child_member, rules as scan_rules, scan_stream, Detected, Sink};
use probity_report::Finding;

pub fn scan<R: Read>(
    r: &mut Peekable<R>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut detected = Detected {
        format: "tar".into(),
        joblib: false,
        ..Default::default()
    };
    if crate::formats::too_deep("tar", member, depth, sink) {
        return Ok(detected);
    }
    let mut archive = tar::Archive::new(r);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            sink.findings.push(
                Finding::new(&rules::ARC008, format!("tar archive cannot be read: {e}"))
                    .at(Some(member), None),
            );
            return Ok(detected);
        }
    };
    let mut names = Vec::new();
    let mut docs: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, entry) in entries.enumerate() {
        if i >= limits::MAX_ARCHIVE_ENTRIES {
            sink.findings.push(
                Finding::new(
                    &scan_rules::SCN002,
                    format!(
                        "more than {} tar entries; the rest was not read",
                        limits::MAX_ARCHIVE_ENTRIES
                    ),
                )
                .at(Some(member), None),
            );
            break;
        }
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                if let Some(b) = as_bomb(&e) {
                    sink.findings.push(
                        Finding::new(&rules::ARC006, format!("tar stream: {b}"))
                            .at(Some(member), None),
                    );
                } else {
                    sink.findings.push(
                        Finding::new(&rules::ARC008, format!("tar entry {i} cannot be read: {e}"))
                            .at(Some(member), None),
                    );
                }
                break;
            }
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let child = child_member(member, &name);
        if escapes_root(&name) {
            sink.findings.push(
                Finding::new(&rules::ARC007, format!("member name '{name}' is absolute or climbs out of the extraction directory"))
                    .at(Some(&child), None)
                    .evidence(name.clone()),
            );
        }
        let etype = entry.header().entry_type();
        if etype.is_symlink() || etype.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let resolved = if etype.is_symlink() && !target.starts_with('/') {
                match name.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target.clone(),
                }
            } else {
                target.clone()
            };
            if escapes_root(&resolved) {
                sink.findings.push(
                    Finding::new(
                        &rules::ARC007,
                        format!(
                            "{} '{name}' points to '{target}', outside the extraction directory",
                            if etype.is_symlink() {
                                "symbolic link"
                            } else {
                                "hard link"
                            }
                        ),
                    )
                    .at(Some(&child), None)
                    .evidence(target),
                );
            }
            continue;
        }
        if !etype.is_file()
            && etype != tar::EntryType::Continuous
            && etype != tar::EntryType::GNUSparse
        {
            continue;
        }
        names.push(name.clone());
        let size = entry.size();
        let boxed: Box<dyn Read + '_> = Box::new(&mut entry);
        let mut p = Peekable::new(boxed);
        let base = name.rsplit('/').next().unwrap_or(&name);
        let legacy = match base {
            "storages" => Some(LegacyMember::Storages),
            "tensors" => Some(LegacyMember::Tensors),
            _ => None,
        };
        if let Some(kind) = legacy {
            // only when the member starts as a pickle; otherwise scan generically
            let head = p.peek(2)?.to_vec();
            if head.first() == Some(&0x80) {
                match scan_legacy_records(&mut p, kind, &child, sink) {
                    Ok(true) => continue,
                    Ok(false) => {
                        // not the legacy layout: the first stream was scanned; scan the rest as pickle data
                        crate::pickle::scan_streams(
                            &mut p,
                            0,
                            &child,
                            &sink.ctx,
                            0,
                            &mut sink.findings,
                        );
                        continue;
                    }
                    Err(e) => {
                        sink.findings.push(
                            crate::formats::archive::member_failure(&name, &e)
                                .at(Some(&child), None),
                        );
                        break;
                    }
                }
            }
        }
        let doc = name.trim_start_matches("./");
        let res = if frameworks::oci::KEPT_DOCUMENTS.contains(&doc)
            && size <= frameworks::oci::MAX_DOCUMENT
        {
            // small manifests are kept for the archive-level checks, then scanned
            let mut bytes = Vec::new();
            p.read_to_end(&mut bytes)?;
            let inner: Box<dyn Read + '_> = Box::new(std::io::Cursor::new(bytes.clone()));
            docs.push((doc.to_string(), bytes));
            scan_stream(
                &mut Peekable::new(inner),
                Some(size),
                &child,
                depth + 1,
                sink,
            )
        } else {
            scan_stream(&mut p, Some(size), &child, depth + 1, sink)
        };
        match res {
            Ok(d) => detected.joblib |= d.joblib,
            Err(e) => {
                sink.findings.push(
                    crate::formats::archive::member_failure(&name, &e).at(Some(&child), None),
                );
                break;
            }
        }
    }
    let legacy = ["sys_info", "pickle", "storages", "tensors"];
    if legacy.iter().all(|l| {
        names
            .iter()
            .any(|n| n == l || n.ends_with(&format!("/{l}")))
    }) {
        detected.format = "pytorch-legacy-tar".into();
    }
    if let Some(kind) = frameworks::oci::tar_kind(&names) {
        detected.format = kind.into();
        frameworks::oci::check_tar(kind, &names, &docs, member, sink);
    }
    Ok(detected)
}

/// Tar archives (and the legacy PyTorch tar layout). Two entries of the
/// registry: POSIX `ustar` headers are recognised early by their magic, old
/// GNU/v7 headers late by their checksum.
pub struct Tar {
    /// Recognise headers without the `ustar` magic by their checksum.
    pub by_checksum: bool,
}

impl Format for Tar {
    fn name(&self) -> &'static str {
        "tar"
    }
    fn summary(&self) -> &'static str {
        if self.by_checksum {
            "tar archives with old GNU/v7 headers"
        } else {
            "tar archives (also legacy PyTorch tar checkpoints)"
        }
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[
                other("tar"),
                model("pytorch-legacy-tar"),
                model("oci-image"),
                model("torchserve-mar"),
            ];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        let mut v = rules::RULES.to_vec();
        v.extend([
            &crate::formats::frameworks::rules::MAR001,
            &crate::formats::frameworks::rules::MAR002,
            &crate::rules::SCN005,
        ]);
        v
    }
    fn sniff(&self, head: &Head) -> bool {
        let h = head.bytes;
        if self.by_checksum {
            h.len() >= 512 && checksum_ok(&h[..512])
        } else {
            h.len() >= 262 && &h[257..262] == b"ustar"
        }
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        scan(r, member, depth, sink)
    }
}

/// Whether a 512-byte header's checksum field matches its bytes.
fn checksum_ok(h: &[u8]) -> bool {
    let field = &h[148..156];
    let s: String = field
        .iter()
        .take_while(|&&c| c != 0 && c != b' ')
        .map(|&c| c as char)
        .collect();
    let Ok(want) = u32::from_str_radix(s.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                c as u32
            }
        })
        .sum();
    sum == want && h[0] != 0
}
