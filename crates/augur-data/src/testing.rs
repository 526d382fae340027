//! Parquet files written from JSON rows, for tests (feature `test-util`): the way `datasets`
//! stores a split (one column per field, snappy pages), so readers are tested on the shape
//! the Hub serves rather than on their own output alone.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

/// Writes `rows` to `path` as Parquet. Each column's type comes from its first non-null value:
/// string, integer, float, boolean, or a list of strings or integers. Panics on other shapes
/// (test input only).
pub fn write_parquet(path: &Path, rows: &[Map<String, Value>]) {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for k in row.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let columns: Vec<(String, ArrayRef)> = names
        .iter()
        .map(|name| {
            let values: Vec<&Value> = rows
                .iter()
                .map(|r| r.get(name).unwrap_or(&Value::Null))
                .collect();
            (name.clone(), column(&values))
        })
        .collect();
    let batch = RecordBatch::try_from_iter(columns).expect("columns of one length");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).expect("create parquet file");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    writer.write(&batch).expect("write rows");
    writer.close().expect("close parquet file");
}

fn column(values: &[&Value]) -> ArrayRef {
    let first = values
        .iter()
        .find(|v| !v.is_null())
        .copied()
        .unwrap_or(&Value::Null);
    match first {
        Value::String(_) => {
            let mut b = StringBuilder::new();
            values.iter().for_each(|v| b.append_option(v.as_str()));
            Arc::new(b.finish())
        }
        Value::Number(n) if n.is_i64() => {
            let mut b = Int64Builder::new();
            values.iter().for_each(|v| b.append_option(v.as_i64()));
            Arc::new(b.finish())
        }
        Value::Number(_) => {
            let mut b = Float64Builder::new();
            values.iter().for_each(|v| b.append_option(v.as_f64()));
            Arc::new(b.finish())
        }
        Value::Bool(_) => {
            let mut b = BooleanBuilder::new();
            values.iter().for_each(|v| b.append_option(v.as_bool()));
            Arc::new(b.finish())
        }
        Value::Array(_) => {
            let items = || {
                values
                    .iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
            };
            if items().any(Value::is_i64) {
                let mut b = ListBuilder::new(Int64Builder::new());
                for v in values {
                    match v.as_array() {
                        Some(a) => {
                            a.iter().for_each(|x| b.values().append_option(x.as_i64()));
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            } else {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in values {
                    match v.as_array() {
                        Some(a) => {
                            a.iter().for_each(|x| b.values().append_option(x.as_str()));
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        }
        other => panic!("write_parquet: no column type for {other}"),
    }
}
