//! Checks an output path argument before any work starts, so a long run does not end in
//! "cannot create" after its results are computed.

use std::path::Path;

use anyhow::{bail, Context};

/// Fails, naming `path` and the reason, unless a file can be written at `path`. A file this
/// creates to find out is removed again; an existing file is left as it is.
pub fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: is a folder", path.display());
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("{flag} {}: cannot write there", path.display()))?;
    if !existed {
        std::fs::remove_file(path)
            .with_context(|| format!("{flag} {}: cannot remove the probe", path.display()))?;
    }
    Ok(())
}
