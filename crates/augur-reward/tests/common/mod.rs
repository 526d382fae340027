//! Shared helpers: locating `shared/datasets` relative to the crate, reading JSONL.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `shared/datasets`, three levels above the crate (`<root>/main/crates/augur-reward` -> `<root>/shared`).
pub fn datasets() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIP: {} not found", p.display());
        None
    }
}

/// The rows of a JSONL file.
pub fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}
