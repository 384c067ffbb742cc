//! Jinja templates (chat templates in `tokenizer_config.json`, GGUF metadata,
//! standalone `.jinja` files, YAML configs): judged from minijinja's lexer,
//! never rendered.
//!
//! Transformers and llama.cpp-style loaders render chat templates with
//! Jinja. A template that walks from an ordinary object to Python's
//! internals (`''.__class__.__mro__[1].__subclasses__()`,
//! `cycler.__init__.__globals__`) can reach `os` and run commands when the
//! engine is not sandboxed (CVE-2024-34359). Ordinary chat templates never
//! touch a dunder attribute: they read `message['role']`, loop, and concatenate.
//!
//! The judgement, per template:
//! - **traversal** (warning): a dunder name reached as an attribute, a
//!   subscript or `attr()`/`getattr()` argument, or used as a variable
//!   (`__class__`, `__globals__`, `__builtins__`, …), string escapes and
//!   `~`/`+` concatenations of constants resolved first; or an attribute
//!   name computed at render time (`|attr(x)` with a non-constant `x`);
//! - **execution** (critical): traversal plus a way to act: a process,
//!   code, import, file or network callable or module named
//!   (`system`, `popen`, `eval`, `__import__`, `subprocess`, `open`,
//!   `urlopen`, …), or a call on something fetched by subscript from the
//!   traversal (`__subclasses__()[40]('/etc/passwd')`).
//!
//! A template the lexer rejects is judged region by region (`{{ … }}`,
//! `{% … %}`), so a syntax error never hides what comes after it.

use minijinja::machinery::{parse, tokenize, Token};

use crate::python_danger;
use minijinja::syntax::SyntaxConfig;

/// What a template does, at its worst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// Reaches Python internals (evidence: what it names).
    Traversal(String),
    /// Reaches Python internals and something that acts.
    Execution(String),
}

/// The result of judging one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The lexer's error, when the template is not valid Jinja.
    pub syntax_error: Option<String>,
}

/// Whether a name reached by a template acts on the world: a callable's
/// name or a dangerous module (from [`crate::python_danger`]).
fn acts(name: &str) -> bool {
    python_danger::action_named(name).is_some()
        || python_danger::module_named(name).is_some()
        || python_danger::builtin_named(name).is_some()
}

/// The Jinja globals a payload usually starts from (recorded as evidence).
const GADGETS: &[&str] = &[
    "cycler",
    "joiner",
    "lipsum",
    "namespace",
    "self",
    "config",
    "request",
    "range",
    "url_for",
    "get_flashed_messages",
    "dict",
];

fn is_dunder(s: &str) -> bool {
    s.len() > 4
        && s.starts_with("__")
        && s.ends_with("__")
        && s[2..s.len() - 2]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A token reduced to what the judgement needs.
#[derive(Debug, Clone, PartialEq)]
enum T {
    Name(String),
    Lit(String),
    Dot,
    Open,
    Close,
    BracketOpen,
    BracketClose,
    Pipe,
    Concat,
    Other,
}

fn reduce(tok: &Token<'_>) -> Option<T> {
    Some(match tok {
        Token::TemplateData(_)
        | Token::VariableStart
        | Token::VariableEnd
        | Token::BlockStart
        | Token::BlockEnd => return None,
        Token::Ident(s) => T::Name(s.to_string()),
        Token::Str(s) => T::Lit(s.to_string()),
        Token::String(s) => T::Lit(s.to_string()),
        Token::Dot => T::Dot,
        Token::ParenOpen => T::Open,
        Token::ParenClose => T::Close,
        Token::BracketOpen => T::BracketOpen,
        Token::BracketClose => T::BracketClose,
        Token::Pipe => T::Pipe,
        Token::Tilde | Token::Plus => T::Concat,
        _ => T::Other,
    })
}

/// Folds `'a' ~ 'b'` and `'a' + 'b'` into one constant.
fn fold(tokens: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let (Some(T::Concat), Some(T::Lit(b))) = (tokens.get(i), tokens.get(i + 1)) {
            if let Some(T::Lit(a)) = out.last_mut() {
                a.push_str(b);
                i += 2;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Judges a token stream (code tokens only).
fn judge_tokens(tokens: Vec<T>) -> Verdict {
    let t = fold(tokens);
    let mut traversal: Vec<String> = Vec::new();
    let mut actions: Vec<String> = Vec::new();
    let mut gadgets: Vec<String> = Vec::new();
    let mut fetched_call = false;
    let mut dynamic_attr = false;
    for (i, tok) in t.iter().enumerate() {
        let prev = if i > 0 { t.get(i - 1) } else { None };
        match tok {
            T::Name(n) | T::Lit(n) => {
                if is_dunder(n) && n != "__import__" && n != "__builtins__" {
                    traversal.push(n.clone());
                }
                let named = matches!(tok, T::Lit(_)) || prev == Some(&T::Dot);
                if acts(n) && (named || n.starts_with("__")) {
                    actions.push(n.clone());
                }
                if n == "__import__" || n == "__builtins__" {
                    traversal.push(n.clone());
                    actions.push(n.clone());
                }
                // a bare global used as a payload's root
                if let T::Name(n) = tok {
                    if GADGETS.contains(&n.as_str())
                        && prev != Some(&T::Dot)
                        && t.get(i + 1) == Some(&T::Dot)
                    {
                        gadgets.push(n.clone());
                    }
                    // |attr(x) / getattr(o, x) with x computed at render time
                    if (n == "attr" && prev == Some(&T::Pipe)) || n == "getattr" {
                        if let Some(T::Open) = t.get(i + 1) {
                            let arg_is_const = if n == "attr" {
                                matches!(t.get(i + 2), Some(T::Lit(_)))
                                    && t.get(i + 3) == Some(&T::Close)
                            } else {
                                true
                            };
                            if !arg_is_const {
                                dynamic_attr = true;
                            }
                        }
                    }
                }
            }
            // `…](` : calling something fetched by subscript
            T::Open if prev == Some(&T::BracketClose) => fetched_call = true,
            _ => {}
        }
    }
    if traversal.is_empty() && !dynamic_attr {
        return Verdict::Clean;
    }
    traversal.sort();
    traversal.dedup();
    actions.sort();
    actions.dedup();
    gadgets.sort();
    gadgets.dedup();
    let mut evidence = String::new();
    if !gadgets.is_empty() {
        evidence.push_str(&format!("from {}; ", gadgets.join(", ")));
    }
    if traversal.is_empty() {
        evidence.push_str("attribute name computed at render time");
    } else {
        evidence.push_str(&format!("reaches {}", traversal.join(", ")));
    }
    if !actions.is_empty() {
        evidence.push_str(&format!("; then {}", actions.join(", ")));
    } else if fetched_call && !traversal.is_empty() {
        evidence.push_str("; then calls an object fetched from the class hierarchy");
    }
    if !traversal.is_empty() && (!actions.is_empty() || fetched_call) {
        Verdict::Execution(evidence)
    } else {
        Verdict::Traversal(evidence)
    }
}

fn lex(source: &str, in_expr: bool) -> (Vec<T>, Option<String>) {
    let mut out = Vec::new();
    for item in tokenize(source, in_expr, SyntaxConfig::default()) {
        match item {
            Ok((tok, _span)) => out.extend(reduce(&tok)),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

/// The `{{ … }}` and `{% … %}` regions of a template, found by text.
fn regions(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    loop {
        let open = [rest.find("{{"), rest.find("{%")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = open else { break };
        let close = if rest[start..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let body = &rest[start + 2..];
        match body.find(close) {
            Some(end) => {
                out.push(&body[..end]);
                rest = &body[end + 2..];
            }
            None => {
                out.push(body);
                break;
            }
        }
    }
    out
}

/// Judges one template's source.
pub fn judge(source: &str) -> Judgement {
    let (tokens, mut err) = lex(source, false);
    if err.is_none() {
        // the lexer accepts what the parser may not (an unclosed block)
        if let Err(e) = parse(source, "template", SyntaxConfig::default()) {
            err = Some(e.to_string());
            let verdict = judge_tokens(tokens);
            return Judgement {
                verdict,
                syntax_error: err,
            };
        }
    }
    let verdict = match &err {
        None => judge_tokens(tokens),
        Some(_) => {
            // re-read region by region so that the error hides nothing
            let mut all = Vec::new();
            for r in regions(source) {
                let r = r
                    .trim_start_matches(['-', '+'])
                    .trim_end_matches(['-', '+']);
                let (mut t, e) = lex(r, true);
                if e.is_some() {
                    // an unlexable region: keep its words as names
                    t = r
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| !w.is_empty())
                        .map(|w| T::Lit(w.to_string()))
                        .collect();
                }
                all.extend(t);
                all.push(T::Other);
            }
            judge_tokens(all)
        }
    };
    Judgement {
        verdict,
        syntax_error: err,
    }
}

/// Whether text may hold Jinja (an opening delimiter; an unclosed one is
/// still judged).
pub fn has_jinja(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Verdict {
        judge(s).verdict
    }

    #[test]
    fn ordinary_chat_templates_are_clean() {
        for t in [
            "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
            "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] | trim + ' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}",
            "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{{ m.role | title }}: {{ m.content }}{% endfor %}",
            "{% for message in messages %}{% if message.class == 'important' %}!{% endif %}{{ message.content }}{% endfor %}",
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}",
        ] {
            assert_eq!(v(t), Verdict::Clean, "{t}");
        }
    }

    #[test]
    fn payloads_are_caught() {
        let exec = [
            "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
            "{{ ''.__class__.__mro__[1].__subclasses__()[40]('/etc/passwd').read() }}",
            "{{ self.__init__.__globals__['os'].system('echo evil') }}",
            "{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}{{ x.__globals__['__builtins__']['eval']('1') }}",
            "{{ joiner.__init__.__globals__['o' ~ 's'].system('id') }}",
            "{{ lipsum.__globals__.__builtins__.__import__('os').environ }}",
            "{% for c in ().__class__.__base__.__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}{{ c()._module.__builtins__['__import__']('os').system('ls') }}{% endif %}{% endfor %}",
        ];
        for t in exec {
            assert!(matches!(v(t), Verdict::Execution(_)), "{t}: {:?}", v(t));
        }
        let traversal = [
            "{{ ''|attr('__class__')|attr('__mro__')|attr('__getitem__')(1)|attr('__subclasses__')() }}",
            "{{ x|attr(name) }}",
            "{{ ().__class__.__bases__[0].__subclasses__()[59].__init__.__globals__[''.join([chr(95)])] }}",
            "{{ ''['__cla' ~ 'ss__'] }}",
        ];
        for t in traversal {
            assert!(matches!(v(t), Verdict::Traversal(_)), "{t}: {:?}", v(t));
        }
    }

    #[test]
    fn a_syntax_error_hides_nothing() {
        let j = judge("{{ unclosed_bracket");
        assert!(j.syntax_error.is_some());
        assert_eq!(j.verdict, Verdict::Clean);
        let j = judge("{% if %}{{ cycler.__init__.__globals__.os.system('id') }}");
        assert!(j.syntax_error.is_some());
        assert!(matches!(j.verdict, Verdict::Execution(_)), "{j:?}");
    }
}
