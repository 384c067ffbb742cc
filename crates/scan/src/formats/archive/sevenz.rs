//! 7z archives, read with the sevenz-rust2 crate; every member is scanned by
//! content within the decompression budget.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use super::rules;
use crate::format::{other, Format, Head, Label};
use crate::io::{Bounded, Peekable, ReadSeek};
use crate::limits;
use crate::paths::escapes_root;
use crate::{child_member, rules as scan_rules, scan_stream, Detected, Sink};
use probity_report::Finding;

pub fn scan(
    r: &mut dyn ReadSeek,
    _len: u64,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let detected = Detected {
        format: "7z".into(),
        joblib: false,
        ..Default::default()
    };
    if crate::formats::too_deep("7z", member, depth, sink) {
        return Ok(detected);
    }
    let mut reader = match sevenz_rust2::ArchiveReader::new_with_memory_limit(
        r,
        sevenz_rust2::Password::empty(),
        512 * 1024,
    ) {
        Ok(a) => a,
        Err(e) => {
            let msg = e.to_string();
            let rule = rule_for(&msg);
            sink.findings.push(
                Finding::new(rule, format!("7z archive cannot be read: {msg}"))
                    .at(Some(member), None),
            );
            return Ok(detected);
        }
    };
    reader.set_thread_count(1);
    let names: Vec<String> = reader
        .archive()
        .files
        .iter()
        .map(|f| f.name.clone())
        .collect();
    for n in &names {
        if escapes_root(n) {
            sink.findings.push(
                Finding::new(
                    &rules::ARC007,
                    format!(
                        "member name '{n}' is absolute or climbs out of the extraction directory"
                    ),
                )
                .at(Some(member), None)
                .evidence(n.clone()),
            );
        }
    }
    if names.len() > limits::MAX_ARCHIVE_ENTRIES {
        sink.findings.push(
            Finding::new(
                &scan_rules::SCN002,
                format!(
                    "more than {} 7z entries; the rest was not read",
                    limits::MAX_ARCHIVE_ENTRIES
                ),
            )
            .at(Some(member), None),
        );
    }
    let budget = sink.state.budget.clone();
    let mut count = 0usize;
    let mut failures: Vec<Finding> = Vec::new();
    let res = reader.for_each_entries(|entry, data| {
        count += 1;
        if count > limits::MAX_ARCHIVE_ENTRIES {
            return Ok(false);
        }
        if entry.is_directory || !entry.has_stream {
            return Ok(true);
        }
        let child = child_member(member, &entry.name);
        let consumed = Rc::new(Cell::new(entry.compressed_size.max(1)));
        let bounded: Box<dyn Read + '_> = Box::new(Bounded::new(
            data,
            consumed,
            Some(entry.compressed_size.max(1)),
            budget.clone(),
        ));
        let mut p = Peekable::new(bounded);
        if let Err(e) = scan_stream(&mut p, Some(entry.size), &child, depth + 1, sink) {
            let f = crate::formats::archive::member_failure(&entry.name, &e);
            failures.push(f.at(Some(&child), None));
            return Ok(false);
        }
        // drain what the scan did not read so the solid block stays in sync
        io::copy(&mut p, &mut io::sink())
            .map_err(|e| sevenz_rust2::Error::Io(e, "drain".into()))?;
        Ok(true)
    });
    sink.findings.extend(failures);
    if let Err(e) = res {
        let msg = e.to_string();
        let rule = rule_for(&msg);
        sink.findings.push(
            Finding::new(
                rule,
                format!("7z archive could not be read to the end: {msg}"),
            )
            .at(Some(member), None),
        );
    }
    Ok(detected)
}

/// Encrypted archives cannot be inspected (ARC004); anything else is damage (ARC008).
fn rule_for(msg: &str) -> &'static probity_report::Rule {
    let m = msg.to_ascii_lowercase();
    if m.contains("password") || m.contains("encrypt") {
        &rules::ARC004
    } else {
        &rules::ARC008
    }
}

/// 7z archives.
pub struct SevenZ;

impl Format for SevenZ {
    fn name(&self) -> &'static str {
        "7z"
    }
    fn summary(&self) -> &'static str {
        "7z archives"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[other("7z")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        head.bytes.starts_with(b"7z\xbc\xaf\x27\x1c")
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
