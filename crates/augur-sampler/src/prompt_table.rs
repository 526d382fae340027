//! Per-prompt state tables (a predictor's beliefs, the embedding rows) indexed by prompt id,
//! grown on demand. Its own module so that the predictors and the embedding table, which the GPS
//! predictor reads, both build on it without depending on each other.

use crate::error::{Result, SamplerError};

/// Grows a per-prompt table so that `id` is a valid index, filling with `fill`; running out
/// of memory is reported as an error instead of aborting. Growth is amortised (`try_reserve`
/// doubles), so ids arriving in increasing order stay O(1) each.
pub(crate) fn ensure_len<T: Clone>(v: &mut Vec<T>, id: u32, fill: T) -> Result<()> {
    let need = id as usize + 1;
    if v.len() < need {
        v.try_reserve(need - v.len()).map_err(|e| {
            SamplerError::InvalidArgument(format!("prompt id {id}: cannot grow state table: {e}"))
        })?;
        v.resize(need, fill);
    }
    Ok(())
}
