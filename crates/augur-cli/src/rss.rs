//! Peak memory of this process, reported at the end of long commands.

/// Peak resident set size (`VmHWM` from /proc; Linux only, `None` elsewhere).
pub fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_string())
}
