//! Throughput of the verifiers (run: `cargo bench -p augur-reward --bench throughput`).
//!
//! * math: verifications/s over 10,000 mixed completions built from MATH-500 and GSM8K (full solutions with
//!   correct and swapped reference answers, short "The answer is" replies, and replies with no answer), on the
//!   global rayon pool and on one thread;
//! * code: programs/s for the 164 HumanEval canonical solutions with 2 sandbox workers.

use std::path::PathBuf;
use std::time::Instant;

use augur_reward::{CodeOptions, CodeTests, CodeVerifier, MathVerifier, Reference, Verifier};
use serde_json::Value;

fn read(path: PathBuf) -> Vec<Value> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn main() {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if !d.is_dir() {
        println!("SKIP: {} not found", d.display());
        return;
    }
    math(&d);
    code(&d);
}

fn math(d: &std::path::Path) {
    let m500 = read(d.join("math500/test.jsonl"));
    let gsm = read(d.join("gsm8k/test.jsonl"));
    let mut items: Vec<(String, Reference)> = Vec::new();
    let mut k = 0usize;
    while items.len() < 10_000 {
        let r = &m500[k % m500.len()];
        let other = &m500[(k * 7 + 3) % m500.len()];
        let g = &gsm[k % gsm.len()];
        let ans = r["answer"].as_str().unwrap();
        let reference = |a: &Value| Reference::Math {
            answer: a.as_str().unwrap().to_string(),
        };
        let item = match k % 6 {
            0 => (
                r["solution"].as_str().unwrap().to_string(),
                reference(&r["answer"]),
            ),
            1 => (
                r["solution"].as_str().unwrap().to_string(),
                reference(&other["answer"]),
            ),
            2 => (
                format!("Thinking...\nThe answer is ${ans}$."),
                reference(&r["answer"]),
            ),
            3 => (
                g["answer"].as_str().unwrap().to_string(),
                reference(&g["final"]),
            ),
            4 => (
                g["answer"].as_str().unwrap().to_string(),
                reference(&gsm[(k + 1) % gsm.len()]["final"]),
            ),
            _ => (
                "I am not sure how to solve this problem.".to_string(),
                reference(&r["answer"]),
            ),
        };
        items.push(item);
        k += 1;
    }
    let batch: Vec<(&str, &Reference)> = items.iter().map(|(c, r)| (c.as_str(), r)).collect();
    let v = MathVerifier::default();
    let _ = v.score_batch(&batch[..500]); // warm-up
    let t = Instant::now();
    let scores = v.score_batch(&batch);
    let par = t.elapsed().as_secs_f64();
    let correct = scores.iter().filter(|s| s.correct).count();
    let t = Instant::now();
    for (c, r) in &batch {
        std::hint::black_box(v.score(c, r));
    }
    let seq = t.elapsed().as_secs_f64();
    println!(
        "math: {} completions ({} correct): {:.0} verifications/s on {} rayon threads, {:.0}/s on one thread",
        batch.len(),
        correct,
        batch.len() as f64 / par,
        rayon::current_num_threads(),
        batch.len() as f64 / seq
    );
}

fn code(d: &std::path::Path) {
    let rows = read(d.join("humaneval/test.jsonl"));
    let v = CodeVerifier::new(CodeOptions {
        workers: 2,
        ..CodeOptions::default()
    })
    .expect("sandbox");
    let items: Vec<(String, Reference)> = rows
        .iter()
        .map(|r| {
            (
                r["canonical_solution"].as_str().unwrap().to_string(),
                Reference::Code(CodeTests::HumanEval {
                    prompt: r["prompt"].as_str().unwrap().into(),
                    test: r["test"].as_str().unwrap().into(),
                    entry_point: r["entry_point"].as_str().unwrap().into(),
                }),
            )
        })
        .collect();
    let batch: Vec<(&str, &Reference)> = items.iter().map(|(c, r)| (c.as_str(), r)).collect();
    let t = Instant::now();
    let scores = v.score_batch(&batch);
    let secs = t.elapsed().as_secs_f64();
    let passed = scores.iter().filter(|s| s.correct).count();
    println!(
        "code: {} HumanEval canonical programs ({} passed), 2 workers, isolation {:?}: {:.1} programs/s ({:.1} s)",
        batch.len(),
        passed,
        v.sandbox().isolation(),
        batch.len() as f64 / secs,
        secs
    );
}
