//! HumanEval and MBPP canonical solutions pass in the sandbox; corrupted ones fail.

mod common;

use std::time::Instant;

use augur_reward::code::sandbox::SandboxConfig;
use augur_reward::{CodeOptions, CodeTests, CodeVerifier, Reference, RewardMode, Verifier};

fn verifier(mode: RewardMode) -> CodeVerifier {
    let v = CodeVerifier::new(CodeOptions {
        sandbox: SandboxConfig::default(),
        workers: 2,
        mode,
    })
    .expect("sandbox");
    println!(
        "sandbox isolation: {:?}, python: {}",
        v.sandbox().isolation(),
        v.sandbox().python().display()
    );
    v
}

#[test]
fn humaneval_canonical_pass_and_wrong_fail() {
    let Some(d) = common::datasets() else { return };
    let rows = common::read_jsonl(&d.join("humaneval/test.jsonl"));
    let v = verifier(RewardMode::Binary);
    let refs: Vec<Reference> = rows
        .iter()
        .map(|r| {
            Reference::Code(CodeTests::HumanEval {
                prompt: r["prompt"].as_str().unwrap().into(),
                test: r["test"].as_str().unwrap().into(),
                entry_point: r["entry_point"].as_str().unwrap().into(),
            })
        })
        .collect();
    let good: Vec<String> = rows
        .iter()
        .map(|r| r["canonical_solution"].as_str().unwrap().to_string())
        .collect();
    let items: Vec<(&str, &Reference)> = good.iter().map(String::as_str).zip(&refs).collect();
    let t = Instant::now();
    let scores = v.score_batch(&items);
    let secs = t.elapsed().as_secs_f64();
    let passed = scores.iter().filter(|s| s.correct).count();
    for (r, s) in rows.iter().zip(&scores).filter(|(_, s)| !s.correct) {
        println!("HumanEval canonical fails: {} ({})", r["task_id"], s.reason);
    }
    println!(
        "HumanEval canonical: {passed}/{} in {secs:.1}s ({:.1} programs/s)",
        rows.len(),
        rows.len() as f64 / secs
    );
    assert_eq!(passed, rows.len());

    // Wrong solutions: the body returns None (or the function is missing).
    let wrong = [
        "    return None\n",
        "    pass\n",
        "def unrelated():\n    return 1\n",
    ];
    let items: Vec<(&str, &Reference)> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| (wrong[i % 3], r))
        .collect();
    let scores = v.score_batch(&items);
    let wrongly_passed: Vec<_> = rows
        .iter()
        .zip(&scores)
        .filter(|(_, s)| s.correct)
        .map(|(r, _)| r["task_id"].clone())
        .collect();
    println!("HumanEval wrong solutions passing: {wrongly_passed:?}");
    assert!(wrongly_passed.is_empty());
}

#[test]
fn mbpp_canonical_pass_and_wrong_fail() {
    let Some(d) = common::datasets() else { return };
    let rows = common::read_jsonl(&d.join("mbpp/full.jsonl"));
    // The conventional evaluation split: task ids 11..=510.
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| (11..=510).contains(&r["task_id"].as_i64().unwrap()))
        .collect();
    let v = verifier(RewardMode::Fraction);
    let refs: Vec<Reference> = rows
        .iter()
        .map(|r| {
            let mut asserts: Vec<String> = r["test_list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            asserts.extend(
                r["challenge_test_list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_str().unwrap().to_string()),
            );
            Reference::Code(CodeTests::Asserts {
                setup: r["test_setup_code"].as_str().unwrap_or("").into(),
                asserts,
            })
        })
        .collect();
    let good: Vec<String> = rows
        .iter()
        .map(|r| format!("```python\n{}\n```", r["code"].as_str().unwrap()))
        .collect();
    let items: Vec<(&str, &Reference)> = good.iter().map(String::as_str).zip(&refs).collect();
    let t = Instant::now();
    let scores = v.score_batch(&items);
    let secs = t.elapsed().as_secs_f64();
    let passed = scores.iter().filter(|s| s.correct).count();
    for (r, s) in rows.iter().zip(&scores).filter(|(_, s)| !s.correct) {
        println!(
            "MBPP canonical fails: {} reward {} ({})",
            r["task_id"], s.reward, s.reason
        );
    }
    println!(
        "MBPP canonical (ids 11-510): {passed}/{} in {secs:.1}s",
        rows.len()
    );
    assert!(passed as f64 >= 0.99 * rows.len() as f64);

    let wrong = "def f(*a, **k):\n    return None\n";
    let items: Vec<(&str, &Reference)> = refs.iter().take(100).map(|r| (wrong, r)).collect();
    let n_wrong_pass = v.score_batch(&items).iter().filter(|s| s.correct).count();
    assert_eq!(n_wrong_pass, 0);
}

#[test]
fn stdio_and_fraction_modes() {
    let v = verifier(RewardMode::Fraction);
    let cases = |pairs: &[(&str, &str)]| {
        Reference::Code(CodeTests::StdIo {
            cases: pairs
                .iter()
                .map(|(i, o)| augur_reward::code::IoCase {
                    input: i.to_string(),
                    output: o.to_string(),
                })
                .collect(),
        })
    };
    let r = cases(&[("1 2\n", "3\n"), ("5 5\n", "10"), ("2 2\n", "5\n")]);
    let s = v.score(
        "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
        &r,
    );
    assert!(!s.correct);
    assert!((s.reward - 2.0 / 3.0).abs() < 1e-6, "{s:?}");
    let r = cases(&[("1 2\n", "3\n"), ("5 5\n", "10")]);
    let s = v.score("a, b = map(int, input().split())\nprint(a + b)   \n", &r);
    assert!(s.correct, "{s:?}");

    let asserts = Reference::Code(CodeTests::Asserts {
        setup: String::new(),
        asserts: vec![
            "assert f(1) == 2".into(),
            "assert f(2) == 4".into(),
            "assert f(3) == 7".into(),
        ],
    });
    let s = v.score("def f(x):\n    return 2 * x\n", &asserts);
    assert!((s.reward - 2.0 / 3.0).abs() < 1e-6, "{s:?}");
    // An early exit must not pass.
    let s = v.score(
        "import sys\ndef f(x):\n    return 2 * x\nsys.exit(0)\n",
        &asserts,
    );
    assert_eq!(s.reward, 0.0, "{s:?}");
}
