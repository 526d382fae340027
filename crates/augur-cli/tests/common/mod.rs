//! What the CLI test binaries share: the binary under test, the repository's fixtures, and
//! reading a finished command's output. (Each `tests/*.rs` is its own crate and uses only
//! part of this, hence the `dead_code` allowance.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `augur` binary cargo built for these tests.
pub fn augur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_augur"))
}

/// The repository's `tests/fixtures` (tiny models, tokenizers, parity data).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A finished command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the command succeeded, showing its stderr when it did not; returns stderr.
pub fn succeeded(out: &Output) -> String {
    let err = stderr(out);
    assert!(out.status.success(), "{err}");
    err
}

/// Asserts that the command failed cleanly (an error, not a panic); returns stderr.
pub fn failed(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}
