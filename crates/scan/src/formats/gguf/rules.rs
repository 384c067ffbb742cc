//! Rules of GGUF (`GGF`).

use probity_report::{Rule, Severity};

pub static GGF001: Rule = Rule {
    id: "GGF001",
    severity: Severity::Warning,
    title: "GGUF header is malformed or out of bounds",
    what: "A GGUF file's header cannot be read to its end: bad version, counts or lengths over Probity's bounds or past the end of the file, unknown value types, nested arrays, tensors with 0 or more than 4 dimensions, or tensor offsets that are misaligned or point past the file. Metadata read before the problem (chat templates included) is still judged.",
    why: "llama.cpp and its bindings parse these headers in native code; lying counts and lengths are how memory-safety bugs in GGUF readers are reached, and a header a scanner cannot finish is not clean.",
    example: "A `model.gguf` announcing 2⁶³ metadata entries, or a chat-template string longer than the file.",
    references: &["CVE-2024-34359", "CWE-190", "CWE-787"],
};

pub static RULES: &[&Rule] = &[&GGF001];
