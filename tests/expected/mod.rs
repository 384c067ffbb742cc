//! Expected rule IDs of labelled files: each test file that scans a
//! labelled set (our fixtures, the format fixtures, the public corpus) keeps
//! a JSON map from file to the sorted rule IDs at warning level or above
//! that the scan must report, exactly. A file caught by the wrong rule, or
//! by an extra one, fails. After an intended change, run the test with
//! `PROBITY_BLESS=1` to rewrite the map, and review the diff.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use probity_report::{FileReport, Severity};

/// The sorted, distinct rule IDs of a report at warning level or above.
pub fn rules(report: &FileReport) -> Vec<String> {
    let mut v: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| f.rule.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub struct Expected {
    path: PathBuf,
    want: BTreeMap<String, Vec<String>>,
    got: BTreeMap<String, Vec<String>>,
    bless: bool,
}

impl Expected {
    pub fn load(path: PathBuf) -> Self {
        let bless = std::env::var_os("PROBITY_BLESS").is_some();
        let want = match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).expect("expected-rules file parses"),
            Err(_) if bless => BTreeMap::new(),
            Err(e) => panic!("{}: {e} (create it with PROBITY_BLESS=1)", path.display()),
        };
        Expected {
            path,
            want,
            got: BTreeMap::new(),
            bless,
        }
    }

    /// Records a file's rules; a mismatch is returned as a failure line.
    pub fn check(&mut self, rel: &str, report: &FileReport) -> Option<String> {
        let got = rules(report);
        self.got.insert(rel.to_string(), got.clone());
        if self.bless {
            return None;
        }
        match self.want.get(rel) {
            Some(w) if *w == got => None,
            Some(w) => Some(format!("{rel}: expected rules {w:?}, got {got:?}")),
            None => Some(format!("{rel}: no expected rules recorded (got {got:?})")),
        }
    }

    /// Writes the map when blessing; otherwise fails on entries for files
    /// that were not scanned (stale).
    pub fn finish(self) -> Vec<String> {
        if self.bless {
            let mut s = serde_json::to_string_pretty(&self.got).unwrap();
            s.push('\n');
            std::fs::write(&self.path, s).unwrap();
            return Vec::new();
        }
        self.want
            .keys()
            .filter(|k| !self.got.contains_key(*k))
            .map(|k| format!("{k}: recorded in {} but not scanned", self.path.display()))
            .collect()
    }

    /// Every rule ID that some file must report.
    pub fn all_rules(path: PathBuf) -> Vec<String> {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        let m: BTreeMap<String, Vec<String>> = serde_json::from_str(&t).unwrap_or_default();
        let mut v: Vec<String> = m.into_values().flatten().collect();
        v.sort();
        v.dedup();
        v
    }
}
