//! SARIF 2.1.0 for GitHub code scanning and other SARIF consumers, built
//! with the `serde-sarif` types: every rule of the catalogue as a reporting
//! descriptor (with `security-severity` for GitHub's ranking), one result
//! per finding with its level, an artifact location relative to the scan
//! root (`%SRCROOT%`), the container member as a logical location, and
//! files that could not be read as tool execution notifications.

use std::collections::BTreeMap;

use serde_sarif::sarif::{
    Artifact, ArtifactLocation, Invocation, Location, LogicalLocation, Message,
    MultiformatMessageString, Notification, PhysicalLocation, PropertyBag, Region,
    ReportingConfiguration, ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif,
    Tool, ToolComponent,
};

use probity_report::{Report, Severity, Verdict};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// GitHub's 0–10 scale: critical ≥ 9, high 7–8.9, medium 4–6.9, low < 4.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::Warning => "5.0",
        Severity::Info => "1.0",
    }
}

/// An artifact URI for a report path: relative paths stay relative (with
/// forward slashes, resolved against `%SRCROOT%`), absolute ones become
/// `file://` URIs. Characters outside the URI grammar are percent-encoded.
pub fn artifact_uri(path: &str) -> (String, bool) {
    let p = path.replace('\\', "/");
    let p = p.trim_start_matches("./");
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if p.starts_with('/') {
        (format!("file://{out}"), false)
    } else {
        (out, true)
    }
}

fn props(pairs: &[(&str, serde_json::Value)], tags: Option<Vec<String>>) -> PropertyBag {
    let mut additional = BTreeMap::new();
    for (k, v) in pairs {
        additional.insert(k.to_string(), v.clone());
    }
    PropertyBag {
        tags,
        additional_properties: additional,
    }
}

/// The report as a SARIF log, pretty-printed with a trailing newline.
pub fn render(report: &Report) -> String {
    let catalogue = probity_scan::catalogue::all();
    let index: BTreeMap<&str, usize> = catalogue
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, i))
        .collect();
    let rules: Vec<ReportingDescriptor> = catalogue
        .iter()
        .map(|r| {
            let mut help = format!(
                "{}\n\nWhy it matters: {}\n\nExample: {}",
                r.what, r.why, r.example
            );
            if !r.references.is_empty() {
                help.push_str(&format!("\n\nReferences: {}", r.references.join(", ")));
            }
            ReportingDescriptor::builder()
                .id(r.id)
                .name(
                    r.title
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .filter(|w| !w.is_empty())
                        .map(|w| {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                                .unwrap_or_default()
                        })
                        .collect::<String>(),
                )
                .short_description(MultiformatMessageString::builder().text(r.title).build())
                .full_description(MultiformatMessageString::builder().text(r.what).build())
                .help(
                    MultiformatMessageString::builder()
                        .text(help.clone())
                        .markdown(help)
                        .build(),
                )
                .default_configuration(
                    ReportingConfiguration::builder()
                        .level(serde_json::json!(level(r.severity)))
                        .build(),
                )
                .properties(props(
                    &[(
                        "security-severity",
                        serde_json::json!(security_severity(r.severity)),
                    )],
                    Some(vec!["security".into(), "ml-model".into()]),
                ))
                .build()
        })
        .collect();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    let mut artifacts = Vec::new();
    for f in &report.files {
        let (uri, relative) = artifact_uri(&f.path);
        let artifact = |uri: &str| {
            let b = ArtifactLocation::builder().uri(uri.to_string());
            if relative {
                b.uri_base_id("%SRCROOT%").build()
            } else {
                b.build()
            }
        };
        // every file, with its format and how completely it was analysed
        if let Some(c) = &f.coverage {
            let mut pairs = vec![
                ("probity:format", serde_json::json!(f.format)),
                ("probity:coverage", serde_json::json!(c.label())),
            ];
            if !c.reasons.is_empty() {
                pairs.push(("probity:coverage_reasons", serde_json::json!(c.reasons)));
            }
            let mut a = Artifact::builder()
                .location(artifact(&uri))
                .length(f.size.min(i64::MAX as u64) as i64)
                .properties(props(&pairs, None))
                .build();
            if let Some(h) = &f.sha256 {
                a.hashes = Some([("sha-256".to_string(), h.clone())].into());
            }
            artifacts.push(a);
        }
        if let Some(e) = &f.error {
            notifications.push(
                Notification::builder()
                    .level(serde_json::json!("error"))
                    .message(Message::builder().text(e.clone()).build())
                    .locations(vec![Location::builder()
                        .physical_location(
                            PhysicalLocation::builder()
                                .artifact_location(artifact(&uri))
                                .build(),
                        )
                        .build()])
                    .build(),
            );
        }
        for x in &f.findings {
            let mut text = x.message.clone();
            if let Some(m) = &x.location.member {
                text = format!("{m}: {text}");
            }
            if let Some(e) = &x.evidence {
                text.push_str(&format!(" (evidence: {e})"));
            }
            let mut physical = PhysicalLocation::builder()
                .artifact_location(artifact(&uri))
                .build();
            // an offset inside a container member is not an offset in the file
            if let (Some(off), None) = (x.location.offset, &x.location.member) {
                physical.region = Some(
                    Region::builder()
                        .byte_offset(off.min(i64::MAX as u64) as i64)
                        .build(),
                );
            }
            let mut loc = Location::builder().physical_location(physical).build();
            if let Some(m) = &x.location.member {
                loc.logical_locations = Some(vec![LogicalLocation::builder()
                    .fully_qualified_name(m.clone())
                    .kind("member")
                    .build()]);
            }
            let mut r = SarifResult::builder()
                .rule_id(x.rule.clone())
                .level(match x.severity {
                    Severity::Critical => ResultLevel::Error,
                    Severity::Warning => ResultLevel::Warning,
                    Severity::Info => ResultLevel::Note,
                })
                .message(Message::builder().text(text).build())
                .locations(vec![loc])
                .build();
            if let Some(&i) = index.get(x.rule.as_str()) {
                r.rule_index = Some(i as i64);
            }
            if !x.cves.is_empty() {
                // GitHub shows result tags; the CVE IDs also sit in a property
                let mut tags = vec!["security".to_string()];
                tags.extend(x.cves.iter().cloned());
                r.properties = Some(props(&[("cves", serde_json::json!(x.cves))], Some(tags)));
            }
            results.push(r);
        }
    }
    let driver = ToolComponent::builder()
        .name("probity")
        .version(report.tool.version.clone())
        .semantic_version(report.tool.version.clone())
        .rules(rules)
        .build();
    let invocation = Invocation::builder()
        .execution_successful(report.summary.verdict != Verdict::Error)
        .tool_execution_notifications(notifications)
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .artifacts(artifacts)
        .results(results)
        .invocations(vec![invocation])
        .column_kind(serde_json::json!("unicodeCodePoints"))
        .build();
    let log = Sarif::builder()
        .schema(serde_sarif::sarif::SCHEMA_URL)
        .version(serde_json::json!("2.1.0"))
        .runs(vec![run])
        .build();
    let mut s =
        serde_json::to_string_pretty(&log).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            artifact_uri("models/a b.pkl"),
            ("models/a%20b.pkl".into(), true)
        );
        assert_eq!(artifact_uri("./x/y.pt"), ("x/y.pt".into(), true));
        assert_eq!(
            artifact_uri("/abs/m.bin"),
            ("file:///abs/m.bin".into(), false)
        );
        assert_eq!(artifact_uri("dir\\w.pkl"), ("dir/w.pkl".into(), true));
    }
}
