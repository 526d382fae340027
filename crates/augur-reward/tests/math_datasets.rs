//! MATH-500 solutions must verify against their own `answer` (target >= 99%), GSM8K solutions against `final`
//! (100%), and the Countdown reference solutions against their puzzle.

mod common;

use augur_reward::math::{answer, equiv, normalize};
use augur_reward::{CountdownVerifier, MathOptions, MathVerifier, Reference, Verifier};

#[test]
fn math500_self_agreement() {
    let Some(d) = common::datasets() else { return };
    let rows = common::read_jsonl(&d.join("math500/test.jsonl"));
    let v = MathVerifier::new(MathOptions {
        last_number_fallback: false,
    });
    let mut ok = 0;
    let mut semantic_ok = 0;
    for r in &rows {
        let answer = r["answer"].as_str().unwrap();
        let s = v.score(
            r["solution"].as_str().unwrap(),
            &Reference::Math {
                answer: answer.into(),
            },
        );
        if s.correct {
            ok += 1;
        } else {
            println!(
                "MATH-500 disagree: {:?} -> {:?} ({})",
                answer, s.extracted, s.reason
            );
        }
        // The structural path alone (string identity bypassed): the answer parses and equals itself.
        let n = normalize::normalize(answer);
        match answer::parse_answer(&n.spaced) {
            Some(a) if equiv::answers_equal(&a, &a) => semantic_ok += 1,
            other => println!(
                "MATH-500 compared as text only: {answer:?} ({})",
                if other.is_some() {
                    "not reflexive"
                } else {
                    "no parse"
                }
            ),
        }
    }
    let rate = ok as f64 / rows.len() as f64;
    let srate = semantic_ok as f64 / rows.len() as f64;
    println!(
        "MATH-500 self-agreement: {ok}/{} = {:.2}%",
        rows.len(),
        100.0 * rate
    );
    println!(
        "MATH-500 answers parsed and reflexive: {semantic_ok}/{} = {:.2}%",
        rows.len(),
        100.0 * srate
    );
    assert_eq!(rows.len(), 500);
    assert!(rate >= 0.99, "self-agreement {rate}");
}

#[test]
fn gsm8k_solutions_match_final() {
    let Some(d) = common::datasets() else { return };
    let v = MathVerifier::new(MathOptions {
        last_number_fallback: false,
    });
    for split in ["test", "train"] {
        let rows = common::read_jsonl(&d.join(format!("gsm8k/{split}.jsonl")));
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| {
                let reference = Reference::Math {
                    answer: r["final"].as_str().unwrap().into(),
                };
                !v.score(r["answer"].as_str().unwrap(), &reference).correct
            })
            .collect();
        println!(
            "GSM8K {split}: {}/{} correct",
            rows.len() - bad.len(),
            rows.len()
        );
        assert!(
            bad.is_empty(),
            "GSM8K {split}: {} solutions disagree, first {:?}",
            bad.len(),
            bad[0]["final"]
        );
    }
}

#[test]
fn countdown_references_are_correct() {
    let Some(d) = common::datasets() else { return };
    let v = CountdownVerifier::default();
    for split in ["test", "train"] {
        let rows = common::read_jsonl(&d.join(format!("countdown/{split}.jsonl")));
        let mut ok = 0;
        for r in &rows {
            let numbers: Vec<i64> = r["numbers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            let target = r["target"].as_i64().unwrap();
            let completion = format!("<answer>{}</answer>", r["reference"].as_str().unwrap());
            let s = v.score(
                &completion,
                &Reference::Countdown {
                    numbers: numbers.clone(),
                    target,
                },
            );
            if s.correct {
                ok += 1;
            } else {
                println!("countdown {}: {} ({})", r["id"], completion, s.reason);
            }
            // A wrong target must fail.
            assert!(
                !v.score(
                    &completion,
                    &Reference::Countdown {
                        numbers,
                        target: target + 1
                    }
                )
                .correct
            );
        }
        println!("countdown {split}: {ok}/{} references verify", rows.len());
        assert_eq!(ok, rows.len());
    }
}
