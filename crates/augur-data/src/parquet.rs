//! Parquet files as JSON objects: one object per row, a field per column, with the column's
//! values as JSON (strings, numbers, booleans, null, and lists and structs of those), the shape
//! `datasets` gives a row in Python. Columns of other types (binary, dates, decimals, ...) are
//! refused up front, naming the column and its type, rather than guessed at; a value JSON cannot
//! hold (NaN, infinity) is refused naming its row, column and value.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};

use crate::error::{DataError, Result};

/// Every row of the Parquet file at `path`, in order.
pub(crate) fn objects(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let file_error = |why: String| DataError::File {
        path: path.into(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| file_error(format!("not a readable Parquet file: {e}")))?;
    for field in reader.schema().fields() {
        if let Err(why) = supported(field.data_type()) {
            return Err(file_error(format!("column `{}`: {why}", field.name())));
        }
    }
    let mut out = Vec::new();
    for batch in reader
        .build()
        .map_err(|e| file_error(format!("not a readable Parquet file: {e}")))?
    {
        let batch = batch
            .map_err(|e| file_error(format!("reading the rows after row {}: {e}", out.len())))?;
        append_rows(path, &batch, &mut out)?;
    }
    Ok(out)
}

fn append_rows(path: &Path, batch: &RecordBatch, out: &mut Vec<Map<String, Value>>) -> Result<()> {
    let first = out.len();
    out.extend((0..batch.num_rows()).map(|_| Map::new()));
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        for i in 0..batch.num_rows() {
            let v = value(column.as_ref(), i).map_err(|why| DataError::Bad {
                at: format!("{}: row {}", path.display(), first + i + 1),
                why: format!("column `{}`: {why}", field.name()),
            })?;
            out[first + i].insert(field.name().clone(), v);
        }
    }
    Ok(())
}

/// Whether a column of type `t` can become JSON; the error names the type.
fn supported(t: &DataType) -> std::result::Result<(), String> {
    use DataType::*;
    match t {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float32 | Float64 | Utf8 | LargeUtf8 | Utf8View => Ok(()),
        List(f) | LargeList(f) | FixedSizeList(f, _) => supported(f.data_type()),
        Struct(fields) => fields.iter().try_for_each(|f| {
            supported(f.data_type()).map_err(|why| format!("field `{}`: {why}", f.name()))
        }),
        other => Err(format!(
            "type {other} is not supported (strings, numbers, booleans, and lists and structs of \
             them are)"
        )),
    }
}

/// Element `i` of `array` as JSON (types checked by [`supported`] first).
fn value(array: &dyn Array, i: usize) -> std::result::Result<Value, String> {
    use DataType::*;
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let float = |x: f64| {
        Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| format!("value {x} has no JSON form"))
    };
    let list = |inner: &dyn Array| {
        (0..inner.len())
            .map(|j| value(inner, j))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Value::Array)
    };
    Ok(match array.data_type() {
        Null => Value::Null,
        Boolean => array.as_boolean().value(i).into(),
        Int8 => array.as_primitive::<Int8Type>().value(i).into(),
        Int16 => array.as_primitive::<Int16Type>().value(i).into(),
        Int32 => array.as_primitive::<Int32Type>().value(i).into(),
        Int64 => array.as_primitive::<Int64Type>().value(i).into(),
        UInt8 => array.as_primitive::<UInt8Type>().value(i).into(),
        UInt16 => array.as_primitive::<UInt16Type>().value(i).into(),
        UInt32 => array.as_primitive::<UInt32Type>().value(i).into(),
        UInt64 => array.as_primitive::<UInt64Type>().value(i).into(),
        Float32 => float(array.as_primitive::<Float32Type>().value(i) as f64)?,
        Float64 => float(array.as_primitive::<Float64Type>().value(i))?,
        Utf8 => array.as_string::<i32>().value(i).into(),
        LargeUtf8 => array.as_string::<i64>().value(i).into(),
        Utf8View => array.as_string_view().value(i).into(),
        List(_) => list(array.as_list::<i32>().value(i).as_ref())?,
        LargeList(_) => list(array.as_list::<i64>().value(i).as_ref())?,
        FixedSizeList(..) => list(array.as_fixed_size_list().value(i).as_ref())?,
        Struct(fields) => {
            let s = array.as_struct();
            let mut obj = serde_json::Map::new();
            for (f, column) in fields.iter().zip(s.columns()) {
                let v = value(column.as_ref(), i)
                    .map_err(|why| format!("field `{}`: {why}", f.name()))?;
                obj.insert(f.name().clone(), v);
            }
            Value::Object(obj)
        }
        other => return Err(format!("type {other} is not supported")),
    })
}
