//! Rules of PyTorch and TorchScript (`TRC`).

use probity_report::{Rule, Severity};

pub static TRC001: Rule = Rule {
    id: "TRC001",
    severity: Severity::Critical,
    title: "TorchScript code calls dangerous Python",
    what: "A code member of a TorchScript archive (`code/**.py`, `*.py`) refers to Python process, evaluation, import or I/O facilities (`os`, `subprocess`, `builtins`, `__import__`, `eval`, `exec`, `getattr`, `open`, ...), which compiled TorchScript never contains.",
    why: "The serialized code of a TorchScript module is compiled and run by `torch.jit.load`; references to Python internals mean a tampered archive.",
    example: "`archive/code/__torch__/model.py` containing `__import__('os').system(...)`.",
    references: &["CWE-94"],
};

pub static RULES: &[&Rule] = &[&TRC001];
