//! The key/value cache of earlier positions, and the causal mask, shared by
//! every architecture.

use candle_core::{Device, Result, Tensor};

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

/// Additive causal mask `[t, off + t]` for `t` new positions after `off`
/// cached ones: position `off + i` sees keys `0..=off + i`.
pub(crate) fn causal_mask(t: usize, off: usize, device: &Device) -> Result<Tensor> {
    let total = off + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > off + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}
