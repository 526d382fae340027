//! Peak memory of this process, reported at the end of long commands.

/// Peak resident set size as text ("1234 MB"), or "n/a" where it cannot be read.
pub fn peak_rss() -> String {
    augur_model::mem::peak_rss_kb().map_or_else(|| "n/a".into(), |kb| format!("{} MB", kb / 1024))
}
