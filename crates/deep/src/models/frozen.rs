//! Products with frozen weights for the gradient passes of the trigger
//! search.
//!
//! candle's backward pass computes the gradient of both operands of every
//! matrix product, whether or not anything asked for it. For the search only
//! the gradient with respect to the input is needed; the weight gradients
//! double the backward cost and, on a real model, hold hundreds of
//! megabytes (a tied 49k-token head alone is 113 MB per product, a batched
//! `broadcast_matmul` a copy per row). [`frozen_matmul`] records a product
//! whose backward pass returns the input gradient only.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};

/// `x · w` over the last dimension of `x` (`w` is `[in, out]`), as one
/// two-dimensional product. When `x` carries no gradient, `w` does (it is
/// being trained), either lives on an accelerator or is not `f32`, it is a
/// plain product; otherwise a custom
/// operation whose backward pass is `grad · wᵀ` alone.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = *dims.last().unwrap_or(&0);
    let (_, out) = w.dims2()?;
    let rows = x.elem_count() / inner.max(1);
    let mut shape = dims.clone();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    // a weight being trained (a variable) needs its gradient
    let plain = !x.track_op()
        || w.track_op()
        || !matches!(x.device(), Device::Cpu)
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32;
    if plain {
        return x.reshape((rows, inner))?.matmul(w)?.reshape(shape);
    }
    x.contiguous()?.apply_op1(Frozen { w: w.clone() })
}

/// The custom operation behind [`frozen_matmul`]; `w` is `[in, out]`.
struct Frozen {
    w: Tensor,
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-matmul needs a contiguous input".into())
        })?;
        let dims = layout.shape().dims();
        let inner = *dims.last().unwrap_or(&0);
        let rows = layout.shape().elem_count() / inner.max(1);
        let x = Tensor::from_slice(&data[start..end], (rows, inner), &Device::Cpu)?;
        let (_, out) = self.w.dims2()?;
        let y = x.matmul(&self.w)?.flatten_all()?.to_vec1::<f32>()?;
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, out) = self.w.dims2()?;
        let rows = grad.elem_count() / out.max(1);
        let g = grad
            .reshape((rows, out))?
            .matmul(&self.w.t()?)?
            .reshape(arg.dims())?;
        Ok(Some(g))
    }
}

/// A linear layer's forward pass (`x · Wᵀ + b`) through [`frozen_matmul`].
pub fn frozen_linear(x: &Tensor, l: &candle_nn::Linear) -> Result<Tensor> {
    let y = frozen_matmul(x, &l.weight().t()?)?;
    match l.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn grads(frozen: bool) -> (Vec<f32>, Vec<f32>) {
        let dev = Device::Cpu;
        let w = Tensor::from_vec(
            (0..12).map(|i| (i as f32 * 0.37).sin()).collect(),
            (4, 3),
            &dev,
        )
        .unwrap();
        let x = Var::from_tensor(
            &Tensor::from_vec(
                (0..16).map(|i| (i as f32 * 0.11).cos()).collect(),
                (2, 2, 4),
                &dev,
            )
            .unwrap(),
        )
        .unwrap();
        let y = if frozen {
            frozen_matmul(x.as_tensor(), &w).unwrap()
        } else {
            x.as_tensor().broadcast_matmul(&w).unwrap()
        };
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        (
            y.flatten_all().unwrap().to_vec1().unwrap(),
            g.get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
        )
    }

    #[test]
    fn same_values_and_input_gradient_as_a_plain_product() {
        let (y0, g0) = grads(false);
        let (y1, g1) = grads(true);
        for (a, b) in y0.iter().zip(&y1).chain(g0.iter().zip(&g1)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(g1.len(), 16);
    }
}
