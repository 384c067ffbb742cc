//! Text documents: JSON configs (`tokenizer_config.json`, `config.json`,
//! chat-template files), YAML and standalone Jinja templates. Every string
//! of a JSON document that holds Jinja delimiters is judged as a template
//! (`chat_template` and its named variants, but also any other key a tool
//! might render); other text holding Jinja is judged whole (YAML, `.jinja`).
//! Documents are bounded by [`limits::MAX_TEXT_DOCUMENT`].

use std::io::{self, Read};

use super::rules;
use crate::format::{model, other, Format, Head, Label, Stream};
use crate::formats::config::template::{self, Verdict};
use crate::io::read_bounded;
use crate::limits;
use crate::{Detected, Sink};
use probity_report::Finding;

/// Whether a head of bytes reads as text: no NUL byte and valid UTF-8 (a
/// character cut by the end of a partial head is allowed).
pub fn looks_like_text(head: &[u8], whole: bool) -> bool {
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => !whole && e.error_len().is_none(),
    }
}

fn detected(format: &str) -> Detected {
    Detected::named(format)
}

/// Scans one text document.
pub fn scan<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let Some(bytes) = read_bounded(r, limits::MAX_TEXT_DOCUMENT)? else {
        sink.findings.push(
            Finding::new(
                &rules::CFG004,
                format!(
                    "text document larger than {} MiB; its templates were not inspected",
                    limits::MAX_TEXT_DOCUMENT >> 20
                ),
            )
            .at(Some(member), None),
        );
        return Ok(detected("text"));
    };
    let text = String::from_utf8_lossy(&bytes);
    // credentials, wherever they sit in the document
    crate::formats::secrets::scan_text(&text, None, member, sink);
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with('{') || body.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
            let mut found = Vec::new();
            walk(&v, String::new(), 0, &mut found);
            for (path, s) in found {
                judge_into(s, Some(&path), member, sink);
            }
            let code = crate::formats::config::python::auto_map_files(&v);
            if !code.is_empty() {
                sink.findings.push(
                    Finding::new(
                        &rules::CFG005,
                        format!(
                            "auto_map names custom code that trust_remote_code would run: {}",
                            code.join(", ")
                        ),
                    )
                    .at(Some(member), None)
                    .evidence(code.join(", ")),
                );
            }
            super::advisories::check_saved_with(&v, member, sink);
            super::hydra::check(&v, member, sink);
            if crate::formats::safetensors::shards::looks_like_index(&v) {
                crate::formats::safetensors::shards::check_content(&v, member, sink);
                return Ok(detected("shard-index"));
            }
            if crate::formats::keras::looks_like_keras(&v) {
                crate::formats::keras::check(&v, member, sink);
                return Ok(detected("keras-config"));
            }
            return Ok(detected("json"));
        }
    }
    if super::hydra::mentions_target(&text) && super::hydra::check_text(&text, member, sink) {
        return Ok(detected("hydra-config"));
    }
    if let Some(card) = crate::formats::config::modelcard::parse(&text) {
        if template::has_jinja(&text) {
            judge_embedded(&text, member, sink);
        }
        let mut d = detected("model-card");
        d.model_card = Some(card);
        return Ok(d);
    }
    // Python: files with Python statements, and any small text that parses
    // as Python and makes a dangerous call (a one-line payload has no import)
    let marked = crate::formats::config::python::looks_like_python(&text);
    if marked || text.len() <= limits::MAX_UNMARKED_PYTHON {
        let before = sink.findings.len();
        if crate::formats::config::python::scan_source(&text, member, sink)
            && (marked || sink.findings.len() > before)
        {
            return Ok(detected("python"));
        }
    }
    if template::has_jinja(&text) {
        judge_embedded(&text, member, sink);
        return Ok(detected("jinja"));
    }
    let name = if member.is_empty() {
        sink.file.clone()
    } else {
        member.to_string()
    };
    if super::advisories::is_requirements(&name) {
        super::advisories::check_requirements(&text, member, sink);
        return Ok(detected("requirements"));
    }
    // plain text: read whole for credentials; nothing else to analyse
    Ok(detected("text"))
}

/// Judges Jinja inside a YAML file, a model card or other text: the
/// surrounding syntax is not the template's, so only the judgement is
/// reported, not lexer errors (CFG003).
fn judge_embedded(text: &str, member: &str, sink: &mut Sink) {
    let before = sink.findings.len();
    judge_into(text, None, member, sink);
    let mut i = before;
    while i < sink.findings.len() {
        if sink.findings[i].rule == rules::CFG003.id {
            sink.findings.remove(i);
        } else {
            i += 1;
        }
    }
}

/// String values holding Jinja, with their key paths.
fn walk<'v>(
    v: &'v serde_json::Value,
    path: String,
    depth: usize,
    out: &mut Vec<(String, &'v str)>,
) {
    if depth > limits::MAX_JSON_DEPTH {
        return;
    }
    match v {
        serde_json::Value::String(s) if template::has_jinja(s) => {
            out.push((if path.is_empty() { "$".into() } else { path }, s))
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, format!("{path}[{i}]"), depth + 1, out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(x, p, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Judges one template and records what it does.
pub fn judge_into(source: &str, key: Option<&str>, member: &str, sink: &mut Sink) {
    let place = key.map(|k| format!(" in '{k}'")).unwrap_or_default();
    if source.len() > limits::MAX_TEMPLATE {
        sink.findings.push(
            Finding::new(
                &rules::CFG004,
                format!(
                    "template{place} of {} bytes is larger than the {} MiB limit; not inspected",
                    source.len(),
                    limits::MAX_TEMPLATE >> 20
                ),
            )
            .at(Some(member), None),
        );
        return;
    }
    let j = template::judge(source);
    match j.verdict {
        Verdict::Execution(e) => sink.findings.push(
            Finding::new(
                &rules::CFG001,
                format!("template{place} reaches Python internals and a way to run code"),
            )
            .at(Some(member), None)
            .evidence(e),
        ),
        Verdict::Traversal(e) => sink.findings.push(
            Finding::new(
                &rules::CFG002,
                format!("template{place} traverses Python object internals"),
            )
            .at(Some(member), None)
            .evidence(e),
        ),
        Verdict::Clean => {}
    }
    if let Some(err) = j.syntax_error {
        let err: String = err.split_whitespace().collect::<Vec<_>>().join(" ");
        sink.findings.push(
            Finding::new(
                &rules::CFG003,
                format!("template{place} is not valid Jinja to minijinja's parser: {err}"),
            )
            .at(Some(member), None),
        );
    }
}

/// UTF-8 text documents.
pub struct Text;

impl Format for Text {
    fn name(&self) -> &'static str {
        "text"
    }
    fn summary(&self) -> &'static str {
        "UTF-8 text: JSON and YAML configs (chat templates, auto_map, Keras configs, shard indexes), standalone Jinja templates, model cards and Python source"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[
                other("text"),
                other("requirements"),
                other("hydra-config"),
                other("json"),
                other("jinja"),
                other("python"),
                other("model-card"),
                other("shard-index"),
                model("keras-config"),
            ];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        looks_like_text(head.bytes, head.whole)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        len_hint: Option<u64>,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        let _ = (len_hint, depth);
        scan(r, member, sink)
    }
}
