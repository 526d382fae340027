//! The vendored candle-core's backward pass (vendor/candle-core/AUGUR-PATCH.md) stores the first
//! gradient that reaches a node instead of adding it to fresh zeros. These checks pin what that
//! must not change: gradients with fan-in still sum, every gradient has its tensor's shape and
//! is contiguous (augur's optimizer reads gradients as flat slices), and subtracting rules
//! still negate. Values are derived by hand.

use candle_core::{Device, Tensor, Var};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `y = sum(x * x + 3 x)`: `x` reaches the sum through three edges (twice through the product,
/// once through the scale), so `dy/dx = 2x + 3`.
#[test]
fn gradients_with_fan_in_are_summed() {
    let x = Var::new(&[1f32, -2.0, 0.5], &Device::Cpu).unwrap();
    let y = ((x.as_tensor() * x.as_tensor()).unwrap() + (x.as_tensor() * 3.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let g = y.backward().unwrap();
    assert_eq!(values(g.get(x.as_tensor()).unwrap()), [5.0, -1.0, 4.0]);
}

/// A gradient that arrives through a transpose is a strided view of the upstream gradient; the
/// stored gradient must still be contiguous and in the variable's own layout.
#[test]
fn a_single_strided_gradient_is_stored_contiguous() {
    let w = Var::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
    let weights = Tensor::new(&[[1f32, 10.0], [100.0, 1000.0], [0.5, 0.25]], &Device::Cpu).unwrap();
    // y = sum(w^T * weights): dy/dw[i][j] = weights[j][i].
    let y = (w.as_tensor().t().unwrap() * &weights)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = y.backward().unwrap();
    let gw = g.get(w.as_tensor()).unwrap();
    assert_eq!(gw.dims(), &[2, 3]);
    assert!(gw.is_contiguous());
    assert_eq!(values(gw), [1.0, 100.0, 0.5, 10.0, 1000.0, 0.25]);
}

/// `y = sum(a - b) + sum(b * 2)`: `b` first gets -1 per element through the subtraction, then
/// +2 through the product, so its gradient is 1; `a`'s is 1.
#[test]
fn subtraction_and_later_additions_combine() {
    let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3f32, 5.0], &Device::Cpu).unwrap();
    let y = ((a.as_tensor() - b.as_tensor()).unwrap().sum_all().unwrap()
        + (b.as_tensor() * 2.0).unwrap().sum_all().unwrap())
    .unwrap();
    let g = y.backward().unwrap();
    assert_eq!(values(g.get(a.as_tensor()).unwrap()), [1.0, 1.0]);
    assert_eq!(values(g.get(b.as_tensor()).unwrap()), [1.0, 1.0]);
}

/// A broadcast input's gradient is summed back to its own shape: `y = sum(x[1, 3] + m[2, 3])`
/// gives `x` a gradient of 2 per element (two rows).
#[test]
fn broadcast_gradients_keep_the_input_shape() {
    let x = Var::new(&[[1f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    let m = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let y = x.as_tensor().broadcast_add(&m).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    let gx = g.get(x.as_tensor()).unwrap();
    assert_eq!(gx.dims(), &[1, 3]);
    assert_eq!(values(gx), [2.0, 2.0, 2.0]);
}
