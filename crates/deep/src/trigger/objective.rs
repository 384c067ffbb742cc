//! The search's objective: the target's cross-entropy after a trigger
//! inserted into prompts (prefix-cached and batched), and its gradients
//! with respect to one-hot trigger tokens.

#![allow(clippy::wildcard_imports)]
use super::*;

/// A prompt split around the trigger's place: rendered tokens before it and
/// after it.
pub(super) struct Slot {
    pub(super) pre: Vec<u32>,
    pub(super) post: Vec<u32>,
    /// The key/value cache of `pre` but its last token, computed once.
    cache: std::cell::OnceCell<KvCache>,
}

pub(super) const MARK: &str = "\u{E000}";

pub(super) fn slot(m: &LoadedModel, prompt: &str, pos: Position) -> Option<Slot> {
    let rendered = m.render(&insert_trigger(prompt, MARK, pos));
    let (a, c) = rendered.split_once(MARK)?;
    let pre = m.encode(a);
    let post = m.encode(c);
    (!pre.is_empty()).then_some(Slot {
        pre,
        post,
        cache: std::cell::OnceCell::new(),
    })
}

/// The key/value cache of a slot's prompt before the trigger, all but its
/// last token (which stays in the scored rows, so that the first target
/// token always has a position to be predicted from).
pub(super) fn prefix_cache(lm: &dyn CausalLm, sl: &Slot) -> R<KvCache> {
    if let Some(c) = sl.cache.get() {
        return Ok(c.clone());
    }
    let head = &sl.pre[..sl.pre.len() - 1];
    let mut c = KvCache::default();
    if !head.is_empty() {
        let ids = Tensor::new(head, lm.device())?.unsqueeze(0)?;
        lm.forward_batch_cached_tail(&ids, &mut c, 1)?;
    }
    let _ = sl.cache.set(c.clone());
    Ok(c)
}

/// Mean target cross-entropy of each trigger in `triggers` (all the same
/// length), over `slots`, in batches.
pub(super) fn losses(
    m: &LoadedModel,
    slots: &[Slot],
    triggers: &[Vec<u32>],
    target: &[u32],
    skip: usize,
) -> R<Vec<f32>> {
    let lm = m
        .model
        .causal()
        .ok_or_else(|| msg("the trigger search needs a causal language model"))?;
    losses_cached(lm, slots, triggers, target, skip)
}

/// Prompts on which every candidate is screened before the most promising
/// are scored on the rest.
pub(super) const SCREEN_SLOTS: usize = 2;

/// [`losses`] in two stages when there are many candidates: all are scored
/// on the first [`SCREEN_SLOTS`] prompts, the `keep` best of them on the
/// rest too; the others are left at infinity (never chosen).
pub(super) fn losses_staged(
    m: &LoadedModel,
    slots: &[Slot],
    triggers: &[Vec<u32>],
    target: &[u32],
    skip: usize,
    keep: usize,
) -> R<Vec<f32>> {
    let n = slots.len();
    if n <= SCREEN_SLOTS || triggers.len() <= keep {
        return losses(m, slots, triggers, target, skip);
    }
    let first = losses(m, &slots[..SCREEN_SLOTS], triggers, target, skip)?;
    let mut order: Vec<usize> = (0..triggers.len()).collect();
    order.sort_by(|&a, &b| first[a].total_cmp(&first[b]).then(a.cmp(&b)));
    order.truncate(keep);
    let kept: Vec<Vec<u32>> = order.iter().map(|&i| triggers[i].clone()).collect();
    let rest = losses(m, &slots[SCREEN_SLOTS..], &kept, target, skip)?;
    let mut out = vec![f32::INFINITY; triggers.len()];
    let k = SCREEN_SLOTS as f32;
    for (&i, r) in order.iter().zip(rest) {
        out[i] = (first[i] * k + r * (n as f32 - k)) / n as f32;
    }
    Ok(out)
}

/// [`losses`] recomputing every row whole: the reference the prefix-cached
/// scoring is tested against.
#[cfg(test)]
pub(super) fn losses_full(
    m: &LoadedModel,
    slots: &[Slot],
    triggers: &[Vec<u32>],
    target: &[u32],
    skip: usize,
) -> R<Vec<f32>> {
    let dev = m.model.embeddings().device().clone();
    let mut total = vec![0f32; triggers.len()];
    for sl in slots {
        let len = sl.pre.len() + triggers[0].len() + sl.post.len() + target.len();
        let start = len - target.len() - 1;
        for (ci, chunk) in triggers.chunks(64).enumerate() {
            let mut rows = Vec::with_capacity(chunk.len() * len);
            for t in chunk {
                rows.extend_from_slice(&sl.pre);
                rows.extend_from_slice(t);
                rows.extend_from_slice(&sl.post);
                rows.extend_from_slice(&target[..target.len() - 1]);
                rows.push(target[target.len() - 1]);
            }
            let ids = Tensor::from_vec(rows, (chunk.len(), len), &dev)?;
            let logits = m
                .model
                .forward_batch(&ids)?
                .narrow(1, start, target.len())?;
            let picked = mean_target_logp(&logits, target, skip)?;
            for (j, p) in picked.iter().enumerate() {
                total[ci * 64 + j] -= p / slots.len() as f32;
            }
        }
    }
    Ok(total)
}

/// Per row of `[B, len(target), V]` logits (each position predicting the
/// next target token), the mean log-probability of the target from its
/// token `skip` on (the tokens before are a lead-in, given, not scored).
pub(super) fn mean_target_logp(logits: &Tensor, target: &[u32], skip: usize) -> R<Vec<f32>> {
    let skip = skip.min(target.len().saturating_sub(1));
    let logits = logits.narrow(1, skip, target.len() - skip)?;
    let target = &target[skip..];
    let (rows, tl) = (logits.dim(0)?, target.len());
    let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let tgt = Tensor::new(target, logits.device())?
        .unsqueeze(0)?
        .broadcast_as((rows, tl))?
        .contiguous()?
        .unsqueeze(2)?;
    lsm.gather(&tgt, 2)?.squeeze(2)?.mean(1)?.to_vec1::<f32>()
}

/// [`losses`] for the llama family: each slot's prompt prefix is computed
/// once and shared by every candidate row, and only the target's positions
/// go through the output head.
pub(super) fn losses_cached(
    lm: &dyn CausalLm,
    slots: &[Slot],
    triggers: &[Vec<u32>],
    target: &[u32],
    skip: usize,
) -> R<Vec<f32>> {
    let dev = lm.device().clone();
    let tl = target.len();
    let mut total = vec![0f32; triggers.len()];
    for sl in slots {
        let prefix = prefix_cache(lm, sl)?;
        let last = sl.pre[sl.pre.len() - 1];
        let len = 1 + triggers[0].len() + sl.post.len() + tl - 1;
        for (ci, chunk) in triggers.chunks(64).enumerate() {
            let mut rows = Vec::with_capacity(chunk.len() * len);
            for t in chunk {
                rows.push(last);
                rows.extend_from_slice(t);
                rows.extend_from_slice(&sl.post);
                rows.extend_from_slice(&target[..tl - 1]);
            }
            let ids = Tensor::from_vec(rows, (chunk.len(), len), &dev)?;
            let mut cache = prefix.shared()?;
            let logits = lm.forward_batch_cached_tail(&ids, &mut cache, tl)?;
            let picked = mean_target_logp(&logits, target, skip)?;
            for (j, p) in picked.iter().enumerate() {
                total[ci * 64 + j] -= p / slots.len() as f32;
            }
        }
    }
    Ok(total)
}

/// Gradient of the mean target cross-entropy with respect to the one-hot
/// trigger tokens, `[L, V]`.
pub(super) fn onehot_grad(
    m: &LoadedModel,
    slots: &[Slot],
    trig: &[u32],
    target: &[u32],
    skip: usize,
) -> R<Vec<Vec<f32>>> {
    let skip = skip.min(target.len().saturating_sub(1));
    let emb = m.model.embeddings().to_dtype(DType::F32)?.detach();
    let dev = emb.device().clone();
    let v = emb.dim(0)?;
    let mut oh = vec![0f32; trig.len() * v];
    for (i, &t) in trig.iter().enumerate() {
        oh[i * v + t as usize] = 1.0;
    }
    let x = Var::from_tensor(&Tensor::from_vec(oh, (trig.len(), v), &dev)?)?;
    let trig_emb = crate::models::frozen::frozen_matmul(x.as_tensor(), &emb)?;
    let mut loss: Option<Tensor> = None;
    let lm = m
        .model
        .causal()
        .ok_or_else(|| msg("the trigger search needs a causal language model"))?;
    for sl in slots {
        let look = |ids: &[u32]| -> R<Tensor> { emb.index_select(&Tensor::new(ids, &dev)?, 0) };
        // the prompt before the trigger does not depend on it, so its keys
        // and values are a cached constant
        let mut cache = prefix_cache(lm, sl)?;
        let pre = &sl.pre[sl.pre.len() - 1..];
        let mut parts = vec![look(pre)?];
        if !trig.is_empty() {
            parts.push(trig_emb.clone());
        }
        if !sl.post.is_empty() {
            parts.push(look(&sl.post)?);
        }
        if target.len() > 1 {
            parts.push(look(&target[..target.len() - 1])?);
        }
        let input = Tensor::cat(&parts, 0)?;
        let tail = lm.forward_embeds_cached_tail(&input, &mut cache, target.len())?;
        let tail = tail.narrow(0, skip, target.len() - skip)?;
        let lsm = candle_nn::ops::log_softmax(&tail, D::Minus1)?;
        let picked = lsm.gather(&Tensor::new(&target[skip..], &dev)?.unsqueeze(1)?, 1)?;
        let l = (picked.mean_all()?.neg()? / slots.len() as f64)?;
        loss = Some(match loss {
            Some(acc) => (acc + l)?,
            None => l,
        });
    }
    let loss = loss.ok_or_else(|| msg("no prompts to search with"))?;
    let grads = loss.backward()?;
    let g = grads
        .get(x.as_tensor())
        .ok_or_else(|| msg("no gradient reached the trigger tokens"))?;
    g.to_vec2::<f32>()
}

/// [`onehot_grad`] for several triggers of one length at once: for the
/// llama family one batched forward and backward per slot (the rows do not
/// interact, so each trigger's gradient is that of its own loss); other
/// architectures one trigger at a time.
pub(super) fn onehot_grads(
    m: &LoadedModel,
    slots: &[Slot],
    trigs: &[Vec<u32>],
    target: &[u32],
    skip: usize,
) -> R<Vec<Vec<Vec<f32>>>> {
    let skip = skip.min(target.len().saturating_sub(1));
    let lm = m
        .model
        .causal()
        .ok_or_else(|| msg("the trigger search needs a causal language model"))?;
    let (nb, l) = (trigs.len(), trigs.first().map_or(0, Vec::len));
    if nb == 0 || l == 0 || trigs.iter().any(|t| t.len() != l) {
        return trigs
            .iter()
            .map(|t| onehot_grad(m, slots, t, target, skip))
            .collect();
    }
    let emb = lm.embeddings().to_dtype(DType::F32)?.detach();
    let dev = emb.device().clone();
    let (v, h) = emb.dims2()?;
    let mut oh = vec![0f32; nb * l * v];
    for (r, t) in trigs.iter().enumerate() {
        for (i, &u) in t.iter().enumerate() {
            oh[(r * l + i) * v + u as usize] = 1.0;
        }
    }
    let x = Var::from_tensor(&Tensor::from_vec(oh, (nb * l, v), &dev)?)?;
    let trig_emb =
        crate::models::frozen::frozen_matmul(x.as_tensor(), &emb)?.reshape((nb, l, h))?;
    let tgt = Tensor::new(&target[skip..], &dev)?
        .unsqueeze(0)?
        .broadcast_as((nb, target.len() - skip))?
        .contiguous()?
        .unsqueeze(2)?;
    let mut loss: Option<Tensor> = None;
    for sl in slots {
        let look = |ids: &[u32]| -> R<Tensor> {
            emb.index_select(&Tensor::new(ids, &dev)?, 0)?
                .unsqueeze(0)?
                .broadcast_as((nb, ids.len(), h))?
                .contiguous()
        };
        let mut cache = prefix_cache(lm, sl)?.shared()?;
        let mut parts = vec![look(&sl.pre[sl.pre.len() - 1..])?, trig_emb.clone()];
        if !sl.post.is_empty() {
            parts.push(look(&sl.post)?);
        }
        if target.len() > 1 {
            parts.push(look(&target[..target.len() - 1])?);
        }
        let input = Tensor::cat(&parts, 1)?;
        let tail = lm.forward_embeds_batch_cached_tail(&input, &mut cache, target.len())?;
        let tail = tail.narrow(1, skip, target.len() - skip)?;
        let lsm = candle_nn::ops::log_softmax(&tail, D::Minus1)?;
        // the sum over rows of each row's mean target log-probability
        let picked = lsm.gather(&tgt, 2)?;
        let l = (picked.sum_all()?.neg()? / (slots.len() * (target.len() - skip)) as f64)?;
        loss = Some(match loss {
            Some(acc) => (acc + l)?,
            None => l,
        });
    }
    let loss = loss.ok_or_else(|| msg("no prompts to search with"))?;
    let grads = loss.backward()?;
    let g = grads
        .get(x.as_tensor())
        .ok_or_else(|| msg("no gradient reached the trigger tokens"))?
        .reshape((nb, l, v))?;
    (0..nb).map(|r| g.get(r)?.to_vec2::<f32>()).collect()
}

/// Public for the test of gradients through the differentiable forward.
pub fn trigger_gradient(
    m: &LoadedModel,
    prompt: &str,
    trig: &[u32],
    target: &[u32],
) -> R<Vec<Vec<f32>>> {
    let sl = slot(m, prompt, Position::Start).ok_or_else(|| msg("prompt renders to nothing"))?;
    onehot_grad(m, &[sl], trig, target, 0)
}
