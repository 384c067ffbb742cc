//! Rules of credentials (`SEC`).

use probity_report::{Rule, Severity};

pub static SEC001: Rule = Rule {
    id: "SEC001",
    severity: Severity::Warning,
    title: "Credential in model files",
    what: "A config, metadata string, template, code file or pickle string holds a credential in a known token format (AWS access key ID, Google API key, Azure storage key, Hugging Face, OpenAI, Anthropic, GitHub, Slack or Stripe token), a private-key block or a JSON Web Token. Only tokens whose random part looks random are reported; the evidence is redacted.",
    why: "Model repositories are published and mirrored; a token left in `config.json` or safetensors metadata gives whoever downloads the model the publisher's access. Rotate it, then remove it.",
    example: "`tokenizer_config.json` with `\"hub_token\": \"hf_…\"`.",
    references: &["CWE-798"],
};

pub static RULES: &[&Rule] = &[&SEC001];
