//! Rows from any source: a dataset spec (local JSONL, local Parquet, or a Hub split) becomes
//! JSON objects, each with the file and line or row it came from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use augur_hub::{Hub, HubDataset, HUB_PREFIX};
use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// A row's 1-based place in its file: a JSONL line (blank lines counted) or a Parquet row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    Line(usize),
    Row(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Where a row came from, for messages: `file:line` for JSONL, `file: row N` for Parquet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowAt {
    pub file: Arc<Path>,
    pub position: Position,
}

impl fmt::Display for RowAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::Line(n) => write!(f, "{}:{n}", self.file.display()),
            Position::Row(n) => write!(f, "{}: row {n}", self.file.display()),
        }
    }
}

/// One dataset row: its fields by name, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub fields: Map<String, Value>,
    pub at: RowAt,
}

/// Every row of `spec`, in order:
/// * `hub:org/name[@revision]:[config/]split`: the split's files from the Hub (through the
///   shared cache; `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` apply), shard by shard;
/// * a path ending in `.parquet`: its rows, a field per column;
/// * any other path: JSONL, one object per non-blank line.
///
/// An existing local file always wins over the `hub:` reading of its name.
pub fn read_rows(spec: &Path) -> Result<Vec<Row>> {
    read_rows_with(spec, &Hub::from_env())
}

/// [`read_rows`] with Hub splits fetched through `hub` instead of the environment's Hub.
pub fn read_rows_with(spec: &Path, hub: &Hub) -> Result<Vec<Row>> {
    let hub_split = spec.to_str().and_then(|s| s.strip_prefix(HUB_PREFIX));
    let Some(split) = hub_split.filter(|_| !spec.exists()) else {
        return read_file(spec);
    };
    let hub_error = |source| DataError::Hub {
        spec: spec.display().to_string(),
        source: Box::new(source),
    };
    let ds = HubDataset::parse(split).map_err(hub_error)?;
    let files = hub.dataset_files(&ds).map_err(hub_error)?;
    let mut rows = Vec::new();
    for file in files {
        rows.extend(read_file(&file)?);
    }
    Ok(rows)
}

/// The rows of one local file, Parquet or JSONL by its extension.
pub fn read_file(path: &Path) -> Result<Vec<Row>> {
    let file: Arc<Path> = Arc::from(path);
    let objects: Vec<(Position, Map<String, Value>)> =
        match path.extension().is_some_and(|e| e == "parquet") {
            true => crate::parquet::objects(path)?
                .into_iter()
                .enumerate()
                .map(|(i, o)| (Position::Row(i + 1), o))
                .collect(),
            false => {
                let bytes = std::fs::read(path).map_err(|source| DataError::Io {
                    path: path.into(),
                    source,
                })?;
                crate::jsonl::objects(path, &bytes)?
                    .into_iter()
                    .map(|(line, o)| (Position::Line(line), o))
                    .collect()
            }
        };
    Ok(objects
        .into_iter()
        .map(|(position, fields)| Row {
            fields,
            at: RowAt {
                file: file.clone(),
                position,
            },
        })
        .collect())
}
