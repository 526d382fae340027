//! JSON Lines: one JSON object per line; blank lines are skipped but counted, so a line number
//! in a message is the one an editor shows.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// The objects of `bytes` (the contents of `path`) with their 1-based line numbers.
pub(crate) fn objects(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Map<String, Value>)>> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let bad = |why: String| DataError::Bad {
            at: format!("{}:{}", path.display(), i + 1),
            why,
        };
        let line = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8 ({e})")))?;
        if line.trim().is_empty() {
            continue;
        }
        let obj: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        out.push((i + 1, obj));
    }
    Ok(out)
}
