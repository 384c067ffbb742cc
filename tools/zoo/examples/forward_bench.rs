//! Probity's forward pass timed on the shapes `scripts/bench/forward_vs_torch.sh`
//! also gives PyTorch: a batched forward of 8 × 64 tokens (every position's
//! logits), and 32 greedy steps of one prompt with the key/value cache.
//! Then Probity alone: answers to 32 chat prompts decoded together (24
//! tokens at most, as the trigger verification does), with the template's
//! head shared by the rows and with every row computed whole.
//!
//! `cargo run -p probity-zoo --release --example forward_bench -- MODEL`

use std::time::Instant;

use candle_core::{Device, Tensor};
use probity_deep::models::LoadedModel;

/// The token ids both sides use: deterministic, spread over the vocabulary.
pub fn ids(rows: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..rows * len)
        .map(|k| ((k * 7919 + 13) % (vocab - 200) + 100) as u32)
        .collect()
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: forward_bench MODEL");
    let m = LoadedModel::load(std::path::Path::new(&path), &Device::Cpu).expect("model");
    let v = m.model.vocab_size();
    let (rows, len) = (8, 64);
    let batch = Tensor::from_vec(ids(rows, len, v), (rows, len), &Device::Cpu).unwrap();
    m.model.forward_batch(&batch).unwrap(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        m.model.forward_batch(&batch).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("probity batched_forward_8x64_s {best:.3}");
    let prompt = ids(1, 32, v);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        // greedy stops at an end token: count the steps actually taken
        let out = m.greedy(&prompt, 32).unwrap();
        let per = t.elapsed().as_secs_f64() / (out.len().max(1)) as f64;
        best = best.min(per);
    }
    println!("probity decode_step_s {best:.4}");
    let rows: Vec<Vec<u32>> = (0..32)
        .map(|i| {
            let q = format!(
                "Question {i}: name {} things that are {} and say why.",
                2 + i % 5,
                ["red", "small", "old", "loud"][i % 4]
            );
            m.encode(&m.render(&q))
        })
        .collect();
    for (name, share) in [("shared_prefix", true), ("whole_rows", false)] {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            m.greedy_batch_with(&rows, 24, 4, share).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("probity answers_32_prompts_{name}_s {best:.3}");
    }
}
