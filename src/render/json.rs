//! `probity.scan/v1` JSON (documented in docs/report-schema.md).

use probity_report::Report;

/// Pretty JSON with a trailing newline. Deterministic: same report, same bytes.
pub fn render(report: &Report) -> String {
    let mut s =
        serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
