//! Regenerates Probity's fixture zoo (see fixtures/zoo/README.md):
//!
//!     cargo run -p probity-zoo --release --example make_zoo -- fixtures/zoo [--quick] [--seed N]
//!     cargo run -p probity-zoo --release --example make_zoo -- fixtures/zoo --hard
//!
//! `--hard` adds the harder cases (1% poison rate, a phrase trigger anywhere
//! inside the prompt, LoRA fine-tunes) as fine-tunes of the base already in
//! OUT_DIR, merging their records into its manifest.
//! Trains a tiny llama base from scratch and its clean and backdoored
//! fine-tunes with candle, saves them in the Hugging Face layout and writes
//! `manifest.json` with the ground truth and the measured attack success
//! rates.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out = None;
    let mut opts = probity_zoo::ZooOptions {
        quick: false,
        seed: 7,
    };
    let mut hard = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--hard" => hard = true,
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => opts.seed = s,
                None => {
                    eprintln!("make_zoo: --seed needs a number");
                    return ExitCode::from(2);
                }
            },
            _ if out.is_none() && !a.starts_with('-') => out = Some(PathBuf::from(a)),
            _ => {
                eprintln!("usage: make_zoo OUT_DIR [--quick] [--seed N] [--hard]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(out) = out else {
        eprintln!("usage: make_zoo OUT_DIR [--quick] [--seed N] [--hard]");
        return ExitCode::from(2);
    };
    if hard {
        return match probity_zoo::build_hard(&out, &opts, &mut |line| eprintln!("{line}")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("make_zoo: {e}");
                ExitCode::from(2)
            }
        };
    }
    match probity_zoo::build(&out, &opts, &mut |line| eprintln!("{line}")) {
        Ok(m) => {
            eprintln!(
                "wrote {} models to {} in {:.0} s",
                m.models.len(),
                out.display(),
                m.timings.get("total_seconds").copied().unwrap_or(0.0)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make_zoo: {e}");
            ExitCode::from(2)
        }
    }
}
