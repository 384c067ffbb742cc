//! OpenVINO IR (`.xml` beside its `.bin` weights): the network's layers, each
//! with an operation type and the operation set (`version`) it comes from.
//! Operation sets ship with OpenVINO (`opsetN`, `experimental`); any other
//! set must be registered by an extension library the application loads,
//! native code the IR does not carry (OVN001). The document is parsed with
//! `roxmltree` (no DTDs, no external entities).

use std::io::{self, Read};

use super::rules;
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

pub fn scan(
    r: &mut dyn Read,
    _len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
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
    let lead = format!(
        "{} layer(s) use operations no OpenVINO operation set provides; an extension library must supply them",
        custom.len()
    );
    super::flag(sink, &rules::OVN001, member, &lead, custom);
    super::incomplete(sink, member, "OpenVINO IR", problems);
}

stream_format!(
    OpenVino,
    "openvino-ir",
    "OpenVINO IR (.xml): every layer's operation set, for operations only an extension library provides",
    [&rules::OVN001, &crate::rules::SCN005],
    sniff,
    scan
);
