//! Rules of archives and compressed streams (`ARC`).

use probity_report::{Rule, Severity};

pub static ARC001: Rule = Rule {
    id: "ARC001",
    severity: Severity::Warning,
    title: "Zip central directory and local headers disagree",
    what: "A zip member's local file header disagrees with its central-directory entry (name, sizes, compression method, flags), a local header is missing where the central directory points, or a member is reachable only by walking local headers. Probity scans what each reader would see.",
    why: "Parser differentials let a file show one member to a scanner and another to the loader: PyTorch and Python's zipfile read the central directory, streaming readers read local headers.",
    example: "Central directory names `archive/data.pkl` while the local header at that offset names `archive/data.pkx` and holds a different pickle.",
    references: &["CVE-2025-1944", "GHSA-7q5r-7gvp-wc82", "CWE-436"],
};

pub static ARC002: Rule = Rule {
    id: "ARC002",
    severity: Severity::Warning,
    title: "Duplicate member names in an archive",
    what: "Two or more members of an archive have the same name. Probity scans all of them.",
    why: "Readers disagree on which copy wins (the first, the last, or whichever a hash table keeps), so a benign copy can shadow a malicious one in a scanner but not in the loader.",
    example: "A PyTorch zip with two `archive/data.pkl` entries, the second one calling `os.system`.",
    references: &["CWE-436"],
};

pub static ARC003: Rule = Rule {
    id: "ARC003",
    severity: Severity::Warning,
    title: "Zip member fails its CRC check",
    what: "The CRC-32 of a scanned member's data differs from the CRC recorded in the archive.",
    why: "Strict readers (Python's zipfile) refuse the member while lenient ones (PyTorch's reader skips CRC checks) load it: a classic way to blind scanners built on strict readers.",
    example: "A `data.pkl` whose recorded CRC was left unchanged after the pickle was edited to call `eval`.",
    references: &["CVE-2025-10156", "CWE-436"],
};

pub static ARC004: Rule = Rule {
    id: "ARC004",
    severity: Severity::Warning,
    title: "Archive member cannot be inspected",
    what: "A member is encrypted, or uses a compression method Probity does not decode, so its content was not analysed.",
    why: "Content that cannot be inspected cannot be called clean; a loader with the key or codec may still read it.",
    example: "A password-protected zip holding `model.pkl`.",
    references: &[],
};

pub static ARC005: Rule = Rule {
    id: "ARC005",
    severity: Severity::Warning,
    title: "Zip member carries misleading flags",
    what: "A member's general-purpose flags claim encryption (bit 0 or 6) or patched data (bit 5), but its data is readable plaintext.",
    why: "Strict readers refuse such members and scanners built on them skip the content, while PyTorch ignores the flags and loads it.",
    example: "`model/config.pkl` with the encryption bit set over a plaintext pickle that calls `eval`.",
    references: &["CVE-2025-1945", "GHSA-w8jq-xcqf-f792"],
};

pub static ARC006: Rule = Rule {
    id: "ARC006",
    severity: Severity::Warning,
    title: "Decompression bomb",
    what: "A compressed member or stream expands beyond the decompression budget or at a ratio above the bound (see `crates/scan/src/limits.rs`). Decompression was stopped; what was read up to the bound was scanned.",
    why: "Bombs exhaust the memory or disk of scanners and loaders; a model file has no reason to expand hundreds of times.",
    example: "A 5 MB `model.joblib.gz` that expands to 5 GiB of zeros.",
    references: &["CWE-409"],
};

pub static ARC007: Rule = Rule {
    id: "ARC007",
    severity: Severity::Critical,
    title: "Archive member escapes the extraction directory",
    what: "A member name is absolute or climbs out with `..`, or a symbolic/hard link member points outside the archive's root.",
    why: "Extracting the archive (which many model loaders do) writes or links files anywhere the user can write: overwriting code, configs or shell start-up files gives code execution.",
    example: "A zip containing `../../../home/user/.bashrc`.",
    references: &["CWE-22", "CVE-2007-4559"],
};

pub static ARC008: Rule = Rule {
    id: "ARC008",
    severity: Severity::Warning,
    title: "Archive structure is damaged",
    what: "The archive cannot be read as a whole (no end-of-central-directory record, truncated entries, unreadable headers). Probity scans whatever members it could recover.",
    why: "A damaged container may still be loaded by a lenient reader; content that could not be reached is not clean.",
    example: "A PyTorch zip cut short before its central directory.",
    references: &[],
};

pub static RULES: &[&Rule] = &[
    &ARC001, &ARC002, &ARC003, &ARC004, &ARC005, &ARC006, &ARC007, &ARC008,
];
