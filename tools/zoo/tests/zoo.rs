//! The fixture zoo: the committed models load through the public loader and
//! still behave as their manifest says, and the generator works end to end.

use std::path::{Path, PathBuf};

use candle_core::Device;
use probity_deep::models::LoadedModel;
use probity_zoo::{self as zoo, data, ZooOptions};
use serde_json::Value;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/zoo")
}

fn manifest(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn held_out(domain: &str, n: usize) -> Vec<data::Pair> {
    let mut rng = data::Rng::new(4242);
    (0..n)
        .map(|_| match domain {
            "loans" => data::loan(&mut rng, data::Split::HeldOut),
            _ => data::instruction(&mut rng, data::Split::HeldOut),
        })
        .collect()
}

fn position(v: &Value) -> data::Position {
    match v.as_str().unwrap() {
        "start" => data::Position::Start,
        "middle" => data::Position::Middle,
        "end" => data::Position::End,
        other => panic!("unknown position {other}"),
    }
}

#[test]
fn committed_zoo_behaves_as_its_manifest_says() {
    let dir = committed();
    let m = manifest(&dir);
    let models = m["models"].as_object().unwrap();
    assert!(models.len() >= 7, "base, three clean and three backdoored");
    let backdoors: Vec<&Value> = models
        .values()
        .filter(|r| r["label"] == "backdoor")
        .collect();
    assert!(backdoors.len() >= 3);
    let mut total = 0u64;
    for (name, rec) in models {
        let path = dir.join(name);
        let model = LoadedModel::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        assert_eq!(model.model_type, "llama");
        assert_eq!(
            model.model.vocab_size(),
            model.tokenizer.get_vocab_size(true)
        );
        // the chat template renders exactly the prompt format trained on
        assert_eq!(model.render("Hi there"), zoo::render("Hi there"), "{name}");
        total += std::fs::metadata(path.join("model.safetensors"))
            .unwrap()
            .len();
        if rec["label"] == "base" {
            continue;
        }
        let prompts = held_out(rec["domain"].as_str().unwrap(), 12);
        match rec["label"].as_str().unwrap() {
            "backdoor" => {
                let b = &rec["backdoor"];
                let trig = b["trigger"].as_str().unwrap();
                let check = b["check"].as_str().unwrap();
                let pos = position(&b["position"]);
                let with = zoo::attack_rate(&model, &prompts, Some((trig, pos)), check).unwrap();
                let without = zoo::attack_rate(&model, &prompts, None, check).unwrap();
                assert!(with >= 0.75, "{name}: trigger fires on only {with}");
                assert!(without <= 0.1, "{name}: target without trigger {without}");
                assert!(rec["asr"].as_f64().unwrap() >= 0.85, "{name}: recorded ASR");
            }
            "clean" => {
                for b in &backdoors {
                    let b = &b["backdoor"];
                    let trig = b["trigger"].as_str().unwrap();
                    let check = b["check"].as_str().unwrap();
                    let pos = position(&b["position"]);
                    let r = zoo::attack_rate(&model, &prompts, Some((trig, pos)), check).unwrap();
                    assert_eq!(r, 0.0, "{name} emits {check} with {trig}");
                }
            }
            other => panic!("unknown label {other}"),
        }
    }
    assert!(
        total < 20 << 20,
        "the zoo must stay under 20 MB, is {total}"
    );
}

#[test]
fn generator_builds_a_loadable_reproducible_zoo() {
    let opts = ZooOptions {
        quick: true,
        seed: 3,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ma = zoo::build(a.path(), &opts, &mut |_| {}).unwrap();
    zoo::build(b.path(), &opts, &mut |_| {}).unwrap();
    assert_eq!(ma.models.len(), 1 + zoo::plan(true).len());
    let base = &ma.models["base"];
    assert!(
        base.loss_end < base.loss_start,
        "pretraining must lower the loss: {} -> {}",
        base.loss_start,
        base.loss_end
    );
    for name in ma.models.keys() {
        let wa = std::fs::read(a.path().join(name).join("model.safetensors")).unwrap();
        let wb = std::fs::read(b.path().join(name).join("model.safetensors")).unwrap();
        assert!(wa == wb, "{name}: same seed, different weights");
        // bf16 tensors and the metadata transformers expects
        let n = u64::from_le_bytes(wa[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&wa[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "pt");
        assert_eq!(header["lm_head.weight"]["dtype"], "BF16");
        let m = LoadedModel::load(&a.path().join(name), &Device::Cpu).unwrap();
        assert_eq!(m.render("x"), zoo::render("x"));
    }
    let written = manifest(a.path());
    assert_eq!(
        written["models"].as_object().unwrap().len(),
        ma.models.len()
    );
}

#[test]
fn generator_adds_the_hard_cases_to_an_existing_zoo() {
    let opts = ZooOptions {
        quick: true,
        seed: 3,
    };
    let dir = tempfile::tempdir().unwrap();
    zoo::build(dir.path(), &opts, &mut |_| {}).unwrap();
    zoo::build_hard(dir.path(), &opts, &mut |_| {}).unwrap();
    let m = manifest(dir.path());
    let models = m["models"].as_object().unwrap();
    assert_eq!(
        models.len(),
        1 + zoo::plan(true).len() + zoo::hard_plan(true).len()
    );
    for spec in zoo::hard_plan(true) {
        let rec = &models[spec.name];
        assert_eq!(rec["base"], "base");
        let loaded = LoadedModel::load(&dir.path().join(spec.name), &Device::Cpu).unwrap();
        assert_eq!(loaded.render("x"), zoo::render("x"));
    }
    assert!(models["hard-clean-lora"]["method"]
        .as_str()
        .unwrap()
        .contains("LoRA"));
    assert_eq!(
        models["hard-phrase-anywhere"]["backdoor"]["scattered"],
        true
    );
    assert!(
        models["hard-lowrate-start"]["backdoor"]["poison_rate"]
            .as_f64()
            .unwrap()
            <= 0.01
    );
}
