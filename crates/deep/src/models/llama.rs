//! Llama-family causal LMs (Llama 2/3, and Mistral/Qwen2-style configs that
//! share the layout) from a Hugging Face folder, with a forward pass built
//! only from differentiable candle ops. It returns logits at *every* position
//! (the behavioural diff needs the whole prompt) and lets gradients reach the
//! input embeddings (trigger search). A test checks that its logits match
//! candle-transformers' llama on the same weights.

use candle_core::{DType, Device, Module, Result, Tensor, D};

use super::cache::{attention_mask, KvCache};
use super::CausalLm;
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

/// `config.json` as written by transformers 4.x and 5.x `save_pretrained`.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// transformers 4.x
    pub rope_theta: Option<f64>,
    /// transformers 4.x rope scaling
    pub rope_scaling: Option<RopeParams>,
    /// transformers 5.x: rope_theta and scaling live here
    pub rope_parameters: Option<RopeParams>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    pub bos_token_id: Option<serde_json::Value>,
    pub eos_token_id: Option<serde_json::Value>,
    /// `torch_dtype` (4.x) or `dtype` (5.x)
    #[serde(alias = "torch_dtype")]
    pub dtype: Option<String>,
    /// Per-frequency divisors of the rotary embedding, when a GGUF file
    /// gives them (`rope_freqs.weight`: Llama 3's scaling, as llama.cpp
    /// writes it).
    #[serde(skip)]
    pub rope_freq_factors: Option<Vec<f32>>,
}

fn default_eps() -> f64 {
    1e-6
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeParams {
    pub rope_theta: Option<f64>,
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
}

impl HfConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(
            self.hidden_size
                .checked_div(self.num_attention_heads)
                .unwrap_or(0),
        )
    }
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }
    fn scaling(&self) -> Option<&RopeParams> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    /// Inverse frequencies of the rotary embedding, with Llama 3 / linear scaling.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim();
        let theta = self.theta();
        let mut f: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / d as f64))
            .collect();
        if let Some(s) = self.scaling() {
            match s.rope_type.as_deref() {
                Some("linear") => {
                    let factor = s.factor.unwrap_or(1.0);
                    for x in &mut f {
                        *x /= factor;
                    }
                }
                Some("llama3") => {
                    let factor = s.factor.unwrap_or(8.0);
                    let low = s.low_freq_factor.unwrap_or(1.0);
                    let high = s.high_freq_factor.unwrap_or(4.0);
                    let old = s.original_max_position_embeddings.unwrap_or(8192) as f64;
                    let low_wl = old / low;
                    let high_wl = old / high;
                    for x in &mut f {
                        let wl = 2.0 * std::f64::consts::PI / *x;
                        if wl < high_wl {
                        } else if wl > low_wl {
                            *x /= factor;
                        } else {
                            let smooth = (old / wl - low) / (high - low);
                            *x = (1.0 - smooth) * *x / factor + smooth * *x;
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(div) = &self.rope_freq_factors {
            for (x, d) in f.iter_mut().zip(div) {
                *x /= *d as f64;
            }
        }
        f.into_iter().map(|x| x as f32).collect()
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
    ln1: Tensor,
    ln2: Tensor,
}

/// A loaded llama-family model.
pub struct Llama {
    pub cfg: HfConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    device: Device,
}

fn linear(vb: VarBuilder, i: usize, o: usize, bias: bool) -> Result<Linear> {
    if bias {
        candle_nn::linear(i, o, vb)
    } else {
        candle_nn::linear_no_bias(i, o, vb)
    }
}

/// A norm's scale vector; ones when the builder creates fresh variables
/// (training from scratch), the stored values otherwise.
fn norm_weight(vb: VarBuilder, h: usize) -> Result<Tensor> {
    vb.get_with_hints(h, "weight", candle_nn::Init::Const(1.0))
}

/// RMS norm from plain ops (differentiable).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    let x = x.broadcast_div(&(var + eps)?.sqrt()?)?;
    x.broadcast_mul(w)
}

/// `rotate_half` of the Hugging Face layout: [-x2, x1].
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

impl Llama {
    pub fn load(vb: VarBuilder, cfg: HfConfig) -> Result<Self> {
        let (heads, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        if heads == 0 || kv == 0 || heads % kv != 0 {
            return Err(candle_core::Error::Msg(format!(
                "config.json: num_attention_heads ({heads}) is not a positive multiple of num_key_value_heads ({kv})"
            )));
        }
        let h = cfg.hidden_size;
        let hd = cfg.head_dim();
        let m = vb.pp("model");
        let embed = candle_nn::embedding(cfg.vocab_size, h, m.pp("embed_tokens"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let p = l.pp("mlp");
            layers.push(Layer {
                q: linear(
                    a.pp("q_proj"),
                    h,
                    cfg.num_attention_heads * hd,
                    cfg.attention_bias,
                )?,
                k: linear(a.pp("k_proj"), h, cfg.kv_heads() * hd, cfg.attention_bias)?,
                v: linear(a.pp("v_proj"), h, cfg.kv_heads() * hd, cfg.attention_bias)?,
                o: linear(a.pp("o_proj"), cfg.num_attention_heads * hd, h, false)?,
                gate: linear(p.pp("gate_proj"), h, cfg.intermediate_size, false)?,
                up: linear(p.pp("up_proj"), h, cfg.intermediate_size, false)?,
                down: linear(p.pp("down_proj"), cfg.intermediate_size, h, false)?,
                ln1: norm_weight(l.pp("input_layernorm"), h)?,
                ln2: norm_weight(l.pp("post_attention_layernorm"), h)?,
            });
        }
        let norm = norm_weight(m.pp("norm"), h)?;
        let lm_head = if cfg.tie_word_embeddings && !vb.contains_tensor("lm_head.weight") {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(h, cfg.vocab_size, vb.pp("lm_head"))?
        };
        Ok(Llama {
            device: vb.device().clone(),
            cfg,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// The trainable weights by Hugging Face name (for saving a checkpoint).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed.embeddings().clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            for (n, lin) in [
                ("self_attn.q_proj", &l.q),
                ("self_attn.k_proj", &l.k),
                ("self_attn.v_proj", &l.v),
                ("self_attn.o_proj", &l.o),
                ("mlp.gate_proj", &l.gate),
                ("mlp.up_proj", &l.up),
                ("mlp.down_proj", &l.down),
            ] {
                out.push((format!("{p}.{n}.weight"), lin.weight().clone()));
                if let Some(b) = lin.bias() {
                    out.push((format!("{p}.{n}.bias"), b.clone()));
                }
            }
            out.push((format!("{p}.input_layernorm.weight"), l.ln1.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                l.ln2.clone(),
            ));
        }
        out.push(("model.norm.weight".to_string(), self.norm.clone()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight().clone()));
        }
        out
    }
}

impl CausalLm for Llama {
    fn arch(&self) -> &'static str {
        "llama"
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn layers(&self) -> usize {
        self.cfg.num_hidden_layers
    }
    fn eos_config(&self) -> Option<&serde_json::Value> {
        self.cfg.eos_token_id.as_ref()
    }
    fn embeddings(&self) -> &Tensor {
        self.embed.embeddings()
    }
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    fn forward_tail(
        &self,
        x: &Tensor,
        mut cache: Option<&mut KvCache>,
        tail: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let off = cache.as_ref().map_or(0, |c| c.len());
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_dim());
        let inv = Tensor::new(cfg.inv_freq(), &self.device)?;
        // positions: the batch's own, or, for rows padded after a shared
        // prefix, each row's own (relative positions to the prefix must not
        // count the padding), `[T, hd/2]` or `[B, T, hd/2]`
        let per_row = match cache.as_deref() {
            Some(c) if c.pad().is_some() && c.pad_from() > 0 => Some(c),
            _ => None,
        };
        let freqs = match per_row {
            None => Tensor::arange(off as u32, (off + t) as u32, &self.device)?
                .to_dtype(DType::F32)?
                .unsqueeze(1)?
                .broadcast_mul(&inv.unsqueeze(0)?)?,
            Some(c) => {
                let pos: Vec<f32> = (0..b)
                    .flat_map(|r| (off..off + t).map(move |j| c.position(r, j) as f32))
                    .collect();
                Tensor::from_vec(pos, (b, t, 1), &self.device)?
                    .broadcast_mul(&inv.unsqueeze(0)?.unsqueeze(0)?)?
            }
        };
        // without gradients to track, candle's fused kernels (which have no
        // backward pass) do the norms, the rotary embedding and the softmax
        let fast = !x.track_op();
        let (half_cos, half_sin) = (freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?);
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?; // [(B,) T, hd]
        let emb = if per_row.is_some() {
            emb.unsqueeze(1)? // [B, 1, T, hd]: every head alike
        } else {
            emb
        };
        let (cos, sin) = (emb.cos()?, emb.sin()?);
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            if fast {
                candle_nn::ops::rms_norm(&x.contiguous()?, w, cfg.rms_norm_eps as f32)
            } else {
                rms_norm(x, w, cfg.rms_norm_eps)
            }
        };
        let rotate = |y: &Tensor| -> Result<Tensor> {
            if fast {
                candle_nn::rotary_emb::rope(&y.contiguous()?, &half_cos, &half_sin)
            } else {
                y.broadcast_mul(&cos)? + rotate_half(y)?.broadcast_mul(&sin)?
            }
        };
        let total = off + t;
        let mask = attention_mask(
            t,
            off,
            cache.as_ref().and_then(|c| c.pad()),
            cache.as_ref().map_or(0, |c| c.pad_from()),
            &self.device,
        )?;
        let scale = 1.0 / (hd as f64).sqrt();
        // with gradients to track, products that skip the weights' gradients
        let lin = |l: &Linear, y: &Tensor| -> Result<Tensor> {
            if fast {
                l.forward(y)
            } else {
                super::frozen::frozen_linear(y, l)
            }
        };
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut x = x.clone();
        for (li, l) in self.layers.iter().enumerate() {
            let h = norm(&x, &l.ln1)?;
            let q = rotate(&heads(lin(&l.q, &h)?, nh)?)?;
            let k = rotate(&heads(lin(&l.k, &h)?, nkv)?)?;
            let v = heads(lin(&l.v, &h)?, nkv)?;
            // grouped-query attention without copying keys and values per
            // query head: the query heads of one key head attend together
            let rep = nh / nkv;
            let group =
                |y: &Tensor, n: usize| -> Result<Tensor> { y.reshape((b, nkv, rep * t, n)) };
            let qg = group(&q, hd)?;
            let (own_k, own_v, shared) = match cache.as_deref_mut() {
                Some(c) => {
                    let shared = c.shared_layer(li).cloned();
                    let (k, v) = c.extend_own(li, k, v)?;
                    (k, v, shared)
                }
                None => (k, v, None),
            };
            let own = qg.matmul(&own_k.t()?.contiguous()?)?;
            // a shared prefix `[1, nkv, P, hd]`: every row's queries against
            // the same keys, as one matmul per key head
            let att = match &shared {
                Some((sk, _)) => {
                    let p = sk.dim(2)?;
                    let qs = qg
                        .transpose(0, 1)?
                        .contiguous()?
                        .reshape((nkv, b * rep * t, hd))?;
                    let s = qs
                        .matmul(&sk.squeeze(0)?.t()?.contiguous()?)?
                        .reshape((nkv, b, rep * t, p))?
                        .transpose(0, 1)?
                        .contiguous()?;
                    Tensor::cat(&[&s, &own], 3)?
                }
                None => own,
            };
            let att = (att.reshape((b, nh, t, total))? * scale)?.broadcast_add(&mask)?;
            let att = if fast {
                candle_nn::ops::softmax_last_dim(&att.contiguous()?)?
            } else {
                candle_nn::ops::softmax(&att, D::Minus1)?
            }
            .reshape((b, nkv, rep * t, total))?;
            let out = match &shared {
                Some((_, sv)) => {
                    let p = sv.dim(2)?;
                    let a_s = att
                        .narrow(3, 0, p)?
                        .transpose(0, 1)?
                        .contiguous()?
                        .reshape((nkv, b * rep * t, p))?;
                    let o_s = a_s
                        .matmul(&sv.squeeze(0)?.contiguous()?)?
                        .reshape((nkv, b, rep * t, hd))?
                        .transpose(0, 1)?;
                    let a_o = att.narrow(3, p, total - p)?.contiguous()?;
                    (o_s + a_o.matmul(&own_v.contiguous()?)?)?
                }
                None => att.matmul(&own_v.contiguous()?)?,
            };
            let out = out
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            x = (x + lin(&l.o, &out)?)?;
            let h = norm(&x, &l.ln2)?;
            let g = lin(&l.gate, &h)?;
            let silu = (&g * candle_nn::ops::sigmoid(&g)?)?;
            let mlp = lin(&l.down, &(silu * lin(&l.up, &h)?)?)?;
            x = (x + mlp)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        let x = if tail < t {
            x.narrow(1, t - tail, tail)?
        } else {
            x
        };
        let x = norm(&x, &self.norm)?;
        lin(&self.lm_head, &x)
    }
}
