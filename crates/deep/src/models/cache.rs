//! The key/value cache of earlier positions, and the causal mask, shared by
//! every architecture.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};

/// Keys and values of earlier positions, per layer (for generation).
///
/// A cache can start with a prefix that every row of the batch shares
/// (one prompt, many continuations: the trigger search's candidates, the
/// inversion's forced first tokens): the prefix is held once, never copied
/// per row. The llama family attends to it directly; other architectures
/// receive it broadcast to every row.
#[derive(Default, Clone)]
pub struct KvCache {
    /// Each layer's keys and values of the rows' own positions.
    kv: Vec<(Tensor, Tensor)>,
    /// Positions cached, the shared prefix included.
    len: usize,
    /// For a batch of left-padded rows: how many leading positions of each
    /// row's own part are padding (never attended to).
    pad: Option<Vec<usize>>,
    /// Where the rows' own part, and so their padding, starts: 0, or the
    /// length of a shared prefix that precedes the padding.
    pad_from: usize,
    /// Each layer's keys and values of a shared prefix (batch dimension 1).
    shared: Option<Arc<Vec<(Tensor, Tensor)>>>,
}

impl KvCache {
    /// An empty cache for a batch of rows left-padded to one length: the
    /// first `pad[r]` positions of row `r` are padding. Attention never
    /// reaches them, and the rotary embedding only sees relative positions,
    /// so each row computes what it computes alone.
    pub fn padded(pad: Vec<usize>) -> Self {
        KvCache {
            pad: pad.iter().any(|&p| p > 0).then_some(pad),
            ..Default::default()
        }
    }

    /// A cache for rows that all continue this (single-sequence) cache: its
    /// positions become a shared prefix, held once.
    pub fn shared(&self) -> Result<KvCache> {
        if self.shared.is_some() || self.pad.is_some() {
            return Err(candle_core::Error::Msg(
                "only a plain single-sequence cache can be shared".into(),
            ));
        }
        Ok(KvCache {
            kv: Vec::new(),
            len: self.len,
            pad: None,
            pad_from: 0,
            shared: (!self.kv.is_empty()).then(|| Arc::new(self.kv.clone())),
        })
    }

    /// Rows of different lengths that all continue this (single-sequence)
    /// cache, left-padded to one length after it: its positions become a
    /// shared prefix, held once, and the first `pad[r]` positions after it
    /// are row `r`'s padding. Each row's own positions count on from the
    /// prefix as if it had no padding ([`Self::position`]), so that each
    /// row computes what it computes alone.
    ///
    /// A cache that is already a bare shared prefix (from [`Self::shared`])
    /// keeps its prefix, held once by all its padded batches.
    pub fn shared_padded(&self, pad: Vec<usize>) -> Result<KvCache> {
        let bare_prefix = self.shared.is_some() && self.kv.is_empty() && self.pad.is_none();
        let mut c = if bare_prefix {
            self.clone()
        } else {
            self.shared()?
        };
        c.pad = pad.iter().any(|&p| p > 0).then_some(pad);
        c.pad_from = self.len;
        Ok(c)
    }

    /// The padding of each row, when the batch is padded.
    pub fn pad(&self) -> Option<&[usize]> {
        self.pad.as_deref()
    }

    /// Where the rows' padding starts (0, or a shared prefix's length).
    pub fn pad_from(&self) -> usize {
        self.pad_from
    }

    /// The position row `row`'s token at index `j` of the batch stands at in
    /// its own sequence (its padding removed; a padding position maps to
    /// anything, as nothing attends to it).
    pub fn position(&self, row: usize, j: usize) -> usize {
        match &self.pad {
            Some(p) if j >= self.pad_from => j.saturating_sub(p[row]),
            _ => j,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The shared prefix's keys and values of one layer (`[1, heads, P,
    /// dim]`), when the cache has one.
    pub fn shared_layer(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.shared.as_ref().and_then(|s| s.get(layer))
    }

    /// Appends a layer's new keys and values (`[B, heads, new, dim]`) and
    /// returns the rows' own part (the shared prefix excluded).
    pub fn extend_own(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
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

    /// Appends a layer's new keys and values (`[..., heads, new, dim]`) and
    /// returns the whole sequence's (a shared prefix broadcast to the rows).
    pub fn extend(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        if let Some((sk, sv)) = self.shared_layer(layer).cloned() {
            let b = k.dim(0)?;
            let (ok, ov) = self.extend_own(layer, k, v)?;
            let rep = |x: &Tensor| -> Result<Tensor> {
                let mut dims = x.dims().to_vec();
                dims[0] = b;
                x.broadcast_as(dims)?.contiguous()
            };
            let seq = ok.rank() - 2;
            return Ok((
                Tensor::cat(&[&rep(&sk)?, &ok], seq)?,
                Tensor::cat(&[&rep(&sv)?, &ov], seq)?,
            ));
        }
        self.extend_own(layer, k, v)
    }

    /// Marks `n` more positions as cached (after every layer was extended).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache of some rows of a batch (a shared prefix stays shared).
    pub fn select_rows(&self, rows: &[usize]) -> Result<KvCache> {
        if self.kv.is_empty() {
            return Ok(self.clone());
        }
        let dev = self.kv[0].0.device().clone();
        let idx = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<u32>>(), &dev)?;
        let kv = self
            .kv
            .iter()
            .map(|(k, v)| Ok((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            kv,
            len: self.len,
            pad: self
                .pad
                .as_ref()
                .map(|p| rows.iter().map(|&r| p[r]).collect()),
            pad_from: self.pad_from,
            shared: self.shared.clone(),
        })
    }

    /// The caches of consecutive row chunks of one batch (each as long as
    /// the others, all after the same shared prefix or none) as one cache
    /// of all their rows, in order.
    pub fn cat_rows(parts: &[KvCache]) -> Result<KvCache> {
        let Some(first) = parts.first() else {
            return Ok(KvCache::default());
        };
        if parts.len() == 1 {
            return Ok(first.clone());
        }
        let same_prefix = |p: &KvCache| match (&p.shared, &first.shared) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if parts.iter().any(|p| {
            p.len != first.len
                || p.kv.len() != first.kv.len()
                || p.pad_from != first.pad_from
                || !same_prefix(p)
        }) {
            return Err(candle_core::Error::Msg(
                "only equally long caches after the same prefix can be joined".into(),
            ));
        }
        let mut kv = Vec::with_capacity(first.kv.len());
        for l in 0..first.kv.len() {
            let ks: Vec<&Tensor> = parts.iter().map(|p| &p.kv[l].0).collect();
            let vs: Vec<&Tensor> = parts.iter().map(|p| &p.kv[l].1).collect();
            kv.push((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?));
        }
        let mut pad = Vec::new();
        for p in parts {
            match (&p.pad, p.kv.first()) {
                (Some(x), _) => pad.extend_from_slice(x),
                (None, Some((k, _))) => pad.extend(std::iter::repeat_n(0, k.dim(0)?)),
                (None, None) => {}
            }
        }
        Ok(KvCache {
            kv,
            len: first.len,
            pad: pad.iter().any(|&p| p > 0).then_some(pad),
            pad_from: first.pad_from,
            shared: first.shared.clone(),
        })
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
        Ok(KvCache {
            kv,
            len: self.len,
            pad: None,
            pad_from: 0,
            shared: None,
        })
    }
}

/// Additive attention mask for `t` new positions after `off` cached ones:
/// `[t, off + t]` (position `off + i` sees keys `0..=off + i`), or, for
/// left-padded rows, `[B, 1, t, off + t]` where row `r` also never sees its
/// `pad[r]` padding keys from `pad_from` on (a padding query sees only
/// itself, so that nothing is undefined).
pub(crate) fn attention_mask(
    t: usize,
    off: usize,
    pad: Option<&[usize]>,
    pad_from: usize,
    device: &Device,
) -> Result<Tensor> {
    let Some(pad) = pad else {
        return causal_mask(t, off, device);
    };
    let total = off + t;
    let mut mask = Vec::with_capacity(pad.len() * t * total);
    for &p in pad {
        for i in 0..t {
            let q = off + i;
            for j in 0..total {
                let open = j <= q && (j < pad_from || j >= pad_from + p || j == q);
                mask.push(if open { 0.0 } else { f32::NEG_INFINITY });
            }
        }
    }
    Tensor::from_vec(mask, (pad.len(), 1, t, total), device)
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
