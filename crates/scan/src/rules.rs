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

// Signature rules (`SIG`): reported by `probity scan` only when a signature
// is required (`--require-signature`, or `require_signature` in the
// `[provenance]` table of probity.toml), once per scanned model.

pub static SIG001: Rule = Rule {
    id: "SIG001",
    severity: Severity::Critical,
    title: "Required model signature is missing",
    what: "The policy requires every scanned model to carry an OpenSSF model signing signature by an accepted signer, and none was found: no `model.sig` (or the configured name) inside the model folder, no `FILE.sig` beside a single file, and no `--signature` file.",
    why: "Without a signature nobody has vouched for these bytes: they may be an unreviewed upload, a swapped mirror, or a tampered copy. Severity is critical because the policy asked for it, so that even a `fail_on = \"critical\"` gate stops the deployment.",
    example: "`probity scan ./model --require-signature --key release.pub` on a folder without `model.sig`.",
    references: &["https://github.com/sigstore/model-transparency"],
};

pub static SIG002: Rule = Rule {
    id: "SIG002",
    severity: Severity::Critical,
    title: "Model signature does not verify",
    what: "A signature was found but it does not verify against any accepted signer: a file was changed, added, removed or renamed since signing, the signature was made by another key, certificate or identity, the certificate is expired or untrusted, or the signature file is malformed. The message gives each accepted signer's reason.",
    why: "The bytes are not the ones the signer vouched for, or the signer is not one you trust: the model may have been tampered with after review.",
    example: "A `model.safetensors` edited after `probity sign` (or `model_signing sign`) wrote `model.sig`.",
    references: &["https://github.com/sigstore/model-transparency"],
};

pub static SIG003: Rule = Rule {
    id: "SIG003",
    severity: Severity::Info,
    title: "Model signature verified",
    what: "The model's files are exactly those signed, by an accepted signer; the message names the signer, the number of files and the root digest.",
    why: "Records who vouched for the bytes being deployed, in the report that gates the deployment.",
    example: "A model folder with a `model.sig` written by `probity sign --key release.pem`.",
    references: &[],
};

pub static SIGNATURE_RULES: &[&Rule] = &[&SIG001, &SIG002, &SIG003];
