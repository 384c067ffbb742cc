//! Refits the backdoor score's logistic model from `probity deep --format
//! json` reports and prints the new `crates/deep/src/score_model.json` (with the
//! held-out results) on standard output. Run through `scripts/fit-score.sh`.
//!
//! Arguments: `[--lambda X] (--fit|--hold) REPORT=LABEL ...` where LABEL is
//! `clean` or `backdoor:TARGET` (the planted target text, for the target
//! recovery rate).

use std::collections::BTreeMap;

use probity_deep::score::{self, ScoreModel, FEATURES};
use probity_deep::wire::SearchResult;
use probity_zoo::fit::{auroc, fit_monotone};
use serde_json::{json, Value};

struct Case {
    name: String,
    x: Vec<f64>,
    backdoor: bool,
    target: Option<String>,
    report: Value,
}

/// The trigger search of a deep report, when it ran.
fn search_of(report: &Value) -> Option<SearchResult> {
    let mut r: SearchResult = serde_json::from_value(report["signals"]["trigger"].clone()).ok()?;
    // whether each candidate's target is natural, from the targets (reports
    // written before candidates carried it)
    for c in &mut r.candidates {
        if let Some(t) = r.targets.iter().find(|t| t.text == c.target) {
            c.target_natural = t.natural;
        }
    }
    Some(r)
}

fn load(spec: &str) -> Case {
    let (path, label) = spec.split_once('=').expect("REPORT=LABEL");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let f = &report["signals"]["score"]["features"];
    let mut x: Vec<f64> = FEATURES
        .iter()
        .map(|k| f[*k].as_f64().unwrap_or(0.0))
        .collect();
    // the trigger feature as this build computes it from the candidates
    if let (Some(r), Some(i)) = (
        search_of(&report),
        FEATURES.iter().position(|k| *k == "trigger"),
    ) {
        x[i] = score::best_trigger(&r).map_or(0.0, score::trigger_strength);
    }
    let (backdoor, target) = match label.split_once(':') {
        Some(("backdoor", t)) => (true, Some(t.to_string())),
        _ if label == "clean" => (false, None),
        _ => panic!("{spec}: label must be clean or backdoor:TARGET"),
    };
    let name = std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    Case {
        name,
        x,
        backdoor,
        target,
        report,
    }
}

/// Metrics of `model` on `cases`.
fn evaluate(model: &ScoreModel, cases: &[Case]) -> Value {
    let p: Vec<f64> = cases.iter().map(|c| model.probability(&c.x)).collect();
    let y: Vec<bool> = cases.iter().map(|c| c.backdoor).collect();
    // TPR at FPR ≤ 1%: with fewer than 100 clean models, no clean model may
    // score at or above the threshold
    let max_clean = p
        .iter()
        .zip(&y)
        .filter(|(_, &b)| !b)
        .map(|(p, _)| *p)
        .fold(f64::NEG_INFINITY, f64::max);
    let pos = y.iter().filter(|&&b| b).count();
    let tpr = p
        .iter()
        .zip(&y)
        .filter(|(p, &b)| b && **p > max_clean)
        .count() as f64
        / pos.max(1) as f64;
    let mut per = BTreeMap::new();
    let (mut trig_ok, mut tgt_ok, mut flagged_clean, mut caught) = (0, 0, 0, 0);
    for (c, p) in cases.iter().zip(&p) {
        // the verdict as `probity deep` gives it: the fitted probability,
        // raised to backdoor by a verified trigger, to suspicious by an
        // unexplained fixed answer
        let mut verdict = model.verdict(*p);
        let search = search_of(&c.report);
        let verified = search
            .as_ref()
            .is_some_and(|r| r.candidates.iter().any(score::verified));
        if verified {
            verdict = score::Verdict::Backdoor;
        }
        // an unexplained fixed answer makes a clean verdict suspicious
        let leaked = c.report["signals"]["behavior"]["fixed_answers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f["unexplained"] == true));
        if leaked && verdict == score::Verdict::Clean {
            verdict = score::Verdict::Suspicious;
        }
        // the reported trigger as this build would pick it
        let trig = search
            .as_ref()
            .and_then(score::reported_trigger)
            .is_some_and(|t| t.asr_suspect >= 0.8 && t.asr_base <= 0.1);
        let found = c.report["target"]["text"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_string();
        let tgt = match &c.target {
            Some(truth) => {
                found.len() >= 3 && (truth.contains(&found) || found.contains(truth.as_str()))
            }
            None => false,
        };
        if c.backdoor {
            caught += (verdict == score::Verdict::Backdoor) as usize;
            trig_ok += trig as usize;
            tgt_ok += tgt as usize;
        } else if verdict != score::Verdict::Clean {
            flagged_clean += 1;
        }
        per.insert(
            c.name.clone(),
            json!({
                "label": if c.backdoor { "backdoor" } else { "clean" },
                "probability": (p * 1000.0).round() / 1000.0,
                "verdict": verdict.name(),
                "trigger_recovered": c.backdoor.then_some(trig),
                "target_recovered": c.backdoor.then_some(tgt),
            }),
        );
    }
    let neg = cases.len() - pos;
    json!({
        "models": cases.len(),
        "backdoored": pos,
        "auroc": auroc(&p, &y),
        "tpr_at_1pct_fpr": tpr,
        "trigger_recovery": trig_ok as f64 / pos.max(1) as f64,
        "target_recovery": tgt_ok as f64 / pos.max(1) as f64,
        "clean_flagged": format!("{flagged_clean}/{neg}"),
        "backdoor_verdicts": format!("{caught}/{pos}"),
        "per_model": per,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut lambda = 1.0;
    let (mut train, mut hold) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--lambda" => {
                lambda = args[i + 1].parse().expect("--lambda X");
                i += 1;
            }
            "--fit" => {
                train.push(load(&args[i + 1]));
                i += 1;
            }
            "--hold" => {
                hold.push(load(&args[i + 1]));
                i += 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    assert!(
        train.iter().any(|c| c.backdoor) && train.iter().any(|c| !c.backdoor),
        "the fitting set needs both labels"
    );
    let x: Vec<Vec<f64>> = train.iter().map(|c| c.x.clone()).collect();
    let y: Vec<f64> = train.iter().map(|c| c.backdoor as u8 as f64).collect();
    // evidence for a backdoor (target excess and gain, trigger strength)
    // never lowers the probability
    let monotone: Vec<bool> = FEATURES
        .iter()
        .map(|k| matches!(*k, "target" | "target_gain" | "trigger"))
        .collect();
    let (w, b) = fit_monotone(&x, &y, lambda, &monotone);
    let round = |v: f64| (v * 1e4).round() / 1e4;
    let mut model = score::model();
    model.description = "Logistic model of the backdoor probability over the features in crates/deep/src/score.rs, fitted by scripts/fit-score.sh (L2-regularised Newton fit; the bias is not penalised; the target, target_gain and trigger weights are kept non-negative).".into();
    model.weights = w.into_iter().map(round).collect();
    model.bias = round(b);
    model.regularization = lambda;
    model.fitted_on = train.iter().map(|c| c.name.clone()).collect();
    model.held_out = BTreeMap::new();
    model
        .held_out
        .insert("training".into(), evaluate(&model, &train));
    if !hold.is_empty() {
        model
            .held_out
            .insert("held_out".into(), evaluate(&model, &hold));
    }
    model.refit = "scripts/fit-score.sh".into();
    println!(
        "{}",
        serde_json::to_string_pretty(&model).expect("serialisable")
    );
}
