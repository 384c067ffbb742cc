//! GPT-2 (candle-transformers has none): learned position embeddings,
//! LayerNorm with bias, fused `c_attn`, `gelu_new`, tied LM head. HF stores
//! GPT-2's projections as Conv1D, i.e. weights `[in, out]` (y = x·W + b).
//! Built from differentiable ops, logits at every position, with a key/value
//! cache; a test checks it against transformers' own logits.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::{Embedding, Module, VarBuilder};
use serde::Deserialize;

use super::cache::{attention_mask, KvCache};
use super::CausalLm;

#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}

struct Conv1D {
    w: Tensor,
    b: Tensor,
}

impl Conv1D {
    fn load(vb: VarBuilder, i: usize, o: usize) -> Result<Self> {
        Ok(Conv1D {
            w: vb.get((i, o), "weight")?,
            b: vb.get(o, "bias")?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::frozen::frozen_matmul(x, &self.w)?.broadcast_add(&self.b)
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl Norm {
    fn load(vb: VarBuilder, h: usize, eps: f64) -> Result<Self> {
        Ok(Norm {
            w: vb.get(h, "weight")?,
            b: vb.get(h, "bias")?,
            eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.w)?
            .broadcast_add(&self.b)
    }
}

struct Block {
    ln1: Norm,
    attn: Conv1D,
    proj: Conv1D,
    ln2: Norm,
    fc: Conv1D,
    out: Conv1D,
}

pub struct Gpt2 {
    pub cfg: Gpt2Config,
    wte: Embedding,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: Norm,
    device: Device,
}

/// GELU with the tanh approximation (`gelu_new`), from plain ops.
fn gelu_new(x: &Tensor) -> Result<Tensor> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = ((x + (x.sqr()? * x)?.affine(0.044715, 0.0)?)? * c)?;
    (x * 0.5)?.mul(&(inner.tanh()? + 1.0)?)
}

impl Gpt2 {
    pub fn load(vb: VarBuilder, cfg: Gpt2Config) -> Result<Self> {
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let h = cfg.n_embd;
        let inner = cfg.n_inner.unwrap_or(4 * h);
        let eps = cfg.layer_norm_epsilon;
        let wte = candle_nn::embedding(cfg.vocab_size, h, vb.pp("wte"))?;
        let wpe = vb.pp("wpe").get((cfg.n_positions, h), "weight")?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let b = vb.pp(format!("h.{i}"));
            blocks.push(Block {
                ln1: Norm::load(b.pp("ln_1"), h, eps)?,
                attn: Conv1D::load(b.pp("attn").pp("c_attn"), h, 3 * h)?,
                proj: Conv1D::load(b.pp("attn").pp("c_proj"), h, h)?,
                ln2: Norm::load(b.pp("ln_2"), h, eps)?,
                fc: Conv1D::load(b.pp("mlp").pp("c_fc"), h, inner)?,
                out: Conv1D::load(b.pp("mlp").pp("c_proj"), inner, h)?,
            });
        }
        let ln_f = Norm::load(vb.pp("ln_f"), h, eps)?;
        Ok(Gpt2 {
            device: vb.device().clone(),
            cfg,
            wte,
            wpe,
            blocks,
            ln_f,
        })
    }
}

impl CausalLm for Gpt2 {
    fn arch(&self) -> &'static str {
        "gpt2"
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn layers(&self) -> usize {
        self.cfg.n_layer
    }
    fn eos_config(&self) -> Option<&serde_json::Value> {
        self.cfg.eos_token_id.as_ref()
    }
    fn embeddings(&self) -> &Tensor {
        self.wte.embeddings()
    }
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.wte.forward(ids)
    }

    fn forward_tail(
        &self,
        x: &Tensor,
        mut cache: Option<&mut KvCache>,
        tail: usize,
    ) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let off = cache.as_ref().map_or(0, |c| c.len());
        let total = off + t;
        if total > self.cfg.n_positions {
            return Err(candle_core::Error::Msg(format!(
                "sequence of {total} tokens exceeds n_positions {}",
                self.cfg.n_positions
            )));
        }
        let nh = self.cfg.n_head;
        let hd = h / nh;
        // learned absolute positions: a left-padded row counts from its
        // first real token
        let pad = cache.as_ref().and_then(|c| c.pad()).map(<[usize]>::to_vec);
        let pad_from = cache.as_ref().map_or(0, |c| c.pad_from());
        let mut x = match (&pad, cache.as_deref()) {
            (Some(_), Some(c)) => {
                let pos: Vec<u32> = (0..b)
                    .flat_map(|r| (off..off + t).map(move |j| c.position(r, j) as u32))
                    .collect();
                let ids = Tensor::from_vec(pos, b * t, &self.device)?;
                (x + self.wpe.index_select(&ids, 0)?.reshape((b, t, h))?)?
            }
            _ => x.broadcast_add(&self.wpe.narrow(0, off, t)?)?,
        };
        let mask = attention_mask(t, off, pad.as_deref(), pad_from, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let heads = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()
        };
        for (li, blk) in self.blocks.iter().enumerate() {
            let a = blk.attn.forward(&blk.ln1.forward(&x)?)?;
            let q = heads(a.narrow(2, 0, h)?)?;
            let k = heads(a.narrow(2, h, h)?)?;
            let v = heads(a.narrow(2, 2 * h, h)?)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.extend(li, k, v)?,
                None => (k, v),
            };
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((b, t, h))?;
            x = (x + blk.proj.forward(&o)?)?;
            let m = blk
                .out
                .forward(&gelu_new(&blk.fc.forward(&blk.ln2.forward(&x)?)?)?)?;
            x = (x + m)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        let x = if tail < t {
            x.narrow(1, t - tail, tail)?
        } else {
            x
        };
        let x = self.ln_f.forward(&x)?;
        super::frozen::frozen_matmul(&x, &self.wte.embeddings().t()?)
    }
}
