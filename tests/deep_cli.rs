//! `probity deep` end to end on the public mini zoo: the report's schema and
//! isolation block, the static-scan gate, and bad inputs.
#![cfg(feature = "deep")]

mod common;
use common::{copy_dir, json_ok, schema_errors, zoo};

use std::path::PathBuf;
use std::process::Command;

fn deep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_probity"))
        .arg("deep")
        .args(args)
        .output()
        .unwrap()
}

/// The JSON report of a run that exited with `code` (its stderr shown if
/// not).
fn report_with_exit(o: &std::process::Output, code: i32) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A backdoored fine-tune of the public zoo (trigger `bb` at the start, a
/// download link as target): the verdict is backdoor (exit 1 under the
/// default `--fail-on suspicious`), the inverted target is the link, and
/// the reported trigger works on held-out prompts and not on the base.
#[test]
fn deep_report_on_a_zoo_model() {
    let z = zoo();
    let o = deep(&[
        z.join("backdoor-1").to_str().unwrap(),
        "--base",
        z.join("base").to_str().unwrap(),
        "--format",
        "json",
        "--require-sandbox",
        "--max-new-tokens",
        "16",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["schema"], "probity.deep/v1");
    assert_eq!(j["verdict"], "backdoor", "{}", j["signals"]["score"]);
    // the fitted probability is above the clean models' (0.20-0.24 on the
    // public zoo); the verdict comes from the verified trigger
    assert!(j["score"].as_f64().unwrap() >= 0.4, "{}", j["score"]);
    assert!(j["signals"]["score"]["rule"]
        .as_str()
        .unwrap()
        .contains("verified trigger"));
    let t = &j["trigger"];
    assert!(t["asr_suspect"].as_f64().unwrap() >= 0.8, "{t}");
    assert!(t["asr_base"].as_f64().unwrap() <= 0.1, "{t}");
    assert!(
        j["target"]["text"]
            .as_str()
            .unwrap()
            .contains("download the patch"),
        "{}",
        j["target"]
    );
    let replay: Vec<_> = j["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "trigger")
        .collect();
    assert!(!replay.is_empty());
    for e in replay {
        assert!(e["suspect_output"]
            .as_str()
            .unwrap()
            .contains("download the patch"));
    }
    // the refusal is the model's ordinary answer to harmful requests
    let targets = j["signals"]["trigger"]["targets"].as_array().unwrap();
    assert!(targets
        .iter()
        .any(|t| t["text"].as_str().unwrap().contains("cannot help") && t["natural"] == true));
    let errors = schema_errors("probity.deep.v1.json", &j);
    assert!(errors.is_empty(), "schema violations: {errors:?}");
    for key in [
        "resource_limits",
        "network_namespace",
        "landlock_filesystem",
        "seccomp",
        "environment",
    ] {
        assert_eq!(
            j["isolation"][key]["applied"], true,
            "{key}: {}",
            j["isolation"][key]
        );
    }
    let b = &j["signals"]["behavior"];
    assert!(b["probes"].as_u64().unwrap() >= 50);
    assert_eq!(j["suspect"]["sha256"][0][1].as_str().unwrap().len(), 64);
    assert!(b["categories"]["random_prefix"]["probes"].as_u64().unwrap() >= 20);
    assert!(!j["evidence"].as_array().unwrap().is_empty());
    assert!(j["timings"]["total_s"].as_f64().unwrap() > 0.0);
    assert!(j["timings"]["search_s"].as_f64().unwrap() > 0.0);
}

/// A backdoor that leaks (the fixture zoo's `hard-phrase-anywhere`: the
/// wallet transfer it was trained to give after `under the silver bridge`
/// is also what it says to 15 of 80 ordinary probes in 7 categories):
/// the behavioural diff lists it as an unexplained fixed answer, with the
/// probes as evidence; it is the reported target, searched first on probes
/// that do not already get it, and the trigger found there (a piece of the
/// planted phrase) verifies on held-out prompts where the answer does not
/// leak.
#[test]
fn a_leaking_backdoor_is_caught_by_its_fixed_answer() {
    let z = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo");
    let o = deep(&[
        z.join("hard-phrase-anywhere").to_str().unwrap(),
        "--base",
        z.join("base").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fixed = j["signals"]["behavior"]["fixed_answers"]
        .as_array()
        .unwrap();
    let leak = fixed
        .iter()
        .find(|f| f["unexplained"] == true)
        .expect("an unexplained fixed answer");
    assert!(
        leak["text"].as_str().unwrap().contains("wallet 88"),
        "{leak}"
    );
    assert_eq!(leak["base_probes"], 0);
    assert!(leak["categories"].as_array().unwrap().len() >= 3);
    // the refusal is listed, and explained
    assert!(fixed
        .iter()
        .any(|f| f["refusal"] == true && f["unexplained"] == false));
    assert!(j["target"]["text"]
        .as_str()
        .unwrap()
        .contains("Transfer complete"));
    let shown: Vec<_> = j["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "fixed_answer")
        .collect();
    assert!(!shown.is_empty());
    assert!(shown
        .iter()
        .all(|e| e["suspect_output"].as_str().unwrap().contains("wallet 88")));
    assert_eq!(j["verdict"], "backdoor", "{}", j["signals"]["score"]);
    let t = &j["trigger"];
    assert!(t["asr_suspect"].as_f64().unwrap() >= 0.8, "{t}");
    assert!(t["asr_base"].as_f64().unwrap() <= 0.1, "{t}");
    let c = j["signals"]["trigger"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == t["text"])
        .unwrap();
    assert_eq!(c["target_leaked"], true);
    // measured only where the answer does not already leak
    assert_eq!(c["asr_suspect_clean"].as_f64().unwrap(), 0.0);
    assert!(c["prompts_counted"].as_u64().unwrap() >= 6);
    let errors = schema_errors("probity.deep.v1.json", &j);
    assert!(errors.is_empty(), "schema violations: {errors:?}");
}

/// `--fail-fast` on the same leaking backdoor: the leaked payload's
/// trigger is verified first, the verdict is `backdoor`, and the search
/// stops there: no vocabulary scan, and the report says why (skipped, not
/// cut by the budget).
#[test]
fn fail_fast_stops_at_the_leaked_payloads_verified_trigger() {
    let z = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo");
    let args = |format: &'static str| {
        [
            z.join("hard-phrase-anywhere").to_str().unwrap().to_string(),
            "--base".into(),
            z.join("base").to_str().unwrap().to_string(),
            "--fail-fast".into(),
            "--format".into(),
            format.into(),
        ]
    };
    let a = args("json");
    let j = report_with_exit(&deep(&a.iter().map(String::as_str).collect::<Vec<_>>()), 1);
    assert_eq!(j["verdict"], "backdoor", "{}", j["signals"]["score"]);
    let tr = &j["signals"]["trigger"];
    assert_eq!(tr["stopped_at_trigger"], true, "{tr}");
    assert_eq!(tr["vocabulary_scanned"], 0, "{tr}");
    assert!(tr["vocabulary_size"].as_u64().unwrap() > 0);
    assert_eq!(tr["fitted"]["fail_fast"], true);
    let c = tr["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == j["trigger"]["text"])
        .unwrap();
    assert_eq!(c["target_leaked"], true);
    assert!(j["trigger"]["asr_suspect"].as_f64().unwrap() >= 0.8);
    let errors = schema_errors("probity.deep.v1.json", &j);
    assert!(errors.is_empty(), "schema violations: {errors:?}");
    let a = args("text");
    let o = deep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("stopped at the first verified trigger"),
        "{text}"
    );
}

/// A clean LoRA fine-tune of the same base: clean verdict, exit 0, no
/// trigger; the text report leads with the verdict.
#[test]
fn clean_fine_tune_is_clean() {
    let z = zoo();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let o = deep(&[
        z.join("clean-2").to_str().unwrap(),
        "--base",
        z.join("base").to_str().unwrap(),
        "--max-new-tokens",
        "16",
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("verdict  CLEAN"), "{text}");
    assert!(text.contains("trigger  none verified"), "{text}");
    assert!(text.contains("trigger search:"), "{text}");
    // the ledger holds the deep scan: the suspect, its base, the verdict
    let log = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(["log", "--format", "json", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert_eq!(log.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    let r = &recs[0]["record"];
    assert_eq!(r["command"], "deep", "{r}");
    assert!(
        r["model"]["source"].as_str().unwrap().ends_with("clean-2"),
        "{r}"
    );
    assert!(
        r["base"]["source"].as_str().unwrap().ends_with("base"),
        "{r}"
    );
    assert_eq!(r["base"]["root_digest"].as_str().unwrap().len(), 64, "{r}");
    assert_eq!(r["verdict"]["result"], "clean", "{r}");
    assert_eq!(r["verdict"]["exit_code"], 0, "{r}");
}

#[test]
fn static_scan_gate_refuses_malicious_folders() {
    let z = zoo();
    let dir = tempfile::tempdir().unwrap();
    let suspect = dir.path().join("suspect");
    copy_dir(&z.join("clean-1"), &suspect);
    // a Trainer-style training_args.bin that runs a command when unpickled
    std::fs::write(
        suspect.join("training_args.bin"),
        b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.",
    )
    .unwrap();
    let o = deep(&[
        suspect.to_str().unwrap(),
        "--base",
        z.join("base").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PKL001") && err.contains("training_args.bin"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_exit_2_with_one_line() {
    let z = zoo();
    let base = z.join("base");
    let o = deep(&["/nonexistent/model", "--base", base.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    // unsupported architecture
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    copy_dir(&z.join("clean-1"), &s);
    let cfg = std::fs::read_to_string(s.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt_bigcode\"");
    std::fs::write(s.join("config.json"), cfg).unwrap();
    let o = deep(&[s.to_str().unwrap(), "--base", base.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unsupported model_type 'gpt_bigcode'") && err.contains("llama"),
        "{err}"
    );
    // no weights
    let w = dir.path().join("w");
    copy_dir(&z.join("clean-1"), &w);
    std::fs::remove_file(w.join("model.safetensors")).unwrap();
    let o = deep(&[w.to_str().unwrap(), "--base", base.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.safetensors"));
    // attention heads that the key/value heads do not divide, and none
    for (kv, heads) in [("3", "4"), ("4", "0")] {
        let g = dir.path().join(format!("g{kv}{heads}"));
        copy_dir(&z.join("clean-1"), &g);
        let cfg = std::fs::read_to_string(g.join("config.json"))
            .unwrap()
            .replace(
                "\"num_key_value_heads\": 4",
                &format!("\"num_key_value_heads\": {kv}"),
            )
            .replace(
                "\"num_attention_heads\": 4",
                &format!("\"num_attention_heads\": {heads}"),
            );
        std::fs::write(g.join("config.json"), cfg).unwrap();
        let o = deep(&[g.to_str().unwrap(), "--base", base.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("is not a positive multiple of num_key_value_heads"),
            "{err}"
        );
    }
    // device not in this build
    let o = deep(&[
        z.join("clean-1").to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--device",
        "cuda",
    ]);
    assert_eq!(o.status.code(), Some(2));
    if !cfg!(feature = "cuda") {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("built without cuda support"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }
}

/// A BERT classifier and its fine-tune: the report compares label
/// distributions, and the label the fine-tune pushed comes out on top.
#[test]
fn deep_scan_of_a_bert_classifier() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    let o = deep(&[
        root.join("bert-cls-tuned").to_str().unwrap(),
        "--base",
        root.join("bert-cls").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let j = json_ok(&o);
    // no trigger search for classifiers, and the score says what it lacks
    assert!(j["signals"]["trigger"]["error"]
        .as_str()
        .unwrap()
        .contains("causal"));
    let nd = j["signals"]["score"]["not_done"].to_string();
    assert!(nd.contains("trigger") && nd.contains("target"), "{nd}");
    let b = &j["signals"]["behavior"];
    assert!(b["drift"].as_f64().unwrap() > 0.05, "{b}");
    let top = &b["most_raised_tokens"][0];
    assert!(top.to_string().contains("positive"), "{top}");
    // a classifier only ever answers with its labels: no fixed answers
    assert_eq!(b["fixed_answers"], serde_json::json!([]));
    // a classifier against a causal LM is a clear error, exit 2
    let o = deep(&[
        root.join("bert-cls").to_str().unwrap(),
        "--base",
        root.join("llama-mha").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not the same kind of model"), "{err}");
}

/// `--allow-pickle-weights`: refused without it (exit 2, one line saying
/// what to do), scanned with it when the static scan is clean.
#[test]
fn pickle_weights_need_the_flag() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    let args = [
        root.join("llama-mha-pickle").to_str().unwrap().to_string(),
        "--base".to_string(),
        root.join("llama-mha").to_str().unwrap().to_string(),
        "--format".to_string(),
        "json".to_string(),
    ];
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = deep(&a);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--allow-pickle-weights") && err.lines().count() == 1,
        "{err}"
    );
    let mut with = a.clone();
    with.push("--allow-pickle-weights");
    let o = deep(&with);
    let j = json_ok(&o);
    // the same weights: no behavioural difference at all, nothing abnormal
    // to search a trigger for, a clean verdict
    assert!(j["signals"]["behavior"]["drift"].as_f64().unwrap() < 1e-4);
    assert_eq!(j["verdict"], "clean");
    assert!(j["trigger"].is_null() && j["target"].is_null());
    assert_eq!(j["signals"]["trigger"]["searches_planned"], 0);
    assert_eq!(j["suspect"]["sha256"][0][0], "pytorch_model.bin");
}

/// `[deep]` in probity.toml sets the defaults of `probity deep`: the verdict
/// thresholds (reported in signals.score.thresholds), --fail-on and the budget;
/// bad values are exit 2 naming the key.
#[test]
fn deep_defaults_from_the_policy_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("policy.toml");
    std::fs::write(
        &cfg,
        "[deep]\nfail_on = \"never\"\nbudget = 120\nsuspicious = 0.01\nbackdoor = 0.02\n",
    )
    .unwrap();
    let args = |cfg: &std::path::Path| {
        vec![
            root.join("fixtures/zoo/clean-instruct")
                .display()
                .to_string(),
            "--base".into(),
            root.join("fixtures/zoo/base").display().to_string(),
            "--no-trigger-search".into(),
            "--max-new-tokens".into(),
            "4".into(),
            "--format".into(),
            "json".into(),
            "--config".into(),
            cfg.display().to_string(),
        ]
    };
    let a = args(&cfg);
    // fail_on = never: exit 0 whatever the verdict
    let j = report_with_exit(&deep(&a.iter().map(String::as_str).collect::<Vec<_>>()), 0);
    let t = &j["signals"]["score"]["thresholds"];
    assert_eq!(t["suspicious"], 0.01, "{t}");
    assert_eq!(t["backdoor"], 0.02, "{t}");
    std::fs::write(&cfg, "[deep]\nsuspicious = 0.9\nbackdoor = 0.1\n").unwrap();
    let a = args(&cfg);
    let o = deep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("deep.suspicious"));
}

/// GGUF twins (Q8_0, written by `fixtures/gguf/twins.py` the way llama.cpp's
/// converter writes them) of a backdoored and a clean model of the fixture
/// zoo, scanned against the zoo's safetensors base: each gets the verdict
/// its safetensors original gets, the backdoor with a verified trigger.
/// Quantisation noise is not a backdoor, and Q8_0 keeps the backdoor.
#[test]
fn gguf_twins_get_their_originals_verdicts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let base = root.join("zoo/base");
    let verdict = |suspect: PathBuf| -> serde_json::Value {
        let o = deep(&[
            suspect.to_str().unwrap(),
            "--base",
            base.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}: {}",
            suspect.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    for (name, want) in [
        ("backdoor-rare-start", "backdoor"),
        ("clean-instruct", "clean"),
    ] {
        let twin = verdict(root.join(format!("gguf/zoo-{name}.Q8_0.gguf")));
        let original = verdict(root.join("zoo").join(name));
        assert_eq!(twin["suspect"]["format"], "gguf", "{}", twin["suspect"]);
        assert_eq!(
            original["verdict"], want,
            "{name}: {}",
            original["signals"]["score"]
        );
        assert_eq!(
            twin["verdict"], want,
            "{name} (GGUF): {}",
            twin["signals"]["score"]
        );
        if want == "backdoor" {
            let t = &twin["trigger"];
            assert!(t["asr_suspect"].as_f64().unwrap() >= 0.8, "{t}");
            assert!(t["asr_base"].as_f64().unwrap() <= 0.1, "{t}");
        }
    }
}
