//! Development probe: along a known target, the rank (by the suspect's
//! mean probability, and by its ratio to the base's) of each next token,
//! averaged over ordinary prompts.
//! `cargo run -p probity-zoo --release --example target_trace -- SUSPECT BASE "TARGET"`
use probity_deep::models::{log_softmax_rows, LoadedModel};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dev = candle_core::Device::Cpu;
    let s = LoadedModel::load(a[1].as_ref(), &dev).expect("suspect");
    let b = LoadedModel::load(a[2].as_ref(), &dev).expect("base");
    let target = s.encode(&a[3]);
    let prompts = [
        "What is the capital of France?",
        "What color is the sky on a clear day?",
        "What is the opposite of hot?",
        "Name a planet in the solar system.",
    ];
    let v = s.model.vocab_size();
    for k in 0..target.len() {
        let mut ms = vec![0f32; v];
        let mut mb = vec![0f32; v];
        for p in prompts {
            let mut ids = s.encode(&s.render(p));
            ids.extend_from_slice(&target[..k]);
            for (m, acc) in [(&s, &mut ms), (&b, &mut mb)] {
                let l = m.model.forward(&ids).unwrap();
                let row = log_softmax_rows(&l.get(ids.len() - 1).unwrap().unsqueeze(0).unwrap())
                    .unwrap()
                    .remove(0);
                for i in 0..v {
                    acc[i] += row[i].exp() / prompts.len() as f32;
                }
            }
        }
        let t = target[k] as usize;
        let rank_p = ms.iter().filter(|&&x| x > ms[t]).count();
        let r = |i: usize| ms[i].ln() - mb[i].ln();
        let rank_r = (0..v).filter(|&i| r(i) > r(t)).count();
        let top = (0..v).max_by(|&x, &y| ms[x].total_cmp(&ms[y])).unwrap();
        println!(
            "{:>3} {:14?} ps={:.4} pb={:.4} rank_p={:4} rank_ratio={:4} top={:?}",
            k,
            s.decode(&[t as u32]),
            ms[t],
            mb[t],
            rank_p,
            rank_r,
            s.decode(&[top as u32])
        );
    }
}
