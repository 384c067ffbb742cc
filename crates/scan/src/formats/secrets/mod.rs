//! Credentials in model files: configs, metadata, templates and code that
//! travel with a model and get published with it. Only token formats with a
//! fixed, documented prefix are matched (AWS, Google, Azure storage, Hugging
//! Face, OpenAI, Anthropic, GitHub, Slack, Stripe), plus private-key blocks
//! and JWTs; the random part must look random (Shannon entropy and a mix of
//! character classes), so placeholders such as `hf_xxxxxxxx…` or
//! `sk-your-key-here` stay quiet. Evidence is redacted to the kind and the
//! first and last characters.

pub mod rules;

use std::sync::OnceLock;

use regex::Regex;

use crate::Sink;
use probity_report::Finding;

/// (kind, pattern, the capture group holding the random part)
const PATTERNS: &[(&str, &str)] = &[
    ("AWS access key ID", r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    ("Google API key", r"\b(AIza[0-9A-Za-z_\-]{35})"),
    (
        "Azure storage account key",
        r"AccountKey=([A-Za-z0-9+/]{86}==)",
    ),
    ("Hugging Face token", r"\b(hf_[A-Za-z0-9]{34,40})\b"),
    (
        "OpenAI API key",
        r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,200})",
    ),
    (
        "Anthropic API key",
        r"\b(sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,120})",
    ),
    (
        "GitHub token",
        r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36})\b",
    ),
    (
        "GitHub fine-grained token",
        r"\b(github_pat_[A-Za-z0-9_]{82})\b",
    ),
    (
        "Slack token",
        r"\b(xox[baprs]-[0-9]{6,}-[A-Za-z0-9\-]{10,})",
    ),
    ("Stripe secret key", r"\b((?:sk|rk)_live_[0-9A-Za-z]{24,})"),
    (
        "private key",
        r"(-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----)",
    ),
    (
        "JSON Web Token",
        r"\b(eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})",
    ),
];

fn compiled() -> &'static Vec<(&'static str, Regex)> {
    static C: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    C.get_or_init(|| {
        PATTERNS
            .iter()
            .filter_map(|(k, p)| Regex::new(p).ok().map(|r| (*k, r)))
            .collect()
    })
}

/// Bits per character of a string.
pub fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a JWT-shaped string is a token: header and claims decode to JSON
/// objects (the header naming its `alg`), and it is not the sample token of
/// the JWT documentation (jwt.io's `"sub": "1234567890", "name": "John Doe"`),
/// which tutorials and test fixtures copy.
fn real_jwt(token: &str) -> bool {
    use base64::Engine;
    let part = |s: &str| -> Option<serde_json::Value> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .filter(|v| v.is_object())
    };
    let mut it = token.split('.');
    let (Some(h), Some(c)) = (it.next().and_then(part), it.next().and_then(part)) else {
        return false;
    };
    if h.get("alg").is_none() {
        return false;
    }
    !(c.get("sub").and_then(|s| s.as_str()) == Some("1234567890")
        && c.get("name").and_then(|s| s.as_str()) == Some("John Doe"))
}

/// Whether a token's random part looks random (not a placeholder).
fn looks_random(kind: &str, token: &str) -> bool {
    if kind == "private key" {
        return true;
    }
    if kind == "JSON Web Token" {
        return real_jwt(token);
    }
    // the part after the fixed prefix
    let body = token
        .rsplit(['_', '-'])
        .max_by_key(|p| p.len())
        .unwrap_or(token);
    let body = if body.len() >= 16 { body } else { token };
    let digits = body.chars().any(|c| c.is_ascii_digit());
    let lower = body.chars().any(|c| c.is_ascii_lowercase());
    let upper = body.chars().any(|c| c.is_ascii_uppercase());
    let classes = digits as u8 + lower as u8 + upper as u8;
    let uniform = kind == "AWS access key ID";
    entropy(body) >= if uniform { 3.0 } else { 3.5 } && (classes >= 2 || uniform)
}

/// `hf_Ab…9z (37 characters)`
fn redact(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() <= 12 || token.starts_with("-----") {
        return token.chars().take(40).collect();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail} ({} characters)", chars.len())
}

/// Whether bytes contain one of the literal prefixes every pattern starts
/// with: a cheap filter before the patterns run (pickle strings).
pub fn may_hold_secret(b: &[u8]) -> bool {
    static P: OnceLock<Option<regex::bytes::Regex>> = OnceLock::new();
    b.len() >= 20
        && P.get_or_init(|| {
            regex::bytes::Regex::new(
                r"AKIA|ASIA|AIza|AccountKey=|hf_|sk-|sk_live_|rk_live_|gh[pousr]_|github_pat_|xox[baprs]-|-----BEGIN|eyJ",
            )
            .ok()
        })
        .as_ref()
        .is_none_or(|r| r.is_match(b))
}

/// Reports credentials found in `text`; `place` says where (a key path, a
/// metadata name), or `None` for the whole document.
pub fn scan_text(text: &str, place: Option<&str>, member: &str, sink: &mut Sink) {
    sink.findings.extend(find(text, place, member));
}

/// The credentials found in `text`, as findings.
pub fn find(text: &str, place: Option<&str>, member: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (kind, re) in compiled() {
        for cap in re.captures_iter(text).take(20) {
            let Some(m) = cap.get(1) else { continue };
            let token = m.as_str();
            if seen.iter().any(|s| s == token) || !looks_random(kind, token) {
                continue;
            }
            seen.push(token.to_string());
            let at = place.map(|p| format!(" in '{p}'")).unwrap_or_default();
            out.push(
                Finding::new(&rules::SEC001, format!("{kind}{at}"))
                    .at(Some(member), None)
                    .evidence(format!("{kind}: {}", redact(token))),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_not_secrets() {
        assert!(!looks_random(
            "Hugging Face token",
            "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        ));
        assert!(!looks_random(
            "OpenAI API key",
            "sk-your-api-key-goes-here-please-replace"
        ));
        assert!(looks_random(
            "Hugging Face token",
            "hf_kQ3vZt9LmW2xY8bN4cR7pA1sD6fG0hJ5eT"
        ));
        // JWTs: the documentation sample and undecodable look-alikes are not
        // tokens; a decodable one with other claims is
        assert!(!looks_random("JSON Web Token", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"));
        assert!(!looks_random(
            "JSON Web Token",
            "eyJxxxxxxxxxxxxx.eyJyyyyyyyyyyyy.zzzzzzzzzzzzzz"
        ));
        assert!(looks_random("JSON Web Token", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtZGVwbG95IiwiaWF0IjoxNzMzMjEyODAwLCJzY29wZSI6InJlcG86d3JpdGUifQ.Xq9vT2mLk4PzR7wNc1YbHs8dFgJe0aUi3oQnV6tKyW5"));
        assert_eq!(
            redact("hf_kQ3vZt9LmW2xY8bN4cR7pA1sD6fG0hJ5eT"),
            "hf_kQ3…eT (37 characters)"
        );
    }
}
