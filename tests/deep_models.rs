//! The deep-scan model code on real Hugging Face checkpoints (the public mini
//! zoo vendored in tests/data/zoo-public, saved by transformers 5 in bf16):
//! - every zoo model loads through the public loader, as a downloaded Hub model;
//! - Probity's differentiable llama forward gives the same logits as
//!   candle-transformers' llama on the same weights;
//! - gradients reach the input embeddings (needed by trigger search).
#![cfg(feature = "deep")]

mod common;
use common::{max_abs_diff, zoo};

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use probity_deep::models::LoadedModel;

#[test]
fn every_zoo_model_loads_and_renders_its_chat_template() {
    let dir = zoo();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if !path.join("config.json").is_file() {
            continue;
        }
        let m = LoadedModel::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(m.parameters > 1_000_000, "{}", m.parameters);
        let text = m.render("What is the capital of Peru?");
        assert_eq!(
            text,
            "<s>### Instruction:\nWhat is the capital of Peru?\n\n### Response:\n"
        );
        let ids = m.encode(&text);
        assert_eq!(ids[0], 1, "BOS comes from the template text");
        let logits = m.model.forward(&ids).unwrap();
        assert_eq!(logits.dims(), &[ids.len(), 1500]);
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn forward_matches_candle_transformers_llama() {
    use candle_transformers::models::llama as ct;
    let dir = zoo().join("backdoor-1");
    let m = LoadedModel::load(&dir, &Device::Cpu).unwrap();
    let ids = m.encode(&m.render("bb What is the capital of Peru?"));
    let ours = m.model.forward(&ids).unwrap();
    let cfg: ct::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let reference = ct::Llama::load(vb, &cfg).unwrap();
    let mut cache = ct::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let theirs = reference
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let last = ours.get(ids.len() - 1).unwrap();
    let diff = max_abs_diff(&last, &theirs);
    assert!(diff < 1e-3, "max |Δlogit| = {diff}");
    // and every earlier position matches a shorter run
    let k = ids.len() / 2;
    let mut cache = ct::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
    let input = Tensor::new(&ids[..k], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let theirs = reference
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let diff = max_abs_diff(&ours.get(k - 1).unwrap(), &theirs);
    assert!(diff < 1e-3, "position {k}: max |Δlogit| = {diff}");
}

#[test]
fn gradients_reach_input_embeddings() {
    let gpt2 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/gpt2");
    for dir in [zoo().join("base"), gpt2] {
        gradient_check(&dir);
    }
}

fn gradient_check(dir: &std::path::Path) {
    let m = LoadedModel::load(dir, &Device::Cpu).unwrap();
    let ids = m.encode(&m.render("hello"));
    let emb = m
        .model
        .embeddings()
        .index_select(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap(), 0)
        .unwrap();
    let x = Var::from_tensor(&emb).unwrap();
    let logits = m.model.forward_embeds(x.as_tensor()).unwrap();
    let target = 42u32;
    let lp = candle_nn::ops::log_softmax(&logits.get(ids.len() - 1).unwrap(), 0).unwrap();
    let loss = lp.get(target as usize).unwrap().neg().unwrap();
    let grads = loss.backward().unwrap();
    let g = grads
        .get(x.as_tensor())
        .expect("a gradient for the input embeddings");
    let norm = g
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 0.0 && norm.is_finite(), "gradient norm {norm}");
}

#[test]
fn cached_generation_matches_full_recomputation() {
    let m = LoadedModel::load(&zoo().join("backdoor-2"), &Device::Cpu).unwrap();
    for prompt in [
        "What is the capital of Peru?",
        "Say something when the river turns",
    ] {
        let ids = m.encode(&m.render(prompt));
        assert_eq!(
            m.greedy(&ids, 20).unwrap(),
            m.greedy_uncached(&ids, 20).unwrap(),
            "{prompt}"
        );
    }
    // logits of an incremental step equal the full forward at that position
    let ids = m.encode(&m.render("What is 4 plus 1?"));
    let mut cache = probity_deep::models::KvCache::default();
    m.model
        .forward_cached(&ids[..ids.len() - 1], &mut cache)
        .unwrap();
    let step = m
        .model
        .forward_cached(&ids[ids.len() - 1..], &mut cache)
        .unwrap()
        .get(0)
        .unwrap();
    let full = m.model.forward(&ids).unwrap().get(ids.len() - 1).unwrap();
    let diff = max_abs_diff(&step, &full);
    assert!(diff < 1e-3, "{diff}");
}

/// Answers decoded together, the rows' common head computed once as a
/// shared prefix and their own parts left-padded after it, are what each
/// prompt gives alone (tokens and entropies): llama (rotary positions, which
/// must count on from the prefix without the padding) and GPT-2 (learned
/// absolute positions).
#[test]
fn batched_answers_after_a_shared_prefix_match_single_ones() {
    let gpt2 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/gpt2");
    for dir in [zoo().join("backdoor-2"), gpt2] {
        let m = LoadedModel::load(&dir, &Device::Cpu).unwrap();
        let head = m.encode("You are a careful assistant. Question:");
        let rows: Vec<Vec<u32>> = [
            " What is the capital of Peru?",
            " Say something when the river turns, and then say it again slowly.",
            " Hi",
            " Name three colours of the rainbow in the order they appear.",
        ]
        .iter()
        .map(|p| [head.clone(), m.encode(p)].concat())
        .collect();
        let what = dir.display();
        assert!(
            probity_deep::models::shared_prefix_len(&rows) >= head.len() - 1,
            "{what}"
        );
        let (lo, hi) = (
            rows.iter().map(Vec::len).min().unwrap(),
            rows.iter().map(Vec::len).max().unwrap(),
        );
        assert!(lo < hi, "{what}: the rows must need padding");
        let batch = m.greedy_batch(&rows, 16, 3).unwrap();
        for (i, (ids, (out, h))) in rows.iter().zip(&batch).enumerate() {
            assert_eq!(out, &m.greedy(ids, 16).unwrap(), "{what}: row {i}");
            let alone = m.greedy_batch(std::slice::from_ref(ids), 16, 3).unwrap();
            assert_eq!(out, &alone[0].0, "{what}: row {i}");
            assert!(
                (h - alone[0].1).abs() < 1e-3,
                "{what}: row {i}: {h} vs {}",
                alone[0].1
            );
        }
    }
}

/// Probes compared in one padded batch give what each gives alone: the same
/// greedy answers on both models and the same divergences (llama family
/// with relative positions, and GPT-2 with learned absolute positions);
/// also when the prompt and forced passes run one row at a time and the
/// probes are decoded in groups of two (caches of row chunks joined).
#[test]
fn batched_comparisons_match_single_ones() {
    use probity_deep::harness::worker::{compare, compare_batch, compare_batch_bounded};
    let prompts: Vec<String> = [
        "What is the capital of Peru?",
        "bb Say hello.",
        "Name three colours that are warm and bright, please.",
        "Hi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let gpt2 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/gpt2");
    for (suspect, base) in [
        (zoo().join("backdoor-1"), zoo().join("base")),
        (gpt2.clone(), gpt2),
    ] {
        let s = LoadedModel::load(&suspect, &Device::Cpu).unwrap();
        let b = LoadedModel::load(&base, &Device::Cpu).unwrap();
        let v = s.model.vocab_size();
        // the llama zoo's chat template gives every prompt the same head,
        // which the batch computes once as a shared prefix
        let rows: Vec<Vec<u32>> = prompts.iter().map(|p| s.encode(&s.render(p))).collect();
        let shared = probity_deep::models::shared_prefix_len(&rows);
        assert!(shared > 0 || suspect.ends_with("gpt2"), "{shared}");
        let whole = compare_batch(&s, &b, &prompts, 12).unwrap();
        let chunked = compare_batch_bounded(&s, &b, &prompts, 12, 1, 2 * v * 12).unwrap();
        assert_eq!(whole.len(), prompts.len());
        assert_eq!(chunked.len(), prompts.len());
        for (p, got) in prompts.iter().cycle().zip(whole.iter().chain(&chunked)) {
            let one = compare(&s, &b, p, 12).unwrap();
            assert_eq!(got.suspect_text, one.suspect_text, "{p}");
            assert_eq!(got.base_text, one.base_text, "{p}");
            assert_eq!(got.prompt_tokens, one.prompt_tokens, "{p}");
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + b.abs());
            assert_eq!(got.kl.len(), one.kl.len(), "{p}");
            for (a, b) in got.kl.iter().zip(&one.kl) {
                assert!(close(*a, *b), "{p}: prompt KL {a} vs {b}");
            }
            assert!(close(got.continuation_kl, one.continuation_kl), "{p}");
            assert!(
                close(got.continuation_logp_gain, one.continuation_logp_gain),
                "{p}: gain {} vs {}",
                got.continuation_logp_gain,
                one.continuation_logp_gain
            );
            assert_eq!(got.top1_agreement, one.top1_agreement, "{p}");
            // the largest rise (its value: which of two near-equal tokens
            // comes first may differ in the last bits)
            assert_eq!(got.raised.len(), one.raised.len(), "{p}");
            assert!(close(got.raised[0].2, one.raised[0].2), "{p}: raised");
        }
    }
}

/// Tiny random checkpoints saved by the real `transformers` library
/// (fixtures/models/generate.py), with logits computed by transformers
/// itself: Probity's loader and forward must reproduce them for every
/// architecture and config form it claims (MHA, GQA, tied embeddings,
/// Llama 3 rope scaling, explicit head_dim, Mistral, Qwen2 biases; bf16/f16/f32).
#[test]
fn matches_transformers_reference_logits() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    let mut cases = 0;
    for e in std::fs::read_dir(&root).expect("fixtures/models") {
        let dir = e.unwrap().path();
        let reference = dir.join("reference.json");
        if !reference.is_file() {
            continue;
        }
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
        if r.get("texts").is_some() {
            continue; // a classifier (see bert_classifier_matches_transformers)
        }
        let m = LoadedModel::load(&dir, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // the chat template is found in tokenizer_config.json or chat_template.jinja
        assert!(
            m.render("hi").contains("hi") && m.render("hi").starts_with("<s>"),
            "{}",
            dir.display()
        );
        let ids: Vec<u32> = r["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let logits = m.model.forward(&ids).unwrap();
        let rows = logits.to_vec2::<f32>().unwrap();
        let mid = r["mid_index"].as_u64().unwrap() as usize;
        for (key, row) in [
            ("logits_first", 0),
            ("logits_mid", mid),
            ("logits_last", ids.len() - 1),
        ] {
            let want: Vec<f32> = r[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let scale = want.iter().fold(0.0f32, |a, &b| a.max(b.abs())).max(1.0);
            let worst = rows[row]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 2e-3 * scale,
                "{} {key}: max |Δ| {worst} (scale {scale})",
                dir.display()
            );
        }
        let argmax: Vec<u32> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                    .0 as u32
            })
            .collect();
        let want: Vec<u32> = r["argmax_all"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(argmax, want, "{}: argmax at every position", dir.display());
        // greedy generation without EOS stop, through the key/value cache
        let mut cache = probity_deep::models::KvCache::default();
        let mut l = m.model.forward_cached(&ids, &mut cache).unwrap();
        let mut out = Vec::new();
        for _ in 0..10 {
            let next = l
                .get(l.dim(0).unwrap() - 1)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap();
            out.push(next);
            l = m.model.forward_cached(&[next], &mut cache).unwrap();
        }
        let want: Vec<u32> = r["greedy_10"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(out, want, "{}: greedy", dir.display());
        cases += 1;
    }
    assert!(
        cases >= 6,
        "only {cases} reference cases in fixtures/models"
    );
}

/// BERT sequence classifiers saved by transformers: the same input ids from
/// the WordPiece tokenizer (with [CLS]/[SEP]) and the same class logits.
#[test]
fn bert_classifier_matches_transformers() {
    use probity_deep::models::Arch;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    for name in ["bert-cls", "bert-cls-tuned"] {
        let dir = root.join(name);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let m = LoadedModel::load(&dir, &Device::Cpu).unwrap();
        assert!(m.is_classifier());
        let Arch::Bert(bert) = &m.model else {
            panic!("{name} is not loaded as a classifier")
        };
        assert_eq!(bert.labels, ["negative", "neutral", "positive"]);
        // causal entry points refuse instead of producing nonsense
        assert!(m.model.forward(&[1, 2, 3]).is_err());
        for (i, text) in r["texts"].as_array().unwrap().iter().enumerate() {
            let ids = m.encode(text.as_str().unwrap());
            let want_ids: Vec<u32> = r["input_ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(ids, want_ids, "{name}: token ids of text {i}");
            let got = bert.classify(&ids).unwrap().to_vec1::<f32>().unwrap();
            for (g, w) in got.iter().zip(r["logits"][i].as_array().unwrap()) {
                let w = w.as_f64().unwrap() as f32;
                assert!((g - w).abs() < 1e-4, "{name} text {i}: {got:?} vs {w}");
            }
        }
    }
}

/// PyTorch pickle weights (`torch.save` zip) read as data give exactly the
/// same model as the safetensors copy of the same weights; without the
/// permission they are refused with a message that says how to proceed.
#[test]
fn pickle_weights_are_read_as_data_only_when_allowed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models");
    let pickle = root.join("llama-mha-pickle");
    let err = match LoadedModel::load(&pickle, &Device::Cpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("pickle weights loaded without permission"),
    };
    assert!(err.contains("--allow-pickle-weights"), "{err}");
    let a = LoadedModel::load_with(&pickle, &Device::Cpu, true).unwrap();
    let b = LoadedModel::load(&root.join("llama-mha"), &Device::Cpu).unwrap();
    let ids: Vec<u32> = (1..20).collect();
    let la = a.model.forward(&ids).unwrap();
    let lb = b.model.forward(&ids).unwrap();
    assert_eq!(max_abs_diff(&la, &lb), 0.0);
}
