//! The linear algebra of the spectral stage: a randomized truncated SVD
//! (subspace iteration with re-orthonormalisation, Halko–Martinsson–Tropp)
//! whose big products run on candle's CPU matmul, with small dense helpers in
//! f64 (Gram–Schmidt, symmetric Jacobi eigensolver, one-sided Jacobi SVD for
//! exact reference values on small matrices).

use candle_core::{Device, Tensor};

/// Top singular triplets of a matrix.
pub struct Truncated {
    /// Descending singular values.
    pub values: Vec<f64>,
    /// Left singular vectors, one per value (length = rows).
    pub left: Vec<Vec<f64>>,
}

/// Orthonormalises the columns of a row-major `rows × cols` matrix in place
/// (modified Gram–Schmidt, applied twice); a column that vanishes is left at
/// zero.
pub fn orthonormalise(a: &mut [f64], rows: usize, cols: usize) {
    for _pass in 0..2 {
        for j in 0..cols {
            for p in 0..j {
                let dot: f64 = (0..rows).map(|i| a[i * cols + j] * a[i * cols + p]).sum();
                for i in 0..rows {
                    a[i * cols + j] -= dot * a[i * cols + p];
                }
            }
            let norm = (0..rows)
                .map(|i| a[i * cols + j] * a[i * cols + j])
                .sum::<f64>()
                .sqrt();
            for i in 0..rows {
                a[i * cols + j] = if norm > 1e-300 {
                    a[i * cols + j] / norm
                } else {
                    0.0
                };
            }
        }
    }
}

/// Eigen-decomposition of a symmetric `n × n` matrix (cyclic Jacobi):
/// eigenvalues descending, eigenvectors as columns of a row-major matrix.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>();
        if off <= 1e-28 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y * n + y].total_cmp(&a[x * n + x]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (newj, &j) in order.iter().enumerate() {
        for i in 0..n {
            vecs[i * n + newj] = v[i * n + j];
        }
    }
    (values, vecs)
}

/// All singular values of a small row-major matrix, exactly (through the
/// eigenvalues of the smaller Gram matrix): the reference for tests.
pub fn exact_singular_values(a: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    // the Gram matrix of the smaller side: A Aᵀ or Aᵀ A
    let (n, m) = if rows <= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let at = |i: usize, k: usize| -> f64 {
        if rows <= cols {
            a[i * cols + k] as f64
        } else {
            a[k * cols + i] as f64
        }
    };
    let mut gram = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] = (0..m).map(|k| at(i, k) * at(j, k)).sum();
        }
    }
    symmetric_eigen(gram, n)
        .0
        .into_iter()
        .map(|l| l.max(0.0).sqrt())
        .collect()
}

fn tensor_err(e: candle_core::Error) -> String {
    e.to_string()
}

/// The two products the randomized SVD needs with a resident matrix A
/// (`rows × cols`); implemented on the CPU (candle) and on the GPU (wgpu).
pub trait Products {
    fn dims(&self) -> (usize, usize);
    /// A · X for X `cols × l` (row-major) → `rows × l`.
    fn a_x(&mut self, x: &[f32], l: usize) -> Result<Vec<f32>, String>;
    /// Aᵀ · Y for Y `rows × l` → `cols × l`.
    fn at_y(&mut self, y: &[f32], l: usize) -> Result<Vec<f32>, String>;
}

/// A matrix on the CPU, multiplied with candle's matmul.
pub struct CpuProducts {
    a: Tensor,
}

impl CpuProducts {
    pub fn new(a: Vec<f32>, rows: usize, cols: usize) -> Result<Self, String> {
        Ok(CpuProducts {
            a: Tensor::from_vec(a, (rows, cols), &Device::Cpu).map_err(tensor_err)?,
        })
    }
}

impl Products for CpuProducts {
    fn dims(&self) -> (usize, usize) {
        self.a.dims2().unwrap_or((0, 0))
    }
    fn a_x(&mut self, x: &[f32], l: usize) -> Result<Vec<f32>, String> {
        let (_, cols) = self.dims();
        let x = Tensor::from_slice(x, (cols, l), &Device::Cpu).map_err(tensor_err)?;
        self.a
            .matmul(&x)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>())
            .map_err(tensor_err)
    }
    fn at_y(&mut self, y: &[f32], l: usize) -> Result<Vec<f32>, String> {
        let (rows, _) = self.dims();
        let y = Tensor::from_slice(y, (rows, l), &Device::Cpu).map_err(tensor_err)?;
        self.a
            .t()
            .and_then(|at| at.matmul(&y))
            .and_then(|z| z.flatten_all())
            .and_then(|z| z.to_vec1::<f32>())
            .map_err(tensor_err)
    }
}

fn orth_f32(v: Vec<f32>, rows: usize, cols: usize) -> Vec<f32> {
    let mut d: Vec<f64> = v.into_iter().map(|x| x as f64).collect();
    orthonormalise(&mut d, rows, cols);
    d.into_iter().map(|x| x as f32).collect()
}

/// The top `k` singular values and left vectors of the matrix behind `p`,
/// by randomized subspace iteration with `oversample` extra directions and
/// `iters` power iterations. `seed` fixes the Gaussian start.
pub fn truncated_svd(
    p: &mut dyn Products,
    k: usize,
    oversample: usize,
    iters: usize,
    seed: u64,
) -> Result<Truncated, String> {
    let (rows, cols) = p.dims();
    let l = (k + oversample).min(rows.min(cols)).max(1);
    let mut rng = crate::rng::Rng::new(seed);
    let omega: Vec<f32> = (0..cols * l).map(|_| rng.normal() as f32).collect();
    let mut q = orth_f32(p.a_x(&omega, l)?, rows, l);
    for _ in 0..iters {
        let z = orth_f32(p.at_y(&q, l)?, cols, l);
        q = orth_f32(p.a_x(&z, l)?, rows, l);
    }
    // Bᵀ = Aᵀ Q (cols × l); the Gram matrix B Bᵀ (l × l) in f64
    let bt = p.at_y(&q, l)?;
    let mut gram = vec![0.0f64; l * l];
    for c in 0..cols {
        let r = &bt[c * l..(c + 1) * l];
        for i in 0..l {
            let ri = r[i] as f64;
            for j in i..l {
                gram[i * l + j] += ri * r[j] as f64;
            }
        }
    }
    for i in 0..l {
        for j in 0..i {
            gram[i * l + j] = gram[j * l + i];
        }
    }
    let (lambda, vecs) = symmetric_eigen(gram, l);
    let k = k.min(l);
    let values = lambda[..k].iter().map(|x| x.max(0.0).sqrt()).collect();
    let left = (0..k)
        .map(|j| {
            (0..rows)
                .map(|i| (0..l).map(|t| q[i * l + t] as f64 * vecs[t * l + j]).sum())
                .collect()
        })
        .collect();
    Ok(Truncated { values, left })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_spectrum() {
        // diag(5, 3, 1) rotated
        let (vals, _) = symmetric_eigen(vec![4.0, 1.0, 0.0, 1.0, 4.0, 0.0, 0.0, 0.0, 1.0], 3);
        for (g, w) in vals.iter().zip([5.0, 3.0, 1.0]) {
            assert!((g - w).abs() < 1e-12, "{vals:?}");
        }
    }

    #[test]
    fn randomized_svd_matches_exact_on_small_matrices() {
        let mut rng = crate::rng::Rng::new(9);
        for (rows, cols) in [(40usize, 30usize), (25, 60), (64, 64)] {
            // a low-rank part plus noise: a realistic ΔW
            let mut a = vec![0f32; rows * cols];
            for r in 0..3 {
                let u: Vec<f64> = (0..rows).map(|_| rng.normal()).collect();
                let v: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
                for i in 0..rows {
                    for j in 0..cols {
                        a[i * cols + j] += ((3 - r) as f64 * u[i] * v[j]) as f32;
                    }
                }
            }
            for x in a.iter_mut() {
                *x += (0.05 * rng.normal()) as f32;
            }
            let exact = exact_singular_values(&a, rows, cols);
            let mut p = CpuProducts::new(a, rows, cols).unwrap();
            let got = truncated_svd(&mut p, 4, 8, 4, 1).unwrap();
            // the three planted directions stand out of the noise: 1e-3;
            // the fourth lies in the flat noise bulk, where subspace
            // iteration converges slowly: a few percent
            for (i, (g, w)) in got.values.iter().zip(&exact).enumerate() {
                let tol = if i < 3 { 1e-3 } else { 5e-2 };
                assert!(
                    (g - w).abs() <= tol * w,
                    "{rows}x{cols} σ{}: {g} vs {w}",
                    i + 1
                );
            }
            // left vectors are unit length
            for u in &got.left {
                let n: f64 = u.iter().map(|x| x * x).sum();
                assert!((n - 1.0).abs() < 1e-4);
            }
        }
    }
}
