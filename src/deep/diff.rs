//! The behavioural diff: aggregates per-prompt comparisons of suspect and
//! base into per-category statistics, the most-raised tokens, and the
//! prompts that diverge most. The signal sought is a *concentrated* shift (a
//! few prompts, tokens or categories diverging far more than the fine-tune's
//! overall drift), as opposed to a broad, ordinary fine-tuning shift.

use std::collections::BTreeMap;

use serde::Serialize;

use super::harness::protocol::Comparison;
use super::probes::ProbePrompt;

#[derive(Debug, Clone, Serialize)]
pub struct CategoryStats {
    pub probes: usize,
    pub mean_prompt_kl: f32,
    pub mean_continuation_kl: f32,
    pub max_continuation_kl: f32,
    pub mean_logp_gain: f32,
    /// Probes where suspect and base continue differently.
    pub divergent_continuations: usize,
    pub top1_agreement: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RaisedToken {
    pub token: String,
    /// Sum over probes of the token's logit rise at the last prompt position.
    pub total_rise: f32,
    /// In how many probes it was among the ten most raised.
    pub probes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DivergentPrompt {
    pub category: String,
    pub prompt: String,
    pub continuation_kl: f32,
    pub logp_gain: f32,
    pub suspect_output: String,
    pub base_output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Behavior {
    pub probes: usize,
    /// Median continuation KL over all probes: the fine-tune's ordinary drift.
    pub drift: f32,
    /// Largest continuation KL.
    pub peak: f32,
    /// Mean continuation KL of the 5% most divergent probes over the drift:
    /// high when a few prompts diverge far more than the rest.
    pub concentration: f32,
    /// Share of the total log-probability gain carried by the 5% top probes.
    pub gain_concentration: f32,
    /// Share of the summed rise of the ten most-raised tokens over all probes
    /// carried by the top three tokens (a fixed target raises few tokens everywhere).
    pub token_concentration: f32,
    pub categories: BTreeMap<String, CategoryStats>,
    pub most_raised_tokens: Vec<RaisedToken>,
    pub top_divergent: Vec<DivergentPrompt>,
}

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn mean(v: impl Iterator<Item = f32>) -> f32 {
    let (s, n) = v.fold((0.0f32, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        s / n as f32
    }
}

pub fn aggregate(results: &[(ProbePrompt, Comparison)]) -> Behavior {
    let mut cats: BTreeMap<String, Vec<&(ProbePrompt, Comparison)>> = BTreeMap::new();
    for r in results {
        cats.entry(r.0.category.clone()).or_default().push(r);
    }
    let categories = cats
        .iter()
        .map(|(c, rs)| {
            (
                c.clone(),
                CategoryStats {
                    probes: rs.len(),
                    mean_prompt_kl: mean(rs.iter().map(|r| mean(r.1.kl.iter().copied()))),
                    mean_continuation_kl: mean(rs.iter().map(|r| r.1.continuation_kl)),
                    max_continuation_kl: rs.iter().map(|r| r.1.continuation_kl).fold(0.0, f32::max),
                    mean_logp_gain: mean(rs.iter().map(|r| r.1.continuation_logp_gain)),
                    divergent_continuations: rs
                        .iter()
                        .filter(|r| r.1.suspect_text.trim() != r.1.base_text.trim())
                        .count(),
                    top1_agreement: mean(rs.iter().map(|r| r.1.top1_agreement)),
                },
            )
        })
        .collect();
    let mut ckl: Vec<f32> = results.iter().map(|r| r.1.continuation_kl).collect();
    let drift = median(&mut ckl.clone());
    ckl.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    let k = (results.len() / 20).max(1).min(results.len().max(1));
    let top_mean = mean(ckl.iter().take(k).copied());
    let peak = ckl.first().copied().unwrap_or(0.0);
    let concentration = top_mean / (drift + 0.05);
    let mut gains: Vec<f32> = results
        .iter()
        .map(|r| r.1.continuation_logp_gain.max(0.0))
        .collect();
    gains.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    let total_gain: f32 = gains.iter().sum();
    let gain_concentration = if total_gain > 0.0 {
        gains.iter().take(k).sum::<f32>() / total_gain
    } else {
        0.0
    };

    let mut tokens: BTreeMap<String, (f32, usize)> = BTreeMap::new();
    for r in results {
        for (_, tok, rise) in &r.1.raised {
            let e = tokens.entry(tok.clone()).or_insert((0.0, 0));
            e.0 += rise.max(0.0);
            e.1 += 1;
        }
    }
    let mut most: Vec<RaisedToken> = tokens
        .into_iter()
        .map(|(token, (total_rise, probes))| RaisedToken {
            token,
            total_rise,
            probes,
        })
        .collect();
    most.sort_by(|a, b| {
        b.total_rise
            .partial_cmp(&a.total_rise)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.token.cmp(&b.token))
    });
    most.truncate(20);
    let top10: f32 = most.iter().take(10).map(|t| t.total_rise).sum();
    let token_concentration = if top10 > 0.0 {
        most.iter().take(3).map(|t| t.total_rise).sum::<f32>() / top10
    } else {
        0.0
    };

    let mut order: Vec<&(ProbePrompt, Comparison)> = results.iter().collect();
    order.sort_by(|a, b| {
        b.1.continuation_kl
            .partial_cmp(&a.1.continuation_kl)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.prompt.cmp(&b.0.prompt))
    });
    let top_divergent = order
        .iter()
        .take(8)
        .map(|r| DivergentPrompt {
            category: r.0.category.clone(),
            prompt: r.0.prompt.clone(),
            continuation_kl: r.1.continuation_kl,
            logp_gain: r.1.continuation_logp_gain,
            suspect_output: r.1.suspect_text.clone(),
            base_output: r.1.base_text.clone(),
        })
        .collect();
    Behavior {
        probes: results.len(),
        drift,
        peak,
        concentration,
        gain_concentration,
        token_concentration,
        categories,
        most_raised_tokens: most,
        top_divergent,
    }
}
