//! Renderers: they only read a [`crate::finding::Report`] and write it out.

pub mod json;
pub mod text;

use std::fmt::Write as _;

/// The deep-scan report for a terminal.
pub fn deep_text(r: &crate::deep::DeepReport) -> String {
    let mut s = String::new();
    let b = &r.signals.behavior;
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
    let _ = writeln!(
        s,
        "\ntime {:.1} s (load {:.1} s, probes {:.1} s)",
        r.timings.total_s, r.timings.load_s, r.timings.probes_s
    );
    s
}
