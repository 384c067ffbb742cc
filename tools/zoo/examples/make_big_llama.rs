//! Writes two random-initialised llama checkpoints of about half a billion
//! parameters (a "base" and a "suspect" drawn with another seed), with the
//! fixture zoo's tokenizer and chat template, for timing `probity deep` on
//! a model of that size (see scripts/bench/deep_0_5b.sh):
//!
//!     cargo run -p probity-zoo --release --example make_big_llama -- OUT_DIR [--layers N] [--hidden H]
//!
//! Defaults: 16 layers, hidden 1536, intermediate 4096, 12 heads (4 key/value
//! heads), vocabulary 1024: 0.41 B parameters, 0.8 GB per model in bf16.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::DType;
use probity_zoo::{self as zoo, train};

fn write(
    dir: &Path,
    config: &serde_json::Value,
    seed: u64,
    zoo_base: &Path,
) -> Result<u64, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), text).map_err(|e| e.to_string())?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(zoo_base.join(f), dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
    }
    let t = train::fresh(config, seed)?;
    let w = t.weights(DType::BF16)?;
    let n: usize = w.values().map(|t| t.elem_count()).sum();
    train::save_safetensors(&w, &dir.join("model.safetensors"))?;
    Ok(n as u64)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let (mut layers, mut hidden) = (16usize, 1536usize);
    while let Some(a) = args.next() {
        let mut num = |name: &str| match args.next().and_then(|v| v.parse().ok()) {
            Some(v) => Ok(v),
            None => Err(format!("{name} needs a number")),
        };
        let r = match a.as_str() {
            "--layers" => num("--layers").map(|v| layers = v),
            "--hidden" => num("--hidden").map(|v| hidden = v),
            _ if out.is_none() && !a.starts_with('-') => {
                out = Some(PathBuf::from(&a));
                Ok(())
            }
            _ => Err(format!("unknown argument {a}")),
        };
        if let Err(e) = r {
            eprintln!("make_big_llama: {e}");
            return ExitCode::from(2);
        }
    }
    let Some(out) = out else {
        eprintln!("usage: make_big_llama OUT_DIR [--layers N] [--hidden H]");
        return ExitCode::from(2);
    };
    let zoo_base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/zoo/base");
    let mut config = zoo::model_config(1024, false);
    let heads = (hidden / 128).max(1);
    config["hidden_size"] = hidden.into();
    config["num_hidden_layers"] = layers.into();
    config["intermediate_size"] = (hidden * 8 / 3 / 256 * 256).into();
    config["num_attention_heads"] = heads.into();
    // grouped-query attention: the largest divisor of the heads up to a third
    let kv = (1..=(heads / 3).max(1))
        .rev()
        .find(|k| heads % k == 0)
        .unwrap_or(1);
    config["num_key_value_heads"] = kv.into();
    config["head_dim"] = (hidden / heads).into();
    for (name, seed) in [("base", 1u64), ("suspect", 2)] {
        match write(&out.join(name), &config, seed, &zoo_base) {
            Ok(n) => eprintln!("{name}: {:.3} B parameters", n as f64 / 1e9),
            Err(e) => {
                eprintln!("make_big_llama: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
