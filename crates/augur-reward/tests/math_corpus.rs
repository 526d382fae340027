//! The hand-written corpus `tests/data/math_cases.jsonl`: (completion, reference, expected verdict) cases covering
//! extraction and the equivalence rules (the edge cases of math-verify and the Qwen2.5-Math grader).

use augur_reward::{MathVerifier, Reference, Verifier};
use serde_json::Value;

#[test]
fn math_corpus_verdicts_match() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/math_cases.jsonl");
    let text = std::fs::read_to_string(path).expect("corpus file");
    let v = MathVerifier::default();
    let mut failures = Vec::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let row: Value = serde_json::from_str(line).expect("json");
        let completion = row["completion"].as_str().unwrap();
        let reference = Reference::Math {
            answer: row["reference"].as_str().unwrap().to_string(),
        };
        let expected = row["expected"].as_bool().unwrap();
        let s = v.score(completion, &reference);
        if s.correct != expected {
            failures.push(format!(
                "line {}: [{}] extracted {:?} vs {:?}: got {}, expected {}",
                i + 1,
                row["note"],
                s.extracted,
                row["reference"],
                s.correct,
                expected
            ));
        }
        n += 1;
    }
    println!("math corpus: {} cases, {} disagree", n, failures.len());
    for f in &failures {
        println!("  {f}");
    }
    assert!(n >= 300, "corpus has only {n} cases");
    assert!(
        failures.is_empty(),
        "{} corpus cases disagree",
        failures.len()
    );
}
