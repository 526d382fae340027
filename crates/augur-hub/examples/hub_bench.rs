//! Download and push timings against the in-process fake Hub on 127.0.0.1 (loopback: this
//! measures the client's own cost, hf-hub's chunked transfer, hashing and the cache, not a
//! network). `cargo run --release -p augur-hub --example hub_bench -- [SHARDS] [SHARD_MB]`
//!
//! Prints: a sharded model downloaded cold (empty cache) and resolved warm (from the cache),
//! then a checkpoint-sized folder pushed (adapter + optimizer through LFS, the rest inline).

use std::time::{Duration, Instant};

use augur_hub::fake::FakeHub;
use augur_hub::{Hub, HubId, PushOptions};

/// Deterministic, incompressible-looking bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len / 8)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect()
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let shards = args.next().unwrap_or(4);
    let shard_mb = args.next().unwrap_or(64);
    let hub = FakeHub::start();
    hub.set_token("hf_bench");

    let names: Vec<String> = (1..=shards)
        .map(|i| format!("model-{i:05}-of-{shards:05}.safetensors"))
        .collect();
    let weight_map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("layer.{i}.weight"), n.as_str().into()))
        .collect();
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("config.json", b"{\"model_type\": \"llama\"}".to_vec()),
        ("tokenizer.json", vec![b' '; 2_000_000]),
        (
            "model.safetensors.index.json",
            serde_json::json!({ "weight_map": weight_map })
                .to_string()
                .into_bytes(),
        ),
    ];
    for (i, n) in names.iter().enumerate() {
        files.push((n, noise(shard_mb << 20, i as u64 + 1)));
    }
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    hub.add_repo("bench/sharded", false, &files);

    let cache = tempfile::tempdir().unwrap();
    let api = Hub::new(&hub.url(), cache.path().to_path_buf()).with_token(Some("hf_bench".into()));
    let id = HubId::parse("bench/sharded").unwrap();
    let t = Instant::now();
    api.model_folder(&id).unwrap();
    let cold = t.elapsed();
    let t = Instant::now();
    api.model_folder(&id).unwrap();
    let warm = t.elapsed();
    let offline = api.clone().with_offline(true);
    let t = Instant::now();
    offline.model_folder(&id).unwrap();
    let warm_offline = t.elapsed();
    let mb = total as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!("model: {shards} shards x {shard_mb} MiB + config/tokenizer/index = {mb:.1} MB");
    println!(
        "  cold download:     {:>8.3} s  ({:.0} MB/s)",
        cold.as_secs_f64(),
        rate(cold)
    );
    println!("  warm (online):     {:>8.3} s", warm.as_secs_f64());
    println!("  warm (offline):    {:>8.3} s", warm_offline.as_secs_f64());

    // A checkpoint of LoRA r16 on every linear of a 0.5B Qwen (~8.8M params, f32) with AdamW
    // moments: adapter ~35 MB, optimizer ~70 MB.
    let run = tempfile::tempdir().unwrap();
    let ck = run.path().join("checkpoint-10");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("adapter_model.safetensors"), noise(35 << 20, 7)).unwrap();
    std::fs::write(ck.join("optimizer.safetensors"), noise(70 << 20, 8)).unwrap();
    std::fs::write(ck.join("adapter_config.json"), "{\"r\": 16, \"lora_alpha\": 32, \"target_modules\": [\"q_proj\"], \"base_model_name_or_path\": \"Qwen/Qwen2.5-0.5B-Instruct\"}").unwrap();
    std::fs::write(ck.join("trainer_state.json"), "{\"step\": 10}").unwrap();
    std::fs::write(ck.join("config.toml"), "[rollout]\ngroup_size = 8\n").unwrap();
    let opts = PushOptions {
        private: false,
        revision: "main".into(),
        path_in_repo: String::new(),
        message: "bench".into(),
    };
    let t = Instant::now();
    let done = api.push_folder(&ck, "bench/run", &opts).unwrap();
    let push = t.elapsed();
    println!(
        "push: {} files ({} LFS), {:.1} MB: {:.3} s ({:.0} MB/s)",
        done.files,
        done.lfs_files,
        done.bytes as f64 / 1e6,
        push.as_secs_f64(),
        done.bytes as f64 / 1e6 / push.as_secs_f64()
    );
}
