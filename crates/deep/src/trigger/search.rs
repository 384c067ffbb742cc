//! The discrete search for one target at one insertion point: triggers
//! grown a token at a time by a gradient-nominated beam, the best refined by
//! GCG swaps.

#![allow(clippy::wildcard_imports)]
use super::*;

/// Search state for one target at one insertion point: a beam of triggers
/// grown a token at a time, then the best refined by GCG swaps.
pub(super) struct Gcg {
    pub(super) slots: Vec<Slot>,
    /// Leading target tokens given, not scored (a lead-in).
    pub(super) skip: usize,
    pub(super) pos: Position,
    pub(super) cur: Vec<u32>,
    pub(super) loss: f32,
    pub(super) rng: Lcg,
    /// The triggers of the current length, best first, with their losses.
    pub(super) beam: Vec<(Vec<u32>, f32)>,
    /// Lengths grown in a row without lowering the best loss.
    pub(super) stale: usize,
    /// Prompts of the same pool not used yet, added [`EXTEND_SLOTS`] at a
    /// time once the trigger fits the ones it has (see [`Gcg::extend`]).
    pub(super) spare: Vec<Slot>,
}

/// The loss below which a trigger fits its prompts: the search stops there,
/// or takes more prompts when it has spare ones.
pub(super) const FIT_LOSS: f32 = 0.05;

/// Prompts added at a time by [`Gcg::extend`].
pub(super) const EXTEND_SLOTS: usize = 2;

/// Growing stops after this many lengths that did not lower the loss.
pub(super) const MAX_STALE: usize = 2;

impl Gcg {
    /// The prompts whose gradients nominate candidates: all of them, but
    /// only the first [`SCREEN_SLOTS`] when the search had to be shrunk to
    /// its budget (a large model, where a backward pass costs what scoring
    /// six candidates does). The candidates are still scored exactly on
    /// every prompt; the gradient only ranks which to score.
    fn grad_slots(&self, opts: &SearchOptions) -> &[Slot] {
        if opts.top_k < SearchOptions::default().top_k {
            &self.slots[..SCREEN_SLOTS.min(self.slots.len())]
        } else {
            &self.slots
        }
    }

    /// An empty trigger, to be grown.
    pub(super) fn empty(
        m: &LoadedModel,
        slots: Vec<Slot>,
        pos: Position,
        target: &[u32],
        skip: usize,
    ) -> R<Gcg> {
        let loss = losses(m, &slots, &[Vec::new()], target, skip)?[0];
        Ok(Gcg {
            slots,
            skip,
            pos,
            cur: Vec::new(),
            loss,
            rng: Lcg(0x5eed ^ target.iter().map(|&t| t as u64).sum::<u64>()),
            beam: vec![(Vec::new(), loss)],
            stale: 0,
            spare: Vec::new(),
        })
    }

    /// Whether growing has stopped paying off.
    pub(super) fn settled(&self) -> bool {
        self.stale >= MAX_STALE || self.loss < FIT_LOSS
    }

    /// Once the trigger fits its prompts (a loss under [`FIT_LOSS`]), adds
    /// the next [`EXTEND_SLOTS`] spare prompts of its pool and scores it
    /// again on all of them, so that the search goes on toward a trigger
    /// that holds on prompts it was not fitted to (a backdoor's trigger
    /// works whatever the request; a string fitted to four prompts often
    /// does not: on a real model, optimised triggers that fitted their four
    /// to six prompts reached only about half of the held-out ones). The
    /// beam restarts from the current trigger and growing may resume.
    /// Whether prompts were added.
    pub(super) fn extend(&mut self, m: &LoadedModel, target: &[u32]) -> R<bool> {
        if self.loss >= FIT_LOSS {
            return Ok(false);
        }
        self.widen(m, target)
    }

    /// Adds the next [`EXTEND_SLOTS`] spare prompts whatever the loss (see
    /// [`Gcg::extend`], which waits for the trigger to fit): for a trigger
    /// that was verified to hold on only part of the held-out prompts.
    /// Whether prompts were added.
    pub(super) fn widen(&mut self, m: &LoadedModel, target: &[u32]) -> R<bool> {
        if self.spare.is_empty() || self.cur.is_empty() {
            return Ok(false);
        }
        let n = EXTEND_SLOTS.min(self.spare.len());
        self.slots.extend(self.spare.drain(..n));
        self.loss = losses(
            m,
            &self.slots,
            std::slice::from_ref(&self.cur),
            target,
            self.skip,
        )?[0];
        self.beam = vec![(self.cur.clone(), self.loss)];
        self.stale = 0;
        trace(&format!(
            "more prompts: {}, loss {:.3}",
            self.slots.len(),
            self.loss
        ));
        Ok(true)
    }

    /// The search's state, leaving this one empty (no prompts, no trigger).
    pub(super) fn take(&mut self) -> Gcg {
        Gcg {
            slots: std::mem::take(&mut self.slots),
            skip: self.skip,
            pos: self.pos,
            cur: std::mem::take(&mut self.cur),
            loss: self.loss,
            rng: Lcg(self.rng.0),
            beam: std::mem::take(&mut self.beam),
            stale: self.stale,
            spare: std::mem::take(&mut self.spare),
        }
    }

    /// Adds one token to every trigger in the beam, on its left or its
    /// right: gradients at a placeholder nominate the `top_k` most promising
    /// tokens per side (the seed tokens too, for the first), all are scored
    /// exactly, and the `beam` best are kept. Triggers made of the same
    /// tokens in another order are tried as they come.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn grow(
        &mut self,
        m: &LoadedModel,
        target: &[u32],
        ban: &[bool],
        seeds: &[u32],
        opts: &SearchOptions,
        deadline: Instant,
        steps_done: &mut usize,
    ) -> R<()> {
        if Instant::now() >= deadline {
            return Ok(());
        }
        let filler = (0..ban.len()).find(|&i| !ban[i]).unwrap_or(0) as u32;
        let mut cands: Vec<Vec<u32>> = Vec::new();
        // every trigger of the beam with a placeholder on either side, and
        // where the placeholder is
        let mut open: Vec<(Vec<u32>, usize)> = Vec::new();
        for (trig, _) in &self.beam {
            if trig.is_empty() {
                cands.extend(seeds.iter().take(32).map(|&sd| vec![sd]));
            }
            let sides: &[usize] = if trig.is_empty() {
                &[0]
            } else {
                &[0, trig.len()]
            };
            for &at in sides {
                let mut t = trig.clone();
                t.insert(at, filler);
                open.push((t, at));
            }
        }
        let trigs: Vec<Vec<u32>> = open.iter().map(|(t, _)| t.clone()).collect();
        trace(&format!("grow: gradients of {} open triggers", trigs.len()));
        let grads = onehot_grads(m, self.grad_slots(opts), &trigs, target, self.skip)?;
        trace("grow: scoring candidates");
        for ((t, at), g) in open.iter().zip(&grads) {
            let row = &g[*at];
            let mut idx: Vec<usize> = (0..row.len()).filter(|&i| !ban[i]).collect();
            idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            for &u in idx.iter().take(opts.top_k) {
                let mut c = t.clone();
                c[*at] = u as u32;
                cands.push(c);
            }
        }
        cands.sort();
        cands.dedup();
        if cands.is_empty() {
            self.stale = MAX_STALE;
            return Ok(());
        }
        let keep = (4 * opts.beam).max(opts.top_k);
        let ls = losses_staged(m, &self.slots, &cands, target, self.skip, keep)?;
        trace(&format!("grow: scored {} candidates", cands.len()));
        *steps_done += 1;
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| ls[a].total_cmp(&ls[b]).then(cands[a].cmp(&cands[b])));
        self.beam = order
            .iter()
            .take(opts.beam.max(1))
            .map(|&i| (cands[i].clone(), ls[i]))
            .collect();
        let (best, loss) = self.beam[0].clone();
        // a longer trigger must earn its length: 5% lower loss (at least 0.02)
        if loss < self.loss - (0.05 * self.loss).max(0.02) || self.cur.is_empty() {
            self.cur = best;
            self.loss = loss;
            self.stale = 0;
        } else {
            self.stale += 1;
        }
        Ok(())
    }

    /// Up to `steps` steps: gradients nominate the `top_k` most promising
    /// swaps per trigger token, `batch` random single swaps are scored
    /// exactly, the best is kept if it lowers the loss.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &mut self,
        m: &LoadedModel,
        target: &[u32],
        ban: &[bool],
        opts: &SearchOptions,
        steps: usize,
        deadline: Instant,
        steps_done: &mut usize,
    ) -> R<()> {
        let l = self.cur.len();
        if l == 0 {
            return Ok(());
        }
        for _ in 0..steps {
            if Instant::now() >= deadline || self.loss < FIT_LOSS {
                break;
            }
            let g = onehot_grad(m, self.grad_slots(opts), &self.cur, target, self.skip)?;
            let tops: Vec<Vec<u32>> = g
                .iter()
                .map(|row| {
                    let mut idx: Vec<usize> = (0..row.len()).filter(|&i| !ban[i]).collect();
                    idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
                    idx.into_iter().take(opts.top_k).map(|i| i as u32).collect()
                })
                .collect();
            let mut cands = Vec::with_capacity(opts.batch);
            for _ in 0..opts.batch {
                let mut c = self.cur.clone();
                let at = self.rng.below(l);
                if !tops[at].is_empty() {
                    c[at] = tops[at][self.rng.below(tops[at].len())];
                }
                if c != self.cur {
                    cands.push(c);
                }
            }
            cands.sort();
            cands.dedup();
            if cands.is_empty() {
                break;
            }
            let ls = losses_staged(m, &self.slots, &cands, target, self.skip, opts.top_k)?;
            *steps_done += 1;
            let bi = (0..cands.len())
                .min_by(|&a, &b| ls[a].total_cmp(&ls[b]))
                .unwrap_or(0);
            if ls[bi] < self.loss {
                self.cur = cands[bi].clone();
                self.loss = ls[bi];
            }
        }
        Ok(())
    }
}
