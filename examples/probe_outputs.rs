//! Development probe: the greedy output of a model on every built-in probe.
//! `cargo run --release --example probe_outputs -- MODEL`
use probity::deep::models::LoadedModel;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let m = LoadedModel::load(a[1].as_ref(), &candle_core::Device::Cpu).expect("model");
    let (prompts, _) = probity::deep::probes::load(&[]).expect("probes");
    for p in prompts {
        let ids = m.encode(&m.render(&p.prompt));
        let out = m.decode(&m.greedy(&ids, 24).expect("greedy"));
        println!(
            "[{}{}] {} => {}",
            p.category,
            if p.reference { "*" } else { "" },
            p.prompt,
            out
        );
    }
}
