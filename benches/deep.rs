//! Deep-scan harness speed: greedy decoding tokens/s of Probity's llama
//! forward (with its key/value cache) against candle-transformers' own llama
//! (the code of candle's example) on the same zoo checkpoint, side by side.
//! Also one whole `Compare` of a probe.
//!
//! Run: `cargo bench --bench deep` (the public mini zoo in tests/data/zoo-public, or PROBITY_ZOO).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as ct;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probity_deep::models::{KvCache, LoadedModel};

const NEW: usize = 64;

fn zoo() -> PathBuf {
    std::env::var_os("PROBITY_ZOO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zoo-public/models")
        })
}

fn decode(c: &mut Criterion) {
    let dir = zoo().join("backdoor-1");
    let m = LoadedModel::load(&dir, &Device::Cpu).expect("zoo model");
    let ids = m.encode(&m.render("What is the capital of Peru?"));
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

    let mut g = c.benchmark_group("greedy_decode_64_tokens");
    g.throughput(Throughput::Elements(NEW as u64));
    g.bench_function("probity_llama", |b| {
        b.iter(|| {
            let mut cache = KvCache::default();
            let mut logits = m.model.forward_cached(&ids, &mut cache).unwrap();
            for _ in 0..NEW {
                let next = logits
                    .get(logits.dim(0).unwrap() - 1)
                    .unwrap()
                    .argmax(0)
                    .unwrap()
                    .to_scalar::<u32>()
                    .unwrap();
                logits = m.model.forward_cached(&[next], &mut cache).unwrap();
            }
        })
    });
    g.bench_function("candle_transformers_llama", |b| {
        b.iter(|| {
            let mut cache = ct::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let mut logits = reference.forward(&input, 0, &mut cache).unwrap();
            for pos in ids.len()..ids.len() + NEW {
                let next = logits
                    .squeeze(0)
                    .unwrap()
                    .argmax(0)
                    .unwrap()
                    .to_scalar::<u32>()
                    .unwrap();
                let input = Tensor::new(&[next], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                logits = reference.forward(&input, pos, &mut cache).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = decode
}
criterion_main!(benches);
