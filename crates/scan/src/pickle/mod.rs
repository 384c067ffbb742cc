//! Pickle analysis: runs the symbolic machine over every stream of a file or
//! member, judges each import with the callable policy and follows pickles
//! nested in the data.

pub mod callables;
pub mod machine;
pub mod rules;
pub mod value;

use std::io::{BufRead, Cursor};

use base64::Engine as _;

use crate::format::{model, Format, Head, Label, Stream};
use crate::limits;
use crate::{rules as scan_rules, Ctx};
use crate::{Detected, Sink};
use callables::Verdict;
use machine::{Callee, Options, StreamResult};
use probity_report::Finding;
use std::io;

/// Decides from the first bytes of a file whether it is a pickle.
pub fn probe(head: &[u8], whole: bool) -> bool {
    if head.is_empty() {
        return false;
    }
    let mut cur = Cursor::new(head);
    let res = machine::run_stream(
        &mut cur,
        0,
        Options {
            max_ops: 4096,
            probe: true,
        },
    );
    if res.ops >= 4096 && res.error.is_none() {
        return true;
    }
    res.looks_like_pickle(!whole)
}

/// What a pickle scan learnt beyond its findings.
#[derive(Debug, Default)]
pub struct Outcome {
    pub streams: usize,
    pub joblib: bool,
    /// The analysis was incomplete (error or limit): never clean by omission.
    pub incomplete: bool,
    /// Any import outside the allowlist (used for nested pickles).
    pub non_allowed_calls: bool,
}

/// Scans exactly one pickle stream and reports it; returns what the machine
/// learnt (for callers that walk formats interleaving pickles with raw data).
pub fn scan_one_stream(
    reader: &mut dyn BufRead,
    start: u64,
    member: &str,
    ctx: &Ctx,
    out: &mut Vec<Finding>,
) -> StreamResult {
    let res = machine::run_stream(reader, start, Options::default());
    let mut outcome = Outcome::default();
    report_stream(&res, 0, member, ctx, 0, out, &mut outcome);
    res
}

/// Scans every pickle stream readable from `reader` (positioned at stream
/// offset `start`) and appends findings for `member`.
pub fn scan_streams(
    reader: &mut dyn BufRead,
    start: u64,
    member: &str,
    ctx: &Ctx,
    depth: u32,
    out: &mut Vec<Finding>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut pos = start;
    for i in 0..limits::MAX_STREAMS {
        match reader.fill_buf() {
            Ok([]) => return outcome,
            Ok(_) => {}
            Err(e) => {
                out.push(
                    Finding::new(
                        &rules::PKL003,
                        format!("read error before pickle stream {}: {e}", i + 1),
                    )
                    .at(Some(member), Some(pos)),
                );
                outcome.incomplete = true;
                return outcome;
            }
        }
        let res = machine::run_stream(reader, pos, Options::default());
        if i > 0 && !res.looks_like_pickle(false) {
            out.push(
                Finding::new(
                    &rules::PKL008,
                    format!("bytes from offset {pos} onwards are not a further pickle stream; not parsed as one"),
                )
                .at(Some(member), Some(pos)),
            );
            return outcome;
        }
        outcome.streams += 1;
        report_stream(&res, i, member, ctx, depth, out, &mut outcome);
        for b in &res.secret_candidates {
            let text = String::from_utf8_lossy(&b.data);
            let place = format!("a pickle string at offset {}", b.offset);
            for f in crate::formats::secrets::find(&text, Some(&place), member) {
                out.push(f.at(Some(member), Some(b.offset)));
            }
        }
        match res.stop {
            Some(end) if res.limit.is_none() => pos = end,
            _ => return outcome,
        }
    }
    out.push(
        Finding::new(
            &scan_rules::SCN002,
            format!(
                "more than {} pickle streams; the rest was not read",
                limits::MAX_STREAMS
            ),
        )
        .at(Some(member), Some(pos)),
    );
    outcome.incomplete = true;
    outcome
}

struct ImportUse {
    name: String,
    verdict: Verdict,
    /// A deserialiser whose string/bytes arguments are scanned as pickles.
    loader: bool,
    total_calls: u64,
    first_offset: u64,
    opcode: &'static str,
    count: u64,
    calls: Vec<String>,
}

fn report_stream(
    res: &StreamResult,
    index: usize,
    member: &str,
    ctx: &Ctx,
    depth: u32,
    out: &mut Vec<Finding>,
    outcome: &mut Outcome,
) {
    let stream_label = if index == 0 {
        String::new()
    } else {
        format!(" (pickle stream {} at offset {})", index + 1, res.start)
    };
    // One entry per distinct import (streams repeat the same few globals):
    // named, judged and grouped once.
    let mut index_of: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    let mut uniq: Vec<ImportUse> = Vec::new();
    let mut uid: Vec<usize> = Vec::with_capacity(res.imports.len());
    for imp in &res.imports {
        let k = *index_of.entry((imp.module.as_str(), imp.name.as_str())).or_insert_with(|| {
            let verdict = if ctx.torchscript && (imp.module == "__torch__" || imp.module.starts_with("__torch__.")) {
                Verdict::Allowed
            } else {
                callables::judge(&imp.module, &imp.name, &ctx.extra_allowed)
            };
            let name = imp.full();
            uniq.push(ImportUse {
                loader: matches!(&verdict, Verdict::Allowed) && callables::is_allowed_loader(&name)
                    || matches!(&verdict, Verdict::Dangerous { family, .. } if *family == callables::DESERIALISER_FAMILY),
                name,
                verdict,
                first_offset: imp.offset,
                opcode: imp.opcode,
                count: 0,
                total_calls: 0,
                calls: Vec::new(),
            });
            uniq.len() - 1
        });
        uniq[k].count += imp.count;
        uniq[k].total_calls += imp.calls;
        uid.push(k);
    }
    for call in &res.calls {
        match &call.callee {
            Callee::Import(i) | Callee::ObjectOf(i) => {
                if let Some(&k) = uid.get(*i) {
                    let u = &mut uniq[k];
                    if u.calls.len() < 3 && !matches!(u.verdict, Verdict::Allowed) {
                        let how = if matches!(call.callee, Callee::ObjectOf(_)) {
                            format!(
                                "its object's __setstate__ via BUILD at offset {} with {}",
                                call.offset,
                                call.args.repr(240)
                            )
                        } else {
                            format!(
                                "{} at offset {} with {}",
                                call.kind.opcode(),
                                call.offset,
                                call.args.repr(240)
                            )
                        };
                        u.calls.push(how);
                    }
                }
            }
            Callee::Dynamic(desc) => {
                out.push(
                    Finding::new(
                        &rules::PKL007,
                        format!(
                            "{} at offset {} calls {}{}",
                            call.kind.opcode(),
                            call.offset,
                            desc,
                            stream_label
                        ),
                    )
                    .at(Some(member), Some(call.offset))
                    .evidence(call.args.repr(240)),
                );
                outcome.non_allowed_calls = true;
            }
        }
    }
    for u in &uniq {
        let name = &u.name;
        if name.starts_with("joblib.numpy_pickle.") || name.starts_with("sklearn.externals.joblib.")
        {
            outcome.joblib = true;
        }
        if matches!(u.verdict, Verdict::Allowed) {
            continue;
        }
        let verdict = u.verdict.clone();
        let called = if u.calls.is_empty() {
            "imported (not called in this stream)".to_string()
        } else {
            let more = if u.total_calls > u.calls.len() as u64 {
                format!(" ({} calls in all)", u.total_calls)
            } else {
                String::new()
            };
            format!("called via {}{more}", u.calls.join("; "))
        };
        let times = if u.count > 1 {
            format!(", imported {} times", u.count)
        } else {
            String::new()
        };
        match verdict {
            Verdict::Allowed => {}
            Verdict::Dangerous {
                family,
                why,
                matched,
            } => {
                outcome.non_allowed_calls |= !u.calls.is_empty() || u.count > 0;
                out.push(
                    Finding::new(
                        &rules::PKL001,
                        format!(
                            "`{name}` ({family}: {why}; matched {matched}) is imported by {} at offset {}{times} and {called}{stream_label}",
                            u.opcode, u.first_offset
                        ),
                    )
                    .at(Some(member), Some(u.first_offset))
                    .evidence(name.clone()),
                );
            }
            Verdict::Unknown => {
                outcome.non_allowed_calls |= !u.calls.is_empty() || u.count > 0;
                out.push(
                    Finding::new(
                        &rules::PKL002,
                        format!(
                            "`{name}` is not on the allowlist; it is imported by {} at offset {}{times} and {called}{stream_label}",
                            u.opcode, u.first_offset
                        ),
                    )
                    .at(Some(member), Some(u.first_offset))
                    .evidence(name.clone()),
                );
            }
        }
    }
    for m in &res.mutations {
        let target = res
            .imports
            .get(m.import)
            .map(|i| i.full())
            .unwrap_or_default();
        out.push(
            Finding::new(
                &rules::PKL006,
                format!(
                    "offset {}: loading changes the imported object `{target}` itself ({}){stream_label}",
                    m.offset, m.state
                ),
            )
            .at(Some(member), Some(m.offset))
            .evidence(target),
        );
    }
    if let Some(err) = &res.error {
        outcome.incomplete = true;
        out.push(
            Finding::new(
                &rules::PKL003,
                format!(
                    "pickle stream starting at offset {}: {} (at offset {})",
                    res.start, err.message, err.offset
                ),
            )
            .at(Some(member), Some(err.offset)),
        );
    }
    if let Some(limit) = &res.limit {
        outcome.incomplete = true;
        out.push(
            Finding::new(
                &scan_rules::SCN002,
                format!("pickle stream starting at offset {}: {limit}; the rest of the stream was not analysed", res.start),
            )
            .at(Some(member), Some(res.start)),
        );
    }
    // joblib object arrays: complete pickles inline in the stream.
    for sub in &res.inline {
        let mut sub_outcome = Outcome::default();
        report_stream(sub, 0, member, ctx, depth, out, &mut sub_outcome);
        outcome.incomplete |= sub_outcome.incomplete;
        outcome.non_allowed_calls |= sub_outcome.non_allowed_calls;
    }
    // Pickles nested in values.
    let allowed_loader_blobs: Vec<*const value::Blob> = res
        .calls
        .iter()
        .filter(|c| match &c.callee {
            Callee::Import(i) => res
                .imports
                .get(*i)
                .is_some_and(|imp| callables::is_allowed_loader(&imp.full())),
            _ => false,
        })
        .flat_map(|c| c.arg_blobs.iter().map(std::rc::Rc::as_ptr))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let is_loader = |c: &&machine::CallSite| match &c.callee {
        Callee::Import(i) => uid.get(*i).is_some_and(|&k| uniq[k].loader),
        _ => false,
    };
    let loader_blobs: Vec<*const value::Blob> = res
        .calls
        .iter()
        .filter(is_loader)
        .flat_map(|c| c.arg_blobs.iter().map(std::rc::Rc::as_ptr))
        .collect();
    let loader_args = res.calls.iter().filter(is_loader);
    let candidates: Vec<std::rc::Rc<value::Blob>> = res
        .blobs
        .iter()
        .cloned()
        .chain(loader_args.flat_map(|c| c.arg_blobs.iter().cloned()))
        .collect();
    for blob in &candidates {
        let ptr = std::rc::Rc::as_ptr(blob);
        if !seen.insert(ptr) {
            continue;
        }
        let is_loader_arg = loader_blobs.contains(&ptr);
        let expected = allowed_loader_blobs.contains(&ptr);
        for (encoding, data) in decodings(&blob.data) {
            if !is_loader_arg && !machine::raw_prefix_suggests_pickle(&data) {
                continue;
            }
            if !blob.complete() {
                out.push(
                    Finding::new(
                        &scan_rules::SCN002,
                        format!(
                            "value at offset {} ({} bytes) looks like an embedded pickle but is larger than {} bytes; not scanned",
                            blob.offset,
                            blob.full_len,
                            limits::MAX_NESTED_VALUE
                        ),
                    )
                    .at(Some(member), Some(blob.offset)),
                );
                outcome.incomplete = true;
                break;
            }
            if !probe(&data, true) {
                continue;
            }
            if depth + 1 > limits::MAX_NESTED_DEPTH {
                out.push(
                    Finding::new(
                        &scan_rules::SCN002,
                        format!("embedded pickle at offset {} is nested deeper than {} levels; not scanned", blob.offset, limits::MAX_NESTED_DEPTH),
                    )
                    .at(Some(member), Some(blob.offset)),
                );
                outcome.incomplete = true;
                break;
            }
            let mut inner = Vec::new();
            let mut cur = Cursor::new(&data[..]);
            let inner_out = scan_streams(&mut cur, 0, member, ctx, depth + 1, &mut inner);
            let how = match encoding {
                Encoding::Raw => "bytes",
                Encoding::Base64 => "base64 text",
                Encoding::Hex => "hex text",
            };
            for mut f in inner {
                f.message = format!(
                    "in the pickle embedded at offset {} ({how}): {}",
                    blob.offset, f.message
                );
                f.location.offset = Some(blob.offset);
                out.push(f);
            }
            if !expected {
                out.push(
                    Finding::new(
                        &rules::PKL004,
                        format!(
                            "the value at offset {} is a complete pickle ({how}, {} bytes){}; scanned recursively",
                            blob.offset,
                            data.len(),
                            if is_loader_arg { " passed to a deserialiser" } else { "" }
                        ),
                    )
                    .at(Some(member), Some(blob.offset)),
                );
                if inner_out.non_allowed_calls {
                    out.push(
                        Finding::new(
                            &rules::PKL005,
                            format!(
                                "the pickle embedded at offset {} ({how}) imports and calls callables outside the allowlist",
                                blob.offset
                            ),
                        )
                        .at(Some(member), Some(blob.offset)),
                    );
                }
            }
            outcome.non_allowed_calls |= inner_out.non_allowed_calls;
            outcome.incomplete |= inner_out.incomplete;
            break;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Raw,
    Base64,
    Hex,
}

/// The ways a value may hold a pickle: as is, base64-encoded, hex-encoded.
fn decodings(data: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut v = vec![(Encoding::Raw, data.to_vec())];
    let trimmed: Vec<u8> = data
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if trimmed.len() >= 8 {
        if trimmed.len().is_multiple_of(2) && trimmed.iter().all(|c| c.is_ascii_hexdigit()) {
            let bytes: Option<Vec<u8>> = trimmed
                .chunks(2)
                .map(|p| {
                    std::str::from_utf8(p)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            if let Some(b) = bytes {
                v.push((Encoding::Hex, b));
            }
        }
        let is_b64 = trimmed
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_'));
        if is_b64 {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            for e in engines {
                if let Ok(b) = e.decode(&trimmed) {
                    v.push((Encoding::Base64, b));
                    break;
                }
            }
        }
    }
    v
}

/// Raw pickles: `.pkl`, legacy `torch.save` files, joblib dumps.
pub struct Pickle;

impl Format for Pickle {
    fn name(&self) -> &'static str {
        "pickle"
    }
    fn summary(&self) -> &'static str {
        "pickles of every protocol (raw .pkl, legacy PyTorch torch.save files, joblib)"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("pickle"), model("pytorch-legacy"), model("joblib")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        probe(head.bytes, head.whole)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        member: &str,
        _depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        // torch.save's legacy format starts with a pickled magic number (LONG1 0x1950a86a20f9469cfc6c)
        let legacy = r
            .peek(14)?
            .starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19");
        let out = scan_streams(r, 0, member, &sink.ctx, 0, &mut sink.findings);
        let mut d = Detected::named("pickle");
        if legacy {
            d.format = "pytorch-legacy".into();
        }
        if out.joblib {
            d.joblib = true;
            d.format = "joblib".into();
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
