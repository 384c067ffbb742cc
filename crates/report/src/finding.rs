//! The one data type every stage produces: a [`Finding`], collected per file
//! in a [`FileReport`] and per run in a [`Report`]. Renderers only read these.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::Rule;

/// How bad a finding is. Ordered: `Info < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never a reason to block.
    Info,
    /// Unknown or risky: a human should look.
    Warning,
    /// Would execute code or escape when the file is loaded.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity '{other}' (expected critical, warning or info)"
            )),
        }
    }
}

/// Where inside a file a finding was made.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Path of the member inside containers, outermost first, joined with `!`
    /// (e.g. `model.tar.gz!archive/data.pkl`). `null` for the file itself.
    pub member: Option<String>,
    /// Byte offset inside the member (or file), when it is meaningful.
    pub offset: Option<u64>,
}

/// One observation of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub location: Location,
    pub evidence: Option<String>,
    /// The published vulnerabilities (CVE IDs) this finding matches.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cves: Vec<String>,
}

impl Finding {
    /// A finding of `rule` with the rule's own severity and title.
    pub fn new(rule: &'static Rule, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.id.to_string(),
            severity: rule.severity,
            title: rule.title.to_string(),
            message: message.into(),
            location: Location::default(),
            evidence: None,
            cves: Vec::new(),
        }
    }

    /// Names the published vulnerabilities (CVE IDs) this finding matches.
    pub fn cves(mut self, cves: Vec<String>) -> Self {
        self.cves = cves;
        self
    }

    pub fn at(mut self, member: Option<&str>, offset: Option<u64>) -> Self {
        self.location = Location {
            member: member.filter(|m| !m.is_empty()).map(str::to_string),
            offset,
        };
        self
    }

    pub fn evidence(mut self, evidence: impl Into<String>) -> Self {
        self.evidence = Some(evidence.into());
        self
    }

    fn sort_key(
        &self,
    ) -> (
        std::cmp::Reverse<Severity>,
        &str,
        &Location,
        &str,
        &Option<String>,
    ) {
        (
            std::cmp::Reverse(self.severity),
            self.rule.as_str(),
            &self.location,
            self.message.as_str(),
            &self.evidence,
        )
    }
}

/// The result for one input file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileReport {
    pub path: String,
    pub format: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// Where `sha256` comes from when it was not computed from the file's
    /// bytes: `hub-listing` (the LFS digest the Hugging Face repository
    /// listing reports for the file; the Hub's claim, not verified here).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256_source: Option<String>,
    /// How completely the content was analysed (absent for signature
    /// results, which check a model rather than a file).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub coverage: Option<Coverage>,
    /// For a remote file read in place by HTTP range requests: what was
    /// transferred to scan it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub transfer: Option<Transfer>,
    pub findings: Vec<Finding>,
    /// A model card's metadata (license, base model, datasets, ...), for
    /// `README.md` files with Hugging Face front matter.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_card: Option<serde_json::Value>,
    /// Why the file could not be scanned (I/O error, missing, ...), or null.
    pub error: Option<String>,
}

/// How completely a file was analysed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageLevel {
    /// Every part of the content was inspected.
    Complete,
    /// Some of it was not: a limit was reached, a member is encrypted, a
    /// structure is malformed past a point, or the content is not the
    /// format its name claims.
    Partial,
    /// None of it: unknown content, an unreadable file, a link not followed.
    NotAnalysed,
}

/// A file's coverage, with the reasons when it is not complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub level: CoverageLevel,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons: Vec<String>,
}

impl Coverage {
    pub fn complete() -> Self {
        Coverage {
            level: CoverageLevel::Complete,
            reasons: Vec::new(),
        }
    }
    pub fn partial(reasons: Vec<String>) -> Self {
        Coverage {
            level: CoverageLevel::Partial,
            reasons,
        }
    }
    pub fn not_analysed(reasons: Vec<String>) -> Self {
        Coverage {
            level: CoverageLevel::NotAnalysed,
            reasons,
        }
    }
    /// `complete`, `partial` or `not_analysed`.
    pub fn label(&self) -> &'static str {
        match self.level {
            CoverageLevel::Complete => "complete",
            CoverageLevel::Partial => "partial",
            CoverageLevel::NotAnalysed => "not_analysed",
        }
    }
}

/// What a remote file's scan transferred: the file was read in place with
/// HTTP range requests, so only the bytes its analyzers read were fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Bytes received.
    pub bytes: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Whether the whole file was received (an analyzer read all of it, or
    /// the server ignored range requests).
    pub whole: bool,
    /// Why the whole file was received when the server forced it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl FileReport {
    pub fn new(path: String) -> Self {
        FileReport {
            path,
            format: "unknown".into(),
            size: 0,
            sha256: None,
            sha256_source: None,
            coverage: None,
            transfer: None,
            findings: Vec::new(),
            model_card: None,
            error: None,
        }
    }

    /// Sorts findings (severity first, then rule, location, message) and drops exact duplicates.
    pub fn normalise(&mut self) {
        self.findings
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.findings.dedup();
    }

    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Default for Tool {
    fn default() -> Self {
        Tool {
            name: "probity".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Flagged,
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
    pub errors: u64,
    /// Files not completely analysed (coverage `partial` or `not_analysed`).
    #[serde(default)]
    pub incomplete: u64,
    pub verdict: Verdict,
}

/// Schema identifier of the static scan report.
pub const SCAN_SCHEMA: &str = "probity.scan/v1";

/// The format of a report entry that holds a model's signature result
/// (`probity scan --require-signature`): a check of the model as a whole,
/// not a file, so it is not counted as one.
pub const MODEL_SIGNATURE_FORMAT: &str = "model signature";

/// A whole static scan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool: Tool,
    pub summary: Summary,
    pub files: Vec<FileReport>,
}

impl Report {
    /// Builds the report: sorts files by path and findings deterministically,
    /// then counts. `gate` decides the verdict: `flagged` when some finding is
    /// at or above it.
    pub fn new(mut files: Vec<FileReport>, gate: Severity) -> Self {
        for f in &mut files {
            f.normalise();
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut s = Summary {
            files_scanned: 0,
            bytes_scanned: 0,
            critical: 0,
            warning: 0,
            info: 0,
            errors: 0,
            incomplete: 0,
            verdict: Verdict::Clean,
        };
        let mut flagged = false;
        for f in &files {
            if f.coverage
                .as_ref()
                .is_some_and(|c| c.level != CoverageLevel::Complete)
            {
                s.incomplete += 1;
            }
            if f.error.is_some() {
                s.errors += 1;
            } else if f.format != MODEL_SIGNATURE_FORMAT {
                s.files_scanned += 1;
                s.bytes_scanned += f.size;
            }
            for x in &f.findings {
                match x.severity {
                    Severity::Critical => s.critical += 1,
                    Severity::Warning => s.warning += 1,
                    Severity::Info => s.info += 1,
                }
                if x.severity >= gate {
                    flagged = true;
                }
            }
        }
        s.verdict = if s.errors > 0 {
            Verdict::Error
        } else if flagged {
            Verdict::Flagged
        } else {
            Verdict::Clean
        };
        Report {
            schema: SCAN_SCHEMA.into(),
            tool: Tool::default(),
            summary: s,
            files,
        }
    }

    /// Makes a file not completely analysed fail the scan
    /// (`--fail-on-incomplete`): a clean verdict becomes `flagged`.
    pub fn require_complete(&mut self) {
        if self.summary.verdict == Verdict::Clean && self.summary.incomplete > 0 {
            self.summary.verdict = Verdict::Flagged;
        }
    }

    /// The process exit code: 2 when an input could not be scanned, 1 when a
    /// finding is at or above the gate, 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.summary.verdict {
            Verdict::Error => 2,
            Verdict::Flagged => 1,
            Verdict::Clean => 0,
        }
    }
}
