//! Time to read a dataset as rows: GSM8K's train split (7,473 rows) from JSONL, from Parquet,
//! and from a Hub split served by the fake Hub (cold: download + read; warm: from the cache).
//!
//! `cargo run --release -p augur-data --example read_bench [PATH_TO_GSM8K_TRAIN_JSONL]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use augur_data::testing::write_parquet;
use augur_data::{read_rows, read_rows_with};
use augur_hub::fake::FakeHub;
use augur_hub::Hub;

fn main() {
    let jsonl = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/gsm8k/train.jsonl")
        });
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let rows = read_rows(&jsonl).unwrap();
    let jsonl_s = t.elapsed().as_secs_f64();
    let fields: Vec<_> = rows.iter().map(|r| r.fields.clone()).collect();
    let parquet = dir.path().join("train.parquet");
    write_parquet(&parquet, &fields);
    let t = Instant::now();
    let back = read_rows(&parquet).unwrap();
    let parquet_s = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), rows.len());

    let hub = FakeHub::start();
    let bytes = std::fs::read(&parquet).unwrap();
    hub.add_dataset(
        "bench/gsm8k",
        &[("main/train-00000-of-00001.parquet", bytes.clone())],
    );
    let client = Hub::new(&hub.url(), dir.path().join("cache"));
    let spec = Path::new("hub:bench/gsm8k:main/train");
    let t = Instant::now();
    read_rows_with(spec, &client).unwrap();
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    read_rows_with(spec, &client).unwrap();
    let warm_s = t.elapsed().as_secs_f64();
    println!(
        "{} rows ({} B JSONL, {} B Parquet): JSONL {:.3} s, Parquet {:.3} s, \
         Hub split cold {:.3} s, warm {:.3} s",
        rows.len(),
        std::fs::metadata(&jsonl).unwrap().len(),
        bytes.len(),
        jsonl_s,
        parquet_s,
        cold_s,
        warm_s
    );
}
