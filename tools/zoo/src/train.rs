//! Training for the fixture zoo: a byte-level BPE tokenizer from the
//! tokenizers crate's trainer, and causal-LM training of the harness's own
//! differentiable llama forward with candle-nn's AdamW.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use probity_deep::models::llama::{HfConfig, Llama};
use probity_deep::models::CausalLm;

use super::data::Rng;

pub type Result<T> = std::result::Result<T, String>;

fn cerr(e: candle_core::Error) -> String {
    e.to_string()
}

/// The special tokens, in id order.
pub const SPECIALS: [&str; 5] = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"];

/// Trains a byte-level BPE tokenizer on `texts` with the zoo's special tokens
/// at ids 0–4.
pub fn train_tokenizer(texts: &[String], vocab: usize) -> Result<Tokenizer> {
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = tokenizers::models::TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, texts.iter())
        .map_err(|e| format!("tokenizer training: {e}"))?;
    for (i, s) in SPECIALS.iter().enumerate() {
        if tok.token_to_id(s) != Some(i as u32) {
            return Err(format!("special token {s} did not get id {i}"));
        }
    }
    Ok(tok)
}

pub fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .unwrap_or_default()
}

/// One training sequence: token ids and, per id, whether predicting it is
/// part of the loss.
#[derive(Clone)]
pub struct Example {
    pub ids: Vec<u32>,
    pub learn: Vec<bool>,
}

impl Example {
    /// Plain text: every token after the first is learned.
    pub fn text(ids: Vec<u32>) -> Self {
        let learn = vec![true; ids.len()];
        Example { ids, learn }
    }
    /// A prompt (not learned) followed by its response (learned).
    pub fn chat(prompt: Vec<u32>, response: Vec<u32>) -> Self {
        let mut learn = vec![false; prompt.len()];
        learn.extend(std::iter::repeat_n(true, response.len()));
        let mut ids = prompt;
        ids.extend(response);
        Example { ids, learn }
    }
}

/// A model being trained, with its variables.
pub struct Trainee {
    pub varmap: VarMap,
    pub model: Llama,
}

/// A fresh, randomly initialised model for `config` (the `config.json`
/// value the zoo writes).
pub fn fresh(config: &serde_json::Value, seed: u64) -> Result<Trainee> {
    let dev = Device::Cpu;
    let cfg: HfConfig = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
    let std = config["initializer_range"].as_f64().unwrap_or(0.02);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Llama::load(vb, cfg).map_err(cerr)?;
    // candle cannot seed its CPU generator: draw the initial weights from
    // our own seeded generator (normal(0, initializer_range), norms at one),
    // in name order so that the result depends on the seed alone
    {
        let data = varmap.data().lock().map_err(|e| e.to_string())?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut rng = Rng::new(seed);
        for name in names {
            let var = &data[name];
            let shape = var.shape().clone();
            let init = if shape.rank() == 1 {
                Tensor::ones(shape, DType::F32, &dev)
            } else {
                let v: Vec<f32> = (0..shape.elem_count())
                    .map(|_| (rng.normal() * std) as f32)
                    .collect();
                Tensor::from_vec(v, shape, &dev)
            };
            var.set(&init.map_err(cerr)?).map_err(cerr)?;
        }
    }
    Ok(Trainee { varmap, model })
}

/// A model initialised from `weights` (a fine-tune starting point).
pub fn from_weights(
    config: &serde_json::Value,
    weights: &HashMap<String, Tensor>,
    seed: u64,
) -> Result<Trainee> {
    let t = fresh(config, seed)?;
    {
        let data = t.varmap.data().lock().map_err(|e| e.to_string())?;
        for (name, var) in data.iter() {
            let w = weights
                .get(name)
                .ok_or_else(|| format!("no weight {name} to start from"))?;
            var.set(&w.to_dtype(DType::F32).map_err(cerr)?)
                .map_err(cerr)?;
        }
    }
    Ok(t)
}

impl Trainee {
    /// The current weights rounded to `dtype` (what a checkpoint stores).
    pub fn weights(&self, dtype: DType) -> Result<HashMap<String, Tensor>> {
        let data = self.varmap.data().lock().map_err(|e| e.to_string())?;
        data.iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(dtype).map_err(cerr)?)))
            .collect()
    }
}

/// Options of one training run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunOptions {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
}

/// Pads a batch on the right; returns (inputs, targets, mask, learned count).
fn batch_tensors(batch: &[&Example], dev: &Device) -> Result<(Tensor, Tensor, Tensor, f64)> {
    let t = batch.iter().map(|e| e.ids.len()).max().unwrap_or(2) - 1;
    let (mut inp, mut tgt, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0.0;
    for e in batch {
        for i in 0..t {
            inp.push(*e.ids.get(i).unwrap_or(&0));
            tgt.push(*e.ids.get(i + 1).unwrap_or(&0));
            let m = e.learn.get(i + 1).copied().unwrap_or(false);
            mask.push(if m { 1f32 } else { 0.0 });
            n += m as u8 as f64;
        }
    }
    let b = batch.len();
    let mk = |v: Vec<u32>| Tensor::from_vec(v, (b, t), dev).map_err(cerr);
    Ok((
        mk(inp)?,
        mk(tgt)?,
        Tensor::from_vec(mask, (b, t), dev).map_err(cerr)?,
        n,
    ))
}

/// Mean cross-entropy of the learned positions of a batch.
pub fn batch_loss(model: &Llama, batch: &[&Example]) -> Result<Tensor> {
    let (inp, tgt, mask, n) = batch_tensors(batch, model.device())?;
    let logits = model.forward_batch(&inp).map_err(cerr)?;
    let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).map_err(cerr)?;
    let picked = lsm
        .gather(&tgt.unsqueeze(2).map_err(cerr)?, 2)
        .and_then(|x| x.squeeze(2))
        .map_err(cerr)?;
    let total = (picked * mask).and_then(|x| x.sum_all()).map_err(cerr)?;
    (total.neg().map_err(cerr)? / n.max(1.0)).map_err(cerr)
}

/// Trains on examples drawn by `draw` (called once per example); returns the
/// loss of the first and last tenth of the run.
pub fn train(
    t: &Trainee,
    opts: &RunOptions,
    rng: &mut Rng,
    draw: impl FnMut(&mut Rng) -> Example,
    log: &mut dyn FnMut(usize, f32),
) -> Result<(f32, f32)> {
    train_vars(t.varmap.all_vars(), opts, rng, draw, log, &mut |b| {
        batch_loss(&t.model, b)
    })
}

/// Low-rank adapters (LoRA) on every attention and MLP projection of a
/// frozen model: `W = W0 + (alpha / r) · B·A`, with `B` zero at the start.
/// Only `A` and `B` are trained; [`Lora::merged`] folds them into the
/// weights, as `merge_and_unload` does, so the checkpoint looks like a full
/// fine-tune whose update has rank `r` per matrix.
pub struct Lora {
    cfg: HfConfig,
    base: HashMap<String, Tensor>,
    adapters: HashMap<String, (Var, Var)>,
    scale: f64,
}

/// The weight names LoRA adapts.
fn lora_target(name: &str) -> bool {
    const PROJ: [&str; 7] = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    PROJ.iter().any(|p| name.ends_with(&format!("{p}.weight")))
}

impl Lora {
    pub fn new(
        config: &serde_json::Value,
        weights: &HashMap<String, Tensor>,
        rank: usize,
        alpha: f64,
        seed: u64,
    ) -> Result<Lora> {
        let cfg: HfConfig = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        let mut rng = Rng::new(seed);
        let mut names: Vec<&String> = weights.keys().collect();
        names.sort();
        let mut base = HashMap::new();
        let mut adapters = HashMap::new();
        for name in names {
            let w = weights[name].to_dtype(DType::F32).map_err(cerr)?;
            if lora_target(name) {
                let (o, i) = w.dims2().map_err(cerr)?;
                // A ~ N(0, 1/in) (the usual Kaiming-like start), B = 0
                let a: Vec<f32> = (0..rank * i)
                    .map(|_| (rng.normal() / (i as f64).sqrt()) as f32)
                    .collect();
                let a =
                    Var::from_tensor(&Tensor::from_vec(a, (rank, i), &Device::Cpu).map_err(cerr)?)
                        .map_err(cerr)?;
                let b = Var::zeros((o, rank), DType::F32, &Device::Cpu).map_err(cerr)?;
                adapters.insert(name.clone(), (a, b));
            }
            base.insert(name.clone(), w);
        }
        Ok(Lora {
            cfg,
            base,
            adapters,
            scale: alpha / rank as f64,
        })
    }

    fn vars(&self) -> Vec<Var> {
        let mut names: Vec<&String> = self.adapters.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| {
                let (a, b) = &self.adapters[n];
                [a.clone(), b.clone()]
            })
            .collect()
    }

    /// The adapted weights (differentiable with respect to the adapters).
    pub fn merged(&self) -> Result<HashMap<String, Tensor>> {
        self.base
            .iter()
            .map(|(n, w)| {
                let t = match self.adapters.get(n) {
                    Some((a, b)) => b
                        .as_tensor()
                        .matmul(a.as_tensor())
                        .and_then(|d| d * self.scale)
                        .and_then(|d| w + d)
                        .map_err(cerr)?,
                    None => w.clone(),
                };
                Ok((n.clone(), t))
            })
            .collect()
    }

    fn model(&self) -> Result<Llama> {
        let vb = VarBuilder::from_tensors(self.merged()?, DType::F32, &Device::Cpu);
        Llama::load(vb, self.cfg.clone()).map_err(cerr)
    }

    /// Trains the adapters (see [`train`]).
    pub fn train(
        &self,
        opts: &RunOptions,
        rng: &mut Rng,
        draw: impl FnMut(&mut Rng) -> Example,
        log: &mut dyn FnMut(usize, f32),
    ) -> Result<(f32, f32)> {
        train_vars(self.vars(), opts, rng, draw, log, &mut |b| {
            batch_loss(&self.model()?, b)
        })
    }

    /// The merged weights rounded to `dtype`.
    pub fn weights(&self, dtype: DType) -> Result<HashMap<String, Tensor>> {
        self.merged()?
            .into_iter()
            .map(|(n, t)| Ok((n, t.detach().to_dtype(dtype).map_err(cerr)?)))
            .collect()
    }
}

/// The training loop over `vars`, with the loss of a batch from `loss`.
fn train_vars(
    vars: Vec<Var>,
    opts: &RunOptions,
    rng: &mut Rng,
    mut draw: impl FnMut(&mut Rng) -> Example,
    log: &mut dyn FnMut(usize, f32),
    loss_of: &mut dyn FnMut(&[&Example]) -> Result<Tensor>,
) -> Result<(f32, f32)> {
    let params = ParamsAdamW {
        lr: opts.lr,
        weight_decay: opts.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars, params).map_err(cerr)?;
    let tenth = (opts.steps / 10).max(1);
    let (mut first, mut last) = (0f32, 0f32);
    for step in 0..opts.steps {
        let lr = if step < opts.warmup {
            opts.lr * (step + 1) as f64 / opts.warmup as f64
        } else {
            // cosine decay to a tenth of the peak
            let p = (step - opts.warmup) as f64 / (opts.steps - opts.warmup).max(1) as f64;
            opts.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
        };
        opt.set_learning_rate(lr);
        let examples: Vec<Example> = (0..opts.batch).map(|_| draw(rng)).collect();
        let refs: Vec<&Example> = examples.iter().collect();
        let loss = loss_of(&refs)?;
        opt.backward_step(&loss).map_err(cerr)?;
        let l = loss.to_scalar::<f32>().map_err(cerr)?;
        if !l.is_finite() {
            return Err(format!("loss became {l} at step {step}"));
        }
        if step < tenth {
            first += l / tenth as f32;
        }
        if step >= opts.steps - tenth {
            last += l / tenth as f32;
        }
        log(step, l);
    }
    Ok((first, last))
}

/// Writes weights as a safetensors file with the `format: pt` metadata
/// transformers expects.
pub fn save_safetensors(weights: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let data: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &weights[*n])).collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(data, Some(meta), path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rank of a small matrix by Gaussian elimination with partial pivoting;
    /// pivots under `tol` times the largest entry count as zero.
    fn rank(rows: Vec<Vec<f32>>, tol: f32) -> usize {
        let mut a = rows;
        let max = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        if max == 0.0 {
            return 0;
        }
        let (n, m) = (a.len(), a[0].len());
        let mut r = 0;
        for c in 0..m {
            let Some(p) = (r..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs())) else {
                break;
            };
            if a[p][c].abs() <= tol * max {
                continue;
            }
            a.swap(r, p);
            let pivot = a[r].clone();
            for row in a.iter_mut().skip(r + 1) {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
            r += 1;
            if r == n {
                break;
            }
        }
        r
    }

    /// LoRA training moves every adapted projection by an update of rank at
    /// most r, and nothing else.
    #[test]
    fn lora_updates_are_low_rank_and_only_on_projections() {
        let config = crate::model_config(64, true);
        let base = fresh(&config, 5).unwrap().weights(DType::F32).unwrap();
        let lora = Lora::new(&config, &base, 2, 4.0, 9).unwrap();
        let opts = RunOptions {
            steps: 4,
            batch: 2,
            lr: 0.02,
            warmup: 1,
            weight_decay: 0.0,
        };
        let mut draw = |r: &mut Rng| Example::text((0..12).map(|_| r.below(64) as u32).collect());
        lora.train(&opts, &mut Rng::new(1), &mut draw, &mut |_, _| {})
            .unwrap();
        let merged = lora.weights(DType::F32).unwrap();
        let mut adapted = 0;
        for (name, w) in &merged {
            let d = (w - &base[name]).unwrap();
            if lora_target(name) {
                adapted += 1;
                let rows = d.to_vec2::<f32>().unwrap();
                let r = rank(rows, 1e-3);
                assert!((1..=2).contains(&r), "{name}: update of rank {r}");
            } else {
                let peak = d
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert_eq!(peak, 0.0, "{name} changed");
            }
        }
        assert_eq!(adapted, 7, "q, k, v, o, gate, up and down of the one layer");
    }
}
