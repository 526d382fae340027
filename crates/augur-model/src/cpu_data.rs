//! Borrowing the f32 data of CPU tensors, for augur's hand-written CPU kernels.

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// Runs `f` on the contiguous f32 data of a CPU tensor (made contiguous first if needed).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("CPU kernel: tensor is not on the CPU");
    };
    let n = layout.shape().elem_count();
    let start = layout.start_offset();
    f(&cpu.as_slice::<f32>()?[start..start + n])
}

/// The f32 data a custom op's input covers; the input must be contiguous.
pub(crate) fn input_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    if !layout.is_contiguous() {
        candle_core::bail!("CPU kernel: input must be contiguous");
    }
    let start = layout.start_offset();
    Ok(&storage.as_slice::<f32>()?[start..start + layout.shape().elem_count()])
}
