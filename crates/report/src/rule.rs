//! A rule: a stable ID, a severity and its documentation. Every check
//! declares its rules next to its code; the declarations are the published
//! catalogue (`probity rules`, `docs/rules.md`).

use serde::Serialize;

use crate::Severity;

/// One rule: a stable ID, a severity and its documentation in four parts.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// Family prefix and number, stable forever once released (`PKL001`).
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    /// What it detects.
    pub what: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// An example of a file that triggers it.
    pub example: &'static str,
    /// CVE / GHSA identifiers and other references.
    pub references: &'static [&'static str],
}
