//! Thread settings for candle's CPU backend, applied once at start-up.
//!
//! candle 0.11 runs its elementwise ops on a "barrier pool" of its own threads, next to the
//! rayon pool that its GEMM and augur's kernels use. The calling thread waits for that pool
//! by spinning without bound, and each pool thread spins ~25k times after its work before it
//! parks. With `RAYON_NUM_THREADS` threads busy in GEMM, those spinners take cores from the
//! real work: in `perf` of a LoRA update on 2 cores, 64% of the samples were the two spin
//! loops (`BarrierGuard::drop` and the pool workers), and the update took 2.2x the wall time
//! and 2.6x the CPU time it takes with the pool off. The elementwise ops are a few percent of
//! the work, so they run on the calling thread instead; GEMM keeps its threads.

/// Turns candle's elementwise barrier pool off (`CANDLE_NUM_THREADS=1`) unless the
/// environment sets it. Call once at start-up, before the first tensor op.
pub fn configure() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
