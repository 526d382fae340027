//! Process memory: allocator settings for CPU tensor work, and peak RSS for reports.
//!
//! candle allocates a fresh buffer for every op's output. glibc serves buffers above its
//! mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh `mmap` and unmaps them on
//! free, and trims the heap top back to the kernel, so each training step faults in and
//! zeroes the same gigabytes of pages again: 15-20% of a LoRA update's CPU time went to
//! the kernel's page-fault path in `perf`. Keeping freed memory in the heap for reuse
//! removes that; peak RSS is unchanged because the live set is what it was.

/// Serve large allocations from the heap and never trim it (glibc only; elsewhere a no-op).
/// Call once at start-up, before the model is loaded.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is called before
    // any worker thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Peak resident set size of this process in kB (`VmHWM` from /proc; Linux only, `None`
/// elsewhere): what a run needed at its worst, for logs and benchmark records.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
