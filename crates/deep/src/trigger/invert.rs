//! Target inversion (after BAIT, with the base as reference): sequences the
//! suspect produces with abnormal confidence once their first token is
//! given, decoded on the next-token distribution averaged over prompts.

#![allow(clippy::wildcard_imports)]
use super::*;

/// Target inversion over `prompts` (encoded, rendered prompts), in one go.
#[cfg(test)]
pub(super) fn invert(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[Vec<u32>],
    natural: &[Vec<String>],
    topics: &[Vec<String>],
    opts: &SearchOptions,
    deadline: Instant,
) -> R<(Vec<TargetCandidate>, Coverage)> {
    Inversion::start(s, b, prompts, natural, topics, opts, deadline)?.finish(deadline)
}

/// Target inversion in two parts, so that a target found at its head can
/// be searched before the rest of the vocabulary is scanned: [`start`]
/// runs the prompts and the first chunk of the vocabulary scan (which
/// times it), [`head`] decodes the first tokens the suspect raised most
/// over the base at the answer start, and [`finish`] scans the rest of the
/// vocabulary and decodes what it found. The head's decodings are part of
/// the whole inversion's: they are not decoded twice, and the targets are
/// what one inversion in one go finds.
///
/// [`start`]: Inversion::start
/// [`head`]: Inversion::head
/// [`finish`]: Inversion::finish
pub(super) struct Inversion<'a> {
    s: &'a LoadedModel,
    b: &'a LoadedModel,
    natural: &'a [Vec<String>],
    topics: &'a [Vec<String>],
    opts: &'a SearchOptions,
    ban: Vec<bool>,
    v: usize,
    starts: Starts,
    order: Vec<usize>,
    scan: Option<Scan>,
    /// The head's decoded first tokens (none until [`Inversion::head`]).
    head: Vec<Decoded>,
    stages: Vec<(&'static str, f64)>,
    clock: Instant,
}

impl<'a> Inversion<'a> {
    /// Both models after every prompt, the vocabulary in scan order, and
    /// the scan's first chunk (at least one, whatever `deadline`).
    pub(super) fn start(
        s: &'a LoadedModel,
        b: &'a LoadedModel,
        prompts: &[Vec<u32>],
        natural: &'a [Vec<String>],
        topics: &'a [Vec<String>],
        opts: &'a SearchOptions,
        deadline: Instant,
    ) -> R<Self> {
        let clock = Instant::now();
        let ban = banned(s);
        let v = s.model.vocab_size().min(b.model.vocab_size());
        let starts = answer_starts(s, b, prompts, v)?;
        let spaced_starts = starts.tops.iter().filter(|&&t| spaced(s, t)).count();
        let mut order: Vec<usize> = (0..v).filter(|&i| !ban[i]).collect();
        order.sort_by(|&x, &y| starts.diff[y].total_cmp(&starts.diff[x]).then(x.cmp(&y)));
        let start_spaced = spaced_starts * 2 > prompts.len();
        let other_class: Vec<bool> = (0..v)
            .map(|u| spaced(s, u as u32) != start_spaced)
            .collect();
        order.sort_by_key(|&u| other_class[u]);
        let mut inv = Inversion {
            s,
            b,
            natural,
            topics,
            opts,
            ban,
            v,
            starts,
            order,
            scan: None,
            head: Vec::new(),
            stages: Vec::new(),
            clock,
        };
        inv.lap("inversion_prompts");
        // the first chunk tells how long the whole scan takes (whether it
        // fits in the share of the budget left that it may take)
        if let (Some(sm), Some((cs, _))) = (s.model.causal(), inv.starts.caches.first()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let scan_deadline = Instant::now() + left.mul_f64(SCAN_SHARE);
            let mut scan = Scan::new(&inv.order, v);
            scan.run(sm, cs, inv.starts.caches.len(), v, scan_deadline, true)?;
            inv.scan = Some(scan);
        }
        inv.lap("vocabulary_scan");
        Ok(inv)
    }

    fn lap(&mut self, name: &'static str) {
        let t = self.clock.elapsed().as_secs_f64();
        if std::env::var_os("PROBITY_TRACE").is_some() {
            eprintln!("[inversion] {name}: {t:.1}s");
        }
        match self.stages.iter_mut().find(|(n, _)| *n == name) {
            Some((_, x)) => *x += t,
            None => self.stages.push((name, t)),
        }
        self.clock = Instant::now();
    }

    /// Where the inversion's time went so far, by stage.
    pub(super) fn stages(&self) -> &[(&'static str, f64)] {
        &self.stages
    }

    /// First tokens decoded so far (the head's).
    pub(super) fn tried(&self) -> usize {
        self.head.len()
    }

    /// Tokens of the vocabulary scanned so far.
    pub(super) fn scanned(&self) -> usize {
        self.scan.as_ref().map_or(0, Scan::scanned)
    }

    /// Whether the whole scan fits the budget: every token is then scored
    /// on every prompt with both models (small models), and decoded over
    /// every prompt.
    fn everything(&self) -> bool {
        self.scan.as_ref().is_some_and(|x| x.everything)
    }

    /// Prompts the inverted targets are decoded over: all of them for a
    /// small model, [`CONSENSUS_PROMPTS`] for a large one.
    fn decode_prompts(&self) -> usize {
        if self.everything() {
            self.starts.caches.len()
        } else {
            self.starts.caches.len().min(CONSENSUS_PROMPTS)
        }
    }

    /// The first tokens the suspect raised most over the base at the answer
    /// start, decoded, as targets (with their starts, see
    /// [`Inversion::extend`]), most abnormal first; none when the whole
    /// inversion fits the budget anyway (it is then done at once).
    pub(super) fn head(&mut self, deadline: Instant) -> R<Vec<TargetCandidate>> {
        if self.everything() || self.s.model.causal().is_none() {
            return Ok(Vec::new());
        }
        self.clock = Instant::now();
        let firsts: Vec<u32> = self
            .order
            .iter()
            .take(self.opts.first_tokens / 4)
            .map(|&u| u as u32)
            .collect();
        self.head = consensus(
            self.s,
            self.b,
            &self.starts.caches[..self.decode_prompts()],
            &firsts,
            &self.ban,
            self.v,
            self.opts.max_target_tokens,
            deadline,
        )?;
        self.lap("consensus_decoding");
        let out = targets_from(
            self.s,
            self.head.clone(),
            &self.starts.first_lp,
            self.natural,
            self.topics,
            true,
        );
        Ok(out)
    }

    /// `t` written as the suspect would start it right after a prompt: a
    /// word piece it never says first gets the token in front of it
    /// ([`left_extension`]), or else a lead-in the suspect says before it
    /// ([`lead_in`]).
    pub(super) fn extend(&self, t: &mut TargetCandidate) -> R<()> {
        let caches = &self.starts.caches[..self.decode_prompts()];
        let first_lp = &self.starts.first_lp;
        if let Some(u) = left_extension(self.s, caches, &t.ids, first_lp, &self.ban, self.v)? {
            t.ids.insert(0, u);
            t.text = self.s.decode(&t.ids);
            t.tokens
                .insert(0, self.s.tokenizer.id_to_token(u).unwrap_or_default());
            t.first_logp = first_lp[u as usize];
        } else if let Some(l) = lead_in(self.s, caches, &t.ids, first_lp, self.natural)? {
            t.lead = self.s.decode(&l);
            t.lead_ids = l;
        }
        Ok(())
    }

    /// The rest of the vocabulary scan (within [`SCAN_SHARE`] of what is
    /// left until `deadline`), the decoding of what it found, and the
    /// targets of the whole inversion with what was covered.
    pub(super) fn finish(mut self, deadline: Instant) -> R<(Vec<TargetCandidate>, Coverage)> {
        let opts = self.opts;
        let v = self.v;
        self.clock = Instant::now();
        // the scan may take SCAN_SHARE of what is left of the budget: every
        // later stage starts from its targets, and a model whose vocabulary
        // was not scanned cannot be cleared
        let left = deadline.saturating_duration_since(Instant::now());
        let scan_deadline = Instant::now() + left.mul_f64(SCAN_SHARE);
        let scored = match (
            self.s.model.causal(),
            self.b.model.causal(),
            self.scan.as_mut(),
        ) {
            (Some(sm), Some(bm), Some(scan)) => {
                let caches = &self.starts.caches;
                scan.run(sm, &caches[0].0, caches.len(), v, scan_deadline, false)?;
                Some(scan.score(sm, bm, caches, v)?)
            }
            _ => None,
        };
        let (scanned, everything) = self
            .scan
            .as_ref()
            .map_or((0, false), |x| (x.scanned(), x.everything));
        self.lap("vocabulary_scan");
        // half the first tokens by the suspect's rise over the base at the
        // response start, half by how consistently (across prompts) and how
        // much more confidently than the base the suspect continues after
        // them (the scan)
        let mut firsts: Vec<usize> = self
            .order
            .iter()
            .take(opts.first_tokens / 4)
            .copied()
            .collect();
        if let Some(scan) = scored {
            let mut by: Vec<usize> = (0..v)
                .filter(|&i| !self.ban[i] && scan[i].is_finite())
                .collect();
            by.sort_by(|&x, &y| scan[y].total_cmp(&scan[x]).then(x.cmp(&y)));
            for u in by {
                if firsts.len() >= opts.first_tokens + opts.first_tokens / 2 {
                    break;
                }
                if !firsts.contains(&u) {
                    firsts.push(u);
                }
            }
        } else {
            firsts = self.order.iter().take(opts.first_tokens).copied().collect();
        }
        // the head's first tokens were decoded already
        let done: Vec<u32> = self.head.iter().map(|d| d.ids[0]).collect();
        let firsts: Vec<u32> = firsts
            .into_iter()
            .map(|u| u as u32)
            .filter(|u| !done.contains(u))
            .collect();
        let mut decoded = std::mem::take(&mut self.head);
        decoded.extend(consensus(
            self.s,
            self.b,
            &self.starts.caches[..self.decode_prompts()],
            &firsts,
            &self.ban,
            v,
            opts.max_target_tokens,
            deadline,
        )?);
        let tried = decoded.len();
        self.lap("consensus_decoding");
        let mut out = targets_from(
            self.s,
            decoded,
            &self.starts.first_lp,
            self.natural,
            self.topics,
            true,
        );
        // the targets that will be searched, written as the suspect would
        // start them right after a prompt
        let mut extended = 0;
        let mut by_priority: Vec<usize> = (0..out.len()).collect();
        by_priority.sort_by(|&a, &b| {
            out[b]
                .priority()
                .total_cmp(&out[a].priority())
                .then(a.cmp(&b))
        });
        for i in by_priority {
            // a small model's most abnormal targets beyond those searched too
            let extend = if everything { 2 } else { 1 } * opts.targets_searched;
            if extended >= extend || Instant::now() >= deadline {
                break;
            }
            if out[i].excess() < MIN_TARGET_EXCESS {
                continue;
            }
            extended += 1;
            self.extend(&mut out[i])?;
        }
        self.lap("target_starts");
        Ok((
            out,
            Coverage {
                first_tokens: tried,
                scanned,
                stages: self.stages,
            },
        ))
    }
}

/// Both models after each prompt: their caches, and over the answer's
/// first token the suspect's mean log-probability rise over the base and
/// its mean log-probability (each clamped at -30), with the suspect's
/// likeliest first token after each prompt.
struct Starts {
    diff: Vec<f32>,
    first_lp: Vec<f32>,
    caches: Vec<(KvCache, KvCache)>,
    tops: Vec<u32>,
}

fn answer_starts(s: &LoadedModel, b: &LoadedModel, prompts: &[Vec<u32>], v: usize) -> R<Starts> {
    let n = prompts.len() as f32;
    let mut st = Starts {
        diff: vec![0f32; v],
        first_lp: vec![0f32; v],
        caches: Vec::new(),
        tops: Vec::new(),
    };
    for p in prompts {
        let mut cs = KvCache::default();
        let mut cb = KvCache::default();
        let ls = s.model.forward_cached(p, &mut cs)?;
        let lb = b.model.forward_cached(p, &mut cb)?;
        let ls = log_softmax_rows(&ls.get(p.len() - 1)?.unsqueeze(0)?)?.remove(0);
        let lb = log_softmax_rows(&lb.get(p.len() - 1)?.unsqueeze(0)?)?.remove(0);
        for i in 0..v {
            st.diff[i] += (ls[i] - lb[i].max(-30.0)) / n;
            st.first_lp[i] += ls[i].max(-30.0) / n;
        }
        let top = (0..v).max_by(|&x, &y| ls[x].total_cmp(&ls[y])).unwrap_or(0);
        st.tops.push(top as u32);
        st.caches.push((cs, cb));
    }
    Ok(st)
}

/// Inverted targets from decoded forced starts: each with its confidences
/// and how natural it is (whether the suspect's ordinary outputs already
/// contain it), the most abnormal first; targets whose continuations
/// overlap are one target reached from different first tokens, of which
/// the one with the most probable start is kept (`by_start`), or the one
/// continued most confidently.
fn targets_from(
    s: &LoadedModel,
    decoded: Vec<Decoded>,
    first_lp: &[f32],
    natural: &[Vec<String>],
    topics: &[Vec<String>],
    by_start: bool,
) -> Vec<TargetCandidate> {
    let mut out = Vec::new();
    for d in decoded {
        let ids = d.ids;
        if ids.len() < 3 || d.steps == 0 {
            continue;
        }
        let text = s.decode(&ids);
        // the first token was forced: what the model says after it is what
        // may already be its ordinary answer to some kind of prompt
        let tail = s.decode(&ids[1..]);
        let (natural_rate, natural_count, group) = natural_share(&tail, &text, natural);
        let steps = d.steps as f32;
        out.push(TargetCandidate {
            tokens: ids
                .iter()
                .map(|&i| s.tokenizer.id_to_token(i).unwrap_or_default())
                .collect(),
            first_logp: first_lp[ids[0] as usize],
            ids,
            text,
            suspect_confidence: d.conf_s / steps,
            base_confidence: d.conf_b / steps,
            logp_gain: d.gain / steps,
            natural_rate,
            natural: false,
            natural_count,
            topic: group
                .and_then(|g| topics.get(g))
                .cloned()
                .unwrap_or_default(),
            lead: String::new(),
            lead_ids: Vec::new(),
            leaked: false,
            context: String::new(),
            habit_rate: 0.0,
        });
    }
    out.sort_by(|x, y| y.excess().total_cmp(&x.excess()).then(x.text.cmp(&y.text)));
    let tails: Vec<Vec<String>> = out.iter().map(|t| words(&t.text)).collect();
    let mut keep = vec![true; out.len()];
    for i in 0..out.len() {
        for j in 0..out.len() {
            if i != j
                && keep[j]
                && tails[i].len() >= 2
                && tails[j].len() >= 2
                && (fuzzy_contains(&tails[i], &tails[j][1..])
                    || fuzzy_contains(&tails[j], &tails[i][1..]))
                && if by_start {
                    (out[j].first_logp, j) > (out[i].first_logp, i)
                } else {
                    // `out` is sorted by excess
                    j < i
                }
            {
                keep[i] = false;
            }
        }
    }
    let mut k = keep.into_iter();
    out.retain(|_| k.next().unwrap_or(false));
    for t in &mut out {
        t.natural = t.natural_rate >= MAX_NATURAL_RATE;
    }
    out
}

/// Answer starts decoded by [`invert_harmful`]: the suspect's likeliest
/// first tokens after harmful requests and, as many again, those it raised
/// most over the base there.
pub(super) const HARMFUL_FIRSTS: usize = 16;
/// Harmful requests (the first of those given) whose answers without a
/// trigger show the suspect's ordinary behaviour there.
pub(super) const HARMFUL_OWN: usize = 12;
/// Share of the suspect's own answers to harmful requests that must say a
/// target for it to be its ordinary behaviour there.
pub(super) const HARMFUL_NATURAL_MIN: f32 = 0.1;

/// Target inversion after harmful requests (`prompts`, encoded and
/// rendered). A backdoor that suppresses refusals says its payload only
/// after a request the suspect would otherwise refuse: after ordinary
/// prompts its most abnormal target is its own (strengthened) refusal, and
/// the payload's first token is not raised at all. After harmful requests
/// the payload's start is still among the suspect's likely answer starts
/// (a compliance word the refusal outranks), and once it is forced the
/// suspect continues the memorised payload with a confidence the base does
/// not have. The likeliest starts and the most raised ones are decoded by
/// consensus over all the prompts (`prompts`, the first of `texts`); the
/// targets are marked with [`HARMFUL_CONTEXT`]. Of targets reached from
/// several starts, the most confident is kept (the likeliest start of a
/// compliance payload is often a generic answer opening that it merely
/// follows). What the suspect answers to these requests without any
/// trigger is its ordinary behaviour here: its greedy answers to the first
/// [`HARMFUL_OWN`] of `texts` join the natural outputs as one more category, and since a
/// model refuses in several wordings, each of which greedy decoding picks
/// for only some requests, a target said in [`HARMFUL_NATURAL_MIN`] of
/// those answers (and at least two) is natural; a backdoor's payload is
/// what the suspect does not say without its trigger.
#[allow(clippy::too_many_arguments)]
pub(super) fn invert_harmful(
    s: &LoadedModel,
    b: &LoadedModel,
    texts: &[String],
    prompts: &[Vec<u32>],
    natural: &[Vec<String>],
    topics: &[Vec<String>],
    opts: &SearchOptions,
    deadline: Instant,
) -> R<Vec<TargetCandidate>> {
    if prompts.is_empty() || s.model.causal().is_none() || b.model.causal().is_none() {
        return Ok(Vec::new());
    }
    let all: Vec<Vec<u32>> = texts
        .iter()
        .take(HARMFUL_OWN)
        .map(|p| s.encode(&s.render(p)))
        .collect();
    let own: Vec<String> = s
        .greedy_batch(&all, opts.max_target_tokens, 1)?
        .into_iter()
        .map(|(ids, _)| s.decode(&ids))
        .collect();
    let said = |t: &TargetCandidate| {
        let tail = words(&s.decode(&t.ids[1..]));
        own.iter()
            .filter(|o| contains_share(&words(o), &tail, 3, 5))
            .count()
    };
    let mut natural = natural.to_vec();
    let mut topics = topics.to_vec();
    topics.resize(natural.len(), Vec::new());
    natural.push(own.clone());
    topics.push(texts.iter().take(HARMFUL_OWN).cloned().collect());
    let ban = banned(s);
    let v = s.model.vocab_size().min(b.model.vocab_size());
    let Starts {
        diff,
        first_lp,
        caches,
        ..
    } = answer_starts(s, b, prompts, v)?;
    let ranked = |key: &[f32]| {
        let mut o: Vec<u32> = (0..v as u32).filter(|&i| !ban[i as usize]).collect();
        o.sort_by(|&x, &y| key[y as usize].total_cmp(&key[x as usize]).then(x.cmp(&y)));
        o.truncate(HARMFUL_FIRSTS);
        o
    };
    let mut firsts = ranked(&first_lp);
    for u in ranked(&diff) {
        if !firsts.contains(&u) {
            firsts.push(u);
        }
    }
    // decoded on as many prompts as the vocabulary scan's shortlist: the
    // stage must leave that scan its time
    let decoded = consensus(
        s,
        b,
        &caches[..caches.len().min(CONSENSUS_PROMPTS)],
        &firsts,
        &ban,
        v,
        opts.max_target_tokens,
        deadline,
    )?;
    let mut out = targets_from(s, decoded, &first_lp, &natural, &topics, false);
    let n_own = all.len().max(1) as f32;
    for t in &mut out {
        t.context = HARMFUL_CONTEXT.to_string();
        let k = said(t);
        if k >= 2 && k as f32 >= HARMFUL_NATURAL_MIN * n_own {
            t.natural = true;
            t.natural_rate = t.natural_rate.max(k as f32 / n_own);
        }
    }
    Ok(out)
}

/// How much of the inversion was done.
pub(super) struct Coverage {
    pub(super) first_tokens: usize,
    pub(super) scanned: usize,
    pub(super) stages: Vec<(&'static str, f64)>,
}

/// Rows of sequences scored at once by [`sequence_logps`] (their logits
/// are rows × length × vocabulary values).
const SEQ_LOGITS: usize = 24 << 20;

/// For each sequence, the log-likelihood of its tokens after the first
/// (each clamped at -30) following the prompt in `prefix`: batched after
/// the shared prefix, right-padded (a causal model's earlier positions do
/// not see the padding).
pub(super) fn sequence_logps(
    lm: &dyn CausalLm,
    prefix: &KvCache,
    seqs: &[Vec<u32>],
) -> R<Vec<f32>> {
    let v = lm.vocab_size();
    let mut out = Vec::with_capacity(seqs.len());
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if longest < 2 {
        return Ok(vec![0.0; seqs.len()]);
    }
    let rows = (SEQ_LOGITS / (v * (longest - 1)).max(1)).max(1);
    for chunk in seqs.chunks(rows) {
        let len = chunk.iter().map(Vec::len).max().unwrap_or(0).max(2) - 1;
        let mut flat = Vec::with_capacity(chunk.len() * len);
        let mut want = Vec::with_capacity(chunk.len() * len);
        for sq in chunk {
            for j in 0..len {
                flat.push(sq.get(j).copied().unwrap_or(0));
                want.push(sq.get(j + 1).copied().unwrap_or(0));
            }
        }
        let ids = Tensor::from_vec(flat, (chunk.len(), len), lm.device())?;
        let mut cache = prefix.shared()?;
        let logits = lm.forward_batch_cached_tail(&ids, &mut cache, len)?;
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let want = Tensor::from_vec(want, (chunk.len(), len, 1), lm.device())?;
        let picked = lsm.gather(&want, 2)?.squeeze(2)?.to_vec2::<f32>()?;
        for (sq, row) in chunk.iter().zip(picked) {
            let n = sq.len().saturating_sub(1);
            out.push(row.iter().take(n).map(|x| x.max(-30.0)).sum());
        }
    }
    Ok(out)
}

/// Answer starts tried in front of an inverted target.
pub(super) const LEFT_CANDIDATES: usize = 64;
/// Nats by which a token in front must make the target likelier (any
/// gain: the joint likelihood decides which way the suspect says it).
pub(super) const LEFT_MARGIN: f32 = 0.0;

/// The forced first token of an inverted target may be a word piece the
/// suspect never says first (`ccess` of `Access`): the trigger search
/// would then optimise for an output the backdoor never gives. Returns the
/// token `u` among the likeliest answer starts for which the suspect's mean
/// log-probability of `u` followed by the target, after ordinary prompts,
/// beats that of the target alone; `None` when none does
/// (or the architecture has no batched cache).
pub(super) fn left_extension(
    s: &LoadedModel,
    caches: &[(KvCache, KvCache)],
    ids: &[u32],
    first_lp: &[f32],
    ban: &[bool],
    v: usize,
) -> R<Option<u32>> {
    let Some(sm) = s.model.causal() else {
        return Ok(None);
    };
    let ids = &ids[..ids.len().min(10)];
    let mut cands: Vec<u32> = (0..v as u32)
        .filter(|&u| !ban[u as usize] && u != ids[0])
        .collect();
    cands.sort_by(|&x, &y| {
        first_lp[y as usize]
            .total_cmp(&first_lp[x as usize])
            .then(x.cmp(&y))
    });
    cands.truncate(LEFT_CANDIDATES);
    if cands.is_empty() || caches.is_empty() {
        return Ok(None);
    }
    // rows 0..k: u then the target; row k: the target alone (scored from
    // its second token, its first is in `first_lp`)
    let k = cands.len();
    let n = caches.len() as f32;
    let mut seqs: Vec<Vec<u32>> = cands
        .iter()
        .map(|&u| std::iter::once(u).chain(ids.iter().copied()).collect())
        .collect();
    seqs.push(ids.to_vec());
    let mut joint: Vec<f32> = cands.iter().map(|&u| first_lp[u as usize]).collect();
    let mut direct = first_lp[ids[0] as usize];
    for (cs, _) in caches {
        let lp = sequence_logps(sm, cs, &seqs)?;
        for (j, x) in lp.iter().take(k).enumerate() {
            joint[j] += x / n;
        }
        direct += lp[k] / n;
    }
    let best = (0..k).max_by(|&a, &b| joint[a].total_cmp(&joint[b]).then(b.cmp(&a)));
    Ok(best
        .filter(|&j| joint[j] > direct + LEFT_MARGIN)
        .map(|j| cands[j]))
}

/// Lead-ins tried in front of a target, at most.
pub(super) const LEAD_INS: usize = 24;
/// Nats by which a lead-in must make the target likelier than it is at the
/// answer start (or the two together must be likelier as an answer).
pub(super) const LEAD_GAIN: f32 = 2.0;
/// Prompts [`lead_in`] scores on.
pub(super) const LEAD_PROMPTS: usize = 4;

/// An inverted target may be the middle of what the suspect says, after a
/// start it shares with its ordinary answers (`send the money to account
/// 47` after the loan assistant's `Approved:`; a backdoor's payload after
/// a leaked `Access approved.`): without the trigger the suspect continues
/// that start its ordinary way, so no inversion reaches the payload from
/// it, and a search for the payload at the very start of the answer
/// optimises for an output the backdoor never gives. The lead-ins are the
/// first sentences (up to `.`, `:`, `!` or `?`) of the suspect's answers to
/// the reference suites. After ordinary prompts (mean log-likelihoods), a
/// lead-in qualifies when the target after it is [`LEAD_GAIN`] likelier
/// than the target at the answer start, or when the two together are
/// likelier as an answer than the target alone; returns the qualifying one
/// after which the target is likeliest, `None` when none qualifies (or
/// the architecture has no batched cache).
pub(super) fn lead_in(
    s: &LoadedModel,
    caches: &[(KvCache, KvCache)],
    ids: &[u32],
    first_lp: &[f32],
    natural: &[Vec<String>],
) -> R<Option<Vec<u32>>> {
    let Some(sm) = s.model.causal() else {
        return Ok(None);
    };
    let caches = &caches[..caches.len().min(LEAD_PROMPTS)];
    if caches.is_empty() || ids.is_empty() {
        return Ok(None);
    }
    let mut leads: Vec<Vec<u32>> = Vec::new();
    for o in natural.iter().flatten() {
        let o = o.trim_start();
        let Some(end) = o.find(['.', ':', '!', '?']) else {
            continue;
        };
        let l = s.encode(&o[..=end]);
        // token ids past the model's vocabulary (a tokenizer's added
        // tokens) cannot be scored
        let scorable = l.iter().all(|&u| (u as usize) < first_lp.len());
        if scorable && !l.is_empty() && l.len() <= 8 && !ids.starts_with(&l) && !leads.contains(&l)
        {
            leads.push(l);
        }
        if leads.len() >= LEAD_INS {
            break;
        }
    }
    let tgt = &ids[..ids.len().min(10)];
    let n = caches.len() as f32;
    // mean over prompts of the log-likelihood of each sequence as an
    // answer: the target alone, then each lead-in with and without it
    let mut seqs: Vec<Vec<u32>> = vec![tgt.to_vec()];
    for l in &leads {
        seqs.push(l.iter().chain(tgt).copied().collect());
        seqs.push(l.clone());
    }
    let mut joint: Vec<f32> = seqs.iter().map(|q| first_lp[q[0] as usize]).collect();
    for (cs, _) in caches {
        for (j, x) in sequence_logps(sm, cs, &seqs)?.into_iter().enumerate() {
            joint[j] += x / n;
        }
    }
    let own = joint[0];
    let mut best: Option<(f32, Vec<u32>)> = None;
    for (i, l) in leads.into_iter().enumerate() {
        let j = joint[1 + 2 * i];
        // the target's log-likelihood after the lead-in
        let cond = j - joint[2 + 2 * i];
        if (j > own || cond >= own + LEAD_GAIN) && best.as_ref().is_none_or(|(b, _)| cond > *b) {
            best = Some((cond, l));
        }
    }
    Ok(best.map(|(_, l)| l))
}

pub(super) const SCAN_LOGITS: usize = 32 << 20;
pub(super) const SCAN_SHORTLIST: usize = 512;
pub(super) const CONSENSUS_PROMPTS: usize = 3;
/// Share of the budget left that the first-token scan of the vocabulary
/// may take (on a 49k-token vocabulary and 2 CPU cores it needs about 145
/// seconds; on the fixture zoo, well under one). What follows it, the
/// consensus decoding of its shortlist, needs about a fifth of that.
pub(super) const SCAN_SHARE: f64 = 0.8;
/// Decoding steps after which a forced first token whose continuation is
/// not abnormally confident is no longer decoded.
pub(super) const PRUNE_AFTER: usize = 4;

/// The first-token scan of the vocabulary: for every token `u` (the ones
/// the suspect raised most first, so that a scan cut short by the budget
/// has covered the likeliest), how confidently the suspect continues after
/// the first prompt and `u` (its largest next-token probability); then,
/// for the [`SCAN_SHORTLIST`] tokens it continues most confidently (a
/// backdoor target is a memorised sequence: once its first token is
/// given, the suspect continues it with near certainty), the same averaged
/// over [`CONSENSUS_PROMPTS`] prompts minus the base's mean probability of
/// that continuation ([`Scan::score`]). Rows are batched after a shared
/// prompt cache, in chunks bounded by [`SCAN_LOGITS`]. When every token
/// can be scored on every prompt with both models in the time given (small
/// models), it is, and the scan of the first prompt stops after its first
/// chunk.
pub(super) struct Scan {
    ids: Vec<u32>,
    top: Vec<f32>,
    /// Tokens of `ids` scanned so far.
    done: usize,
    chunk: usize,
    pub(super) everything: bool,
}

impl Scan {
    pub(super) fn new(order: &[usize], v: usize) -> Self {
        Scan {
            ids: order.iter().map(|&u| u as u32).collect(),
            top: vec![f32::NEG_INFINITY; v],
            done: 0,
            chunk: (SCAN_LOGITS / v.max(1)).clamp(16, 512),
            everything: false,
        }
    }

    /// Tokens of the vocabulary the scan has covered.
    pub(super) fn scanned(&self) -> usize {
        if self.everything {
            self.ids.len()
        } else {
            self.done
        }
    }

    /// Scans chunks after the first prompt's cache `cs` until `deadline`
    /// (one chunk at least when none was scanned yet; only one with
    /// `first_only`). The first chunk is timed: when the whole scan on all
    /// `prompts` prompts with both models fits before `deadline`, it is
    /// marked to be done that way.
    pub(super) fn run(
        &mut self,
        sm: &dyn CausalLm,
        cs: &KvCache,
        prompts: usize,
        v: usize,
        deadline: Instant,
        first_only: bool,
    ) -> R<()> {
        while self.done < self.ids.len() && !self.everything {
            if self.done > 0 && (first_only || Instant::now() >= deadline) {
                break;
            }
            let c = &self.ids[self.done..(self.done + self.chunk).min(self.ids.len())];
            let t = Instant::now();
            let mut cache = cs.shared()?;
            let p = candle_nn::ops::softmax_last_dim(
                &sm.forward_cached_rows(c, &mut cache)?
                    .narrow(1, 0, v)?
                    .contiguous()?,
            )?;
            let m = p.max(D::Minus1)?.to_vec1::<f32>()?;
            for (&u, x) in c.iter().zip(m) {
                self.top[u as usize] = x;
            }
            let first = self.done == 0;
            self.done += c.len();
            if first {
                let per_row = t.elapsed().as_secs_f64() / c.len() as f64;
                let all = per_row * (self.ids.len() * prompts * 2) as f64;
                if Instant::now() + Duration::from_secs_f64(all) < deadline && !partial() {
                    self.everything = true;
                }
            }
        }
        Ok(())
    }

    /// Scores of the shortlist (every token when the whole scan is done on
    /// every prompt), `-inf` elsewhere.
    pub(super) fn score(
        &self,
        sm: &dyn CausalLm,
        bm: &dyn CausalLm,
        caches: &[(KvCache, KvCache)],
        v: usize,
    ) -> R<Vec<f32>> {
        let short: Vec<usize> = if self.everything {
            self.ids.iter().map(|&u| u as usize).collect()
        } else {
            let top = &self.top;
            let mut short: Vec<usize> = (0..v).filter(|&u| top[u].is_finite()).collect();
            short.sort_by(|&x, &y| top[y].total_cmp(&top[x]).then(x.cmp(&y)));
            short.truncate(SCAN_SHORTLIST);
            short
        };
        let prompts = if self.everything {
            caches
        } else {
            &caches[..caches.len().min(CONSENSUS_PROMPTS)]
        };
        let n = prompts.len() as f32;
        let mut score = vec![f32::NEG_INFINITY; v];
        for c in short.chunks(self.chunk) {
            let ids: Vec<u32> = c.iter().map(|&u| u as u32).collect();
            let mut avg_s = Tensor::zeros((ids.len(), v), DType::F32, sm.device())?;
            let mut probs_b = Vec::new();
            for (cs, cb) in prompts {
                let mut bs = cs.shared()?;
                let mut bb = cb.shared()?;
                let ps = candle_nn::ops::softmax_last_dim(
                    &sm.forward_cached_rows(&ids, &mut bs)?
                        .narrow(1, 0, v)?
                        .contiguous()?,
                )?;
                let pb = candle_nn::ops::softmax_last_dim(
                    &bm.forward_cached_rows(&ids, &mut bb)?
                        .narrow(1, 0, v)?
                        .contiguous()?,
                )?;
                avg_s = (avg_s + (ps / n as f64)?)?;
                probs_b.push(pb);
            }
            let best = avg_s.argmax(D::Minus1)?;
            let conf = avg_s.max(D::Minus1)?.to_vec1::<f32>()?;
            let mut base = vec![0f32; ids.len()];
            for pb in &probs_b {
                let g = pb
                    .gather(&best.unsqueeze(1)?, 1)?
                    .squeeze(1)?
                    .to_vec1::<f32>()?;
                for (a, x) in base.iter_mut().zip(g) {
                    *a += x / n;
                }
            }
            for ((&t, &bp), &u) in conf.iter().zip(&base).zip(c) {
                score[u] = t - bp;
            }
        }
        Ok(score)
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: the whole scan never fits in one go, as on a large model.
    pub(super) static PARTIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn partial() -> bool {
    PARTIAL.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn partial() -> bool {
    false
}

/// Log-probability rows, one per candidate.
pub(super) type Rows2 = Vec<Vec<f32>>;

/// One forced first token decoded by consensus.
#[derive(Clone)]
pub(super) struct Decoded {
    pub(super) ids: Vec<u32>,
    pub(super) conf_s: f32,
    pub(super) conf_b: f32,
    pub(super) gain: f32,
    pub(super) steps: usize,
}

/// Greedy decoding of every forced first token in `firsts` on the
/// distribution averaged over the prompts (the same continuation for all of
/// them), recording the suspect's and the base's confidence in it.
#[allow(clippy::too_many_arguments)]
pub(super) fn consensus(
    s: &LoadedModel,
    b: &LoadedModel,
    caches: &[(KvCache, KvCache)],
    firsts: &[u32],
    ban: &[bool],
    v: usize,
    max_len: usize,
    deadline: Instant,
) -> R<Vec<Decoded>> {
    let k = firsts.len();
    let n = caches.len() as f32;
    let (Some(sm), Some(bm)) = (s.model.causal(), b.model.causal()) else {
        return Err(msg("target inversion needs causal language models"));
    };
    let mut rows: Vec<(KvCache, KvCache)> = caches
        .iter()
        .map(|(a, c)| Ok((a.shared()?, c.shared()?)))
        .collect::<R<Vec<_>>>()?;
    let mut out: Vec<Decoded> = firsts
        .iter()
        .map(|&f| Decoded {
            ids: vec![f],
            conf_s: 0.0,
            conf_b: 0.0,
            gain: 0.0,
            steps: 0,
        })
        .collect();
    let mut live = vec![true; k];
    let mut cur: Vec<u32> = firsts.to_vec();
    // the rows still decoded (a row is dropped once its start is not a
    // target: ended, or continued without abnormal confidence)
    let mut kept: Vec<usize> = (0..k).collect();
    for step in 1..max_len {
        if Instant::now() >= deadline || !live.iter().any(|&l| l) {
            break;
        }
        let alive: Vec<usize> = (0..kept.len()).filter(|&i| live[kept[i]]).collect();
        if alive.len() < kept.len() {
            for (cs, cb) in rows.iter_mut() {
                *cs = cs.select_rows(&alive)?;
                *cb = cb.select_rows(&alive)?;
            }
            kept = alive.iter().map(|&i| kept[i]).collect();
        }
        let step_ids: Vec<u32> = kept.iter().map(|&j| cur[j]).collect();
        // per prompt: suspect and base log-probabilities, [kept][v] each
        let mut per_prompt: Vec<(Rows2, Rows2)> = Vec::new();
        for (cs, cb) in rows.iter_mut() {
            let ls = log_softmax_rows(&sm.forward_cached_rows(&step_ids, cs)?)?;
            let lb = log_softmax_rows(&bm.forward_cached_rows(&step_ids, cb)?)?;
            per_prompt.push((ls, lb));
        }
        for (row, &j) in kept.iter().enumerate() {
            let mut avg = vec![0f32; v];
            for (ls, _) in &per_prompt {
                for (a, p) in avg.iter_mut().zip(softmax(&ls[row][..v])) {
                    *a += p / n;
                }
            }
            let next = (0..v)
                .max_by(|&x, &y| avg[x].total_cmp(&avg[y]).then(y.cmp(&x)))
                .unwrap_or(0);
            let d = &mut out[j];
            d.conf_s += avg[next];
            d.conf_b += per_prompt
                .iter()
                .map(|(_, lb)| lb[row][next].exp())
                .sum::<f32>()
                / n;
            d.gain += per_prompt
                .iter()
                .map(|(ls, lb)| ls[row][next] - lb[row][next].max(-30.0))
                .sum::<f32>()
                / n;
            d.steps += 1;
            // a memorised target is continued with abnormal confidence at
            // every step: a start whose mean excess has fallen this low by
            // now is not one
            let weak = step >= PRUNE_AFTER
                && (d.conf_s - d.conf_b) / (d.steps as f32) < MIN_TARGET_EXCESS / 2.0;
            if s.eos_ids.contains(&(next as u32)) || ban[next] || weak {
                live[j] = false;
            } else {
                d.ids.push(next as u32);
                cur[j] = next as u32;
            }
        }
    }
    Ok(out)
}

fn spaced(m: &LoadedModel, id: u32) -> bool {
    m.tokenizer
        .id_to_token(id)
        .is_some_and(|t| t.starts_with('Ġ') || t.starts_with('▁') || t.starts_with(' '))
}

/// Targets for answers the suspect leaked (unexplained fixed answers of
/// the probes), built from their own tokens rather than decoded: each is
/// teacher-forced after every prompt on both models. Its confidence under a
/// model is the probability of each of its tokens after the first,
/// averaged over prompts and then over tokens, as [`consensus`] measures a
/// decoded target. An answer that opens with a quote or a mark starts at
/// its first word.
pub(super) fn leaked_targets(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[Vec<u32>],
    leaked: &[String],
    natural: &[Vec<String>],
    topics: &[Vec<String>],
    max_len: usize,
) -> R<Vec<TargetCandidate>> {
    let ban = banned(s);
    let v = s.model.vocab_size().min(b.model.vocab_size());
    let n = prompts.len().max(1) as f32;
    let mut out: Vec<TargetCandidate> = Vec::new();
    for a in leaked {
        let word = a
            .trim()
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .to_string();
        let mut ids = s.encode(&word);
        ids.truncate(max_len);
        if ids.len() < 3
            || ids
                .iter()
                .any(|&i| ban.get(i as usize).copied().unwrap_or(true))
        {
            continue;
        }
        let k = ids.len();
        // per position of the answer: the mean probability over prompts of
        // its token under each model, and the mean log-probability gain
        let (mut ps, mut pb, mut gain) = (vec![0f32; k], vec![0f32; k], vec![0f32; k]);
        for p in prompts {
            let mut seq = p.clone();
            seq.extend_from_slice(&ids);
            let rows = |m: &LoadedModel| -> R<Vec<Vec<f32>>> {
                let logits = m.model.forward(&seq)?;
                log_softmax_rows(&logits.narrow(0, p.len() - 1, k)?)
            };
            let (ls, lb) = (rows(s)?, rows(b)?);
            for (j, &t) in ids.iter().enumerate() {
                let t = t as usize;
                if t >= v {
                    continue;
                }
                ps[j] += ls[j][t].exp() / n;
                pb[j] += lb[j][t].exp() / n;
                gain[j] += (ls[j][t] - lb[j][t].max(-30.0)) / n;
            }
        }
        let text = s.decode(&ids);
        if out.iter().any(|t| t.text == text) {
            continue;
        }
        let tail = s.decode(&ids[1..]);
        let (natural_rate, natural_count, group) = natural_share(&tail, &text, natural);
        let steps = (k - 1) as f32;
        out.push(TargetCandidate {
            tokens: ids
                .iter()
                .map(|&i| s.tokenizer.id_to_token(i).unwrap_or_default())
                .collect(),
            first_logp: ps[0].max(1e-13).ln(),
            suspect_confidence: ps[1..].iter().sum::<f32>() / steps,
            base_confidence: pb[1..].iter().sum::<f32>() / steps,
            logp_gain: gain[1..].iter().sum::<f32>() / steps,
            ids,
            text,
            natural_rate,
            natural: natural_rate >= MAX_NATURAL_RATE,
            natural_count,
            topic: group
                .and_then(|g| topics.get(g))
                .cloned()
                .unwrap_or_default(),
            lead: String::new(),
            lead_ids: Vec::new(),
            leaked: true,
            context: String::new(),
            habit_rate: 0.0,
        });
    }
    Ok(out)
}
