//! OpenVINO IR (`.xml` beside its `.bin` weights): the network's layers, each
//! with an operation type and the operation set (`version`) it comes from.
//! Operation sets ship with OpenVINO (`opsetN`, `experimental`); any other
//! set must be registered by an extension library the application loads,
//! native code the IR does not carry (OVN001). The document is parsed with
//! `roxmltree` (no DTDs, no external entities).

use std::io::{self, Read};

use probity_report::Finding;

use super::rules;
use crate::format::{model, Format, Head, Label, Stream};
use crate::io::read_bounded;
use crate::{limits, Detected, Sink};

/// Whether text starts like an OpenVINO IR document: after the XML
/// declaration and comments, the root element is `<net`.
pub fn sniff(head: &[u8]) -> bool {
    let mut t = head.trim_ascii_start();
    for _ in 0..16 {
        let end = if t.starts_with(b"<?") {
            b"?>".as_slice()
        } else if t.starts_with(b"<!--") {
            b"-->".as_slice()
        } else {
            break;
        };
        match t.windows(end.len()).position(|w| w == end) {
            Some(i) => t = t[i + end.len()..].trim_ascii_start(),
            None => return false,
        }
    }
    t.starts_with(b"<net ") || t.starts_with(b"<net\n") || t.starts_with(b"<net\t")
}

fn standard(set: &str) -> bool {
    set == "experimental"
        || set
            .strip_prefix("opset")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn scan<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut problems: Vec<String> = Vec::new();
    let Some(bytes) = read_bounded(r, limits::MAX_TEXT_DOCUMENT)? else {
        problems.push(format!(
            "the document is larger than the {} MiB text limit",
            limits::MAX_TEXT_DOCUMENT >> 20
        ));
        report(sink, member, &[], &problems);
        return Ok(Detected::named("openvino-ir"));
    };
    let text = String::from_utf8_lossy(&bytes);
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 4_000_000,
        ..Default::default()
    };
    let mut custom: Vec<String> = Vec::new();
    match roxmltree::Document::parse_with_options(&text, opts) {
        Ok(doc) => {
            let root = doc.root_element();
            if root.tag_name().name() != "net" {
                problems.push(format!(
                    "the root element is <{}>, not <net>",
                    root.tag_name().name()
                ));
            }
            let mut layers = 0usize;
            for layer in root
                .descendants()
                .filter(|n| n.is_element() && n.tag_name().name() == "layer")
            {
                layers += 1;
                let set = layer.attribute("version").unwrap_or("");
                let ty = layer.attribute("type").unwrap_or("?");
                if !set.is_empty() && !standard(set) {
                    let name = layer.attribute("name").unwrap_or("");
                    custom.push(format!("`{ty}` from `{set}` (layer `{name}`)"));
                }
            }
            if layers == 0 {
                problems.push("the network has no layers".into());
            }
        }
        Err(e) => problems.push(format!("the XML does not parse: {e}")),
    }
    report(sink, member, &custom, &problems);
    Ok(Detected::named("openvino-ir"))
}

fn report(sink: &mut Sink, member: &str, custom: &[String], problems: &[String]) {
    if !custom.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::OVN001,
                format!(
                    "{} layer(s) use operations no OpenVINO operation set provides; an extension library must supply them: {}",
                    custom.len(),
                    crate::formats::summarise(custom, 8)
                ),
            )
            .at(Some(member), None)
            .evidence(crate::formats::summarise(custom, 8)),
        );
    }
    if !problems.is_empty() {
        sink.findings.push(
            Finding::new(
                &crate::rules::SCN005,
                format!(
                    "OpenVINO IR not fully inspected: {}",
                    crate::formats::summarise(problems, 3)
                ),
            )
            .at(Some(member), None),
        );
    }
}

/// OpenVINO IR documents.
pub struct OpenVino;

impl Format for OpenVino {
    fn name(&self) -> &'static str {
        "openvino-ir"
    }
    fn summary(&self) -> &'static str {
        "OpenVINO IR (.xml): every layer's operation set, for operations only an extension library provides"
    }
    fn labels(&self) -> &'static [Label] {
        const L: &[Label] = &[model("openvino-ir")];
        L
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        vec![&rules::OVN001, &crate::rules::SCN005]
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff(head.bytes)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        member: &str,
        _depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        scan(r, member, sink)
    }
}
