//! Weight spectral analysis of ΔW = W_suspect − W_base.
//!
//! A backdoor implanted by fine-tuning tends to leave a low-rank change
//! concentrated in a few matrices (and in the embedding rows of its trigger
//! tokens, the output rows of its target tokens), while an ordinary
//! fine-tune spreads its change. For every 2-D tensor present in both
//! models, read straight from the memory-mapped safetensors one tensor at a
//! time, this computes the size of the change, its top singular values
//! (randomized subspace iteration), how much of the change they hold, its
//! stable rank and entropy, the tails of its entries, and for the embedding
//! and output matrices the rows that stand out, mapped back to tokens.
//! Statistics are then compared across the layers of the same kind.
//!
//! ΔW is formed and decomposed on a GPU through wgpu when one is chosen
//! (`gpu`), else on the CPU with candle's matmul (`linalg`); the report says
//! which device computed it. Without a base, the same machinery describes
//! the spectral shape of each weight matrix itself (base-free mode).

pub mod gpu;
pub mod linalg;
pub mod plot;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::models::weight_files;

/// A tensor's bytes as stored, with their type.
type RawTensor<'a> = (Cow<'a, [u8]>, gpu::RawDtype);

/// Schema identifier of `probity spectral` reports.
pub const SPECTRAL_SCHEMA: &str = "probity.spectral/v1";

/// Largest tensor (elements) analysed; bigger ones are listed as skipped.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;

/// Where the products of the SVD run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpectralDevice {
    /// A hardware GPU adapter when there is one, else the CPU (a software
    /// rasteriser such as llvmpipe is slower than the CPU path).
    #[default]
    Auto,
    /// Any wgpu adapter, software ones included (falls back to the CPU with
    /// a notice when none works).
    Gpu,
    Cpu,
}

#[derive(Debug, Clone)]
pub struct SpectralOptions {
    pub device: SpectralDevice,
    /// Singular values per matrix.
    pub top_k: usize,
    /// Power iterations of the randomized SVD.
    pub iterations: usize,
    /// Robust z-score above which an embedding/output row is a candidate.
    pub row_z: f64,
}

impl Default for SpectralOptions {
    fn default() -> Self {
        SpectralOptions {
            device: SpectralDevice::Auto,
            top_k: 8,
            iterations: 4,
            row_z: 6.0,
        }
    }
}

/// Statistics of one matrix's change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerStats {
    pub name: String,
    /// The name with layer numbers replaced by `*` (layers of one kind).
    pub kind: String,
    pub shape: [usize; 2],
    /// ‖ΔW‖_F
    pub delta_norm: f64,
    /// ‖ΔW‖_F / ‖W_base‖_F (null in base-free mode).
    pub rel_delta: Option<f64>,
    /// Top singular values of ΔW, descending.
    pub singular_values: Vec<f64>,
    /// σ1² / ‖ΔW‖_F²
    pub top1_energy: f64,
    /// Σ_{i≤k} σi² / ‖ΔW‖_F²
    pub topk_energy: f64,
    /// ‖ΔW‖_F² / σ1² (the stable rank: ≈ 1 for a rank-one change).
    pub effective_rank: f64,
    /// Entropy (nats) of the energy split among the top k directions and
    /// the rest, taken as one bucket.
    pub spectral_entropy: f64,
    /// Excess kurtosis of ΔW's entries (heavy tails: a few large changes).
    pub kurtosis: f64,
    pub max_abs: f64,
    /// Base-free mode only: the spectral shape of W itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightShape>,
    /// z-scores of this layer's statistics among the layers of its kind.
    pub z: BTreeMap<String, f64>,
}

/// The spectral shape of a weight matrix W itself (base-free mode: weaker
/// evidence than ΔW, because a trained matrix is never random and nothing
/// says what it looked like before).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightShape {
    /// Marchenko–Pastur bulk edge: the largest singular value a random
    /// matrix of W's shape and entry variance would have,
    /// σ·(√rows + √cols).
    pub mp_edge: f64,
    /// σ1 / mp_edge (above 1: structure beyond noise).
    pub sigma1_over_edge: f64,
    /// Computed singular values beyond the bulk edge (a lower bound when
    /// all of them are).
    pub outliers_beyond_edge: usize,
    /// Power-law exponent α of the tail of the eigenvalue density of WᵀW
    /// (Hill estimator on the computed top eigenvalues); smaller = heavier
    /// tail. Trained layers are typically 2–6.
    pub alpha: f64,
    /// Rows whose norm stands out (robust z above the row threshold):
    /// count, and the strongest, at most five.
    pub outlier_rows: usize,
    pub top_outlier_rows: Vec<u32>,
    /// The same for columns (for a down-projection: intermediate neurons).
    pub outlier_cols: usize,
    pub top_outlier_cols: Vec<u32>,
}

/// A token whose row stands out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCandidate {
    pub id: u32,
    pub token: String,
    /// Robust z-score (median / MAD) of the row's change, or the projection
    /// score for tokens pushed by a down-projection's top direction.
    pub score: f64,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Candidates {
    /// Input-embedding rows that changed far more than the rest.
    pub trigger_tokens: Vec<TokenCandidate>,
    /// Output rows that changed, and tokens the top directions of the
    /// MLP down-projections push through the LM head.
    pub target_tokens: Vec<TokenCandidate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub backend: String,
    pub adapter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRef {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Summary {
    pub layers_compared: usize,
    pub shape_mismatches: Vec<String>,
    pub only_in_suspect: Vec<String>,
    pub skipped: Vec<String>,
    /// Layers ranked by how concentrated their change is (top-1 energy
    /// z-score), at most five.
    pub most_concentrated: Vec<String>,
    pub max_top1_energy: f64,
    pub max_top1_energy_z: f64,
    pub median_rel_delta: f64,
    pub max_rel_delta_z: f64,
    /// The largest robust z-score among input-embedding rows.
    pub max_embedding_row_z: f64,
    /// Base-free mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsSummary>,
}

/// Base-free summary: which layers' spectra look least like the rest.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WeightsSummary {
    pub min_alpha: f64,
    pub median_alpha: f64,
    pub max_sigma1_over_edge: f64,
    /// Layers with at least one singular value beyond the bulk edge.
    pub layers_with_outliers: usize,
    /// Rows and columns with outlying norms, over all layers.
    pub outlier_neurons: usize,
    /// Layers whose α is furthest below the others of their kind (z), at
    /// most five.
    pub heaviest_tailed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpectralReport {
    pub schema: String,
    pub tool: probity_report::Tool,
    pub suspect: ModelRef,
    pub base: Option<ModelRef>,
    /// `delta` (ΔW against the base) or `weights` (base-free: W itself).
    pub mode: String,
    pub device: DeviceInfo,
    /// What the analysis did not do, and why (one line each).
    pub notices: Vec<String>,
    pub layers: Vec<LayerStats>,
    pub candidates: Candidates,
    pub summary: Summary,
    pub timings: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpectralError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
}

fn input(path: &Path, message: impl Into<String>) -> SpectralError {
    SpectralError::Input {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Where a tensor lives.
enum Loc {
    /// In a memory-mapped safetensors file: file index, dtype, byte range.
    Mapped(usize, safetensors::Dtype, (usize, usize)),
    /// In a GGUF file, under this name (dequantized on demand, in the
    /// Hugging Face layout).
    Gguf(String),
}

struct Entry {
    shape: Vec<usize>,
    loc: Loc,
}

/// The tensors of a model, by Hugging Face name: a folder's safetensors,
/// memory-mapped (never loaded whole), or a GGUF file's tensors, read and
/// dequantized one at a time.
struct Weights {
    maps: Vec<memmap2::Mmap>,
    gguf: Option<crate::models::gguf::Gguf>,
    index: BTreeMap<String, Entry>,
}

impl Weights {
    fn open(path: &Path) -> Result<Self, SpectralError> {
        match crate::models::model_path(path).map_err(|e| input(path, e.to_string()))? {
            crate::models::ModelPath::Gguf(f) => Self::open_gguf(&f),
            crate::models::ModelPath::Folder(dir) => Self::open_folder(&dir),
        }
    }

    fn open_gguf(file: &Path) -> Result<Self, SpectralError> {
        let g = crate::models::gguf::Gguf::open(file).map_err(|e| input(file, e))?;
        let mut index = BTreeMap::new();
        for name in g.tensor_names() {
            if let (Some(hf), Some(shape)) =
                (crate::models::gguf::Gguf::hf_name(name), g.shape(name))
            {
                index.insert(
                    hf,
                    Entry {
                        shape,
                        loc: Loc::Gguf(name.clone()),
                    },
                );
            }
        }
        Ok(Weights {
            maps: Vec::new(),
            gguf: Some(g),
            index,
        })
    }

    fn open_folder(dir: &Path) -> Result<Self, SpectralError> {
        let files = weight_files(dir).map_err(|e| input(dir, e.to_string()))?;
        let mut maps = Vec::new();
        let mut index = BTreeMap::new();
        for (fi, f) in files.iter().enumerate() {
            let file = std::fs::File::open(f).map_err(|e| input(f, e.to_string()))?;
            // SAFETY: read-only mapping; a file changed underneath can only
            // give wrong numbers, which the header checks below bound.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| input(f, e.to_string()))?;
            let st = safetensors::SafeTensors::deserialize(&map)
                .map_err(|e| input(f, format!("not a valid safetensors file: {e}")))?;
            for (name, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
                index.insert(
                    name,
                    Entry {
                        shape: view.shape().to_vec(),
                        loc: Loc::Mapped(fi, view.dtype(), (start, start + view.data().len())),
                    },
                );
            }
            maps.push(map);
        }
        Ok(Weights {
            maps,
            gguf: None,
            index,
        })
    }

    fn gguf_matrix(&self, gname: &str) -> Result<Vec<f32>, String> {
        let g = self.gguf.as_ref().ok_or("no GGUF file")?;
        g.hf_tensor(gname, &candle_core::Device::Cpu)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("{gname}: {e}"))
    }

    /// Whether a tensor can be analysed (its dtype), without reading it.
    fn readable(&self, name: &str) -> Option<Result<(), String>> {
        let e = self.index.get(name)?;
        Some(match &e.loc {
            Loc::Gguf(_) => Ok(()),
            Loc::Mapped(_, dtype, _) => match dtype {
                safetensors::Dtype::F32 | safetensors::Dtype::BF16 | safetensors::Dtype::F16 => {
                    Ok(())
                }
                other => Err(format!("dtype {other:?} is not analysed")),
            },
        })
    }

    /// A tensor's raw little-endian bytes and how they encode values (a GGUF
    /// tensor dequantized to f32).
    fn raw(&self, name: &str) -> Option<Result<RawTensor<'_>, String>> {
        let e = self.index.get(name)?;
        Some(match &e.loc {
            Loc::Gguf(g) => self.gguf_matrix(g).map(|v| {
                (
                    Cow::Owned(bytemuck::cast_slice::<f32, u8>(&v).to_vec()),
                    gpu::RawDtype::F32,
                )
            }),
            Loc::Mapped(fi, dtype, (a, b)) => {
                let bytes = Cow::Borrowed(&self.maps[*fi][*a..*b]);
                match dtype {
                    safetensors::Dtype::F32 => Ok((bytes, gpu::RawDtype::F32)),
                    safetensors::Dtype::BF16 => Ok((bytes, gpu::RawDtype::Bf16)),
                    safetensors::Dtype::F16 => Ok((bytes, gpu::RawDtype::F16)),
                    other => Err(format!("dtype {other:?} is not analysed")),
                }
            }
        })
    }

    /// A 2-D tensor as f32 (bf16 / f16 / f32 sources, or dequantized GGUF).
    fn matrix(&self, name: &str) -> Option<Result<Vec<f32>, String>> {
        let e = self.index.get(name)?;
        let (fi, dtype, (a, b)) = match &e.loc {
            Loc::Gguf(g) => return Some(self.gguf_matrix(g)),
            Loc::Mapped(fi, dtype, range) => (fi, dtype, range),
        };
        let bytes = &self.maps[*fi][*a..*b];
        Some(match dtype {
            safetensors::Dtype::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            safetensors::Dtype::BF16 => Ok(bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()),
            safetensors::Dtype::F16 => Ok(bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()),
            other => Err(format!("dtype {other:?} is not analysed")),
        })
    }

    /// The model's tokenizer: a folder's `tokenizer.json`, or rebuilt from
    /// the GGUF metadata.
    fn tokenizer(&self, path: &Path) -> Option<tokenizers::Tokenizer> {
        match &self.gguf {
            Some(g) => g.tokenizer().ok().map(|t| t.0),
            None => tokenizers::Tokenizer::from_file(path.join("tokenizer.json")).ok(),
        }
    }
}

/// Layer kind: the name with every run of digits replaced by `*`.
pub fn kind_of(name: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('*');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn is_input_embedding(name: &str) -> bool {
    name.ends_with("embed_tokens.weight")
        || name.ends_with("wte.weight")
        || name.ends_with("word_embeddings.weight")
}

fn is_output_head(name: &str) -> bool {
    name == "lm_head.weight" || name.ends_with(".lm_head.weight")
}

fn is_down_projection(name: &str) -> bool {
    name.ends_with("mlp.down_proj.weight") || name.ends_with("mlp.c_proj.weight")
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Robust z-scores (median and scaled MAD) of `xs`.
pub fn robust_z(xs: &[f64]) -> Vec<f64> {
    let mut c = xs.to_vec();
    let med = median(&mut c);
    let mut dev: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev) * 1.4826;
    let scale = if mad > 1e-12 {
        mad
    } else {
        // fall back to the mean absolute deviation
        (dev.iter().sum::<f64>() / dev.len().max(1) as f64).max(1e-12)
    };
    xs.iter().map(|x| (x - med) / scale).collect()
}

/// ΔW's moments and top singular triplets: formed and decomposed on the
/// GPU when one is given, else (or when the GPU fails, with the reason in
/// `gpu_failures`) on the CPU. `base` `None` analyses the suspect's weights
/// themselves. `host` is ΔW already formed on the host, when it was.
#[allow(clippy::too_many_arguments)]
fn decompose(
    name: &str,
    s: &Weights,
    b: Option<&Weights>,
    rows: usize,
    cols: usize,
    k: usize,
    opts: &SpectralOptions,
    gpu: Option<&gpu::Gpu>,
    gpu_failures: &mut Vec<String>,
    host: Option<Vec<f32>>,
) -> Result<(gpu::Moments, linalg::Truncated), String> {
    let seed = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let zero = |m: gpu::Moments| {
        (
            m,
            linalg::Truncated {
                values: vec![0.0; k.min(rows.min(cols))],
                left: Vec::new(),
            },
        )
    };
    if let Some(g) = gpu {
        let raw_s = s.raw(name).ok_or("missing in the suspect")??;
        let raw_b = match b {
            Some(b) => Some(b.raw(name).ok_or("missing in the base")??),
            None => None,
        };
        let on_gpu = g
            .form_delta(
                (&raw_s.0, raw_s.1),
                raw_b.as_ref().map(|(x, d)| (&x[..], *d)),
                rows * cols,
            )
            .and_then(|(buf, m)| {
                if m.sum_sq == 0.0 {
                    return Ok(zero(m));
                }
                let mut p = gpu::GpuProducts::resident(g, buf, rows, cols);
                Ok((
                    m,
                    linalg::truncated_svd(&mut p, k, 8, opts.iterations, seed)?,
                ))
            });
        match on_gpu {
            Ok(x) => return Ok(x),
            Err(e) => gpu_failures.push(format!("{name}: {e}")),
        }
    }
    let bw = match b {
        Some(b) => b.matrix(name).ok_or("missing in the base")??,
        None => Vec::new(),
    };
    let delta = match host {
        Some(d) => d,
        None => {
            let sw = s.matrix(name).ok_or("missing in the suspect")??;
            if b.is_none() {
                sw
            } else {
                sw.iter().zip(&bw).map(|(x, y)| x - y).collect()
            }
        }
    };
    let m = gpu::Moments::cpu(&delta, &bw);
    if m.sum_sq == 0.0 {
        return Ok(zero(m));
    }
    let mut p = linalg::CpuProducts::new(delta, rows, cols)?;
    Ok((
        m,
        linalg::truncated_svd(&mut p, k, 8, opts.iterations, seed)?,
    ))
}

/// Statistics of one ΔW (row-major `rows × cols`) from its moments and
/// top singular values.
fn layer_stats(
    name: &str,
    m: &gpu::Moments,
    values: Vec<f64>,
    rows: usize,
    cols: usize,
    with_base: bool,
) -> LayerStats {
    let s2 = m.sum_sq;
    let fro = s2.sqrt();
    let base_norm = m.base_sum_sq.sqrt();
    let energy: Vec<f64> = values.iter().map(|s| s * s).collect();
    let (top1, topk) = if s2 > 0.0 {
        (
            energy.first().copied().unwrap_or(0.0) / s2,
            (energy.iter().sum::<f64>() / s2).min(1.0),
        )
    } else {
        (0.0, 0.0)
    };
    let effective_rank = if energy.first().copied().unwrap_or(0.0) > 0.0 {
        s2 / energy[0]
    } else {
        0.0
    };
    let mut entropy = 0.0;
    if s2 > 0.0 {
        let rest = (1.0 - topk).max(0.0);
        for p in energy.iter().map(|e| e / s2).chain([rest]) {
            if p > 0.0 {
                entropy -= p * p.ln();
            }
        }
    }
    LayerStats {
        name: name.to_string(),
        kind: kind_of(name),
        shape: [rows, cols],
        delta_norm: fro,
        rel_delta: with_base.then(|| {
            if base_norm > 0.0 {
                fro / base_norm
            } else {
                0.0
            }
        }),
        singular_values: values,
        top1_energy: top1,
        topk_energy: topk,
        effective_rank,
        spectral_entropy: entropy,
        kurtosis: m.kurtosis(),
        max_abs: m.max_abs,
        weights: None,
        z: BTreeMap::new(),
    }
}

fn token_name(tok: Option<&tokenizers::Tokenizer>, id: u32) -> String {
    tok.and_then(|t| t.id_to_token(id))
        .unwrap_or_else(|| format!("#{id}"))
}

/// Rows of a `rows × cols` ΔW whose change stands out (robust z above
/// `threshold`), at most ten, strongest first; also the largest z.
fn outlying_rows(
    delta: &[f32],
    base: &[f32],
    rows: usize,
    cols: usize,
    threshold: f64,
) -> (Vec<(u32, f64)>, f64) {
    // relative change per row, so that rarely trained (small) rows and
    // frequently trained (large) rows are compared fairly
    let norms: Vec<f64> = (0..rows)
        .map(|r| {
            let d = &delta[r * cols..(r + 1) * cols];
            let b = &base[r * cols..(r + 1) * cols];
            let dn = d.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let bn = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dn / (bn + 1e-6)
        })
        .collect();
    let z = robust_z(&norms);
    let max = z.iter().cloned().fold(f64::MIN, f64::max);
    let mut idx: Vec<usize> = (0..rows).filter(|&r| z[r] > threshold).collect();
    idx.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    idx.truncate(10);
    (idx.into_iter().map(|r| (r as u32, z[r])).collect(), max)
}

/// Row (or column) norms of a row-major `rows × cols` matrix.
fn line_norms(w: &[f32], rows: usize, cols: usize, by_row: bool) -> Vec<f64> {
    if by_row {
        (0..rows)
            .map(|r| {
                w[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|x| (*x as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    } else {
        let mut acc = vec![0.0f64; cols];
        for row in w.chunks_exact(cols) {
            for (a, x) in acc.iter_mut().zip(row) {
                *a += (*x as f64).powi(2);
            }
        }
        acc.into_iter().map(f64::sqrt).collect()
    }
}

/// Indices whose robust z exceeds `threshold`: the count, and the
/// strongest five.
fn outliers(norms: &[f64], threshold: f64) -> (usize, Vec<u32>) {
    let z = robust_z(norms);
    let mut idx: Vec<usize> = (0..norms.len()).filter(|&i| z[i] > threshold).collect();
    let count = idx.len();
    idx.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    (count, idx.into_iter().take(5).map(|i| i as u32).collect())
}

/// Hill estimate of the density exponent α from descending eigenvalues:
/// α = 1 + k / Σ_{i≤k} ln(λ_i / λ_{k+1}).
pub fn hill_alpha(eig: &[f64]) -> f64 {
    let k = eig.len().saturating_sub(1);
    if k < 2 || eig[k] <= 0.0 {
        return 0.0;
    }
    let s: f64 = eig[..k].iter().map(|l| (l / eig[k]).ln()).sum();
    if s > 0.0 {
        1.0 + k as f64 / s
    } else {
        0.0
    }
}

/// Singular values per matrix in base-free mode (the tail fit needs more
/// than the default eight).
const BASE_FREE_K: usize = 16;

/// Analyses `suspect` against `base` (both Hugging Face folders with
/// safetensors weights); without a base, the spectral shape of the
/// suspect's own weights.
pub fn analyse(
    suspect: &Path,
    base: Option<&Path>,
    opts: &SpectralOptions,
) -> Result<SpectralReport, SpectralError> {
    let t0 = Instant::now();
    let mut notices = Vec::new();
    let s = Weights::open(suspect)?;
    let tok = s.tokenizer(suspect);
    if tok.is_none() {
        notices.push("no readable tokenizer: candidate tokens are shown by id".into());
    }
    let mut summary = Summary::default();
    let mut layers = Vec::new();
    let mut candidates = Candidates::default();
    let b = match base {
        Some(d) => Some(Weights::open(d)?),
        None => {
            notices.push(
                "base-free mode (no --base): the spectral shape of each weight matrix itself (Marchenko–Pastur outliers, power-law tail exponent, outlier rows and columns); weaker evidence than ΔW against the base, and no candidate tokens"
                    .into(),
            );
            None
        }
    };
    let (gpu, device) = pick_device(opts.device, &mut notices);
    let mut gpu_failures = Vec::new();
    let mut down_dirs: Vec<(String, Vec<f64>)> = Vec::new();
    let mut head: Option<(Vec<f32>, usize, usize)> = None;
    for (name, Entry { shape, .. }) in &s.index {
        if shape.len() != 2 {
            continue;
        }
        if let Some(b) = &b {
            let Some(Entry { shape: bshape, .. }) = b.index.get(name) else {
                summary.only_in_suspect.push(name.clone());
                continue;
            };
            if bshape != shape {
                summary
                    .shape_mismatches
                    .push(format!("{name}: {shape:?} vs base {bshape:?}"));
                continue;
            }
        }
        let (rows, cols) = (shape[0], shape[1]);
        if rows * cols > MAX_TENSOR_ELEMENTS {
            summary
                .skipped
                .push(format!("{name}: {rows}x{cols} is larger than the limit"));
            continue;
        }
        if let Some(Err(e)) = s.readable(name) {
            summary.skipped.push(format!("{name}: {e}"));
            continue;
        }
        if let Some(Err(e)) = b.as_ref().and_then(|b| b.readable(name)) {
            summary.skipped.push(format!("{name}: {e}"));
            continue;
        }
        let loaded = |w: &Weights| -> Result<Vec<f32>, SpectralError> {
            w.matrix(name)
                .unwrap_or_else(|| Err("missing".into()))
                .map_err(|e| input(suspect, format!("{name}: {e}")))
        };
        // the embedding and output rows are compared on the host
        let mut host = None;
        let mut shape_of_w = None;
        match &b {
            Some(b) if is_input_embedding(name) || is_output_head(name) => {
                let (sw, bw) = (loaded(&s)?, loaded(b)?);
                let delta: Vec<f32> = sw.iter().zip(&bw).map(|(x, y)| x - y).collect();
                let (rows_out, max_z) = outlying_rows(&delta, &bw, rows, cols, opts.row_z);
                let source = if is_input_embedding(name) {
                    summary.max_embedding_row_z = summary.max_embedding_row_z.max(max_z);
                    "embedding row"
                } else {
                    "output row"
                };
                let list: Vec<TokenCandidate> = rows_out
                    .into_iter()
                    .map(|(id, z)| TokenCandidate {
                        id,
                        token: token_name(tok.as_ref(), id),
                        score: z,
                        source: format!("{source} of {name}"),
                    })
                    .collect();
                if is_input_embedding(name) {
                    candidates.trigger_tokens.extend(list);
                } else {
                    candidates.target_tokens.extend(list);
                    head = Some((sw, rows, cols));
                }
                host = Some(delta);
            }
            Some(_) => {}
            None => {
                let w = loaded(&s)?;
                let (nr, tr) = outliers(&line_norms(&w, rows, cols, true), opts.row_z);
                let (nc, tc) = outliers(&line_norms(&w, rows, cols, false), opts.row_z);
                shape_of_w = Some((nr, tr, nc, tc));
                if gpu.is_none() {
                    host = Some(w);
                }
            }
        }
        let k = if b.is_some() {
            opts.top_k
        } else {
            opts.top_k.max(BASE_FREE_K)
        };
        let (m, tr) = decompose(
            name,
            &s,
            b.as_ref(),
            rows,
            cols,
            k,
            opts,
            gpu.as_ref(),
            &mut gpu_failures,
            host,
        )
        .map_err(|e| input(suspect, format!("{name}: {e}")))?;
        if b.is_some() && is_down_projection(name) {
            if let Some(u) = tr.left.into_iter().next() {
                down_dirs.push((name.clone(), u));
            }
        }
        let mut stats = layer_stats(name, &m, tr.values, rows, cols, b.is_some());
        if let Some((nr, tr, nc, tc)) = shape_of_w {
            let var = m.m2;
            let edge = var.sqrt() * ((rows as f64).sqrt() + (cols as f64).sqrt());
            let sv = &stats.singular_values;
            let eig: Vec<f64> = sv.iter().map(|x| x * x).collect();
            stats.weights = Some(WeightShape {
                mp_edge: edge,
                sigma1_over_edge: if edge > 0.0 {
                    sv.first().copied().unwrap_or(0.0) / edge
                } else {
                    0.0
                },
                outliers_beyond_edge: sv.iter().filter(|&&x| edge > 0.0 && x > edge).count(),
                alpha: hill_alpha(&eig),
                outlier_rows: nr,
                top_outlier_rows: tr,
                outlier_cols: nc,
                top_outlier_cols: tc,
            });
        }
        layers.push(stats);
    }
    // tokens the down-projections' top change directions push through the
    // LM head (the sign of a singular vector is arbitrary: take the side with
    // the larger extreme)
    if let Some((w, vocab, hidden)) = &head {
        for (name, u) in &down_dirs {
            if u.len() != *hidden {
                continue;
            }
            let scores: Vec<f64> = (0..*vocab)
                .map(|r| {
                    w[r * hidden..(r + 1) * hidden]
                        .iter()
                        .zip(u)
                        .map(|(a, b)| *a as f64 * b)
                        .sum()
                })
                .collect();
            let z = robust_z(&scores);
            let neg: Vec<f64> = z.iter().map(|x| -x).collect();
            let hi = z.iter().cloned().fold(f64::MIN, f64::max);
            let lo = neg.iter().cloned().fold(f64::MIN, f64::max);
            let use_z = if hi >= lo { &z } else { &neg };
            let mut idx: Vec<usize> = (0..*vocab).filter(|&r| use_z[r] > opts.row_z).collect();
            idx.sort_by(|&a, &b| use_z[b].total_cmp(&use_z[a]));
            for r in idx.into_iter().take(3) {
                candidates.target_tokens.push(TokenCandidate {
                    id: r as u32,
                    token: token_name(tok.as_ref(), r as u32),
                    score: use_z[r],
                    source: format!("top direction of {name}"),
                });
            }
        }
    } else if !down_dirs.is_empty() {
        notices.push(
            "no separate lm_head.weight (tied or absent): down-projection directions are not mapped to tokens"
                .into(),
        );
    }
    if !gpu_failures.is_empty() {
        // the first reason is usually every reason
        notices.push(format!(
            "{} matrices fell back to the CPU; first: {}",
            gpu_failures.len(),
            gpu_failures[0]
        ));
    }
    // z-scores across layers of the same kind
    let mut by_kind: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, l) in layers.iter().enumerate() {
        by_kind.entry(l.kind.clone()).or_default().push(i);
    }
    type Stat = fn(&LayerStats) -> f64;
    let keys: Vec<(&str, Stat)> = if b.is_some() {
        vec![
            ("rel_delta", |l| l.rel_delta.unwrap_or(0.0)),
            ("top1_energy", |l| l.top1_energy),
            ("effective_rank", |l| l.effective_rank),
            ("kurtosis", |l| l.kurtosis),
        ]
    } else {
        vec![
            ("alpha", |l| l.weights.as_ref().map_or(0.0, |w| w.alpha)),
            ("sigma1_over_edge", |l| {
                l.weights.as_ref().map_or(0.0, |w| w.sigma1_over_edge)
            }),
            ("top1_energy", |l| l.top1_energy),
            ("kurtosis", |l| l.kurtosis),
        ]
    };
    for idx in by_kind.values() {
        if idx.len() < 3 {
            continue; // too few layers of this kind to compare
        }
        for (key, get) in &keys {
            let xs: Vec<f64> = idx.iter().map(|&i| get(&layers[i])).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64)
                .sqrt()
                .max(1e-12);
            for (&i, x) in idx.iter().zip(&xs) {
                layers[i].z.insert(key.to_string(), (x - mean) / sd);
            }
        }
    }
    summary.layers_compared = layers.len();
    summary.max_top1_energy = layers.iter().map(|l| l.top1_energy).fold(0.0, f64::max);
    let zt = |l: &LayerStats| l.z.get("top1_energy").copied().unwrap_or(0.0);
    summary.max_top1_energy_z = layers.iter().map(zt).fold(0.0, f64::max);
    summary.max_rel_delta_z = layers
        .iter()
        .map(|l| l.z.get("rel_delta").copied().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let mut rd: Vec<f64> = layers.iter().filter_map(|l| l.rel_delta).collect();
    summary.median_rel_delta = median(&mut rd);
    let mut ranked: Vec<&LayerStats> = layers.iter().collect();
    ranked.sort_by(|a, b| zt(b).total_cmp(&zt(a)).then(a.name.cmp(&b.name)));
    summary.most_concentrated = ranked.iter().take(5).map(|l| l.name.clone()).collect();
    if b.is_none() {
        let shapes: Vec<&WeightShape> = layers.iter().filter_map(|l| l.weights.as_ref()).collect();
        let mut alphas: Vec<f64> = shapes
            .iter()
            .map(|w| w.alpha)
            .filter(|a| *a > 0.0)
            .collect();
        let za = |l: &LayerStats| l.z.get("alpha").copied().unwrap_or(0.0);
        let mut by_alpha: Vec<&LayerStats> = layers.iter().collect();
        by_alpha.sort_by(|a, b| za(a).total_cmp(&za(b)).then(a.name.cmp(&b.name)));
        summary.weights = Some(WeightsSummary {
            min_alpha: if alphas.is_empty() {
                0.0
            } else {
                alphas.iter().cloned().fold(f64::INFINITY, f64::min)
            },
            median_alpha: median(&mut alphas),
            max_sigma1_over_edge: shapes
                .iter()
                .map(|w| w.sigma1_over_edge)
                .fold(0.0, f64::max),
            layers_with_outliers: shapes.iter().filter(|w| w.outliers_beyond_edge > 0).count(),
            outlier_neurons: shapes.iter().map(|w| w.outlier_rows + w.outlier_cols).sum(),
            heaviest_tailed: by_alpha
                .iter()
                .filter(|l| za(l) < 0.0)
                .take(5)
                .map(|l| l.name.clone())
                .collect(),
        });
    }
    for list in [
        &mut candidates.trigger_tokens,
        &mut candidates.target_tokens,
    ] {
        list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    }
    Ok(SpectralReport {
        schema: SPECTRAL_SCHEMA.to_string(),
        tool: probity_report::Tool::default(),
        suspect: ModelRef {
            path: suspect.display().to_string(),
        },
        base: base.map(|d| ModelRef {
            path: d.display().to_string(),
        }),
        mode: if b.is_some() { "delta" } else { "weights" }.to_string(),
        device,
        notices,
        layers,
        candidates,
        summary,
        timings: BTreeMap::from([("total_seconds".into(), t0.elapsed().as_secs_f64())]),
    })
}

/// The GPU to use (if any) and how the report names the device; why not,
/// as a notice, when a GPU was asked for or none was usable.
fn pick_device(want: SpectralDevice, notices: &mut Vec<String>) -> (Option<gpu::Gpu>, DeviceInfo) {
    if want == SpectralDevice::Cpu {
        return (None, cpu_device());
    }
    match gpu::Gpu::new() {
        Ok(g) if want == SpectralDevice::Auto && g.adapter.ends_with("(Cpu)") => {
            notices.push(format!(
                "only a software GPU adapter ({}) was found: the CPU path is faster (use --spectral-device gpu to force it)",
                g.adapter
            ));
            (None, cpu_device())
        }
        Ok(g) => {
            let info = DeviceInfo {
                backend: "gpu".into(),
                adapter: format!("{} via {}", g.adapter, g.backend),
            };
            (Some(g), info)
        }
        Err(e) => {
            notices.push(format!("GPU unavailable, computed on the CPU instead: {e}"));
            (None, cpu_device())
        }
    }
}

fn cpu_device() -> DeviceInfo {
    DeviceInfo {
        backend: "cpu".into(),
        adapter: format!(
            "candle CPU matmul, {} threads",
            rayon::current_num_threads()
        ),
    }
}
