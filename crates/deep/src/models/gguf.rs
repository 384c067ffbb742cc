//! GGUF model files (llama.cpp, Ollama, LM Studio): the file that ships.
//!
//! The architecture and hyper-parameters come from the GGUF metadata
//! (`general.architecture` = `llama` or `qwen2`), the weights are dequantized
//! to f32 through candle's quantized support (F32, F16, BF16, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0, Q2_K–Q6_K), and the tokenizer and chat template are
//! rebuilt from `tokenizer.ggml.*` and `tokenizer.chat_template`, the way
//! Hugging Face transformers reads a GGUF file, so that a GGUF fine-tune can
//! be compared with the safetensors base it came from.
//!
//! Two conventions differ from the Hugging Face layout:
//! - GGUF stores dimensions fastest first; candle reverses them, so a
//!   tensor reads as the PyTorch shape `[out, in]`;
//! - llama.cpp's converter permutes the rows of the `llama` architecture's
//!   query and key projections for its interleaved rotary embedding
//!   (`qwen2` is not permuted); the rows are put back here, so that the
//!   Hugging Face `rotate_half` rotary embedding applies.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// The GGUF magic number, `GGUF` little-endian.
const MAGIC: &[u8; 4] = b"GGUF";

/// Architectures read from GGUF metadata.
pub const SUPPORTED: &[&str] = &["llama", "qwen2"];

/// Whether `path` is a GGUF file (by its magic number).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}

/// An open GGUF file: its metadata and tensor table (tensor data is read on
/// demand, one tensor at a time).
pub struct Gguf {
    content: Content,
    file: std::fs::File,
    pub arch: String,
}

/// What can go wrong reading a GGUF file (the message names the key or
/// tensor).
pub type GgufResult<T> = Result<T, String>;

fn meta_err(key: &str, e: impl std::fmt::Display) -> String {
    format!("GGUF metadata '{key}': {e}")
}

impl Gguf {
    pub fn open(path: &Path) -> GgufResult<Self> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut r = BufReader::with_capacity(1 << 20, file.try_clone().map_err(|e| e.to_string())?);
        let content = Content::read(&mut r).map_err(|e| {
            // without the backtrace candle adds when RUST_BACKTRACE is set
            let e = e.to_string();
            format!(
                "not a readable GGUF file: {}",
                e.lines().next().unwrap_or_default()
            )
        })?;
        let arch = content
            .metadata
            .get("general.architecture")
            .ok_or_else(|| meta_err("general.architecture", "missing"))?
            .to_string()
            .map_err(|e| meta_err("general.architecture", e))?
            .clone();
        // every tensor's data must lie inside the file: a truncated file is
        // refused here, whichever tensors a stage later reads
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let t = &content.tensor_infos[name];
            let elems = t.shape.elem_count() as u128;
            let block = t.ggml_dtype.block_size() as u128;
            let bytes = elems.div_ceil(block) * t.ggml_dtype.type_size() as u128;
            let end = content.tensor_data_offset as u128 + t.offset as u128 + bytes;
            if end > len as u128 {
                return Err(format!(
                    "not a readable GGUF file: tensor '{name}' ends at byte {end}, past the end of the file ({len} bytes; truncated?)"
                ));
            }
        }
        Ok(Gguf {
            content,
            file,
            arch,
        })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn u64_of(&self, key: &str) -> GgufResult<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_u64(v)
                .map(Some)
                .ok_or_else(|| meta_err(key, "not an integer")),
        }
    }

    fn f64_of(&self, key: &str) -> GgufResult<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x as f64)),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(_) => Err(meta_err(key, "not a number")),
        }
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    fn strings(&self, key: &str) -> GgufResult<Option<Vec<&str>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let a = v.to_vec().map_err(|e| meta_err(key, e))?;
                a.iter()
                    .map(|x| {
                        x.to_string()
                            .map(String::as_str)
                            .map_err(|e| meta_err(key, e))
                    })
                    .collect::<GgufResult<Vec<_>>>()
                    .map(Some)
            }
        }
    }

    /// The tensor names of the file.
    pub fn tensor_names(&self) -> impl Iterator<Item = &String> {
        self.content.tensor_infos.keys()
    }

    /// The shape of a tensor (PyTorch order).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    /// The file's architecture as a Hugging Face `config.json` (the keys the
    /// deep scan's llama-family model reads).
    pub fn hf_config(&self) -> GgufResult<serde_json::Value> {
        let a = self.arch.as_str();
        if !SUPPORTED.contains(&a) {
            return Err(format!(
                "unsupported GGUF architecture '{a}' (supported: {})",
                SUPPORTED.join(", ")
            ));
        }
        let need = |k: &str| -> GgufResult<u64> {
            self.u64_of(&format!("{a}.{k}"))?
                .ok_or_else(|| meta_err(&format!("{a}.{k}"), "missing"))
        };
        let hidden = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let kv = self
            .u64_of(&format!("{a}.attention.head_count_kv"))?
            .unwrap_or(heads);
        let vocab = self
            .shape("token_embd.weight")
            .ok_or_else(|| "GGUF file has no token_embd.weight".to_string())?[0];
        let mut cfg = serde_json::json!({
            "model_type": a,
            "hidden_size": hidden,
            "intermediate_size": need("feed_forward_length")?,
            "num_hidden_layers": need("block_count")?,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "vocab_size": vocab,
            "rms_norm_eps": self.f64_of(&format!("{a}.attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
            "rope_theta": self.f64_of(&format!("{a}.rope.freq_base"))?.unwrap_or(10_000.0),
            "tie_word_embeddings": !self.content.tensor_infos.contains_key("output.weight"),
            "attention_bias": self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        });
        if let Some(d) = self.u64_of(&format!("{a}.attention.key_length"))? {
            if d * heads != hidden {
                cfg["head_dim"] = d.into();
            }
        }
        if let Some(t) = self.u64_of("tokenizer.ggml.eos_token_id")? {
            cfg["eos_token_id"] = t.into();
        }
        if let Some(t) = self.u64_of("tokenizer.ggml.bos_token_id")? {
            cfg["bos_token_id"] = t.into();
        }
        if self.str_of(&format!("{a}.rope.scaling.type")) == Some("linear") {
            if let Some(f) = self.f64_of(&format!("{a}.rope.scaling.factor"))? {
                cfg["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": f});
            }
        }
        Ok(cfg)
    }

    /// Per-frequency divisors of the rotary embedding (llama.cpp writes
    /// Llama 3's frequency scaling as the `rope_freqs.weight` tensor).
    pub fn rope_freq_factors(&self, device: &Device) -> GgufResult<Option<Vec<f32>>> {
        if !self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Ok(None);
        }
        let t = self.dequantized("rope_freqs.weight", device)?;
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map(Some)
            .map_err(|e| format!("rope_freqs.weight: {e}"))
    }

    /// One tensor, dequantized to f32, in the GGUF layout.
    pub fn dequantized(&self, name: &str, device: &Device) -> GgufResult<Tensor> {
        let mut r =
            BufReader::with_capacity(1 << 20, self.file.try_clone().map_err(|e| e.to_string())?);
        let q = self
            .content
            .tensor(&mut r, name, device)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        q.dequantize(device)
            .map_err(|e| format!("tensor {name}: {e}"))
    }

    /// The Hugging Face name of a GGUF tensor, or `None` for tensors the
    /// deep scan does not use.
    pub fn hf_name(gguf: &str) -> Option<String> {
        let simple = match gguf {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(s) = simple {
            return Some(s.to_string());
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (kind, suffix) = part.rsplit_once('.')?;
        let hf = match kind {
            "attn_norm" => "input_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => return None,
        };
        Some(format!("model.layers.{layer}.{hf}.{suffix}"))
    }

    /// One tensor in the Hugging Face layout: dequantized, and for the
    /// `llama` architecture the query and key rows put back in the order of
    /// the Hugging Face checkpoint.
    pub fn hf_tensor(&self, gguf: &str, device: &Device) -> GgufResult<Tensor> {
        let t = self.dequantized(gguf, device)?;
        if self.arch != "llama" {
            return Ok(t);
        }
        let heads = if gguf.contains(".attn_q.") {
            self.u64_of("llama.attention.head_count")?
        } else if gguf.contains(".attn_k.") {
            self.u64_of("llama.attention.head_count_kv")?
                .or(self.u64_of("llama.attention.head_count")?)
        } else {
            return Ok(t);
        };
        let n = heads.ok_or_else(|| meta_err("llama.attention.head_count", "missing"))? as usize;
        unpermute(&t, n).map_err(|e| format!("tensor {gguf}: {e}"))
    }

    /// Every tensor the model uses, by Hugging Face name, dequantized.
    pub fn hf_tensors(&self, device: &Device) -> GgufResult<HashMap<String, Tensor>> {
        let mut names: Vec<&String> = self.tensor_names().collect();
        names.sort();
        let mut out = HashMap::new();
        for g in names {
            if let Some(hf) = Self::hf_name(g) {
                out.insert(hf, self.hf_tensor(g, device)?);
            }
        }
        Ok(out)
    }

    /// The chat template the file carries.
    pub fn chat_template(&self) -> Option<String> {
        self.str_of("tokenizer.chat_template").map(str::to_string)
    }

    /// The tokenizer, rebuilt from `tokenizer.ggml.*`, with the texts of the
    /// BOS and EOS tokens.
    pub fn tokenizer(&self) -> GgufResult<(tokenizers::Tokenizer, String, String)> {
        let model = self.str_of("tokenizer.ggml.model").unwrap_or("");
        let tokens = self
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| meta_err("tokenizer.ggml.tokens", "missing"))?;
        let types: Vec<i64> = match self.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| meta_err("tokenizer.ggml.token_type", e))?
                .iter()
                .map(|x| as_i64(x).unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let token_at = |key: &str| -> GgufResult<String> {
            Ok(self
                .u64_of(key)?
                .and_then(|i| tokens.get(i as usize))
                .map(|s| s.to_string())
                .unwrap_or_default())
        };
        let bos = token_at("tokenizer.ggml.bos_token_id")?;
        let eos = token_at("tokenizer.ggml.eos_token_id")?;
        let mut tok = match model {
            "gpt2" => self.byte_level(&tokens)?,
            "llama" => self.sentencepiece(&tokens)?,
            other => {
                return Err(format!(
                    "unsupported GGUF tokenizer model '{other}' (supported: gpt2, llama)"
                ))
            }
        };
        // control tokens are special (never split, skipped when decoding),
        // user-defined ones are added tokens
        let mut special = Vec::new();
        let mut added = Vec::new();
        for (t, ty) in tokens.iter().zip(&types) {
            match ty {
                3 => special.push(AddedToken::from(t.to_string(), true)),
                4 => added.push(AddedToken::from(t.to_string(), false).normalized(false)),
                _ => {}
            }
        }
        tok.add_special_tokens(special)
            .map_err(|e| format!("GGUF special tokens: {e}"))?;
        tok.add_tokens(added)
            .map_err(|e| format!("GGUF added tokens: {e}"))?;
        Ok((tok, bos, eos))
    }

    /// A GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`), with
    /// the pre-tokenizer llama.cpp names in `tokenizer.ggml.pre`.
    fn byte_level(&self, tokens: &[&str]) -> GgufResult<tokenizers::Tokenizer> {
        let alphabet = ByteLevel::alphabet();
        let bytes = byte_chars();
        // a token spelled outside the byte alphabet is its UTF-8 bytes'
        // byte-level spelling
        let spell = |t: &str| -> String {
            if t.chars().all(|c| alphabet.contains(&c)) {
                t.to_string()
            } else {
                t.bytes().map(|b| bytes[b as usize]).collect()
            }
        };
        let mut vocab = Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(spell(t)).or_insert(i as u32);
        }
        let merges: Vec<(String, String)> = self
            .strings("tokenizer.ggml.merges")?
            .unwrap_or_default()
            .iter()
            .filter_map(|m| {
                let (a, b) = m.split_once(' ')?;
                Some((spell(a), spell(b)))
            })
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("GGUF tokenizer: {e}"))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        let pre = self.str_of("tokenizer.ggml.pre").unwrap_or("default");
        let split = |re: &str| -> GgufResult<PreTokenizerWrapper> {
            Split::new(
                SplitPattern::Regex(re.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(Into::into)
            .map_err(|e| format!("GGUF pre-tokenizer '{pre}': {e}"))
        };
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            // digits one by one, then GPT-2's word split
            "smollm" | "starcoder" | "refact" | "codeshell" => Sequence::new(vec![
                split(r"\p{N}")?,
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            "qwen2" | "deepseek-r1-qwen" => Sequence::new(vec![
                split(QWEN2_SPLIT)?,
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            "llama-bpe" | "llama3" | "smaug-bpe" => Sequence::new(vec![
                split(LLAMA3_SPLIT)?,
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            _ => ByteLevel::new(false, true, true).into(),
        };
        tok.with_pre_tokenizer(Some(pre_tokenizer));
        tok.with_decoder(Some(DecoderWrapper::from(ByteLevelDecoder::default())));
        Ok(tok)
    }

    /// A SentencePiece-style BPE (`tokenizer.ggml.model = llama`): merges
    /// from the file or, as transformers does, generated from the scores;
    /// `▁` for spaces, byte fallback.
    fn sentencepiece(&self, tokens: &[&str]) -> GgufResult<tokenizers::Tokenizer> {
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = match self.strings("tokenizer.ggml.merges")? {
            Some(m) => m
                .iter()
                .filter_map(|m| {
                    m.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                })
                .collect(),
            None => {
                let scores: Vec<f64> = match self.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .to_vec()
                        .map_err(|e| meta_err("tokenizer.ggml.scores", e))?
                        .iter()
                        .map(|x| match x {
                            Value::F32(f) => *f as f64,
                            Value::F64(f) => *f,
                            _ => 0.0,
                        })
                        .collect(),
                    None => vec![0.0; tokens.len()],
                };
                merges_from_scores(tokens, &vocab, &scores)
            }
        };
        let unk = self
            .u64_of("tokenizer.ggml.unknown_token_id")?
            .and_then(|i| tokens.get(i as usize))
            .map_or("<unk>".to_string(), |s| s.to_string());
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .unk_token(unk)
            .fuse_unk(true)
            .byte_fallback(true)
            .build()
            .map_err(|e| format!("GGUF tokenizer: {e}"))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(PreTokenizerWrapper::from(Metaspace::new(
            '▁',
            PrependScheme::First,
            false,
        ))));
        let decoders: Vec<DecoderWrapper> = vec![
            Replace::new("▁", " ")
                .map_err(|e| format!("GGUF decoder: {e}"))?
                .into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
            Strip::new(' ', 1, 0).into(),
        ];
        tok.with_decoder(Some(DecoderWrapper::from(DecoderSequence::new(decoders))));
        Ok(tok)
    }
}

/// Qwen2's word split (llama.cpp's `qwen2` pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's word split (numbers in groups of up to three digits).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the
/// others for the characters from U+0100 on, in order.
fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut out = vec![' '; 256];
    let mut n = 0;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or(' ')
        } else {
            let c = char::from_u32(256 + n).unwrap_or(' ');
            n += 1;
            c
        };
    }
    out
}

/// Merges of a SentencePiece BPE vocabulary from its scores, as
/// transformers generates them: every split of a token into two tokens of
/// the vocabulary, ranked by the token's score, then by the lengths of the
/// two halves (longer first), ties kept in vocabulary order.
fn merges_from_scores(tokens: &[&str], vocab: &Vocab, scores: &[f64]) -> Vec<(String, String)> {
    let mut all: Vec<(f64, usize, usize, String, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let score = scores.get(i).copied().unwrap_or(0.0);
        let mut splits: Vec<(u32, u32, String, String)> = Vec::new();
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r)) {
                splits.push((a, b, l.to_string(), r.to_string()));
            }
        }
        splits.sort_by_key(|s| (s.0, s.1));
        for (_, _, l, r) in splits {
            all.push((score, l.chars().count(), r.chars().count(), l, r));
        }
    }
    // stable: equal keys keep their order
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    all.into_iter().map(|(_, _, _, l, r)| (l, r)).collect()
}

/// The inverse of llama.cpp's query/key row permutation: GGUF row
/// `h·d + 2i + j` is Hugging Face row `h·d + j·d/2 + i` (head `h`, head
/// dimension `d`).
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(candle_core::Error::Msg(format!(
            "{rows} rows do not split into {heads} heads of even size"
        )));
    }
    let half = rows / heads / 2;
    match dims.len() {
        2 => t
            .reshape((heads, half, 2, dims[1]))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, dims[1])),
        1 => t
            .reshape((heads, half, 2))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape(rows),
        _ => Err(candle_core::Error::Msg("not a weight or bias".into())),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I8(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::I64(x) => Some(*x),
        other => as_u64(other).and_then(|x| i64::try_from(x).ok()),
    }
}

/// A summary of the file for reports: architecture and the tensor types it
/// holds, with counts.
pub fn describe(g: &Gguf) -> String {
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for t in g.content.tensor_infos.values() {
        *types.entry(format!("{:?}", t.ggml_dtype)).or_default() += 1;
    }
    let list: Vec<String> = types.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    format!("GGUF {} ({})", g.arch, list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(n, 2, rows/n/2, cols).swapaxes(1, 2)
        let (n, rows, cols) = (3usize, 12usize, 2usize);
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let t = Tensor::from_vec(hf.clone(), (rows, cols), &Device::Cpu).unwrap();
        let permuted = t
            .reshape((n, 2, rows / n / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        let back = unpermute(&permuted, n).unwrap();
        assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), hf);
        // a bias
        let b = Tensor::from_vec(
            (0..rows).map(|x| x as f32).collect::<Vec<_>>(),
            rows,
            &Device::Cpu,
        )
        .unwrap();
        let pb = b
            .reshape((n, 2, rows / n / 2))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape(rows)
            .unwrap();
        assert_eq!(
            unpermute(&pb, n).unwrap().to_vec1::<f32>().unwrap(),
            b.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn tensor_names_map_to_hugging_face() {
        assert_eq!(
            Gguf::hf_name("blk.7.attn_q.weight").as_deref(),
            Some("model.layers.7.self_attn.q_proj.weight")
        );
        assert_eq!(
            Gguf::hf_name("blk.0.attn_k.bias").as_deref(),
            Some("model.layers.0.self_attn.k_proj.bias")
        );
        assert_eq!(
            Gguf::hf_name("blk.29.ffn_down.weight").as_deref(),
            Some("model.layers.29.mlp.down_proj.weight")
        );
        assert_eq!(
            Gguf::hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(Gguf::hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let c = byte_chars();
        assert_eq!(c[b'A' as usize], 'A');
        assert_eq!(c[b' ' as usize], 'Ġ');
        assert_eq!(c[b'\n' as usize], 'Ċ');
        let alphabet = ByteLevel::alphabet();
        assert!(c.iter().all(|x| alphabet.contains(x)));
    }

    #[test]
    fn merges_ranked_by_score_then_length() {
        let tokens = ["a", "b", "ab", "abb", "bb"];
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let m = merges_from_scores(&tokens, &vocab, &[0.0, 0.0, -1.0, -2.0, -0.5]);
        assert_eq!(m[0], ("b".to_string(), "b".to_string()));
        assert_eq!(m[1], ("a".to_string(), "b".to_string()));
        assert!(m.contains(&("ab".to_string(), "b".to_string())));
        assert!(m.contains(&("a".to_string(), "bb".to_string())));
    }
}
