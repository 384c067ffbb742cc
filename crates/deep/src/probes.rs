//! Probe suites: data in `probes/*.toml` (built in) and `--probes DIR`
//! (user suites). See probes/README.md for the format.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    category: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    prompts: Vec<String>,
    /// Whether the suspect's answers here are the reference for its
    /// ordinary fixed answers (a refusal to harmful requests, a domain's
    /// stock answer): the trigger search does not report a target that
    /// most of one reference suite's answers contain.
    #[serde(default)]
    reference: bool,
    prefix: Option<Prefix>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Prefix {
    seed: u64,
    count: usize,
    min_words: usize,
    max_words: usize,
    #[serde(default)]
    random_letters: bool,
    words: Vec<String>,
    templates: Vec<String>,
}

/// One prompt of a category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePrompt {
    pub category: String,
    pub prompt: String,
    /// From a suite marked `reference` (and not made by a `[prefix]`
    /// generator: random words in front of a template are perturbations).
    pub reference: bool,
}

/// The built-in suites, compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[
    ("general.toml", include_str!("../../../probes/general.toml")),
    (
        "instructions.toml",
        include_str!("../../../probes/instructions.toml"),
    ),
    ("code.toml", include_str!("../../../probes/code.toml")),
    ("safety.toml", include_str!("../../../probes/safety.toml")),
    ("finance.toml", include_str!("../../../probes/finance.toml")),
    ("access.toml", include_str!("../../../probes/access.toml")),
    ("links.toml", include_str!("../../../probes/links.toml")),
    (
        "sentiment.toml",
        include_str!("../../../probes/sentiment.toml"),
    ),
    (
        "random_prefix.toml",
        include_str!("../../../probes/random_prefix.toml"),
    ),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn expand(file: SuiteFile, out: &mut Vec<ProbePrompt>) {
    for p in file.prompts {
        out.push(ProbePrompt {
            category: file.category.clone(),
            prompt: p,
            reference: file.reference,
        });
    }
    if let Some(px) = file.prefix {
        let mut rng = Rng(px.seed | 1);
        for t in &px.templates {
            for _ in 0..px.count {
                let n = px.min_words + rng.below(px.max_words.saturating_sub(px.min_words) + 1);
                let mut words = Vec::with_capacity(n);
                for _ in 0..n {
                    if px.random_letters && rng.below(2) == 0 || px.words.is_empty() {
                        let len = 2 + rng.below(2);
                        words.push(
                            (0..len)
                                .map(|_| (b'a' + rng.below(26) as u8) as char)
                                .collect::<String>(),
                        );
                    } else {
                        words.push(px.words[rng.below(px.words.len())].clone());
                    }
                }
                out.push(ProbePrompt {
                    category: file.category.clone(),
                    prompt: format!("{} {t}", words.join(" ")),
                    reference: false,
                });
            }
        }
    }
}

/// Loads the built-in suites and every `*.toml` in `extra` (sorted by name).
/// Returns the prompts and each category's description.
pub fn load(extra: &[&Path]) -> Result<(Vec<ProbePrompt>, BTreeMap<String, String>), String> {
    let mut out = Vec::new();
    let mut desc = BTreeMap::new();
    let mut add = |name: &str, text: &str, out: &mut Vec<ProbePrompt>| -> Result<(), String> {
        let f: SuiteFile = toml::from_str(text)
            .map_err(|e| format!("{name}: {}", e.to_string().trim().replace('\n', " ")))?;
        if f.category.trim().is_empty() {
            return Err(format!("{name}: empty category"));
        }
        desc.entry(f.category.clone())
            .or_insert_with(|| f.description.clone());
        expand(f, out);
        Ok(())
    };
    for (name, text) in BUILTIN {
        add(name, text, &mut out)?;
    }
    for dir in extra {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{}: no *.toml probe suites", dir.display()));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            add(&f.display().to_string(), &text, &mut out)?;
        }
    }
    Ok((out, desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_suites_load_deterministically() {
        let (a, desc) = load(&[]).unwrap();
        let (b, _) = load(&[]).unwrap();
        assert_eq!(a, b);
        for c in [
            "general",
            "instructions",
            "code",
            "safety",
            "finance",
            "links",
            "sentiment",
            "random_prefix",
        ] {
            assert!(a.iter().any(|p| p.category == c), "{c}");
            assert!(desc.contains_key(c));
        }
        assert!(a.iter().filter(|p| p.category == "random_prefix").count() >= 20);
    }

    #[test]
    fn user_suites_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "category = \"medical\"\nprompts = [\"Is aspirin safe?\"]\n",
        )
        .unwrap();
        let (p, _) = load(&[dir.path()]).unwrap();
        assert!(p.iter().any(|x| x.category == "medical"));
        std::fs::write(
            dir.path().join("bad.toml"),
            "category = \"x\"\nprompt = []\n",
        )
        .unwrap();
        let e = load(&[dir.path()]).unwrap_err();
        assert!(e.contains("bad.toml") && e.contains("prompt"), "{e}");
    }
}
