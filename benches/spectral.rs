//! Spectral stage speed: the WGSL tiled matmul against candle's CPU matmul
//! (FLOP/s, as criterion's elements/s); forming ΔW from two bf16 tensors
//! with its moments (`shaders/delta.wgsl` against the host loop, elements/s,
//! upload included); and the randomized SVD of one 2048 × 2048 ΔW on each
//! (seconds per billion parameters = time × 1e9 / 2048²). The GPU rows run on whatever adapter wgpu picks (lavapipe on a
//! machine without a GPU: correct, but slower than the CPU).
//!
//!     cargo bench --bench spectral

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probity_deep::spectral::gpu::{Gpu, GpuProducts, Moments, RawDtype};
use probity_deep::spectral::linalg::{truncated_svd, CpuProducts, Products};

fn matrix(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f32 / (1u64 << 31) as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let gpu = match Gpu::new() {
        Ok(g) => {
            eprintln!("GPU adapter: {} via {}", g.adapter, g.backend);
            Some(g)
        }
        Err(e) => {
            eprintln!("no GPU adapter ({e}): CPU rows only");
            None
        }
    };
    let (m, k, l) = (1024, 1024, 16);
    let a = matrix(m * k, 1);
    let x = matrix(k * l, 2);
    let mut g = c.benchmark_group("matmul_1024x1024x16");
    g.sample_size(10);
    g.throughput(Throughput::Elements((2 * m * k * l) as u64));
    let mut cpu = CpuProducts::new(a.clone(), m, k).unwrap();
    g.bench_function("cpu_candle", |b| b.iter(|| cpu.a_x(&x, l).unwrap()));
    if let Some(gpu) = &gpu {
        let mut p = GpuProducts::new(gpu, &a, m, k).unwrap();
        g.bench_function("gpu_wgsl", |b| b.iter(|| p.a_x(&x, l).unwrap()));
    }
    g.finish();

    let n = 2048 * 2048;
    let bf = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect()
    };
    let (s_raw, b_raw) = (bf(&matrix(n, 4)), bf(&matrix(n, 5)));
    let mut g = c.benchmark_group("delta_bf16_2048x2048");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("cpu", |b| {
        b.iter(|| {
            let dec = |r: &[u8]| -> Vec<f32> {
                r.chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect()
            };
            let (s, base) = (dec(&s_raw), dec(&b_raw));
            let d: Vec<f32> = s.iter().zip(&base).map(|(x, y)| x - y).collect();
            Moments::cpu(&d, &base)
        })
    });
    if let Some(gpu) = &gpu {
        g.bench_function("gpu_wgsl", |b| {
            b.iter(|| {
                gpu.form_delta((&s_raw, RawDtype::Bf16), Some((&b_raw, RawDtype::Bf16)), n)
                    .unwrap()
                    .1
            })
        });
    }
    g.finish();

    let n = 2048;
    let a = matrix(n * n, 3);
    let mut g = c.benchmark_group("svd_2048x2048_top8");
    g.sample_size(10);
    g.throughput(Throughput::Elements((n * n) as u64));
    let mut cpu = CpuProducts::new(a.clone(), n, n).unwrap();
    g.bench_function("cpu", |b| {
        b.iter(|| truncated_svd(&mut cpu, 8, 8, 4, 1).unwrap())
    });
    if let Some(gpu) = &gpu {
        let mut p = GpuProducts::new(gpu, &a, n, n).unwrap();
        g.bench_function("gpu", |b| {
            b.iter(|| truncated_svd(&mut p, 8, 8, 4, 1).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
