//! Fitting the deep scan's backdoor score: L2-regularised logistic
//! regression with monotone features, and the AUROC used to report it.
//! Only `examples/fit_score.rs` runs this; the product reads the fitted
//! coefficients from `score_model.json`.

use probity_deep::score::sigmoid;

/// L2-regularised logistic regression by Newton's method (the bias is not
/// penalised). `x` rows are feature vectors, `y` labels (1 = backdoor).
pub fn fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> (Vec<f64>, f64) {
    let d = x.first().map_or(0, Vec::len);
    let mut w = vec![0.0; d + 1]; // last = bias
    for _ in 0..100 {
        let mut g = vec![0.0; d + 1];
        let mut h = vec![vec![0.0; d + 1]; d + 1];
        for (xi, &yi) in x.iter().zip(y) {
            let mut z = w[d];
            for j in 0..d {
                z += w[j] * xi[j];
            }
            let p = sigmoid(z);
            let row: Vec<f64> = xi.iter().copied().chain([1.0]).collect();
            for a in 0..=d {
                g[a] += (p - yi) * row[a];
                for b in 0..=d {
                    h[a][b] += p * (1.0 - p) * row[a] * row[b];
                }
            }
        }
        for j in 0..d {
            g[j] += lambda * w[j];
            h[j][j] += lambda;
        }
        h[d][d] += 1e-9;
        let step = solve(h, g);
        let mut moved = 0.0f64;
        for j in 0..=d {
            w[j] -= step[j];
            moved = moved.max(step[j].abs());
        }
        if moved < 1e-10 {
            break;
        }
    }
    let bias = w.pop().unwrap_or(0.0);
    (w, bias)
}

/// [`fit`] with the weights of the `monotone` features kept non-negative
/// (evidence for a backdoor never lowers the probability, however a
/// handful of fitting models happen to fall): a feature whose weight comes
/// out negative is fixed at zero and the rest refitted, until none is.
pub fn fit_monotone(x: &[Vec<f64>], y: &[f64], lambda: f64, monotone: &[bool]) -> (Vec<f64>, f64) {
    let d = x.first().map_or(0, Vec::len);
    let mut active: Vec<usize> = (0..d).collect();
    loop {
        let sub: Vec<Vec<f64>> = x
            .iter()
            .map(|r| active.iter().map(|&j| r[j]).collect())
            .collect();
        let (w, b) = fit(&sub, y, lambda);
        let worst = active
            .iter()
            .zip(&w)
            .filter(|(&j, &wj)| monotone.get(j).copied().unwrap_or(false) && wj < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(&j, _)| j);
        match worst {
            Some(j) => active.retain(|&k| k != j),
            None => {
                let mut full = vec![0.0; d];
                for (&j, wj) in active.iter().zip(w) {
                    full[j] = wj;
                }
                return (full, b);
            }
        }
    }
}

/// Solves `a · s = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        let piv = a[c][c];
        if piv.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[c].clone();
        for r in c + 1..n {
            let f = a[r][c] / piv;
            for (x, p) in a[r].iter_mut().zip(&pivot_row).skip(c) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut s = vec![0.0; n];
    for c in (0..n).rev() {
        let mut acc = b[c];
        for k in c + 1..n {
            acc -= a[c][k] * s[k];
        }
        s[c] = if a[c][c].abs() < 1e-300 {
            0.0
        } else {
            acc / a[c][c]
        };
    }
    s
}

/// Area under the ROC curve of `scores` for labels `y` (ties count half).
pub fn auroc(scores: &[f64], y: &[bool]) -> f64 {
    let pos: Vec<f64> = scores
        .iter()
        .zip(y)
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(y)
        .filter(|p| !*p.1)
        .map(|p| *p.0)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut s = 0.0;
    for p in &pos {
        for n in &neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feature that argues for a backdoor but happens to fall the other
    /// way on the fitting set gets weight zero, not a negative one; the
    /// others are fitted as usual.
    #[test]
    fn monotone_features_never_get_a_negative_weight() {
        let x = vec![
            vec![0.9, 0.6],
            vec![0.8, 0.0],
            vec![0.7, 0.1],
            vec![0.2, 0.0],
            vec![0.1, 0.5],
            vec![0.3, 0.4],
        ];
        let y = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let (free, _) = fit(&x, &y, 0.1);
        assert!(free[1] < 0.0, "{free:?}");
        let (w, _) = fit_monotone(&x, &y, 0.1, &[true, true]);
        assert_eq!(w[1], 0.0);
        assert!(w[0] > 0.0, "{w:?}");
        let (w, _) = fit_monotone(&x, &y, 0.1, &[true, false]);
        assert_eq!(w, free);
    }

    #[test]
    fn fit_separates_and_stays_finite() {
        let x = vec![vec![0.0], vec![0.1], vec![0.9], vec![1.0]];
        let y = vec![0.0, 0.0, 1.0, 1.0];
        let (w, b) = fit(&x, &y, 0.1);
        assert!(w[0] > 1.0 && w[0].is_finite() && b.is_finite());
        let p = |v: f64| sigmoid(b + w[0] * v);
        assert!(p(0.05) < 0.5 && p(0.95) > 0.5);
    }

    #[test]
    fn auroc_counts_pairs() {
        assert_eq!(
            auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            1.0
        );
        assert_eq!(
            auroc(&[0.9, 0.2, 0.8, 0.1], &[false, false, true, true]),
            0.25
        );
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]), 0.5);
    }
}
