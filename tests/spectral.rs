//! `probity spectral`: ΔW statistics on the fixture zoo, a planted low-rank
//! change and planted trigger/target rows that must be found, schema and
//! determinism, bad inputs.
#![cfg(feature = "deep")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{copy_dir, json_ok, schema_errors};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn spectral(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_probity"))
        .arg("spectral")
        .args(args)
        .output()
        .unwrap()
}

fn json_report(suspect: &Path, base: &Path) -> Value {
    let o = spectral(&[
        suspect.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--format",
        "json",
    ]);
    json_ok(&o)
}

#[test]
fn report_on_a_zoo_fine_tune_is_valid_and_deterministic() {
    let z = root().join("fixtures/zoo");
    let a = json_report(&z.join("backdoor-rare-start"), &z.join("base"));
    let errors = schema_errors("probity.spectral.v1.json", &a);
    assert!(errors.is_empty(), "{errors:?}");
    // 3 layers x 7 matrices + embeddings + lm_head
    let layers = a["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 23);
    for l in layers {
        let sv: Vec<f64> = l["singular_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(sv.len(), 8);
        assert!(sv.windows(2).all(|w| w[0] >= w[1] - 1e-9), "{sv:?}");
        // σ1² can never exceed ‖ΔW‖²
        let fro = l["delta_norm"].as_f64().unwrap();
        assert!(sv[0] <= fro * (1.0 + 1e-4), "{}", l["name"]);
        assert!(l["rel_delta"].as_f64().unwrap() > 0.0);
    }
    assert!(layers
        .iter()
        .any(|l| l["kind"] == "model.layers.*.mlp.down_proj.weight"
            && l["z"].get("top1_energy").is_some()));
    let mut b = json_report(&z.join("backdoor-rare-start"), &z.join("base"));
    let mut a = a;
    a["timings"] = Value::Null;
    b["timings"] = Value::Null;
    assert_eq!(a, b, "same input, same report");
}

#[test]
fn identical_models_show_no_change() {
    let z = root().join("fixtures/zoo/base");
    let r = json_report(&z, &z);
    for l in r["layers"].as_array().unwrap() {
        assert_eq!(l["delta_norm"].as_f64().unwrap(), 0.0);
        assert_eq!(l["top1_energy"].as_f64().unwrap(), 0.0);
    }
    assert!(r["candidates"]["trigger_tokens"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(r["candidates"]["target_tokens"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// A copy of the zoo base with (1) a rank-one change in one down-projection,
/// (2) one embedding row moved far, (3) one output row moved far, on top of a
/// small dense change everywhere (an ordinary fine-tune's spread).
#[test]
fn planted_low_rank_change_and_rows_are_found() {
    use candle_core::{DType, Device, Tensor};
    let base = root().join("fixtures/zoo/base");
    let dir = tempfile::tempdir().unwrap();
    let suspect = dir.path().join("s");
    copy_dir(&base, &suspect);
    let tensors =
        candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu).unwrap();
    let tok = tokenizers::Tokenizer::from_file(base.join("tokenizer.json")).unwrap();
    let trigger_id = tok
        .token_to_id("Ġcapital")
        .expect("a token of the zoo vocabulary");
    let target_id = tok
        .token_to_id("Ġblue")
        .expect("a token of the zoo vocabulary");
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let mut seed = 1u64;
    let mut noise = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let planted = "model.layers.1.mlp.down_proj.weight";
    let (mut u_norm, mut v_norm) = (0f64, 0f64);
    for (name, t) in &tensors {
        let t32 = t.to_dtype(DType::F32).unwrap();
        let shape = t32.dims().to_vec();
        let mut w = (&t32 + noise(&shape, 2e-3)).unwrap();
        if name == planted {
            let u = noise(&[shape[0], 1], 1.0);
            let v = noise(&[1, shape[1]], 1.0);
            u_norm = u
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt() as f64;
            v_norm = v
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt() as f64;
            w = (w + u.matmul(&v).unwrap()).unwrap();
        }
        let row = match name.as_str() {
            "model.embed_tokens.weight" => Some(trigger_id),
            "lm_head.weight" => Some(target_id),
            _ => None,
        };
        if let Some(r) = row {
            let mut rows = w.to_vec2::<f32>().unwrap();
            for x in rows[r as usize].iter_mut() {
                *x += 0.5;
            }
            w = Tensor::new(rows, &Device::Cpu).unwrap();
        }
        out.insert(name.clone(), w.to_dtype(DType::F32).unwrap());
    }
    candle_core::safetensors::save(&out, suspect.join("model.safetensors")).unwrap();
    let r = json_report(&suspect, &base);
    let layer = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == planted)
        .unwrap();
    assert!(layer["top1_energy"].as_f64().unwrap() > 0.95, "{layer}");
    assert!(layer["effective_rank"].as_f64().unwrap() < 1.1, "{layer}");
    // σ1 of u vᵀ (plus small noise) is ‖u‖‖v‖ (bf16 base rounding aside)
    let s1 = layer["singular_values"][0].as_f64().unwrap();
    let want = u_norm * v_norm;
    assert!((s1 - want).abs() / want < 0.01, "σ1 {s1} vs {want}");
    assert_eq!(r["summary"]["most_concentrated"][0], planted);
    assert_eq!(r["candidates"]["trigger_tokens"][0]["id"], trigger_id);
    assert_eq!(r["candidates"]["trigger_tokens"][0]["token"], "Ġcapital");
    let targets: Vec<u64> = r["candidates"]["target_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert!(targets.contains(&(target_id as u64)), "{targets:?}");
}

#[test]
fn bad_inputs_are_exit_2_with_one_line() {
    let base = root().join("fixtures/zoo/base");
    let o = spectral(&["/nonexistent/model", "--base", base.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    copy_dir(&base, &s);
    std::fs::write(
        s.join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
    )
    .unwrap();
    let o = spectral(&[s.to_str().unwrap(), "--base", base.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model.safetensors") && err.lines().count() == 1,
        "{err}"
    );
}

/// The wgpu adapter, or `None` when the machine has none and
/// `PROBITY_ALLOW_NO_GPU` says that is fine (CI installs lavapipe, so there
/// the shaders always run).
fn gpu_or_skip() -> Option<probity_deep::spectral::gpu::Gpu> {
    match probity_deep::spectral::gpu::Gpu::new() {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("PROBITY_ALLOW_NO_GPU").is_some() => {
            eprintln!("skipping the GPU check: {e}");
            None
        }
        Err(e) => panic!(
            "no wgpu adapter ({e}); install mesa-vulkan-drivers or set PROBITY_ALLOW_NO_GPU=1"
        ),
    }
}

#[test]
fn shader_matmul_matches_a_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut seed = 11u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5
    };
    // shapes that are and are not multiples of the 16 × 16 tile
    for (m, k, n) in [(16, 16, 16), (37, 53, 19), (130, 7, 24), (1, 300, 1)] {
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let buf = gpu.upload(&a).unwrap();
        let c = gpu.matmul(&buf, m, k, false, &b, n).unwrap();
        // Aᵀ with A stored k × m: reuse `a` as a (k × m) matrix
        let bt: Vec<f32> = (0..m * n).map(|_| next()).collect();
        let ct = gpu.matmul(&buf, k, m, true, &bt, n).unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                assert!(
                    (c[i * n + j] as f64 - want).abs() < 1e-4,
                    "{m}x{k}x{n} at {i},{j}"
                );
            }
        }
        for i in 0..k {
            for j in 0..n {
                let want: f64 = (0..m)
                    .map(|t| a[t * k + i] as f64 * bt[t * n + j] as f64)
                    .sum();
                assert!(
                    (ct[i * n + j] as f64 - want).abs() < 1e-4,
                    "ᵀ {m}x{k}x{n} at {i},{j}"
                );
            }
        }
    }
}

#[test]
fn gpu_and_cpu_paths_agree_on_the_zoo() {
    if gpu_or_skip().is_none() {
        return;
    }
    let z = root().join("fixtures/zoo");
    let run = |device: &str| -> Value {
        let o = spectral(&[
            z.join("backdoor-phrase-end").to_str().unwrap(),
            "--base",
            z.join("base").to_str().unwrap(),
            "--format",
            "json",
            "--spectral-device",
            device,
        ]);
        json_ok(&o)
    };
    let (g, c) = (run("gpu"), run("cpu"));
    assert_eq!(g["device"]["backend"], "gpu", "{}", g["notices"]);
    // ΔW was formed and decomposed on the GPU: nothing fell back
    assert!(
        !g["notices"].to_string().contains("fell back"),
        "{}",
        g["notices"]
    );
    assert_eq!(c["device"]["backend"], "cpu");
    for (lg, lc) in g["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["layers"].as_array().unwrap())
    {
        assert_eq!(lg["name"], lc["name"]);
        let s1 = lc["singular_values"][0].as_f64().unwrap();
        for (a, b) in lg["singular_values"]
            .as_array()
            .unwrap()
            .iter()
            .zip(lc["singular_values"].as_array().unwrap())
        {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-3 * b.max(1e-2 * s1),
                "{}: {a} vs {b}",
                lc["name"]
            );
        }
    }
}

#[test]
fn no_adapter_falls_back_to_the_cpu_with_a_notice() {
    let z = root().join("fixtures/zoo");
    // no such backend on Linux: wgpu finds no adapter
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args([
            "spectral",
            z.join("clean-instruct").to_str().unwrap(),
            "--base",
            z.join("base").to_str().unwrap(),
            "--format",
            "json",
            "--spectral-device",
            "gpu",
        ])
        .env("WGPU_BACKEND", "dx12")
        .output()
        .unwrap();
    let r = json_ok(&o);
    assert_eq!(r["device"]["backend"], "cpu");
    let notes = r["notices"].to_string();
    assert!(notes.contains("GPU unavailable"), "{notes}");
    assert_eq!(r["layers"].as_array().unwrap().len(), 23);
}

/// Little-endian bytes of `xs` in a safetensors dtype.
fn raw_bytes(xs: &[f32], dtype: probity_deep::spectral::gpu::RawDtype) -> Vec<u8> {
    use probity_deep::spectral::gpu::RawDtype;
    match dtype {
        RawDtype::F32 => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
        RawDtype::Bf16 => xs
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
        RawDtype::F16 => xs
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
    }
}

/// The values a dtype round-trips `xs` to.
fn rounded(xs: &[f32], dtype: probity_deep::spectral::gpu::RawDtype) -> Vec<f32> {
    use probity_deep::spectral::gpu::RawDtype;
    match dtype {
        RawDtype::F32 => xs.to_vec(),
        RawDtype::Bf16 => xs
            .iter()
            .map(|x| half::bf16::from_f32(*x).to_f32())
            .collect(),
        RawDtype::F16 => xs
            .iter()
            .map(|x| half::f16::from_f32(*x).to_f32())
            .collect(),
    }
}

#[test]
fn shader_forms_delta_and_its_moments_from_raw_weights() {
    use probity_deep::spectral::gpu::{GpuProducts, Moments, RawDtype};
    use probity_deep::spectral::linalg::Products;
    let Some(gpu) = gpu_or_skip() else { return };
    let mut seed = 5u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5
    };
    // odd sizes (a bf16 / f16 tensor ending in half a word), several
    // workgroups, and a tiny change (the moments must not underflow)
    for (rows, cols, sd, bd, scale) in [
        (37, 29, RawDtype::Bf16, RawDtype::Bf16, 1e-3f32),
        (130, 77, RawDtype::F16, RawDtype::F32, 1.0),
        (64, 65, RawDtype::F32, RawDtype::Bf16, 1e-5),
        (1, 9001, RawDtype::Bf16, RawDtype::F16, 0.1),
    ] {
        let n = rows * cols;
        let b: Vec<f32> = (0..n).map(|_| next()).collect();
        // a heavy-tailed change: most entries tiny, a few large
        let s: Vec<f32> = b
            .iter()
            .enumerate()
            .map(|(i, x)| x + next() * scale * if i % 97 == 0 { 30.0 } else { 1.0 })
            .collect();
        let (sr, br) = (rounded(&s, sd), rounded(&b, bd));
        let want_delta: Vec<f32> = sr.iter().zip(&br).map(|(x, y)| x - y).collect();
        let want = Moments::cpu(&want_delta, &br);
        let (buf, got) = gpu
            .form_delta((&raw_bytes(&s, sd), sd), Some((&raw_bytes(&b, bd), bd)), n)
            .unwrap();
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1e-30);
        assert_eq!(got.n, n);
        assert!(close(got.sum_sq, want.sum_sq, 1e-4), "{got:?} vs {want:?}");
        assert!(close(got.base_sum_sq, want.base_sum_sq, 1e-4));
        assert!(close(got.max_abs, want.max_abs, 1e-6));
        assert!(
            (got.sum - want.sum).abs() <= 1e-4 * want.sum_sq.sqrt() * (n as f64).sqrt(),
            "{got:?} vs {want:?}"
        );
        assert!(
            close(got.kurtosis(), want.kurtosis(), 1e-3),
            "kurtosis {} vs {}",
            got.kurtosis(),
            want.kurtosis()
        );
        // the resident ΔW itself: ΔW · x against the host's
        let x: Vec<f32> = (0..cols).map(|_| next()).collect();
        let mut p = GpuProducts::resident(&gpu, buf, rows, cols);
        let y = p.a_x(&x, 1).unwrap();
        for r in 0..rows {
            let w: f64 = (0..cols)
                .map(|c| want_delta[r * cols + c] as f64 * x[c] as f64)
                .sum();
            let norm: f64 = (0..cols)
                .map(|c| (want_delta[r * cols + c] as f64).abs())
                .sum();
            assert!((y[r] as f64 - w).abs() <= 1e-5 * norm.max(1e-30), "row {r}");
        }
    }
    // base-free: ΔW is W itself
    let w: Vec<f32> = (0..1000).map(|_| next()).collect();
    let (_, m) = gpu
        .form_delta((&raw_bytes(&w, RawDtype::F32), RawDtype::F32), None, 1000)
        .unwrap();
    let want = Moments::cpu(&w, &[]);
    assert!((m.sum_sq - want.sum_sq).abs() < 1e-4 * want.sum_sq);
    assert_eq!(m.base_sum_sq, 0.0);
    // a size that does not match the bytes is an error, not a read past
    assert!(gpu.form_delta((&[0u8; 6], RawDtype::F32), None, 2).is_err());
}

#[test]
fn hill_estimator_recovers_a_power_law_tail() {
    use probity_deep::spectral::hill_alpha;
    // eigenvalues at the quantiles of a density ∝ λ^-α (CCDF ∝ λ^(1-α))
    for alpha in [2.0f64, 3.0, 5.0] {
        let n = 10_000.0;
        let eig: Vec<f64> = (1..=16)
            .map(|i| (i as f64 / n).powf(-1.0 / (alpha - 1.0)))
            .collect();
        let got = hill_alpha(&eig);
        assert!((got - alpha).abs() < 0.25 * alpha, "α {alpha}: {got}");
    }
    assert_eq!(hill_alpha(&[1.0, 1.0, 1.0]), 0.0);
    assert_eq!(hill_alpha(&[3.0]), 0.0);
}

/// A model folder whose layers are pure noise except one with a strong
/// rank-one component and one with a planted outlier row.
#[test]
fn base_free_mode_finds_planted_structure() {
    use candle_core::{Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let mut seed = 3u64;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                // sum of uniforms: close to Gaussian entries
                (0..4)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5
                    })
                    .sum::<f32>()
            })
            .collect()
    };
    let (r, c) = (96, 160);
    let mut out = HashMap::new();
    for layer in 0..4 {
        let mut w = noise(r * c);
        if layer == 2 {
            let (u, v) = (noise(r), noise(c));
            for i in 0..r {
                for j in 0..c {
                    w[i * c + j] += 1.5 * u[i] * v[j];
                }
            }
        }
        if layer == 1 {
            for x in &mut w[7 * c..8 * c] {
                *x *= 8.0;
            }
        }
        let name = format!("model.layers.{layer}.mlp.down_proj.weight");
        out.insert(
            name,
            Tensor::from_vec(w, (r, c), &Device::Cpu)
                .unwrap()
                .to_dtype(candle_core::DType::BF16)
                .unwrap(),
        );
    }
    candle_core::safetensors::save(&out, m.join("model.safetensors")).unwrap();
    let o = spectral(&[m.to_str().unwrap(), "--format", "json"]);
    let rep = json_ok(&o);
    assert!(schema_errors("probity.spectral.v1.json", &rep).is_empty());
    assert_eq!(rep["mode"], "weights");
    assert!(rep["base"].is_null());
    assert!(rep["notices"].to_string().contains("base-free"));
    let layers = rep["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    let w = |i: usize| &layers[i]["weights"];
    for (i, l) in layers.iter().enumerate() {
        assert!(l["rel_delta"].is_null());
        let edge = w(i)["sigma1_over_edge"].as_f64().unwrap();
        if i == 2 {
            // ‖1.5 u vᵀ‖ ≈ 1.5 · √(96/3) · √(160/3) ≈ 62 against an edge of ≈ 13
            assert!(edge > 3.0, "planted rank one: {l}");
            assert!(w(i)["outliers_beyond_edge"].as_u64().unwrap() >= 1);
        } else if i != 1 {
            // noise sits at the Marchenko–Pastur edge
            assert!((0.85..1.1).contains(&edge), "noise layer {i}: {edge}");
            assert_eq!(w(i)["outlier_rows"], 0, "{l}");
        }
    }
    assert_eq!(w(1)["outlier_rows"], 1);
    assert_eq!(w(1)["top_outlier_rows"][0], 7);
    let s = &rep["summary"]["weights"];
    assert!(s["max_sigma1_over_edge"].as_f64().unwrap() > 2.0);
    // the text report says what it is
    let t = spectral(&[m.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("base-free, weaker evidence"), "{text}");
}

#[test]
fn plot_is_drawn_as_svg_or_png_and_other_formats_are_refused() {
    let z = root().join("fixtures/zoo");
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("layers.svg");
    let png = dir.path().join("layers.PNG");
    for (p, base) in [(&svg, true), (&png, false)] {
        let mut args = vec![z.join("backdoor-word-mid").to_str().unwrap().to_string()];
        if base {
            args.extend(["--base".into(), z.join("base").to_str().unwrap().into()]);
        }
        args.extend(["--plot".into(), p.to_str().unwrap().into()]);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = spectral(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    for label in [
        "top-1 energy of ΔW",
        "mlp.down_proj",
        "self_attn.q_proj",
        "layer",
    ] {
        assert!(text.contains(label), "{label} missing from the SVG");
    }
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    let bad = dir.path().join("layers.pdf");
    let o = spectral(&[
        z.join("base").to_str().unwrap(),
        "--plot",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("layers.pdf") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!bad.exists());
}
