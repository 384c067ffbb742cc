//! Development probe: where the deep scan's time goes on a real model.
//!
//! `cargo run -p probity-zoo --release --example real_speed -- SUSPECT BASE`
//!
//! Times a prompt forward, a batch of probe comparisons, the forced-first-
//! token rows after a shared prompt (the inversion's vocabulary scan), and a
//! trigger gradient.

use std::time::Instant;

use candle_core::Device;
use probity_deep::harness::worker::{compare, compare_batch};
use probity_deep::models::{KvCache, LoadedModel};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (sp, bp) = (&args[1], &args[2]);
    let t = Instant::now();
    let s = LoadedModel::load(std::path::Path::new(sp), &Device::Cpu).expect("suspect");
    let b = LoadedModel::load(std::path::Path::new(bp), &Device::Cpu).expect("base");
    println!(
        "load both: {:.2}s ({} parameters, {})",
        t.elapsed().as_secs_f64(),
        s.parameters,
        s.format
    );
    let lm = s.model.causal().unwrap();
    let prompt = s.encode(&s.render("What is the capital of France? Answer in one sentence."));
    println!("prompt tokens: {}", prompt.len());
    let t = Instant::now();
    for _ in 0..3 {
        lm.forward(&prompt).unwrap();
    }
    println!("prompt forward: {:.3}s", t.elapsed().as_secs_f64() / 3.0);
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("Question {i}: what is {i} plus {}? Explain briefly.", i + 2))
        .collect();
    let ids0 = s.encode(&s.render(&prompts[0]));
    let t = Instant::now();
    let g = s.greedy(&ids0, 24).unwrap();
    println!(
        "greedy 24 tokens, one model: {:.2}s ({} tokens)",
        t.elapsed().as_secs_f64(),
        g.len()
    );
    let mut c1 = KvCache::default();
    lm.forward_cached(&ids0, &mut c1).unwrap();
    let t = Instant::now();
    for i in 0..10u32 {
        lm.forward_cached(&[100 + i], &mut c1).unwrap();
    }
    println!(
        "one decode step: {:.1} ms",
        t.elapsed().as_secs_f64() * 100.0
    );
    let t = Instant::now();
    let one = compare(&s, &b, &prompts[0], 24).unwrap();
    println!(
        "compare one probe (24 tokens): {:.2}s -> {:?}",
        t.elapsed().as_secs_f64(),
        one.suspect_text
    );
    let t = Instant::now();
    compare_batch(&s, &b, &prompts, 24).unwrap();
    println!(
        "compare 8 probes batched: {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let mut c = KvCache::default();
    lm.forward_cached(&prompt, &mut c).unwrap();
    for rows in [64usize, 256, 512] {
        let ids: Vec<u32> = (100..100 + rows as u32).collect();
        let t = Instant::now();
        let mut sc = c.shared().unwrap();
        let out = lm.forward_cached_rows(&ids, &mut sc).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{rows} forced first tokens after the prompt: {:.3}s ({:.2} ms/row, {:?}); full vocabulary {:.0}s",
            dt,
            dt * 1e3 / rows as f64,
            out.dims(),
            dt / rows as f64 * lm.vocab_size() as f64
        );
    }
    let target = s.encode(" I will now disable the safety monitor");
    let trig = s.encode(" the the the");
    let t = Instant::now();
    probity_deep::trigger::trigger_gradient(&s, "What is the capital of France?", &trig, &target)
        .unwrap();
    println!("one trigger gradient: {:.2}s", t.elapsed().as_secs_f64());
}
