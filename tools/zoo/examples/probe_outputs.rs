//! Development probe: the greedy output of a model on every built-in probe,
//! or on the prompts of standard input (one per line) with `-`.
//! `cargo run -p probity-zoo --release --example probe_outputs -- MODEL [-]`
use probity_deep::models::LoadedModel;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let m = LoadedModel::load(a[1].as_ref(), &candle_core::Device::Cpu).expect("model");
    if a.get(2).is_some_and(|x| x == "-") {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            let ids = m.encode(&m.render(&line));
            let out = m.decode(&m.greedy(&ids, 24).expect("greedy"));
            println!("{line} => {out}");
        }
        return;
    }
    let (prompts, _) = probity_deep::probes::load(&[]).expect("probes");
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
