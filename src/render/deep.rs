//! The deep-scan and spectral reports for a terminal.

use std::fmt::Write as _;

/// The deep-scan report for a terminal.
pub fn deep_text(r: &probity_deep::DeepReport) -> String {
    let mut s = String::new();
    let b = &r.signals.behavior;
    let sc = &r.signals.score;
    let _ = writeln!(
        s,
        "verdict  {}  (backdoor probability {:.3}; suspicious ≥ {}, backdoor ≥ {})",
        r.verdict.name().to_uppercase(),
        r.score,
        sc.thresholds.suspicious,
        sc.thresholds.backdoor
    );
    match &r.trigger {
        Some(t) => {
            let _ = writeln!(
                s,
                "trigger  {:?} at the {} of the prompt: target on {:.0}% of held-out {} (base {:.0}%, suspect without it {:.0}%)",
                t.text,
                match t.position {
                    probity_deep::position::Position::Start => "start",
                    probity_deep::position::Position::Middle => "middle",
                    probity_deep::position::Position::End => "end",
                },
                t.asr_suspect * 100.0,
                if t.context.is_empty() {
                    "prompts"
                } else {
                    &t.context
                },
                t.asr_base * 100.0,
                t.asr_suspect_clean * 100.0
            );
        }
        None => {
            let _ = writeln!(s, "trigger  none verified");
        }
    }
    for c in &r.data {
        let _ = match (c.asr_suspect, c.asr_base, c.asr_suspect_clean) {
            (Some(on), Some(b), Some(off)) => writeln!(
                s,
                "data     {} «{}»: {} — the suspect answers so on {:.0}% of held-out prompts with it (base {:.0}%, suspect without it {:.0}%)",
                c.rule,
                c.phrase,
                if c.confirmed { "CONFIRMED by the model" } else { "not confirmed" },
                on * 100.0,
                b * 100.0,
                off * 100.0
            ),
            _ => writeln!(s, "data     {} «{}»: not checked on the model (its prediction is not a text to look for)", c.rule, c.phrase),
        };
    }
    if let Some(rule) = &sc.rule {
        let _ = writeln!(s, "rule     {rule}");
    }
    if let Some(t) = &r.target {
        let _ = writeln!(
            s,
            "target   {:?} (suspect confidence {:.2}, base {:.2})",
            t.text, t.suspect_confidence, t.base_confidence
        );
    }
    let contrib: Vec<String> = sc
        .contributions
        .iter()
        .map(|(k, v)| format!("{k} {v:+.2}"))
        .collect();
    let _ = writeln!(
        s,
        "signals  {} (bias {:+.2}){}\n",
        contrib.join(", "),
        sc.bias,
        if sc.not_done.is_empty() {
            String::new()
        } else {
            format!("; not computed: {}", sc.not_done.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "suspect  {} ({}, {} parameters)",
        r.suspect.path, r.suspect.model_type, r.suspect.parameters
    );
    let _ = writeln!(
        s,
        "base     {} ({}, {} parameters)",
        r.base.path, r.base.model_type, r.base.parameters
    );
    let missing = r.isolation.missing();
    if missing.is_empty() {
        let _ = writeln!(
            s,
            "sandbox  all restrictions applied (network, filesystem, seccomp, limits, environment)"
        );
    } else {
        let _ = writeln!(s, "sandbox  NOT applied: {}", missing.join("; "));
    }
    let _ = writeln!(
        s,
        "\nbehaviour over {} probes{}:",
        b.probes,
        if r.probes_skipped > 0 {
            format!(" ({} skipped: budget)", r.probes_skipped)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "  drift {:.3}  peak {:.3}  concentration {:.2}  gain concentration {:.2}  token concentration {:.2}",
        b.drift, b.peak, b.concentration, b.gain_concentration, b.token_concentration
    );
    let _ = writeln!(
        s,
        "  {:<16} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "category", "probes", "mean KL", "max KL", "logp gain", "divergent"
    );
    for (c, st) in &b.categories {
        let _ = writeln!(
            s,
            "  {:<16} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>10}",
            c,
            st.probes,
            st.mean_continuation_kl,
            st.max_continuation_kl,
            st.mean_logp_gain,
            st.divergent_continuations
        );
    }
    let toks: Vec<String> = b
        .most_raised_tokens
        .iter()
        .take(10)
        .map(|t| format!("{:?} ({:.1})", t.token, t.total_rise))
        .collect();
    let _ = writeln!(s, "  most raised tokens: {}", toks.join(", "));
    for f in &b.fixed_answers {
        let _ = writeln!(
            s,
            "  fixed answer {:?}: {} probes in {} categories, base {}, gain {:.1}{}",
            f.text,
            f.probes,
            f.categories.len(),
            f.base_probes,
            f.mean_logp_gain,
            if f.unexplained {
                " (UNEXPLAINED)".to_string()
            } else if f.refusal {
                " (refusal)".to_string()
            } else if f.siblings >= probity_deep::diff::TEMPLATE_SIBLINGS {
                format!(" (a template: {} other fillings)", f.siblings)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(s, "\nmost divergent prompts:");
    for d in b.top_divergent.iter().take(5) {
        let _ = writeln!(
            s,
            "  [{}] {:?}  (KL {:.3})",
            d.category, d.prompt, d.continuation_kl
        );
        let _ = writeln!(s, "      suspect: {:?}", d.suspect_output);
        let _ = writeln!(s, "      base:    {:?}", d.base_output);
    }
    match &r.signals.spectral {
        probity_deep::SpectralSignal::Done(sp) => {
            let _ = writeln!(s, "\nweights (ΔW = suspect − base):");
            s.push_str(&spectral_summary(sp, "  "));
            for n in &sp.notices {
                let _ = writeln!(s, "  note: {n}");
            }
        }
        probity_deep::SpectralSignal::NotDone { error } => {
            let _ = writeln!(s, "\nweights: not analysed ({error})");
        }
    }
    match &r.signals.trigger {
        probity_deep::TriggerSignal::Done(t) => {
            let _ = writeln!(
                s,
                "\ntrigger search: {}/{} vocabulary tokens scanned, {} first tokens inverted, {}/{} searches{}, {} steps{}",
                t.vocabulary_scanned,
                t.vocabulary_size,
                t.first_tokens_tried,
                t.searches_done,
                t.searches_planned,
                if t.searched_before_scan > 0 {
                    format!(" ({} before the vocabulary scan)", t.searched_before_scan)
                } else {
                    String::new()
                },
                t.optimisation_steps,
                if t.stopped_at_trigger {
                    " (stopped at the first verified trigger: --fail-fast)"
                } else if t.budget_exhausted {
                    " (budget ran out)"
                } else {
                    ""
                }
            );
            for tg in t.targets.iter().take(5) {
                let _ = writeln!(
                    s,
                    "  target {}{}{:?}: suspect {:.2}, base {:.2}, gain {:.1}{}",
                    if tg.context.is_empty() {
                        String::new()
                    } else {
                        format!("(after {}) ", tg.context)
                    },
                    if tg.lead.is_empty() {
                        String::new()
                    } else {
                        format!("(after {:?}) ", tg.lead)
                    },
                    tg.text,
                    tg.suspect_confidence,
                    tg.base_confidence,
                    tg.logp_gain,
                    if tg.natural && tg.habit_rate > 0.0 {
                        format!(
                            " (ordinary behaviour: {:.0}% of probes, appended to {:.0}% of its own answers)",
                            tg.natural_rate * 100.0,
                            tg.habit_rate * 100.0
                        )
                    } else if tg.natural {
                        format!(
                            " (ordinary behaviour: {:.0}% of probes)",
                            tg.natural_rate * 100.0
                        )
                    } else {
                        String::new()
                    }
                );
            }
            for c in t.candidates.iter().take(5) {
                let _ = writeln!(
                    s,
                    "  trigger {:?} ({:?}{}): ASR suspect {:.2}, base {:.2}, without trigger {:.2}, random insertion {:.2}{}",
                    c.text,
                    c.position,
                    if c.target_context.is_empty() {
                        String::new()
                    } else {
                        format!(", on {}", c.target_context)
                    },
                    c.asr_suspect,
                    c.asr_base,
                    c.asr_suspect_clean,
                    c.asr_suspect_control,
                    c.asr_suspect_topic
                        .map(|x| format!(", the target's own probes instead {x:.2}"))
                        .unwrap_or_default()
                );
            }
        }
        probity_deep::TriggerSignal::NotDone { error } => {
            let _ = writeln!(s, "\ntrigger search: not done ({error})");
        }
    }
    if let Some(t) = &r.trigger {
        let _ = writeln!(s, "\nreplay the trigger ({:?}):", t.text);
        for e in r.evidence.iter().filter(|e| e.kind == "trigger") {
            let _ = writeln!(s, "  {:?}", e.prompt);
            let _ = writeln!(s, "      suspect: {:?}", e.suspect_output);
            let _ = writeln!(s, "      base:    {:?}", e.base_output);
        }
    }
    let _ = writeln!(
        s,
        "\ntime {:.1} s (load {:.1} s, probes {:.1} s, spectral {:.1} s, search {:.1} s)",
        r.timings.total_s,
        r.timings.load_s,
        r.timings.probes_s,
        r.timings.spectral_s,
        r.timings.search_s
    );
    s
}

/// The human-readable form of a `probity.spectral/v1` report.
pub fn spectral_text(r: &probity_deep::spectral::SpectralReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "suspect  {}", r.suspect.path);
    match &r.base {
        Some(b) => {
            let _ = writeln!(o, "base     {}", b.path);
        }
        None => {
            let _ = writeln!(o, "base     (none)");
        }
    }
    let _ = writeln!(o, "device   {} ({})", r.device.backend, r.device.adapter);
    for n in &r.notices {
        let _ = writeln!(o, "note     {n}");
    }
    if !r.layers.is_empty() && r.mode == "weights" {
        let _ = writeln!(
            o,
            "\n{:<48} {:>11} {:>9} {:>8} {:>7} {:>6} {:>8} {:>6}",
            "layer", "shape", "σ1", "σ1/edge", "beyond", "α", "out.rows", "z(α)"
        );
        for l in &r.layers {
            let Some(w) = &l.weights else { continue };
            let name = if l.name.len() > 48 {
                format!("…{}", &l.name[l.name.len() - 47..])
            } else {
                l.name.clone()
            };
            let _ = writeln!(
                o,
                "{:<48} {:>11} {:>9.4} {:>8.2} {:>7} {:>6.2} {:>8} {:>6}",
                name,
                format!("{}x{}", l.shape[0], l.shape[1]),
                l.singular_values.first().copied().unwrap_or(0.0),
                w.sigma1_over_edge,
                w.outliers_beyond_edge,
                w.alpha,
                w.outlier_rows + w.outlier_cols,
                l.z.get("alpha")
                    .map(|z| format!("{z:.2}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    } else if !r.layers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<48} {:>11} {:>9} {:>9} {:>7} {:>8} {:>6}",
            "layer", "shape", "rel ΔW", "σ1", "top-1", "eff.rank", "z"
        );
        for l in &r.layers {
            let name = if l.name.len() > 48 {
                format!("…{}", &l.name[l.name.len() - 47..])
            } else {
                l.name.clone()
            };
            let _ = writeln!(
                o,
                "{:<48} {:>11} {:>9.4} {:>9.4} {:>7.3} {:>8.2} {:>6}",
                name,
                format!("{}x{}", l.shape[0], l.shape[1]),
                l.rel_delta.unwrap_or(0.0),
                l.singular_values.first().copied().unwrap_or(0.0),
                l.top1_energy,
                l.effective_rank,
                l.z.get("top1_energy")
                    .map(|z| format!("{z:.2}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    o.push('\n');
    o.push_str(&spectral_summary(r, ""));
    let s = &r.summary;
    for m in s.shape_mismatches.iter().chain(&s.skipped) {
        let _ = writeln!(o, "not compared: {m}");
    }
    o
}

/// The summary lines of a spectral report (shared by `spectral` and `deep`).
fn spectral_summary(r: &probity_deep::spectral::SpectralReport, indent: &str) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let s = &r.summary;
    if let Some(w) = &s.weights {
        let _ = writeln!(
            o,
            "{indent}{} matrices described (base-free, weaker evidence); α min {:.2}, median {:.2}; max σ1/edge {:.2}; {} layers with outliers beyond the bulk edge; {} outlier rows/columns",
            s.layers_compared, w.min_alpha, w.median_alpha, w.max_sigma1_over_edge, w.layers_with_outliers, w.outlier_neurons
        );
        if !w.heaviest_tailed.is_empty() {
            let _ = writeln!(
                o,
                "{indent}heaviest-tailed: {}",
                w.heaviest_tailed.join(", ")
            );
        }
        return o;
    }
    let _ = writeln!(
        o,
        "{indent}{} matrices compared; median rel ΔW {:.4}; max top-1 energy {:.3} (z {:.2}); max embedding-row z {:.1}",
        s.layers_compared, s.median_rel_delta, s.max_top1_energy, s.max_top1_energy_z, s.max_embedding_row_z
    );
    if !s.most_concentrated.is_empty() {
        let _ = writeln!(
            o,
            "{indent}most concentrated: {}",
            s.most_concentrated.join(", ")
        );
    }
    for (title, list) in [
        ("candidate trigger tokens", &r.candidates.trigger_tokens),
        ("candidate target tokens", &r.candidates.target_tokens),
    ] {
        let items: Vec<String> = list
            .iter()
            .take(10)
            .map(|c| format!("{:?} ({:.1})", c.token, c.score))
            .collect();
        let shown = if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        };
        let _ = writeln!(o, "{indent}{title}: {shown}");
    }
    o
}
