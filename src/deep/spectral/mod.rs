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
//! This is the CPU path; the report says which device computed it.

pub mod gpu;
pub mod linalg;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::deep::models::weight_files;

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
#[derive(Debug, Clone, Serialize)]
pub struct LayerStats {
    pub name: String,
    /// The name with layer numbers replaced by `*` (layers of one kind).
    pub kind: String,
    pub shape: [usize; 2],
    /// ‖ΔW‖_F
    pub delta_norm: f64,
    /// ‖ΔW‖_F / ‖W_base‖_F
    pub rel_delta: f64,
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
    /// z-scores of this layer's statistics among the layers of its kind.
    pub z: BTreeMap<String, f64>,
}

/// A token whose row stands out.
#[derive(Debug, Clone, Serialize)]
pub struct TokenCandidate {
    pub id: u32,
    pub token: String,
    /// Robust z-score (median / MAD) of the row's change, or the projection
    /// score for tokens pushed by a down-projection's top direction.
    pub score: f64,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Candidates {
    /// Input-embedding rows that changed far more than the rest.
    pub trigger_tokens: Vec<TokenCandidate>,
    /// Output rows that changed, and tokens the top directions of the
    /// MLP down-projections push through the LM head.
    pub target_tokens: Vec<TokenCandidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub backend: String,
    pub adapter: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRef {
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Default)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct SpectralReport {
    pub schema: &'static str,
    pub tool: crate::finding::Tool,
    pub suspect: ModelRef,
    pub base: Option<ModelRef>,
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

/// Where a tensor lives: file index, dtype, shape, byte range.
type Entry = (usize, safetensors::Dtype, Vec<usize>, (usize, usize));

/// The tensors of a model folder, memory-mapped (never loaded whole).
struct Weights {
    maps: Vec<memmap2::Mmap>,
    /// name → (file index, dtype, shape, byte range)
    index: BTreeMap<String, Entry>,
}

impl Weights {
    fn open(dir: &Path) -> Result<Self, SpectralError> {
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
                    (
                        fi,
                        view.dtype(),
                        view.shape().to_vec(),
                        (start, start + view.data().len()),
                    ),
                );
            }
            maps.push(map);
        }
        Ok(Weights { maps, index })
    }

    /// A 2-D tensor as f32 (bf16 / f16 / f32 sources).
    fn matrix(&self, name: &str) -> Option<Result<Vec<f32>, String>> {
        let (fi, dtype, _shape, (a, b)) = self.index.get(name)?;
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

/// Statistics of one ΔW (row-major `rows × cols`).
#[allow(clippy::too_many_arguments)]
fn layer_stats(
    name: &str,
    delta: Vec<f32>,
    base_norm: f64,
    rows: usize,
    cols: usize,
    opts: &SpectralOptions,
    gpu: Option<&gpu::Gpu>,
    gpu_failures: &mut Vec<String>,
) -> Result<(LayerStats, Vec<Vec<f64>>), String> {
    let n = delta.len() as f64;
    let (mut s2, mut max_abs) = (0.0f64, 0.0f64);
    let mut sum = 0.0f64;
    for &x in &delta {
        let x = x as f64;
        sum += x;
        s2 += x * x;
        max_abs = max_abs.max(x.abs());
    }
    let mean = sum / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for &x in &delta {
        let d = x as f64 - mean;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= n;
    m4 /= n;
    let kurtosis = if m2 > 0.0 { m4 / (m2 * m2) - 3.0 } else { 0.0 };
    let fro = s2.sqrt();
    let (values, left) = if fro > 0.0 {
        let seed = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let on_gpu = gpu.map(|g| {
            gpu::GpuProducts::new(g, &delta, rows, cols).and_then(|mut p| {
                linalg::truncated_svd(&mut p, opts.top_k, 8, opts.iterations, seed)
            })
        });
        let tr = match on_gpu {
            Some(Ok(tr)) => tr,
            other => {
                if let Some(Err(e)) = other {
                    gpu_failures.push(format!("{name}: {e}"));
                }
                let mut p = linalg::CpuProducts::new(delta, rows, cols)?;
                linalg::truncated_svd(&mut p, opts.top_k, 8, opts.iterations, seed)?
            }
        };
        (tr.values, tr.left)
    } else {
        (vec![0.0; opts.top_k.min(rows.min(cols))], Vec::new())
    };
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
    Ok((
        LayerStats {
            name: name.to_string(),
            kind: kind_of(name),
            shape: [rows, cols],
            delta_norm: fro,
            rel_delta: if base_norm > 0.0 {
                fro / base_norm
            } else {
                0.0
            },
            singular_values: values,
            top1_energy: top1,
            topk_energy: topk,
            effective_rank,
            spectral_entropy: entropy,
            kurtosis,
            max_abs,
            z: BTreeMap::new(),
        },
        left,
    ))
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

/// Analyses `suspect` against `base` (both Hugging Face folders with
/// safetensors weights).
pub fn analyse(
    suspect: &Path,
    base: Option<&Path>,
    opts: &SpectralOptions,
) -> Result<SpectralReport, SpectralError> {
    let t0 = Instant::now();
    let mut notices = Vec::new();
    let s = Weights::open(suspect)?;
    let tok = tokenizers::Tokenizer::from_file(suspect.join("tokenizer.json")).ok();
    if tok.is_none() {
        notices.push("no readable tokenizer.json: candidate tokens are shown by id".into());
    }
    let mut summary = Summary::default();
    let mut layers = Vec::new();
    let mut candidates = Candidates::default();
    let Some(base_dir) = base else {
        notices.push(
            "no base model: ΔW cannot be formed; only a fine-tune compared with its base is analysed in this version"
                .into(),
        );
        return Ok(SpectralReport {
            schema: SPECTRAL_SCHEMA,
            tool: crate::finding::Tool::default(),
            suspect: ModelRef {
                path: suspect.display().to_string(),
            },
            base: None,
            device: cpu_device(),
            notices,
            layers,
            candidates,
            summary,
            timings: BTreeMap::from([("total_seconds".into(), t0.elapsed().as_secs_f64())]),
        });
    };
    let b = Weights::open(base_dir)?;
    let (gpu, device) = pick_device(opts.device, &mut notices);
    let mut gpu_failures = Vec::new();
    let mut down_dirs: Vec<(String, Vec<f64>)> = Vec::new();
    let mut head: Option<(Vec<f32>, usize, usize)> = None;
    for (name, (_, _, shape, _)) in &s.index {
        if shape.len() != 2 {
            continue;
        }
        let Some((_, _, bshape, _)) = b.index.get(name) else {
            summary.only_in_suspect.push(name.clone());
            continue;
        };
        if bshape != shape {
            summary
                .shape_mismatches
                .push(format!("{name}: {shape:?} vs base {bshape:?}"));
            continue;
        }
        let (rows, cols) = (shape[0], shape[1]);
        if rows * cols > MAX_TENSOR_ELEMENTS {
            summary
                .skipped
                .push(format!("{name}: {rows}x{cols} is larger than the limit"));
            continue;
        }
        let (sw, bw) = match (s.matrix(name), b.matrix(name)) {
            (Some(Ok(x)), Some(Ok(y))) => (x, y),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                summary.skipped.push(format!("{name}: {e}"));
                continue;
            }
            _ => continue,
        };
        let delta: Vec<f32> = sw.iter().zip(&bw).map(|(x, y)| x - y).collect();
        let base_norm = bw.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        if is_input_embedding(name) || is_output_head(name) {
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
            }
        }
        if is_output_head(name) {
            head = Some((sw.clone(), rows, cols));
        }
        let (stats, left) = layer_stats(
            name,
            delta,
            base_norm,
            rows,
            cols,
            opts,
            gpu.as_ref(),
            &mut gpu_failures,
        )
        .map_err(|e| input(suspect, format!("{name}: {e}")))?;
        if is_down_projection(name) {
            if let Some(u) = left.into_iter().next() {
                down_dirs.push((name.clone(), u));
            }
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
        notices.push(format!(
            "{} matrices fell back to the CPU: {}",
            gpu_failures.len(),
            gpu_failures.join("; ")
        ));
    }
    // z-scores across layers of the same kind
    let mut by_kind: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, l) in layers.iter().enumerate() {
        by_kind.entry(l.kind.clone()).or_default().push(i);
    }
    for idx in by_kind.values() {
        if idx.len() < 3 {
            continue; // too few layers of this kind to compare
        }
        for (key, get) in [
            (
                "rel_delta",
                (|l: &LayerStats| l.rel_delta) as fn(&LayerStats) -> f64,
            ),
            ("top1_energy", |l: &LayerStats| l.top1_energy),
            ("effective_rank", |l: &LayerStats| l.effective_rank),
            ("kurtosis", |l: &LayerStats| l.kurtosis),
        ] {
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
    let mut rd: Vec<f64> = layers.iter().map(|l| l.rel_delta).collect();
    summary.median_rel_delta = median(&mut rd);
    let mut ranked: Vec<&LayerStats> = layers.iter().collect();
    ranked.sort_by(|a, b| zt(b).total_cmp(&zt(a)).then(a.name.cmp(&b.name)));
    summary.most_concentrated = ranked.iter().take(5).map(|l| l.name.clone()).collect();
    for list in [
        &mut candidates.trigger_tokens,
        &mut candidates.target_tokens,
    ] {
        list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    }
    Ok(SpectralReport {
        schema: SPECTRAL_SCHEMA,
        tool: crate::finding::Tool::default(),
        suspect: ModelRef {
            path: suspect.display().to_string(),
        },
        base: Some(ModelRef {
            path: base_dir.display().to_string(),
        }),
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
