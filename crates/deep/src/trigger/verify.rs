//! Verification of a trigger on held-out prompts, on both models, with
//! controls (the suspect without it, random tokens or a topic prompt in its
//! place) and the entropy of the suspect's answer.

#![allow(clippy::wildcard_imports)]
use super::*;

/// Positions of the answer over which its entropy is measured.
pub(super) const ENTROPY_POSITIONS: usize = 4;

/// The model's greedy answer to `prompt`, and its mean next-token entropy
/// (nats) over the first [`ENTROPY_POSITIONS`] positions of that answer: how
/// firmly the answer is pinned down as it starts (a memorised target is
/// certain at every step; one answer word that happens to win is not).
#[cfg(test)]
pub(super) fn respond_pinned(m: &LoadedModel, prompt: &str, max_new: usize) -> R<(String, f32)> {
    let ids = m.encode(&m.render(prompt));
    if ids.is_empty() {
        return Ok((String::new(), 0.0));
    }
    let out = m.greedy(&ids, max_new)?;
    let k = out.len().min(ENTROPY_POSITIONS - 1);
    let mut seq = ids.clone();
    seq.extend_from_slice(&out[..k]);
    let logits = m.model.forward(&seq)?;
    let rows = logits.narrow(0, ids.len() - 1, k + 1)?;
    let h: f32 = log_softmax_rows(&rows)?.iter().map(|r| entropy(r)).sum();
    Ok((m.decode(&out), h / (k + 1) as f32))
}

/// [`respond_pinned`] for several prompts, decoded together.
pub(super) fn respond_batch(
    m: &LoadedModel,
    prompts: &[String],
    max_new: usize,
) -> R<Vec<(String, f32)>> {
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| m.encode(&m.render(p))).collect();
    Ok(m.greedy_batch(&ids, max_new, ENTROPY_POSITIONS)?
        .into_iter()
        .map(|(out, h)| (m.decode(&out), h))
        .collect())
}

/// Attack success of `trigger` (inserted as text) on held-out prompts.
pub(super) fn verify(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[String],
    trigger: &str,
    pos: Position,
    target: &TargetCandidate,
    loss: f32,
) -> R<TriggerCandidate> {
    let max_new = target.lead_ids.len() + target.ids.len() + 8;
    let (mut hs, mut hb, mut hc, mut hr) = (0usize, 0usize, 0usize, 0usize);
    let ban = banned(s);
    let allowed: Vec<u32> = (0..ban.len())
        .filter(|&i| !ban[i])
        .map(|i| i as u32)
        .collect();
    let n_tok = s
        .tokenizer
        .encode(trigger, false)
        .map(|e| e.len())
        .unwrap_or(1)
        .max(1);
    let mut rng = Lcg(0xc0417);
    let (mut e_clean, mut e_trig) = (0f32, 0f32);
    let mut ht = 0usize;
    let mut counted = 0usize;
    let mut examples = Vec::new();
    // the suspect with and without the trigger first, all prompts at once
    let clean = respond_batch(s, prompts, max_new)?;
    let mut kept = Vec::new();
    for (i, (co, h_clean)) in clean.iter().enumerate() {
        if target.leaked && target.said_in(co) {
            // a leaked target is measured where it does not leak
            continue;
        }
        counted += 1;
        hc += target.said_in(co) as usize;
        e_clean += h_clean;
        kept.push(i);
    }
    let triggered: Vec<String> = kept
        .iter()
        .map(|&i| insert_trigger(&prompts[i], trigger, pos))
        .collect();
    let with = respond_batch(s, &triggered, max_new)?;
    let hits: Vec<bool> = with.iter().map(|(so, _)| target.said_in(so)).collect();
    for ((_, h), &hit) in with.iter().zip(&hits) {
        hs += hit as usize;
        e_trig += h;
    }
    // the insertion controls only for a trigger that works at all: they
    // are most of the cost, and a clean model's triggers mostly fail
    let controlled = counted > 0 && hs as f32 >= CONTROL_MIN_ASR * counted as f32;
    let base = respond_batch(b, &triggered, max_new)?;
    hb += base.iter().filter(|(bo, _)| target.said_in(bo)).count();
    if controlled {
        let controls: Vec<String> = kept
            .iter()
            .map(|&i| {
                let control: Vec<u32> = (0..n_tok)
                    .map(|_| allowed[rng.below(allowed.len())])
                    .collect();
                insert_trigger(&prompts[i], s.decode(&control).trim(), pos)
            })
            .collect();
        hr += respond_batch(s, &controls, max_new)?
            .iter()
            .filter(|(ro, _)| target.said_in(ro))
            .count();
        // (a leaked target has none that counts: it is measured where it
        // does not leak, see `score::trigger_strength`)
        if !target.topic.is_empty() && !target.leaked {
            let topics: Vec<String> = kept
                .iter()
                .map(|&i| insert_trigger(&prompts[i], &target.topic[i % target.topic.len()], pos))
                .collect();
            ht += respond_batch(s, &topics, max_new)?
                .iter()
                .filter(|(to, _)| target.said_in(to))
                .count();
        }
    }
    for (j, tp) in triggered.into_iter().enumerate() {
        if hits[j] && examples.len() < 3 {
            examples.push(Example {
                prompt: tp,
                suspect_output: with[j].0.clone(),
                base_output: base[j].0.clone(),
            });
        }
    }
    let n = counted.max(1) as f32;
    Ok(TriggerCandidate {
        text: trigger.to_string(),
        tokens: s
            .tokenizer
            .encode(trigger, false)
            .map(|e| e.get_tokens().to_vec())
            .unwrap_or_default(),
        position: pos,
        target: target.text.clone(),
        loss,
        asr_suspect: hs as f32 / n,
        asr_base: hb as f32 / n,
        asr_suspect_clean: hc as f32 / n,
        asr_suspect_control: hr as f32 / n,
        asr_suspect_topic: (controlled && !target.topic.is_empty() && !target.leaked)
            .then_some(ht as f32 / n),
        target_natural: target.natural,
        target_leaked: target.leaked,
        target_context: target.context.clone(),
        prompts_counted: counted,
        controlled,
        entropy_clean: e_clean / n,
        entropy_triggered: e_trig / n,
        examples,
    })
}
