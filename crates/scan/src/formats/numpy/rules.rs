//! Rules of NumPy and joblib (`NPY`).

use probity_report::{Rule, Severity};

pub static NPY001: Rule = Rule {
    id: "NPY001",
    severity: Severity::Warning,
    title: "NumPy file header is malformed",
    what: "An `.npy` file (or `.npz` member) has a header that cannot be parsed: bad length, missing `descr`, or an unsupported version.",
    why: "A loader that tolerates the header may still reach the pickled payload of an object array; Probity cannot tell what the data is.",
    example: "`\\x93NUMPY` followed by a header length larger than the file.",
    references: &[],
};

pub static RULES: &[&Rule] = &[&NPY001];
