//! Launches of the PTX kernels in `kernels/` (compiled by build.rs) on candle's CUDA storage.
//! One block of [`THREADS`] threads per row; each kernel's semantics live in its CPU twin.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape, Tensor};

use crate::philox::RowRng;
use crate::sampling::{Sampled, SamplingConfig};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

const THREADS: u32 = 256;

fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn contiguous(layout: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))
}

fn u32_ids<'a>(
    s: &'a CudaStorage,
    l: &Layout,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, u32>> {
    let (a, b) = contiguous(l, "targets")?;
    match &s.slice {
        CudaStorageSlice::U32(t) => Ok(t.slice(a..b)),
        _ => candle_core::bail!("targets must be u32"),
    }
}

pub(crate) fn logprob_entropy_fwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (n, v) = l1.shape().dims2()?;
    let dev = s1.device().clone();
    let (a, b) = contiguous(l1, "logits")?;
    let targets = u32_ids(s2, l2)?;
    let out = unsafe { dev.alloc::<f32>(n * 2)? };
    let v32 = v as u32;
    let launch = |name: &str| dev.get_or_load_custom_func(name, "augur_logprob", ptx::LOGPROB);
    match &s1.slice {
        CudaStorageSlice::F32(x) => {
            let func = launch("logprob_entropy_fwd_f32")?;
            let x = x.slice(a..b);
            let mut builder = func.builder();
            builder.arg(&x).arg(&targets).arg(&out).arg(&v32);
            unsafe { builder.launch(rows_config(n)) }.w()?;
        }
        CudaStorageSlice::BF16(x) => {
            let func = launch("logprob_entropy_fwd_bf16")?;
            let x = x.slice(a..b);
            let mut builder = func.builder();
            builder.arg(&x).arg(&targets).arg(&out).arg(&v32);
            unsafe { builder.launch(rows_config(n)) }.w()?;
        }
        _ => candle_core::bail!("logits must be f32 or bf16 on CUDA, got {:?}", s1.dtype()),
    }
    Ok((
        CudaStorage {
            slice: CudaStorageSlice::F32(out),
            device: dev,
        },
        Shape::from((n, 2)),
    ))
}

pub(crate) fn logprob_entropy_bwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (n, v) = l1.shape().dims2()?;
    let dev = s1.device().clone();
    let (a, b) = contiguous(l1, "logits")?;
    let targets = u32_ids(s2, l2)?;
    let (ga, gb) = contiguous(l3, "the output gradient")?;
    let CudaStorageSlice::F32(grad) = &s3.slice else {
        candle_core::bail!("the output gradient must be f32");
    };
    let grad = grad.slice(ga..gb);
    let v32 = v as u32;
    let launch = |name: &str| dev.get_or_load_custom_func(name, "augur_logprob", ptx::LOGPROB);
    let slice = match &s1.slice {
        CudaStorageSlice::F32(x) => {
            let func = launch("logprob_entropy_bwd_f32")?;
            let x = x.slice(a..b);
            let d = unsafe { dev.alloc::<f32>(n * v)? };
            let mut builder = func.builder();
            builder.arg(&x).arg(&targets).arg(&grad).arg(&d).arg(&v32);
            unsafe { builder.launch(rows_config(n)) }.w()?;
            CudaStorageSlice::F32(d)
        }
        CudaStorageSlice::BF16(x) => {
            let func = launch("logprob_entropy_bwd_bf16")?;
            let x = x.slice(a..b);
            let d = unsafe { dev.alloc(n * v)? };
            let mut builder = func.builder();
            builder.arg(&x).arg(&targets).arg(&grad).arg(&d).arg(&v32);
            unsafe { builder.launch(rows_config(n)) }.w()?;
            CudaStorageSlice::BF16(d)
        }
        _ => candle_core::bail!("logits must be f32 or bf16 on CUDA, got {:?}", s1.dtype()),
    };
    Ok((CudaStorage { slice, device: dev }, Shape::from((n, v))))
}

/// Runs `sample_last_*` and copies back only the `[B, 2]` (token, logprob bits) result.
pub(crate) fn sample_last(
    logits: &Tensor,
    cfg: &SamplingConfig,
    rows: &[RowRng],
) -> crate::Result<Vec<Sampled>> {
    let logits = match logits.dtype() {
        DType::F32 | DType::BF16 => logits.contiguous()?,
        _ => logits.to_dtype(DType::F32)?,
    };
    let (b, v) = logits.dims2()?;
    let seed = rows.first().map_or(0, |r| r.seed);
    if rows.iter().any(|r| r.seed != seed) {
        return Err(crate::Error::Invalid(
            "the fused CUDA sampler takes one seed per call".into(),
        ));
    }
    let counters: Vec<u32> = rows.iter().flat_map(|r| r.counter()).collect();
    let (storage, layout) = logits.storage_and_layout();
    let candle_core::Storage::Cuda(s) = &*storage else {
        return Err(crate::Error::Invalid(
            "logits are not on a CUDA device".into(),
        ));
    };
    let (a, e) = contiguous(layout, "logits")?;
    let dev = s.device().clone();
    let counters = dev.clone_htod(&counters)?;
    let out = unsafe { dev.alloc::<u32>(b * 2)? };
    let (v32, top_k) = (v as u32, cfg.top_k.min(u32::MAX as usize) as u32);
    let (seed_lo, seed_hi) = (seed as u32, (seed >> 32) as u32);
    let launch = |name: &str| dev.get_or_load_custom_func(name, "augur_sampling", ptx::SAMPLING);
    macro_rules! run {
        ($name:literal, $x:expr) => {{
            let func = launch($name)?;
            let x = $x.slice(a..e);
            let mut builder = func.builder();
            builder
                .arg(&x)
                .arg(&v32)
                .arg(&cfg.temperature)
                .arg(&top_k)
                .arg(&cfg.top_p)
                .arg(&cfg.min_p)
                .arg(&seed_lo)
                .arg(&seed_hi)
                .arg(&counters)
                .arg(&out);
            unsafe { builder.launch(rows_config(b)) }.w()?;
        }};
    }
    match &s.slice {
        CudaStorageSlice::F32(x) => run!("sample_last_f32", x),
        CudaStorageSlice::BF16(x) => run!("sample_last_bf16", x),
        _ => {
            return Err(crate::Error::Invalid(format!(
                "logits must be f32 or bf16 on CUDA, got {:?}",
                s.dtype()
            )))
        }
    }
    let host = dev.clone_dtoh(&out)?;
    Ok(host
        .chunks(2)
        .map(|p| Sampled {
            token: p[0],
            logprob: f32::from_bits(p[1]),
        })
        .collect())
}
