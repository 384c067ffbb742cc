//! Human-readable report for a terminal (coloured when asked to).

use std::fmt::Write as _;

use probity_report::{Report, Severity, Verdict};

pub struct TextOptions {
    pub color: bool,
    /// Show info findings too.
    pub verbose: bool,
    pub gate: Severity,
}

fn paint(on: bool, code: &str, s: &str) -> String {
    if on {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// A byte count for people: `1.5 KiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn render(report: &Report, o: &TextOptions) -> String {
    let mut out = String::new();
    let show_info = o.verbose || o.gate == Severity::Info;
    for f in &report.files {
        let shown: Vec<_> = f
            .findings
            .iter()
            .filter(|x| x.severity > Severity::Info || show_info)
            .collect();
        if shown.is_empty() && f.error.is_none() && !o.verbose {
            continue;
        }
        let _ = writeln!(
            out,
            "{}  [{}, {}]",
            paint(o.color, "1", &f.path),
            f.format,
            human(f.size)
        );
        if let Some(h) = &f.sha256 {
            match &f.sha256_source {
                Some(src) => {
                    let _ = writeln!(out, "  sha256 {h} ({src})");
                }
                None => {
                    let _ = writeln!(out, "  sha256 {h}");
                }
            }
        }
        if let Some(e) = &f.error {
            let _ = writeln!(out, "  {} {}", paint(o.color, "1;31", "ERROR"), e);
        }
        if let Some(c) = f.coverage.as_ref().filter(|c| !c.reasons.is_empty()) {
            if f.error.is_none() {
                let _ = writeln!(out, "  coverage: {}", c.label().replace('_', " "));
            }
        }
        for x in shown {
            let (label, code) = match x.severity {
                Severity::Critical => ("CRITICAL", "1;31"),
                Severity::Warning => ("WARNING ", "1;33"),
                Severity::Info => ("INFO    ", "2"),
            };
            let mut loc = String::new();
            if let Some(m) = &x.location.member {
                loc.push_str(m);
            }
            if let Some(off) = x.location.offset {
                if !loc.is_empty() {
                    loc.push(' ');
                }
                let _ = write!(loc, "@{off}");
            }
            let _ = writeln!(
                out,
                "  {} {} {}{}",
                paint(o.color, code, label),
                paint(o.color, "1", &x.rule),
                x.title,
                if loc.is_empty() {
                    String::new()
                } else {
                    format!("  ({loc})")
                }
            );
            let _ = writeln!(out, "      {}", x.message);
            if !x.cves.is_empty() {
                let _ = writeln!(out, "      {}", x.cves.join(", "));
            }
        }
    }
    let s = &report.summary;
    let verdict = match s.verdict {
        Verdict::Clean => paint(o.color, "1;32", "CLEAN"),
        Verdict::Flagged => paint(o.color, "1;31", "FLAGGED"),
        Verdict::Error => paint(o.color, "1;31", "ERROR"),
    };
    let _ = writeln!(
        out,
        "{} file(s) scanned ({}), {} critical, {} warning, {} info, {} error(s) — {} (gate: {})",
        s.files_scanned,
        human(s.bytes_scanned),
        s.critical,
        s.warning,
        s.info,
        s.errors,
        verdict,
        o.gate
    );
    if s.incomplete > 0 {
        let _ = writeln!(
            out,
            "{} file(s) not completely analysed (coverage partial or not analysed; --fail-on-incomplete fails on them)",
            s.incomplete
        );
    }
    out
}
