//! Llama-family causal LMs (Llama 2/3, and Mistral/Qwen2-style configs that
//! share the layout) from a Hugging Face folder, with a forward pass built
//! only from differentiable candle ops. It returns logits at *every* position
//! (the behavioural diff needs the whole prompt) and lets gradients reach the
//! input embeddings (trigger search). A test checks that its logits match
//! candle-transformers' llama on the same weights.

use candle_core::{DType, Device, Module, Result, Tensor, D};
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
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
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

/// Keys and values of earlier positions, per layer (for generation).
#[derive(Default, Clone)]
pub struct KvCache {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a layer's new keys and values (`[..., heads, new, dim]`) and
    /// returns the whole sequence's.
    pub fn extend(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.rank() - 2;
        let (k, v) = if let Some((pk, pv)) = self.kv.get(layer) {
            (Tensor::cat(&[pk, &k], seq)?, Tensor::cat(&[pv, &v], seq)?)
        } else {
            (k, v)
        };
        if self.kv.len() > layer {
            self.kv[layer] = (k.clone(), v.clone());
        } else {
            self.kv.push((k.clone(), v.clone()));
        }
        Ok((k, v))
    }

    /// Marks `n` more positions as cached (after every layer was extended).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache of a single sequence repeated for a batch of `b` rows.
    pub fn broadcast(&self, b: usize) -> Result<KvCache> {
        let mut kv = Vec::with_capacity(self.kv.len());
        for (k, v) in &self.kv {
            let rep = |x: &Tensor| -> Result<Tensor> {
                let mut dims = x.dims().to_vec();
                dims[0] = b;
                x.broadcast_as(dims)?.contiguous()
            };
            kv.push((rep(k)?, rep(v)?));
        }
        Ok(KvCache { kv, len: self.len })
    }
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

/// Additive causal mask `[t, off + t]` for `t` new positions after `off`
/// cached ones: position `off + i` sees keys `0..=off + i`.
pub(crate) fn causal_mask(t: usize, off: usize, device: &Device) -> Result<Tensor> {
    let total = off + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > off + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)
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

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn embeddings(&self) -> &Tensor {
        self.embed.embeddings()
    }

    /// Logits at every position for token ids `[T]`: `[T, vocab]` (f32).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?;
        let x = self.embed.forward(&t)?;
        self.forward_embeds(&x)
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

    /// Forward from input embeddings `[T, hidden]` (used by gradient search).
    pub fn forward_embeds(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_inner(&x.unsqueeze(0)?, None)?.squeeze(0)
    }

    /// Logits for a batch of equally long id rows `[B, T]` → `[B, T, vocab]`
    /// (training; pad on the right, the causal mask keeps pads out of
    /// earlier positions).
    pub fn forward_batch(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed.forward(ids)?;
        self.forward_inner(&x, None)
    }

    /// Logits for one new token per row `[B]` after a batched `cache`:
    /// `[B, vocab]`.
    pub fn forward_cached_rows(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?.unsqueeze(1)?;
        let x = self.embed.forward(&t)?;
        self.forward_inner(&x, Some(cache))?.squeeze(1)
    }

    /// Logits for `ids` appended after the positions already in `cache`
    /// (`[ids.len(), vocab]`); the cache grows by `ids.len()`.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?;
        let x = self.embed.forward(&t)?.unsqueeze(0)?;
        self.forward_inner(&x, Some(cache))?.squeeze(0)
    }

    /// The shared forward over `[B, T, hidden]` input embeddings.
    /// Logits of the last `tail` positions of equally long id rows `[B, T]`
    /// after the positions in a batched `cache`: `[B, tail, vocab]`; the
    /// cache grows by `T`. (Scoring a target after a shared prompt prefix:
    /// the prefix is computed once, and only the target's positions go
    /// through the output head.)
    pub fn forward_batch_cached_tail(
        &self,
        ids: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> Result<Tensor> {
        let x = self.embed.forward(ids)?;
        self.forward_tail(&x, Some(cache), tail)
    }

    /// Logits of the last `tail` positions of input embeddings
    /// `[T, hidden]` after the positions in `cache`: `[tail, vocab]`
    /// (gradient search: the cached prefix is a constant).
    pub fn forward_embeds_cached_tail(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> Result<Tensor> {
        self.forward_tail(&x.unsqueeze(0)?, Some(cache), tail)?
            .squeeze(0)
    }

    /// [`Self::forward_embeds_cached_tail`] for a batch of equally long
    /// rows of input embeddings `[B, T, hidden]` after a batched `cache`:
    /// `[B, tail, vocab]`.
    pub fn forward_embeds_batch_cached_tail(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> Result<Tensor> {
        self.forward_tail(x, Some(cache), tail)
    }

    fn forward_inner(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let t = x.dim(1)?;
        self.forward_tail(x, cache, t)
    }

    /// The forward pass, with the output head applied to the last `tail`
    /// positions only.
    fn forward_tail(
        &self,
        x: &Tensor,
        mut cache: Option<&mut KvCache>,
        tail: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let off = cache.as_ref().map_or(0, |c| c.len);
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_dim());
        let inv = Tensor::new(cfg.inv_freq(), &self.device)?;
        let pos =
            Tensor::arange(off as u32, (off + t) as u32, &self.device)?.to_dtype(DType::F32)?;
        let freqs = pos.unsqueeze(1)?.broadcast_mul(&inv.unsqueeze(0)?)?;
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?; // [T, hd]
        let (cos, sin) = (emb.cos()?, emb.sin()?);
        let total = off + t;
        let mask = causal_mask(t, off, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut x = x.clone();
        for (li, l) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &l.ln1, cfg.rms_norm_eps)?;
            let q = heads(l.q.forward(&h)?, nh)?;
            let k = heads(l.k.forward(&h)?, nkv)?;
            let v = heads(l.v.forward(&h)?, nkv)?;
            let q = (q.broadcast_mul(&cos)? + rotate_half(&q)?.broadcast_mul(&sin)?)?;
            let k = (k.broadcast_mul(&cos)? + rotate_half(&k)?.broadcast_mul(&sin)?)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.extend(li, k, v)?,
                None => (k, v),
            };
            let (k, v) = if nkv != nh {
                let rep = nh / nkv;
                let expand = |y: Tensor| -> Result<Tensor> {
                    y.unsqueeze(2)?
                        .expand((b, nkv, rep, total, hd))?
                        .reshape((b, nh, total, hd))
                };
                (expand(k)?, expand(v)?)
            } else {
                (k, v)
            };
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let out = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            x = (x + l.o.forward(&out)?)?;
            let h = rms_norm(&x, &l.ln2, cfg.rms_norm_eps)?;
            let g = l.gate.forward(&h)?;
            let silu = (&g * candle_nn::ops::sigmoid(&g)?)?;
            let mlp = l.down.forward(&(silu * l.up.forward(&h)?)?)?;
            x = (x + mlp)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        let x = if tail < t {
            x.narrow(1, t - tail, tail)?
        } else {
            x
        };
        let x = rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?;
        self.lm_head.forward(&x)
    }
}
