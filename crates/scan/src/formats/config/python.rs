//! Python source shipped with a model (`trust_remote_code` modules named by
//! `auto_map`, custom pipelines, `*.py` next to the weights): parsed with
//! RustPython's parser, never run. Calls are resolved through the file's
//! imports (`import subprocess as sp; sp.run(...)` is `subprocess.run`) and
//! judged by what they do:
//!
//! - process execution (`os.system`, `subprocess.*`, `os.exec*`, `pty.spawn`);
//! - code evaluation and loading (`eval`, `exec`, `compile`, `__import__`,
//!   `marshal.loads`, `pickle.loads`, `types.CodeType`, `ctypes` libraries,
//!   `runpy`), noting code decoded from base64/hex/zlib on its way in;
//! - network access (`socket`, `urllib.request.urlopen`, `requests`, `httpx`,
//!   `http.client`, `ftplib`, `smtplib`, `paramiko`);
//! - writing or deleting files by absolute or home paths (outside the model's
//!   cache): `open(…, 'w')`, `os.remove`, `shutil.rmtree`.
//!
//! Ordinary modeling code (torch, transformers, `os.path`, `importlib` of its
//! own modules, `hf_hub_download`) is none of these.

use std::collections::BTreeMap;

use rustpython_ast::{self as ast, Visitor};

use super::rules;
use crate::python_danger;
use crate::Sink;
use probity_report::Finding;

/// Whether text is worth parsing as Python: a line that starts a statement
/// only Python has.
pub fn looks_like_python(text: &str) -> bool {
    text.lines().take(400).any(|l| {
        let l = l.trim_start();
        l.starts_with("import ")
            || (l.starts_with("from ") && l.contains(" import "))
            || (l.starts_with("def ") && l.trim_end().ends_with(':'))
            || (l.starts_with("class ") && l.trim_end().ends_with(':'))
    })
}

/// What a call does, when it acts whatever its arguments (from
/// [`python_danger::source_call`]).
fn kind_of(q: &str) -> Option<&'static str> {
    python_danger::source_call(q).map(|f| f.name)
}

struct Calls<'s> {
    source: &'s str,
    aliases: BTreeMap<String, String>,
    /// (line, qualified name, kind, detail)
    hits: Vec<(usize, String, &'static str, String)>,
}

impl Calls<'_> {
    fn line(&self, offset: u32) -> usize {
        let o = (offset as usize).min(self.source.len());
        self.source.as_bytes()[..o]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The dotted name an expression refers to, through the imports.
    fn qual(&self, e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Name(n) => {
                let id = n.id.as_str();
                Some(
                    self.aliases
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| id.to_string()),
                )
            }
            ast::Expr::Attribute(a) => {
                Some(format!("{}.{}", self.qual(&a.value)?, a.attr.as_str()))
            }
            // __import__('os').system / importlib.import_module('os').system
            ast::Expr::Call(c) => {
                let f = self.qual(&c.func)?;
                if f == "__import__" || f == "importlib.import_module" || f == "builtins.__import__"
                {
                    if let Some(ast::Expr::Constant(k)) = c.args.first() {
                        if let ast::Constant::Str(s) = &k.value {
                            return Some(s.clone());
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Whether an expression contains a call to a decoder.
    fn decodes(&self, e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Call(c) => {
                if let Some(q) = self.qual(&c.func) {
                    if python_danger::is_decoder(&q) || q.ends_with(".decode") && q.contains("b64")
                    {
                        return Some(q);
                    }
                }
                if let ast::Expr::Attribute(a) = c.func.as_ref() {
                    if let Some(q) = self.decodes(&a.value) {
                        return Some(q);
                    }
                }
                c.args.iter().find_map(|a| self.decodes(a))
            }
            ast::Expr::Attribute(a) => self.decodes(&a.value),
            _ => None,
        }
    }
}

fn const_str(e: &ast::Expr) -> Option<&str> {
    match e {
        ast::Expr::Constant(k) => match &k.value {
            ast::Constant::Str(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn outside_cache(path: &str) -> bool {
    path.starts_with('/')
        || path.starts_with('~')
        || path.contains("../")
        || path.starts_with("C:\\")
}

impl Visitor for Calls<'_> {
    fn visit_stmt_import(&mut self, node: ast::StmtImport) {
        for a in &node.names {
            let name = a.name.as_str().to_string();
            match &a.asname {
                Some(al) => {
                    self.aliases.insert(al.as_str().to_string(), name);
                }
                None => {
                    let top = name.split('.').next().unwrap_or("").to_string();
                    self.aliases.insert(top.clone(), top);
                }
            }
        }
    }

    fn visit_stmt_import_from(&mut self, node: ast::StmtImportFrom) {
        if let Some(m) = &node.module {
            if node.level.map(|l| l.to_u32()).unwrap_or(0) == 0 {
                for a in &node.names {
                    let local = a.asname.as_ref().unwrap_or(&a.name).as_str().to_string();
                    self.aliases
                        .insert(local, format!("{}.{}", m.as_str(), a.name.as_str()));
                }
            }
        }
    }

    // the generated visitor leaves these product nodes empty: walk them, or
    // calls in keyword arguments, `with` items, comprehensions, defaults and
    // match guards would go unseen
    fn visit_keyword(&mut self, node: ast::Keyword) {
        self.visit_expr(node.value);
    }

    fn visit_withitem(&mut self, node: ast::WithItem) {
        self.visit_expr(node.context_expr);
        if let Some(v) = node.optional_vars {
            self.visit_expr(*v);
        }
    }

    fn visit_comprehension(&mut self, node: ast::Comprehension) {
        self.visit_expr(node.target);
        self.visit_expr(node.iter);
        for e in node.ifs {
            self.visit_expr(e);
        }
    }

    fn visit_arguments(&mut self, node: ast::Arguments) {
        for a in node
            .posonlyargs
            .into_iter()
            .chain(node.args)
            .chain(node.kwonlyargs)
        {
            if let Some(d) = a.default {
                self.visit_expr(*d);
            }
        }
    }

    fn visit_match_case(&mut self, node: ast::MatchCase) {
        if let Some(g) = node.guard {
            self.visit_expr(*g);
        }
        for s in node.body {
            self.visit_stmt(s);
        }
    }

    fn visit_expr_call(&mut self, node: ast::ExprCall) {
        if let Some(q) = self.qual(&node.func) {
            let line = self.line(node.range.start().to_u32());
            if let Some(kind) = kind_of(&q) {
                let mut detail = String::new();
                if matches!(
                    q.as_str(),
                    "eval" | "exec" | "builtins.eval" | "builtins.exec" | "compile"
                ) {
                    if let Some(d) = node.args.iter().find_map(|a| self.decodes(a)) {
                        detail = format!(" on code decoded by {d}");
                    }
                }
                if let Some(s) = node.args.first().and_then(const_str) {
                    let s: String = s.chars().take(80).collect();
                    detail.push_str(&format!(" ({s:?})"));
                }
                self.hits.push((line, q.clone(), kind, detail));
            } else if q == "open" || q == "io.open" || q == "builtins.open" {
                let path = node.args.first().and_then(const_str);
                let mode = node
                    .args
                    .get(1)
                    .and_then(const_str)
                    .or_else(|| {
                        node.keywords
                            .iter()
                            .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "mode"))
                            .and_then(|k| const_str(&k.value))
                    })
                    .unwrap_or("r");
                if let Some(p) = path {
                    if outside_cache(p) && mode.chars().any(|c| matches!(c, 'w' | 'a' | 'x' | '+'))
                    {
                        self.hits.push((
                            line,
                            q.clone(),
                            "writing outside the model folder",
                            format!(" ({p:?})"),
                        ));
                    }
                }
            } else if matches!(
                q.as_str(),
                "os.remove"
                    | "os.unlink"
                    | "os.rmdir"
                    | "shutil.rmtree"
                    | "os.chmod"
                    | "shutil.move"
            ) {
                if let Some(p) = node.args.first().and_then(const_str) {
                    if outside_cache(p) {
                        self.hits.push((
                            line,
                            q.clone(),
                            "changing files outside the model folder",
                            format!(" ({p:?})"),
                        ));
                    }
                }
            }
        }
        self.generic_visit_expr_call(node);
    }
}

/// Parses `text` as a module; `None` when it is not Python.
pub fn scan_source(text: &str, member: &str, sink: &mut Sink) -> bool {
    let Ok(module) = rustpython_parser::parse(text, rustpython_parser::Mode::Module, "<model>")
    else {
        return false;
    };
    let mut v = Calls {
        source: text,
        aliases: BTreeMap::new(),
        hits: Vec::new(),
    };
    if let ast::Mod::Module(m) = module {
        for stmt in m.body {
            v.visit_stmt(stmt);
        }
    }
    for (line, q, kind, detail) in v.hits {
        sink.findings.push(
            Finding::new(
                &rules::CFG006,
                format!("line {line}: `{q}` ({kind}){detail}"),
            )
            .at(Some(member), None)
            .evidence(q),
        );
    }
    true
}

/// The code files a Hugging Face config's `auto_map` names, as
/// `[repo: ]module.py` strings.
pub fn auto_map_files(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(m) = v.get("auto_map").and_then(|m| m.as_object()) else {
        return out;
    };
    let mut push = |s: &str| {
        let (repo, rest) = match s.split_once("--") {
            Some((r, x)) => (Some(r), x),
            None => (None, s),
        };
        let module = rest.rsplit_once('.').map(|(m, _)| m).unwrap_or(rest);
        let file = format!("{}.py", module.replace('.', "/"));
        out.push(match repo {
            Some(r) => format!("{r}: {file}"),
            None => file,
        });
    };
    for v in m.values() {
        match v {
            serde_json::Value::String(s) => push(s),
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).for_each(&mut push),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}
