//! PyTorch specifics beyond the zip container: the code members of
//! TorchScript archives.

use super::rules;
use crate::finding::Finding;
use crate::scan::Sink;

/// Python facilities that compiled TorchScript code never names. TorchScript
/// serialises its modules as a restricted Python dialect over `torch` ops;
/// these names only appear when someone edited the archive.
const DANGEROUS_NAMES: &[&str] = &[
    "__import__",
    "eval",
    "exec",
    "execfile",
    "compile",
    "getattr",
    "setattr",
    "globals",
    "locals",
    "open",
    "__builtins__",
    "__globals__",
    "__subclasses__",
    "__code__",
    "breakpoint",
    "input",
];
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "builtins",
    "importlib",
    "socket",
    "shutil",
    "pty",
    "ctypes",
    "pickle",
    "marshal",
    "runpy",
    "urllib",
    "requests",
    "http",
    "pathlib",
    "io",
];

/// Checks the source of one TorchScript code member.
pub fn check_code(code: &[u8], member: &str, sink: &mut Sink) {
    let text = String::from_utf8_lossy(code);
    let mut hits: Vec<String> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line_code = line.split('#').next().unwrap_or("");
        for tok in dotted_tokens(line_code) {
            let first = tok.split('.').next().unwrap_or("");
            let last = tok.rsplit('.').next().unwrap_or("");
            let named = DANGEROUS_NAMES.contains(&first)
                || (tok.contains('.') && DANGEROUS_NAMES.contains(&last) && last.starts_with("__"));
            let module = DANGEROUS_MODULES.contains(&first)
                && (tok.contains('.') || line_code.contains("import"));
            let import_stmt = line_code.trim_start().starts_with("import ")
                || line_code.trim_start().starts_with("from ");
            if named
                || module
                || (import_stmt
                    && !tok.starts_with("torch")
                    && !tok.starts_with("__torch__")
                    && tok != "import"
                    && tok != "from")
            {
                hits.push(format!("line {}: {}", lineno + 1, tok));
                break;
            }
        }
        if hits.len() >= 5 {
            break;
        }
    }
    if !hits.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::TRC001,
                format!(
                    "TorchScript code refers to Python internals: {}",
                    hits.join("; ")
                ),
            )
            .at(Some(member), None)
            .evidence(hits[0].clone()),
        );
    }
}

/// Identifier paths (`a.b.c`) in a line of code, outside string literals.
fn dotted_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' || (c == '.' && !cur.is_empty()) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|t| t.trim_end_matches('.').to_string())
        .filter(|t| t.chars().next().is_some_and(|c| !c.is_ascii_digit()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Ctx, FileState};

    fn hits(code: &str) -> usize {
        let ctx = Ctx::default();
        let st = FileState::new();
        let mut sink = Sink {
            ctx,
            state: &st,
            findings: Vec::new(),
        };
        check_code(code.as_bytes(), "m", &mut sink);
        sink.findings.len()
    }

    #[test]
    fn torchscript_code() {
        let benign = "class Model(Module):\n  __parameters__ = [\"weight\", ]\n  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    _0 = torch.linear(x, self.weight, self.bias)\n    return torch.relu(_0)\n";
        assert_eq!(hits(benign), 0);
        assert_eq!(
            hits("def forward(self):\n    __import__('os').system('id')\n"),
            1
        );
        assert_eq!(hits("import os\n"), 1);
        assert_eq!(hits("x = os.system(\"id\")\n"), 1);
        assert_eq!(hits("y = eval(s)\n"), 1);
        // names inside string literals are not code
        assert_eq!(hits("s = \"os.system is bad\"\n"), 0);
    }
}
