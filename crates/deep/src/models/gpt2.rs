//! GPT-2 (candle-transformers has none): learned position embeddings,
//! LayerNorm with bias, fused `c_attn`, `gelu_new`, tied LM head. HF stores
//! GPT-2's projections as Conv1D, i.e. weights `[in, out]` (y = x·W + b).
//! Built from differentiable ops, logits at every position, with a key/value
//! cache; a test checks it against transformers' own logits.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::{Embedding, Module, VarBuilder};
use serde::Deserialize;

use super::llama::KvCache;

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
        x.matmul(&self.w)?.broadcast_add(&self.b)
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

    pub fn embeddings(&self) -> &Tensor {
        self.wte.embeddings()
    }

    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let x = self.wte.forward(&Tensor::new(ids, &self.device)?)?;
        self.inner(&x, None)
    }

    pub fn forward_embeds(&self, x: &Tensor) -> Result<Tensor> {
        self.inner(x, None)
    }

    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let x = self.wte.forward(&Tensor::new(ids, &self.device)?)?;
        self.inner(&x, Some(cache))
    }

    fn inner(&self, x: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (t, h) = x.dims2()?;
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
        let mut x = x.broadcast_add(&self.wpe.narrow(0, off, t)?)?;
        let mask = super::llama::causal_mask(t, off, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, b) in self.blocks.iter().enumerate() {
            let a = b.attn.forward(&b.ln1.forward(&x)?)?;
            let q = a
                .narrow(1, 0, h)?
                .reshape((t, nh, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let k = a
                .narrow(1, h, h)?
                .reshape((t, nh, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let v = a
                .narrow(1, 2 * h, h)?
                .reshape((t, nh, hd))?
                .transpose(0, 1)?
                .contiguous()?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.extend(li, k, v)?,
                None => (k, v),
            };
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att.matmul(&v)?.transpose(0, 1)?.reshape((t, h))?;
            x = (x + b.proj.forward(&o)?)?;
            let m = b
                .out
                .forward(&gelu_new(&b.fc.forward(&b.ln2.forward(&x)?)?)?)?;
            x = (x + m)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        let x = self.ln_f.forward(&x)?;
        x.matmul(&self.wte.embeddings().t()?)
    }
}
