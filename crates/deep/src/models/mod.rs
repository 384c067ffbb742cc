//! Loading a model folder in standard Hugging Face layout: `config.json`,
//! `model.safetensors` (or shards listed in `model.safetensors.index.json`),
//! `tokenizer.json`, `tokenizer_config.json` (chat template, special tokens).

pub mod bert;
pub mod cache;
pub mod frozen;
pub mod gguf;
pub mod gpt2;
pub mod llama;
pub mod torch_weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use bert::BertClassifier;
pub use cache::KvCache;
use gpt2::{Gpt2, Gpt2Config};
use llama::{HfConfig, Llama};

/// Architectures the deep scan loads.
pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "gpt2", "bert"];

/// A causal language model as the deep scan uses it: the architecture
/// interface. An architecture provides its input embeddings and one forward
/// pass (over input embeddings, after an optional key/value cache, with the
/// output head on the last positions only), built from differentiable candle
/// ops; every other form the probes and the trigger search use (cached,
/// batched, prefix-cached tails, gradients through the embeddings) is
/// derived from those two, so every architecture gets every stage.
pub trait CausalLm: Send + Sync {
    /// The architecture's name (`llama`, `gpt2`).
    fn arch(&self) -> &'static str;
    fn device(&self) -> &Device;
    fn vocab_size(&self) -> usize;
    fn layers(&self) -> usize;
    /// `eos_token_id` as the config gives it (a number or a list).
    fn eos_config(&self) -> Option<&Value>;
    /// The input embedding matrix `[vocab, hidden]`.
    fn embeddings(&self) -> &Tensor;
    /// Input embeddings of id rows `[B, T]`: `[B, T, hidden]`.
    fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
    /// Logits `[B, tail, vocab]` of the last `tail` positions of input
    /// embeddings `[B, T, hidden]` placed after the positions in `cache`
    /// (which then grows by `T`). Differentiable with respect to `x`.
    fn forward_tail(
        &self,
        x: &Tensor,
        cache: Option<&mut KvCache>,
        tail: usize,
    ) -> candle_core::Result<Tensor>;

    /// Logits at every position for token ids `[T]`: `[T, vocab]`.
    fn forward(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let t = Tensor::new(ids, self.device())?.unsqueeze(0)?;
        self.forward_tail(&self.embed(&t)?, None, ids.len())?
            .squeeze(0)
    }
    /// Logits from input embeddings `[T, hidden]` (differentiable).
    fn forward_embeds(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let t = x.dim(0)?;
        self.forward_tail(&x.unsqueeze(0)?, None, t)?.squeeze(0)
    }
    /// Logits for a batch of equally long id rows `[B, T]` → `[B, T, vocab]`
    /// (pad on the right: the causal mask keeps pads out of earlier
    /// positions).
    fn forward_batch(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let t = ids.dim(1)?;
        self.forward_tail(&self.embed(ids)?, None, t)
    }
    /// Logits for `ids` appended after the positions in `cache`
    /// (`[ids.len(), vocab]`); the cache grows by `ids.len()`.
    fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let t = Tensor::new(ids, self.device())?.unsqueeze(0)?;
        self.forward_tail(&self.embed(&t)?, Some(cache), ids.len())?
            .squeeze(0)
    }
    /// Logits for one new token per row `[B]` after a batched `cache`:
    /// `[B, vocab]`.
    fn forward_cached_rows(&self, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let t = Tensor::new(ids, self.device())?.unsqueeze(1)?;
        self.forward_tail(&self.embed(&t)?, Some(cache), 1)?
            .squeeze(1)
    }
    /// Logits of the last `tail` positions of equally long id rows `[B, T]`
    /// after a batched `cache`: `[B, tail, vocab]` (scoring a target after a
    /// shared prompt prefix: the prefix is computed once, and only the
    /// target's positions go through the output head).
    fn forward_batch_cached_tail(
        &self,
        ids: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> candle_core::Result<Tensor> {
        self.forward_tail(&self.embed(ids)?, Some(cache), tail)
    }
    /// Logits of the last `tail` positions of input embeddings `[T, hidden]`
    /// after `cache`: `[tail, vocab]` (gradient search: the cached prefix is
    /// a constant).
    fn forward_embeds_cached_tail(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> candle_core::Result<Tensor> {
        self.forward_tail(&x.unsqueeze(0)?, Some(cache), tail)?
            .squeeze(0)
    }
    /// [`Self::forward_embeds_cached_tail`] for a batch `[B, T, hidden]`
    /// after a batched `cache`: `[B, tail, vocab]`.
    fn forward_embeds_batch_cached_tail(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        tail: usize,
    ) -> candle_core::Result<Tensor> {
        self.forward_tail(x, Some(cache), tail)
    }
}

/// A loaded model: a causal LM of any supported architecture, or a BERT
/// sequence classifier (which has no next-token logits and no search).
pub enum Arch {
    Causal(Box<dyn CausalLm>),
    Bert(Box<BertClassifier>),
}

fn not_causal() -> candle_core::Error {
    candle_core::Error::Msg("a sequence classifier has no next-token logits".into())
}

impl Arch {
    /// The causal LM, or `None` for a classifier.
    pub fn causal(&self) -> Option<&dyn CausalLm> {
        match self {
            Arch::Causal(m) => Some(m.as_ref()),
            Arch::Bert(_) => None,
        }
    }
    fn lm(&self) -> candle_core::Result<&dyn CausalLm> {
        self.causal().ok_or_else(not_causal)
    }
    /// Logits at every position, `[T, vocab]`.
    pub fn forward(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        self.lm()?.forward(ids)
    }
    /// Logits of `ids` after the positions in `cache`; the cache grows.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        self.lm()?.forward_cached(ids, cache)
    }
    /// Logits from input embeddings (differentiable).
    pub fn forward_embeds(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.lm()?.forward_embeds(x)
    }
    /// Logits for a batch of equally long id rows `[B, T]` → `[B, T, vocab]`.
    pub fn forward_batch(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.lm()?.forward_batch(ids)
    }
    pub fn embeddings(&self) -> &Tensor {
        match self {
            Arch::Causal(m) => m.embeddings(),
            Arch::Bert(m) => m.embeddings(),
        }
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            Arch::Causal(m) => m.vocab_size(),
            Arch::Bert(m) => m.cfg.vocab_size,
        }
    }
    pub fn layers(&self) -> usize {
        match self {
            Arch::Causal(m) => m.layers(),
            Arch::Bert(m) => m.cfg.num_hidden_layers,
        }
    }
    fn eos_config(&self) -> Option<&Value> {
        match self {
            Arch::Causal(m) => m.eos_config(),
            Arch::Bert(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: unsupported model_type '{found}' (supported: {})", SUPPORTED.join(", "))]
    Unsupported { path: String, found: String },
    #[error("{path}: {source}")]
    Candle {
        path: String,
        source: candle_core::Error,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A model with its tokenizer and prompt format.
pub struct LoadedModel {
    pub dir: PathBuf,
    pub model: Arch,
    pub model_type: String,
    pub tokenizer: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos: String,
    eos: String,
    pub eos_ids: Vec<u32>,
    pub weight_files: Vec<PathBuf>,
    pub parameters: usize,
    /// Where the weights were read from: `safetensors`, `pytorch` (a state
    /// dict read as data) or `gguf`.
    pub format: String,
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPath {
    /// A folder in Hugging Face layout (`config.json`, safetensors or
    /// PyTorch weights, `tokenizer.json`).
    Folder(PathBuf),
    /// A GGUF file (given directly, or the only `.gguf` of a folder without
    /// `config.json`).
    Gguf(PathBuf),
}

impl ModelPath {
    /// The path the worker must be able to read.
    pub fn path(&self) -> &Path {
        match self {
            ModelPath::Folder(p) | ModelPath::Gguf(p) => p,
        }
    }
}

/// Decides what `path` holds: a GGUF file, a folder holding one GGUF file
/// and no `config.json`, or a Hugging Face folder.
pub fn model_path(path: &Path) -> Result<ModelPath, ModelError> {
    if path.is_file() {
        return if gguf::is_gguf(path) {
            Ok(ModelPath::Gguf(path.to_path_buf()))
        } else {
            Err(invalid(
                path,
                "not a GGUF file; give a GGUF file or a model folder in Hugging Face layout",
            ))
        };
    }
    if !path.is_dir() {
        return Err(invalid(path, "no such file or folder"));
    }
    if !path.join("config.json").is_file() {
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| invalid(path, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && gguf::is_gguf(p))
            .collect();
        ggufs.sort();
        match ggufs.len() {
            1 => return Ok(ModelPath::Gguf(ggufs.remove(0))),
            0 => {}
            n => {
                return Err(invalid(
                    path,
                    format!("{n} GGUF files and no config.json: name the GGUF file to scan"),
                ))
            }
        }
    }
    Ok(ModelPath::Folder(path.to_path_buf()))
}

/// The bytes a model's weights take in f32 (what the worker holds), read
/// from the file headers without loading anything: the tensor table of a
/// GGUF file, the headers of safetensors files; a PyTorch pickle's size
/// doubled (bf16 at most). Zero when unknown.
pub fn f32_bytes(path: &Path) -> u64 {
    let elements = |shape: &[usize]| shape.iter().product::<usize>() as u64;
    match model_path(path) {
        Ok(ModelPath::Gguf(f)) => gguf::Gguf::open(&f)
            .map(|g| {
                let names: Vec<String> = g.tensor_names().cloned().collect();
                names
                    .iter()
                    .filter_map(|n| g.shape(n))
                    .map(|s| elements(&s) * 4)
                    .sum()
            })
            .unwrap_or(0),
        Ok(ModelPath::Folder(dir)) => match weight_files(&dir) {
            Ok(files) => files.iter().map(|f| safetensors_elements(f) * 4).sum(),
            Err(_) => pickle_weight_files(&dir)
                .unwrap_or_default()
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len() * 2))
                .sum(),
        },
        Err(_) => 0,
    }
}

/// The number of tensor elements a safetensors file declares (its header
/// only; zero when unreadable).
fn safetensors_elements(path: &Path) -> u64 {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_err() {
        return 0;
    }
    let len = u64::from_le_bytes(n);
    if len > 100 << 20 {
        return 0;
    }
    let mut header = vec![0u8; len as usize];
    if f.read_exact(&mut header).is_err() {
        return 0;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&header) else {
        return 0;
    };
    v.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "__metadata__")
                .filter_map(|(_, t)| t["shape"].as_array())
                .map(|s| s.iter().filter_map(Value::as_u64).product::<u64>())
                .sum()
        })
        .unwrap_or(0)
}

/// Parameters of a llama-family model from its configuration.
fn llama_parameters(c: &HfConfig) -> usize {
    let hd = c.head_dim();
    let per_layer = c.hidden_size * hd * (c.num_attention_heads * 2 + c.kv_heads() * 2)
        + 3 * c.hidden_size * c.intermediate_size
        + 2 * c.hidden_size
        + if c.attention_bias {
            hd * (c.num_attention_heads + 2 * c.kv_heads())
        } else {
            0
        };
    c.vocab_size * c.hidden_size * if c.tie_word_embeddings { 1 } else { 2 }
        + c.num_hidden_layers * per_layer
        + c.hidden_size
}

/// The ids that end an answer: the tokenizer's EOS token and the config's
/// `eos_token_id` (one or several).
fn eos_ids(tokenizer: &tokenizers::Tokenizer, eos: &str, model: &Arch) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(id) = tokenizer.token_to_id(eos) {
        ids.push(id);
    }
    match model.eos_config() {
        Some(Value::Number(n)) => ids.extend(n.as_u64().map(|x| x as u32)),
        Some(Value::Array(a)) => ids.extend(a.iter().filter_map(|x| x.as_u64().map(|x| x as u32))),
        _ => {}
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|x| seen.insert(*x));
    ids
}

/// The PyTorch pickle weight files of a folder (`pytorch_model.bin` or the
/// shards named by `pytorch_model.bin.index.json`), if it has them.
pub fn pickle_weight_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let single = dir.join("pytorch_model.bin");
    if single.is_file() {
        return Some(vec![single]);
    }
    let index = dir.join("pytorch_model.bin.index.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(index).ok()?).ok()?;
    let mut files: Vec<String> = v["weight_map"]
        .as_object()?
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    if files.iter().any(|f| f.contains('/') || f.contains("..")) {
        return None;
    }
    Some(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The safetensors files of a folder (single file or index of shards).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| invalid(&index, e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| invalid(&index, e.to_string()))?;
        let mut files: Vec<String> = v["weight_map"]
            .as_object()
            .ok_or_else(|| invalid(&index, "no weight_map"))?
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        let mut out = Vec::new();
        for f in files {
            if f.contains('/') || f.contains("..") {
                return Err(invalid(
                    &index,
                    format!("shard name '{f}' leaves the folder"),
                ));
            }
            out.push(dir.join(f));
        }
        return Ok(out);
    }
    Err(invalid(
        dir,
        "no model.safetensors or model.safetensors.index.json (pickle weights are not loaded)",
    ))
}

fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

impl LoadedModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::load_with(dir, device, false)
    }

    /// Like `load`; with `allow_pickle`, a folder that only has PyTorch
    /// pickle weights is read through `torch_weights` (as data, never
    /// unpickled).
    pub fn load_with(path: &Path, device: &Device, allow_pickle: bool) -> Result<Self, ModelError> {
        match model_path(path)? {
            ModelPath::Gguf(file) => Self::load_gguf(&file, device),
            ModelPath::Folder(dir) => Self::load_folder(&dir, device, allow_pickle),
        }
    }

    /// A GGUF file: weights dequantized, tokenizer and chat template from
    /// its metadata (see [`gguf`]).
    fn load_gguf(file: &Path, device: &Device) -> Result<Self, ModelError> {
        let g = gguf::Gguf::open(file).map_err(|e| invalid(file, e))?;
        let raw = g.hf_config().map_err(|e| invalid(file, e))?;
        let mt = raw["model_type"].as_str().unwrap_or("").to_string();
        let mut cfg: HfConfig =
            serde_json::from_value(raw).map_err(|e| invalid(file, e.to_string()))?;
        cfg.rope_freq_factors = g.rope_freq_factors(device).map_err(|e| invalid(file, e))?;
        let tensors = g.hf_tensors(device).map_err(|e| invalid(file, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let parameters = llama_parameters(&cfg);
        let model = Arch::Causal(Box::new(Llama::load(vb, cfg).map_err(|source| {
            ModelError::Candle {
                path: file.display().to_string(),
                source,
            }
        })?));
        let (tokenizer, bos, eos) = g.tokenizer().map_err(|e| invalid(file, e))?;
        let chat_template = g.chat_template();
        let eos_ids = eos_ids(&tokenizer, &eos, &model);
        Ok(LoadedModel {
            dir: file.to_path_buf(),
            model,
            model_type: mt,
            tokenizer,
            chat_template,
            bos,
            eos,
            eos_ids,
            weight_files: vec![file.to_path_buf()],
            parameters,
            format: "gguf".into(),
        })
    }

    /// A folder in Hugging Face layout.
    fn load_folder(dir: &Path, device: &Device, allow_pickle: bool) -> Result<Self, ModelError> {
        let cfg_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&cfg_path).map_err(|e| invalid(&cfg_path, e.to_string()))?;
        let raw: Value =
            serde_json::from_str(&text).map_err(|e| invalid(&cfg_path, e.to_string()))?;
        let mt = raw["model_type"].as_str().unwrap_or("").to_string();
        if !SUPPORTED.contains(&mt.as_str()) {
            return Err(ModelError::Unsupported {
                path: cfg_path.display().to_string(),
                found: mt,
            });
        }
        let candle = |source| ModelError::Candle {
            path: dir.display().to_string(),
            source,
        };
        let (files, vb) = match (weight_files(dir), pickle_weight_files(dir)) {
            (Ok(files), _) => {
                // SAFETY: the files are memory-mapped read-only; the worker's
                // Landlock rules make the folder read-only for this process.
                let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device) }
                    .map_err(candle)?;
                (files, vb)
            }
            (Err(_), Some(files)) if allow_pickle => {
                let mut all = std::collections::HashMap::new();
                for f in &files {
                    all.extend(torch_weights::read(f, device).map_err(|e| invalid(f, e))?);
                }
                (files, VarBuilder::from_tensors(all, DType::F32, device))
            }
            (Err(_), Some(files)) => {
                return Err(invalid(
                    &files[0],
                    "weights are in a pickle format; convert them to safetensors, or pass --allow-pickle-weights to read them as data (never unpickled) after a clean static scan",
                ))
            }
            (Err(e), None) => return Err(e),
        };
        let (model, parameters) = if mt == "bert" {
            let m = BertClassifier::load(vb, &raw).map_err(candle)?;
            let c = &m.cfg;
            let (h, i) = (c.hidden_size, c.intermediate_size);
            let per_layer = 4 * (h * h + h) + 4 * h + (h * i + i) + (i * h + h);
            let params = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h
                + 2 * h
                + c.num_hidden_layers * per_layer
                + (h * h + h)
                + m.labels.len() * (h + 1);
            (Arch::Bert(Box::new(m)), params)
        } else if mt == "gpt2" {
            let cfg: Gpt2Config =
                serde_json::from_value(raw).map_err(|e| invalid(&cfg_path, e.to_string()))?;
            let h = cfg.n_embd;
            let inner = cfg.n_inner.unwrap_or(4 * h);
            let per_layer =
                4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h);
            let params = cfg.vocab_size * h + cfg.n_positions * h + cfg.n_layer * per_layer + 2 * h;
            (
                Arch::Causal(Box::new(Gpt2::load(vb, cfg).map_err(candle)?)),
                params,
            )
        } else {
            let mut cfg: HfConfig =
                serde_json::from_value(raw).map_err(|e| invalid(&cfg_path, e.to_string()))?;
            if mt == "qwen2" {
                cfg.attention_bias = true; // Qwen2 has q/k/v biases without saying so
            }
            let params = llama_parameters(&cfg);
            (
                Arch::Causal(Box::new(Llama::load(vb, cfg).map_err(candle)?)),
                params,
            )
        };
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| invalid(&tok_path, e.to_string()))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: Value = std::fs::read_to_string(&tc_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let bos = token_text(&tc["bos_token"]).unwrap_or_default();
        let eos = token_text(&tc["eos_token"]).unwrap_or_default();
        // transformers 5 saves the template beside the config by default
        let chat_template = match &tc["chat_template"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str().map(str::to_string)),
            _ => None,
        }
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        let eos_ids = eos_ids(&tokenizer, &eos, &model);
        let format = if files
            .iter()
            .all(|f| f.extension().is_some_and(|x| x == "safetensors"))
        {
            "safetensors"
        } else {
            "pytorch"
        };
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            model,
            model_type: mt,
            tokenizer,
            chat_template,
            bos,
            eos,
            eos_ids,
            weight_files: files,
            parameters,
            format: format.into(),
        })
    }

    /// The model's own prompt format for one user turn, ready for generation.
    /// Without a chat template the text is used as is after the BOS token.
    pub fn render(&self, user: &str) -> String {
        if let Some(t) = &self.chat_template {
            let mut env = minijinja::Environment::new();
            env.add_function(
                "raise_exception",
                |msg: String| -> Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        msg,
                    ))
                },
            );
            if env.add_template("chat", t).is_ok() {
                if let Ok(tmpl) = env.get_template("chat") {
                    let ctx = minijinja::context! {
                        messages => vec![minijinja::context! { role => "user", content => user }],
                        add_generation_prompt => true,
                        bos_token => &self.bos,
                        eos_token => &self.eos,
                    };
                    if let Ok(s) = tmpl.render(ctx) {
                        return s;
                    }
                }
            }
        }
        format!("{}{}", self.bos, user)
    }

    /// Whether this is a sequence classifier (BERT) rather than a causal LM.
    pub fn is_classifier(&self) -> bool {
        matches!(self.model, Arch::Bert(_))
    }

    /// Token ids of a rendered prompt. Causal LMs: the special tokens come
    /// from the rendered text itself; classifiers: the tokenizer's own
    /// post-processor adds them ([CLS] … [SEP]).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer
            .encode(text, self.is_classifier())
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// Greedy continuation of `ids`, at most `max_new` tokens, stopping at EOS
    /// (incremental decoding with a key/value cache).
    pub fn greedy(&self, ids: &[u32], max_new: usize) -> candle_core::Result<Vec<u32>> {
        let mut cache = KvCache::default();
        let mut out = Vec::new();
        if ids.is_empty() || max_new == 0 {
            return Ok(out);
        }
        let mut logits = self.model.forward_cached(ids, &mut cache)?;
        for _ in 0..max_new {
            let last = logits.get(logits.dim(0)? - 1)?;
            let next = last.argmax(0)?.to_scalar::<u32>()?;
            if self.eos_ids.contains(&next) || cache.len() >= 4096 {
                break;
            }
            out.push(next);
            logits = self.model.forward_cached(&[next], &mut cache)?;
        }
        Ok(out)
    }

    /// Greedy continuation recomputing the whole sequence at each step (the
    /// reference the cached path is tested against).
    pub fn greedy_uncached(&self, ids: &[u32], max_new: usize) -> candle_core::Result<Vec<u32>> {
        let mut seq = ids.to_vec();
        let mut out = Vec::new();
        for _ in 0..max_new {
            let logits = self.model.forward(&seq)?;
            let next = logits.get(seq.len() - 1)?.argmax(0)?.to_scalar::<u32>()?;
            if self.eos_ids.contains(&next) {
                break;
            }
            out.push(next);
            seq.push(next);
        }
        Ok(out)
    }
}

/// Left-pads id rows to one length; returns `[B, L]` ids and each row's pad.
pub fn left_pad(
    rows: &[Vec<u32>],
    device: &candle_core::Device,
) -> candle_core::Result<(Tensor, Vec<usize>)> {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * len);
    let mut pad = Vec::with_capacity(rows.len());
    for r in rows {
        let p = len - r.len();
        pad.push(p);
        flat.extend(std::iter::repeat_n(r.first().copied().unwrap_or(0), p));
        flat.extend_from_slice(r);
    }
    Ok((Tensor::from_vec(flat, (rows.len(), len), device)?, pad))
}

/// How many leading tokens all `rows` share, leaving each at least one of
/// its own (0 for fewer than two rows: nothing to share).
pub fn shared_prefix_len(rows: &[Vec<u32>]) -> usize {
    let [first, rest @ ..] = rows else {
        return 0;
    };
    if rest.is_empty() {
        return 0;
    }
    let shortest = rows.iter().map(Vec::len).min().unwrap_or(0);
    let mut n = 0;
    while n + 1 < shortest && rest.iter().all(|r| r[n] == first[n]) {
        n += 1;
    }
    n
}

/// Greedy continuation of every row after a prompt pass: `first` holds the
/// logits at the last prompt position (`[B, V]`), `cache` the prompt. Rows
/// stop at an EOS token. Returns each row's tokens and, for the suspect,
/// the log-probability rows that predicted them.
pub fn greedy_rows(
    m: &LoadedModel,
    first: Tensor,
    cache: &mut KvCache,
    max_new: usize,
    keep_logp: bool,
) -> candle_core::Result<(Vec<Vec<u32>>, Vec<LogpRows>)> {
    let lm = m
        .model
        .causal()
        .ok_or_else(|| candle_core::Error::Msg("not a causal language model".into()))?;
    let rows = first.dim(0)?;
    let mut out = vec![Vec::new(); rows];
    let mut logp = vec![Vec::new(); rows];
    let mut live = vec![true; rows];
    let mut logits = first;
    for step in 0..max_new {
        let next: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
        let lp = if keep_logp {
            Some(log_softmax_rows(&logits)?)
        } else {
            None
        };
        for r in 0..rows {
            if !live[r] {
                continue;
            }
            if m.eos_ids.contains(&next[r]) {
                live[r] = false;
                continue;
            }
            out[r].push(next[r]);
            if let Some(lp) = &lp {
                logp[r].push(lp[r].clone());
            }
        }
        if step + 1 == max_new || !live.iter().any(|&l| l) {
            break;
        }
        logits = lm.forward_cached_rows(&next, cache)?;
    }
    Ok((out, logp))
}

/// The log-probability rows (one per generated token) of one answer.
pub type LogpRows = Vec<Vec<f32>>;

/// Rows greedily continued together, at most this many at once (the
/// prompt logits of a chunk are `rows × length × vocabulary`).
const GREEDY_CHUNK: usize = 32;

impl LoadedModel {
    /// [`LoadedModel::greedy`] for several prompts at once (left-padded, one
    /// cache per chunk of [`GREEDY_CHUNK`]), with each answer's mean
    /// next-token entropy (nats) over its first `entropy_steps` positions
    /// (fewer when it is shorter; the step that chose the end counts).
    /// An empty prompt gets an empty answer. Causal models only. The
    /// tokens all rows of a chunk start with (a chat template's head) go
    /// through the model once, as a shared prefix.
    pub fn greedy_batch(
        &self,
        rows: &[Vec<u32>],
        max_new: usize,
        entropy_steps: usize,
    ) -> candle_core::Result<Vec<(Vec<u32>, f32)>> {
        self.greedy_batch_with(rows, max_new, entropy_steps, true)
    }

    /// [`LoadedModel::greedy_batch`], with `share_prefix` false every row
    /// computed whole (the reference the shared prefix is measured against).
    pub fn greedy_batch_with(
        &self,
        rows: &[Vec<u32>],
        max_new: usize,
        entropy_steps: usize,
        share_prefix: bool,
    ) -> candle_core::Result<Vec<(Vec<u32>, f32)>> {
        let lm = self
            .model
            .causal()
            .ok_or_else(|| candle_core::Error::Msg("not a causal language model".into()))?;
        let mut out = vec![(Vec::new(), 0.0f32); rows.len()];
        let live_rows: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].is_empty()).collect();
        if max_new == 0 {
            return Ok(out);
        }
        for chunk in live_rows.chunks(GREEDY_CHUNK) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            // the tokens every row starts with (a chat template's system
            // turn, the user turn's header) go through the model once, as a
            // prefix the rows share; each row keeps at least its last token
            let shared = if share_prefix {
                shared_prefix_len(&ids)
            } else {
                0
            };
            let (batch, pad) = left_pad(
                &ids.iter().map(|r| r[shared..].to_vec()).collect::<Vec<_>>(),
                lm.device(),
            )?;
            let len = shared + batch.dim(1)?;
            let mut cache = if shared > 0 {
                let mut prefix = KvCache::default();
                let head = Tensor::new(&ids[0][..shared], lm.device())?.unsqueeze(0)?;
                lm.forward_tail(&lm.embed(&head)?, Some(&mut prefix), 1)?;
                prefix.shared_padded(pad)?
            } else {
                KvCache::padded(pad)
            };
            let mut logits = lm
                .forward_tail(&lm.embed(&batch)?, Some(&mut cache), 1)?
                .squeeze(1)?;
            let n = ids.len();
            let mut ents: Vec<Vec<f32>> = vec![Vec::new(); n];
            // the rows still decoded, in the cache's order: a finished row
            // leaves the batch
            let mut active: Vec<usize> = (0..n).collect();
            for step in 0..max_new {
                let next: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
                if step < entropy_steps {
                    let ls = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
                    let h: Vec<f32> = (ls.exp()? * &ls)?
                        .sum(candle_core::D::Minus1)?
                        .neg()?
                        .to_vec1()?;
                    for (j, &r) in active.iter().enumerate() {
                        ents[r].push(h[j]);
                    }
                }
                let mut keep = Vec::with_capacity(active.len());
                for (j, &r) in active.iter().enumerate() {
                    if self.eos_ids.contains(&next[j]) || len + step >= 4096 {
                        continue;
                    }
                    out[chunk[r]].0.push(next[j]);
                    keep.push(j);
                }
                if step + 1 == max_new || keep.is_empty() {
                    break;
                }
                let step_ids: Vec<u32> = keep.iter().map(|&j| next[j]).collect();
                if keep.len() < active.len() {
                    cache = cache.select_rows(&keep)?;
                    active = keep.iter().map(|&j| active[j]).collect();
                }
                logits = lm.forward_cached_rows(&step_ids, &mut cache)?;
            }
            for r in 0..n {
                let k = out[chunk[r]].0.len().min(entropy_steps.saturating_sub(1));
                let e = &ents[r][..(k + 1).min(ents[r].len())];
                out[chunk[r]].1 = e.iter().sum::<f32>() / e.len().max(1) as f32;
            }
        }
        Ok(out)
    }
}

/// Log-softmax rows of `[T, V]` logits, as plain vectors.
pub fn log_softmax_rows(logits: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let ls = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    ls.to_vec2::<f32>()
}

#[cfg(test)]
mod tests {
    use super::shared_prefix_len;

    #[test]
    fn a_shared_prefix_leaves_every_row_a_token_of_its_own() {
        assert_eq!(shared_prefix_len(&[]), 0);
        assert_eq!(shared_prefix_len(&[vec![1, 2, 3]]), 0);
        assert_eq!(shared_prefix_len(&[vec![1, 2, 3], vec![1, 2, 4]]), 2);
        // one row is the other's start: it keeps its last token
        assert_eq!(shared_prefix_len(&[vec![1, 2, 3], vec![1, 2, 3, 4]]), 2);
        assert_eq!(shared_prefix_len(&[vec![1, 2, 3], vec![1, 2, 3]]), 2);
        assert_eq!(shared_prefix_len(&[vec![5], vec![5, 6]]), 0);
        assert_eq!(shared_prefix_len(&[vec![1, 2], vec![9, 2]]), 0);
        assert_eq!(
            shared_prefix_len(&[vec![1, 2, 3, 4], vec![1, 2, 7], vec![1, 8, 3]]),
            1
        );
    }
}
