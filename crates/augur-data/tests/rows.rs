//! Datasets read the same from JSONL, from Parquet and from a Hub split: the first lines of the
//! shared datasets, written to Parquet the way `datasets` stores them, come back as the very
//! objects the JSONL lines give; bad files and values are named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Float64Array, RecordBatch, StringArray};
use augur_data::testing::write_parquet;
use augur_data::{read_rows, read_rows_with, Position, Row};
use augur_hub::fake::FakeHub;
use augur_hub::Hub;
use parquet::arrow::ArrowWriter;
use serde_json::{Map, Value};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(rel)
}

fn first_rows(path: &Path, n: usize) -> Vec<Row> {
    let mut rows = read_rows(path).unwrap_or_else(|e| panic!("{e}"));
    rows.truncate(n);
    rows
}

fn fields(rows: &[Row]) -> Vec<Map<String, Value>> {
    rows.iter().map(|r| r.fields.clone()).collect()
}

#[test]
fn parquet_rows_equal_the_jsonl_lines_they_were_written_from() {
    let dir = tempfile::tempdir().unwrap();
    // Strings, integers, lists of strings (MBPP), lists of integers (Countdown), empty lists.
    for rel in [
        "mbpp/full.jsonl",
        "countdown/test.jsonl",
        "gsm8k/test.jsonl",
        "math500/test.jsonl",
    ] {
        let jsonl = first_rows(&shared(rel), 8);
        assert_eq!(jsonl.len(), 8, "{rel}");
        assert_eq!(jsonl[2].at.position, Position::Line(3));
        let path = dir
            .path()
            .join(rel.replace('/', "-").replace(".jsonl", ".parquet"));
        write_parquet(&path, &fields(&jsonl));
        let parquet = read_rows(&path).unwrap();
        assert_eq!(fields(&parquet), fields(&jsonl), "{rel}");
        assert_eq!(parquet[7].at.position, Position::Row(8));
        assert_eq!(
            parquet[7].at.to_string(),
            format!("{}: row 8", path.display())
        );
    }
}

fn write_batch(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn bad_files_columns_and_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let not_parquet = dir.path().join("train.parquet");
    std::fs::write(&not_parquet, "{\"question\": \"q\"}\n").unwrap();
    let err = read_rows(&not_parquet).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: not a readable Parquet file",
            not_parquet.display()
        )),
        "{err}"
    );

    let binary = dir.path().join("images.parquet");
    write_batch(
        &binary,
        vec![
            (
                "question",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            (
                "image",
                Arc::new(BinaryArray::from(vec![&b"\x89PNG"[..]])) as ArrayRef,
            ),
        ],
    );
    let err = read_rows(&binary).unwrap_err().to_string();
    assert!(
        err.contains("images.parquet: column `image`: type Binary is not supported"),
        "{err}"
    );

    let nan = dir.path().join("scores.parquet");
    write_batch(
        &nan,
        vec![
            (
                "question",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(vec![0.5, f64::NAN])) as ArrayRef,
            ),
        ],
    );
    let err = read_rows(&nan).unwrap_err().to_string();
    assert!(
        err.contains("scores.parquet: row 2: column `score`: value NaN has no JSON form"),
        "{err}"
    );

    let jsonl = dir.path().join("t.jsonl");
    std::fs::write(&jsonl, "{\"q\": 1}\n\n[1, 2]\n").unwrap();
    let err = read_rows(&jsonl).unwrap_err().to_string();
    assert!(err.contains("t.jsonl:3: not a JSON object"), "{err}");
    let err = read_rows(&dir.path().join("missing.parquet"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.parquet"), "{err}");
}

#[test]
fn hub_splits_download_once_then_read_offline() {
    let hub = FakeHub::start();
    let dir = tempfile::tempdir().unwrap();
    let lines = first_rows(&shared("gsm8k/test.jsonl"), 6);
    let (train, test) = (
        dir.path().join("train.parquet"),
        dir.path().join("test.parquet"),
    );
    write_parquet(&train, &fields(&lines[..4]));
    write_parquet(&test, &fields(&lines[4..]));
    // The layout of `openai/gsm8k`: a folder per config, a shard file per split.
    hub.add_dataset(
        "test-org/gsm8k",
        &[
            ("README.md", b"---\nconfigs: [main]\n---\n".to_vec()),
            (
                "main/train-00000-of-00001.parquet",
                std::fs::read(&train).unwrap(),
            ),
            (
                "main/test-00000-of-00001.parquet",
                std::fs::read(&test).unwrap(),
            ),
        ],
    );
    let cache = dir.path().join("hf-cache");
    let online = Hub::new(&hub.url(), cache.clone());
    let spec = Path::new("hub:test-org/gsm8k:main/train");
    let rows = read_rows_with(spec, &online).unwrap();
    assert_eq!(fields(&rows), fields(&lines[..4]));
    assert!(rows[0]
        .at
        .file
        .starts_with(cache.join("datasets--test-org--gsm8k/snapshots")));
    let test_rows = read_rows_with(Path::new("hub:test-org/gsm8k:main/test"), &online).unwrap();
    assert_eq!(fields(&test_rows), fields(&lines[4..]));

    // Offline (or with the server gone) the cache answers, with no request made.
    let served = hub.log().len();
    let offline = Hub::new(&hub.url(), cache.clone()).with_offline(true);
    assert_eq!(
        fields(&read_rows_with(spec, &offline).unwrap()),
        fields(&lines[..4])
    );
    assert_eq!(hub.log().len(), served);
    let err = read_rows_with(Path::new("hub:test-org/gsm8k:other/train"), &offline)
        .unwrap_err()
        .to_string();
    assert!(err.contains("HF_HUB_OFFLINE=1"), "{err}");

    // A wrong split lists what the repo has; a missing repo and a bad id are named.
    let err = read_rows_with(Path::new("hub:test-org/gsm8k:main/validation"), &online)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("dataset hub:test-org/gsm8k:main/validation: ")
            && err.contains("no split \"validation\" of config \"main\"")
            && err.contains("main/test, main/train"),
        "{err}"
    );
    let err = read_rows_with(Path::new("hub:test-org/gsm8k:train"), &online)
        .unwrap_err()
        .to_string();
    assert!(err.contains("of the default config"), "{err}");
    let err = read_rows_with(Path::new("hub:test-org/nothing:train"), &online)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-org/nothing") && err.contains("401"),
        "{err}"
    );
    let err = read_rows_with(Path::new("hub:test-org/gsm8k"), &online)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the `:split` is missing"), "{err}");
}
