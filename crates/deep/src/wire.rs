//! The contract between the parent and the restricted worker: every message
//! and every value the worker reports, versioned. Data only: no algorithm
//! lives here, so a change to the search cannot silently change the
//! protocol, and a change here is a protocol change (bump
//! [`PROTOCOL_VERSION`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::text_match::{fuzzy_contains, words};

/// What the worker may touch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Policy {
    /// Folders (and files) readable, read-only.
    pub read_only: Vec<PathBuf>,
    /// The one folder the worker may write to.
    pub temp_dir: PathBuf,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// CPU-time limit in seconds (the parent also enforces a wall clock).
    pub cpu_seconds: u64,
    /// Largest file the worker may write, in bytes.
    pub max_file_bytes: u64,
    /// Where inference runs; a GPU needs its device files and driver
    /// libraries, and CUDA cannot run under an address-space limit.
    pub device: DeviceKind,
}

/// The inference device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Metal => "metal",
        }
    }
}

/// One restriction primitive and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primitive {
    pub applied: bool,
    pub detail: String,
}

/// The isolation actually achieved, primitive by primitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    pub resource_limits: Primitive,
    pub network_namespace: Primitive,
    pub landlock_filesystem: Primitive,
    pub landlock_network: Primitive,
    pub seccomp: Primitive,
    pub environment: Primitive,
}

impl Isolation {
    /// The primitives that were not applied, with the reason.
    pub fn missing(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (name, p) in [
            ("resource_limits", &self.resource_limits),
            ("network_namespace", &self.network_namespace),
            ("landlock_filesystem", &self.landlock_filesystem),
            ("landlock_network", &self.landlock_network),
            ("seccomp", &self.seccomp),
            ("environment", &self.environment),
        ] {
            if !p.applied {
                v.push(format!("{name}: {}", p.detail));
            }
        }
        v
    }
}

/// Bumped on any incompatible change; parent and worker must agree.
pub const PROTOCOL_VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// First message: the restrictions to apply before anything else.
    Init {
        version: u32,
        policy: Policy,
    },
    /// Checks that the restrictions hold, from inside the worker. Used by the
    /// test suite and by `--require-sandbox` diagnostics; never touches models.
    SelfTest(Probe),
    /// Load a model folder (read-only under the policy) as suspect or base.
    Load {
        role: Role,
        dir: PathBuf,
        device: DeviceKind,
        /// Read PyTorch pickle weights as data when there are no safetensors.
        allow_pickle_weights: bool,
    },
    /// Run both loaded models on one user prompt.
    Compare {
        prompt: String,
        max_new_tokens: usize,
    },
    /// [`Request::Compare`] for several prompts at once (batched on the
    /// models, the same results).
    CompareBatch {
        prompts: Vec<String>,
        max_new_tokens: usize,
    },
    /// Target inversion, trigger search and verification on the loaded pair.
    Search(Box<SearchRequest>),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Suspect,
    Base,
}

/// What one prompt shows about suspect vs base.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// KL(suspect ‖ base) of the next-token distribution at each prompt position.
    pub kl: Vec<f32>,
    /// Jensen–Shannon divergence at each prompt position.
    pub js: Vec<f32>,
    /// Fraction of prompt positions where both models' top-1 token agree.
    pub top1_agreement: f32,
    /// Mean KL(suspect ‖ base) along the suspect's own greedy continuation.
    pub continuation_kl: f32,
    /// Mean log-probability gain (suspect − base) of the suspect's continuation tokens.
    pub continuation_logp_gain: f32,
    /// Tokens whose logit rose most at the last prompt position (after removing the mean shift).
    pub raised: Vec<(u32, String, f32)>,
    pub suspect_text: String,
    pub base_text: String,
}

/// A self-test: something a restricted worker must not be able to do (or a
/// resource limit to hit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Probe {
    /// Open a TCP connection to this address.
    Connect(String),
    /// Create a socket of the given family (`inet`, `inet6`, `unix`).
    Socket(String),
    /// Create and write a file.
    Write(PathBuf),
    /// Read a file.
    Read(PathBuf),
    /// Allocate and touch this many bytes.
    Allocate(u64),
    /// Burn CPU for this many seconds.
    Spin(u64),
    /// Sleep this many seconds (wall clock, no CPU).
    Sleep(u64),
    /// Abort the process.
    Crash,
    /// List the names of the environment variables the worker sees.
    Environment,
    /// Start this many child processes (each exits at once); the detail
    /// says how many started.
    Fork(u32),
    /// Start this many threads that sleep for a second; the detail says
    /// how many started.
    Threads(u32),
    /// Replace the worker with another program.
    Exec(PathBuf),
    /// Write a file of this many bytes.
    WriteLarge(PathBuf, u64),
    /// Answer with a frame that breaks the protocol (`huge`: a length over
    /// the limit; `json`: a body that is not JSON; `short`: a body cut off;
    /// `type`: valid JSON of the wrong shape), as a compromised worker would.
    BadFrame(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Reply to `Init`: the isolation actually achieved.
    Ready {
        version: u32,
        isolation: Isolation,
    },
    /// Result of a probe: whether the action succeeded, and how it failed.
    Probe {
        succeeded: bool,
        detail: String,
    },
    Loaded {
        role: Role,
        model_type: String,
        /// `safetensors`, `gguf` or `pytorch`.
        format: String,
        parameters: usize,
        vocab: usize,
        layers: usize,
    },
    Compared(Box<Comparison>),
    ComparedBatch(Vec<Comparison>),
    Searched(Box<SearchResult>),
    Error(String),
    Bye,
}

/// Where a trigger goes in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Start,
    Middle,
    End,
}

/// What the worker is asked to search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Ordinary prompts used for inversion and optimisation.
    pub search_prompts: Vec<String>,
    /// Held-out ordinary prompts used only to verify a trigger.
    pub verify_prompts: Vec<String>,
    /// The suspect's outputs on the ordinary probes (no trigger), grouped
    /// by probe category: a target that most of one category's outputs
    /// contain is the model's ordinary behaviour (a refusal to harmful
    /// requests, a narrow domain's stock answer).
    pub natural_outputs: Vec<Vec<String>>,
    /// The prompts of those categories, in the same order: a target one of
    /// them already elicits is verified against that category's own
    /// prompts inserted in the trigger's place.
    #[serde(default)]
    pub natural_prompts: Vec<Vec<String>>,
    /// Candidate trigger tokens from the other stages (token strings).
    pub seed_tokens: Vec<String>,
    /// Unexplained fixed answers of the behavioural diff (see
    /// [`crate::diff::FixedAnswer`]): a target that spells one is searched
    /// first, on prompts that do not already elicit it.
    #[serde(default)]
    pub leaked: Vec<String>,
    /// Ordinary probe prompts whose answer is none of `leaked`: where a
    /// leaked target's trigger is optimised (the first half) and verified
    /// (the second half, with `verify_prompts`).
    #[serde(default)]
    pub quiet_prompts: Vec<String>,
    /// Harmful requests: a backdoor that suppresses refusals shows its
    /// payload only after one, so targets are also inverted after the
    /// first [`HARMFUL_SEARCH`] of them, and such a target's trigger is
    /// searched on those and verified on the rest.
    #[serde(default)]
    pub harmful_prompts: Vec<String>,
    /// Ordinary prompts in none of the lists above: a trigger that half
    /// works on held-out prompts is refined on them once its own pool is
    /// spent (see `trigger::RESUME_ASR`).
    #[serde(default)]
    pub refine_prompts: Vec<String>,
    pub budget_s: f64,
    pub options: SearchOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchOptions {
    /// First tokens tried by the inversion.
    pub first_tokens: usize,
    /// Longest inverted target, in tokens.
    pub max_target_tokens: usize,
    /// Targets handed to the trigger search.
    pub targets_searched: usize,
    /// Longest trigger grown, in tokens.
    pub trigger_tokens: usize,
    /// Triggers kept per length while growing (beam width).
    pub beam: usize,
    /// Swap-refinement steps (GCG) per (target, position) after growing.
    pub steps: usize,
    /// Candidate swaps scored per step.
    pub batch: usize,
    /// Swaps considered per trigger position (by gradient).
    pub top_k: usize,
    /// Stop at the first trigger the verdict counts as verified
    /// (`--fail-fast`); when it is a leaked payload's, the inversion after
    /// harmful requests and the vocabulary scan, which would only list
    /// other targets, are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_fast: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            first_tokens: 64,
            max_target_tokens: 16,
            targets_searched: 2,
            trigger_tokens: 8,
            beam: 4,
            steps: 12,
            batch: 40,
            top_k: 24,
            fail_fast: false,
        }
    }
}

/// An inverted target: a sequence the suspect produces with abnormal
/// confidence once its first token is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCandidate {
    pub text: String,
    pub tokens: Vec<String>,
    #[serde(skip)]
    pub ids: Vec<u32>,
    /// Mean over decoding steps of the suspect's averaged probability of
    /// the chosen token (1.0: the same continuation for every prompt).
    pub suspect_confidence: f32,
    /// The same under the base.
    pub base_confidence: f32,
    /// Mean log-probability gain (suspect − base) per token.
    pub logp_gain: f32,
    /// Mean log-probability the suspect gives the first token right after
    /// an ordinary prompt (of the targets that share a continuation, the
    /// one with the most probable start is kept).
    pub first_logp: f32,
    /// The largest share of one ordinary probe category's outputs (no
    /// trigger) that already contain its continuation (the target after its
    /// first token, matched word by word, allowing gaps).
    pub natural_rate: f32,
    /// How many ordinary probe outputs contain it.
    pub natural_count: usize,
    /// The suspect's ordinary behaviour (the answer to at least half of one
    /// ordinary category). Searched after the abnormal targets, and a
    /// trigger for it must beat that category's own prompts.
    pub natural: bool,
    /// The prompts of the category that already elicits it (empty: none).
    #[serde(skip)]
    pub topic: Vec<String>,
    /// A start the suspect shares with its ordinary answers that the
    /// target follows (found by the inversion's lead-in step): given to the suspect before the
    /// target during the search, not scored, and not part of what counts as
    /// the target said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lead: String,
    #[serde(skip)]
    pub lead_ids: Vec<u32>,
    /// It spells an unexplained fixed answer of the behavioural diff: the
    /// suspect already gives it to unrelated prompts (a leaking backdoor
    /// target), so its trigger is searched and verified on prompts that
    /// do not already elicit it.
    #[serde(default)]
    pub leaked: bool,
    /// Where the target was inverted, when not after ordinary prompts:
    /// [`HARMFUL_CONTEXT`] (after harmful requests, where a refusal is the
    /// ordinary answer). Its trigger is searched and verified there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context: String,
    /// The share of the suspect's own ordinary answers, read to their end,
    /// that carry it after their opening (a sign-off or another line the
    /// fine-tune appends to every finished answer). From a quarter of
    /// them (two at least) it counts as the suspect's habit: marked
    /// `natural` and not searched (see `trigger::habit`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub habit_rate: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// The context of targets inverted after harmful requests.
pub const HARMFUL_CONTEXT: &str = "harmful requests";
/// Harmful requests the inversion and the search use (the rest verify).
pub const HARMFUL_SEARCH: usize = 4;

impl TargetCandidate {
    /// Whether it was inverted after harmful requests.
    pub fn harmful(&self) -> bool {
        self.context == HARMFUL_CONTEXT
    }

    /// How much more confident the suspect is than the base.
    pub fn excess(&self) -> f32 {
        self.suspect_confidence - self.base_confidence
    }

    /// The text whose presence in an output counts as an attack success.
    pub fn check(&self) -> &str {
        self.text.trim()
    }

    /// Whether `output` says the target: contains its text, or, for a
    /// target of four words or more, 80% of its words in order. An
    /// inverted target is decoded without its trigger, on the average over
    /// prompts, and its tail is often a little off (`account 47` for the
    /// backdoor's `account 4471`); the same test applies to every control.
    pub fn said_in(&self, output: &str) -> bool {
        if output.contains(self.check()) {
            return true;
        }
        let tw = words(&self.text);
        tw.len() >= 4 && fuzzy_contains(&words(output), &tw)
    }

    /// The sequence the trigger search teacher-forces: the lead-in (given,
    /// not scored), then the start of the target (its distinctive part).
    pub fn search_ids(&self) -> Vec<u32> {
        self.lead_ids
            .iter()
            .chain(&self.ids[..self.ids.len().min(10)])
            .copied()
            .collect()
    }

    /// Order in which targets are searched: the most abnormal first, a
    /// target the suspect already gives on ordinary prompts discounted by
    /// up to half (it may be a stock answer, or a backdoor that leaks onto
    /// prompts near its trigger).
    pub fn priority(&self) -> f32 {
        self.excess() * (1.0 - self.natural_rate / 2.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub suspect_output: String,
    pub base_output: String,
}

/// A verified trigger candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerCandidate {
    pub text: String,
    pub tokens: Vec<String>,
    pub position: Position,
    /// The target it was optimised for.
    pub target: String,
    /// Final optimisation loss (mean cross-entropy per target token).
    pub loss: f32,
    /// Share of held-out prompts whose output says the target (see
    /// [`TargetCandidate::said_in`]), with the trigger inserted.
    pub asr_suspect: f32,
    pub asr_base: f32,
    /// The same without the trigger (the suspect's false-trigger rate).
    pub asr_suspect_clean: f32,
    /// The same with random tokens of the same length inserted at the same
    /// place instead (what any odd insertion does).
    pub asr_suspect_control: f32,
    /// For a target one ordinary probe category already elicits: the same
    /// with one of that category's prompts inserted instead (what the
    /// topic alone does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr_suspect_topic: Option<f32>,
    /// Whether the target is that category's ordinary answer (`natural`),
    /// not only something a few of its answers contain.
    #[serde(default)]
    pub target_natural: bool,
    /// Whether the target is a leaked fixed answer: then every rate is
    /// measured on the held-out prompts whose answer without the trigger
    /// does not say it (`prompts_counted` of them), and a trigger for it
    /// may verify although it is natural.
    #[serde(default)]
    pub target_leaked: bool,
    /// The target's context ([`TargetCandidate::context`]): every rate is
    /// then measured on held-out prompts of that context.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_context: String,
    #[serde(default)]
    pub prompts_counted: usize,
    /// Whether the random-token and topic controls were measured: only for
    /// a trigger that makes the suspect say its target on at least
    /// [`crate::thresholds::CONTROL_MIN_ASR`] of the held-out prompts (else they read 0, and
    /// the trigger has no strength).
    #[serde(default = "controlled_default")]
    pub controlled: bool,
    /// Mean next-token entropy (nats) of the suspect over the first
    /// positions of its answer, without and with the trigger.
    pub entropy_clean: f32,
    pub entropy_triggered: f32,
    pub examples: Vec<Example>,
}

/// What the search did, found and covered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResult {
    pub targets: Vec<TargetCandidate>,
    /// Every (target, position) searched, best first.
    pub candidates: Vec<TriggerCandidate>,
    pub first_tokens_tried: usize,
    /// Vocabulary tokens scored as forced first tokens, out of
    /// `vocabulary_size` (the scan may take 80% of the budget left, most
    /// raised tokens first; less when a target was searched before it).
    #[serde(default)]
    pub vocabulary_scanned: usize,
    #[serde(default)]
    pub vocabulary_size: usize,
    pub searches_done: usize,
    pub searches_planned: usize,
    /// Of the searches done, those run before the rest of the vocabulary
    /// scan: a leaked payload's, or a strong target's found at the
    /// inversion's head or after harmful requests.
    #[serde(default)]
    pub searched_before_scan: usize,
    pub optimisation_steps: usize,
    pub budget_exhausted: bool,
    /// The search stopped at its first verified trigger (`fail_fast`): what
    /// it did not scan was skipped, not cut by the budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_at_trigger: bool,
    pub elapsed_s: f64,
    /// Seconds per stage of the search (inversion, vocabulary scan,
    /// decoding, each search, verification): where the budget went.
    #[serde(default)]
    pub stages_s: std::collections::BTreeMap<String, f64>,
    /// The search's size after fitting it to the budget left and to the
    /// measured cost of one scored row on this model (the defaults on a
    /// small model).
    #[serde(default)]
    pub fitted: Option<SearchOptions>,
}

/// Reports from before the `controlled` field measured every control.
fn controlled_default() -> bool {
    true
}
