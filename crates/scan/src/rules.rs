//! Scanner-level rules (`SCN`): what the scanner itself reports about its
//! coverage of a file.

use probity_report::Rule;
use probity_report::Severity;

pub static SCN001: Rule = Rule {
    id: "SCN001",
    severity: Severity::Info,
    title: "File is not in a model format Probity reads",
    what: "The file's content matches none of the formats Probity analyses (detection is by content, never by extension alone), so it was skipped.",
    why: "Lists what was not analysed so that a clean verdict is never mistaken for coverage of every file.",
    example: "A README.md or a PNG image named `model.pt`.",
    references: &[],
};

pub static SCN002: Rule = Rule {
    id: "SCN002",
    severity: Severity::Warning,
    title: "Scan limit reached; content not fully inspected",
    what: "A resource bound was reached (opcode count, stack depth, nested depth, value size, archive entries, container depth): the part beyond it was not analysed. The bound is named in the message.",
    why: "Attackers pad files to exhaust scanners. Probity keeps memory and time bounded but never reports unread content as clean.",
    example: "A pickle nested six levels deep inside other pickles.",
    references: &[],
};

pub static SCN003: Rule = Rule {
    id: "SCN003",
    severity: Severity::Info,
    title: "Symbolic link not followed",
    what: "A symbolic link inside a scanned directory points outside the scanned tree, to a directory, or nowhere (dangling or looping); it was not followed.",
    why: "Following links out of the tree would scan (and report on) files the user did not ask for, and link loops would never end.",
    example: "`model/weights.bin -> /etc/passwd`.",
    references: &[],
};

pub static RULES: &[&Rule] = &[&SCN001, &SCN002, &SCN003];
