//! The Python scripts read `metrics.jsonl` by key name; every key they read must be one that
//! [`StepMetrics`] writes, so renaming a field cannot silently break them.

use std::collections::BTreeSet;

use augur_train::metrics::StepMetrics;

/// A GRPO line with every group present (as a `[sampler]` run with `[eval]` writes it).
const FULL: &str = r#"{"step":3,"rollouts_used":96,"accuracy":0.5,"reward_mean":0.5,"reward_std":0.5,"zero_variance_groups":0.25,"response_len":20.0,"truncated_frac":0.0,"loss":0.1,"pg_loss":0.1,"clip_frac":0.0,"ratio_mean":1.0,"approx_kl_old":0.0,"kl":0.0,"entropy":1.0,"grad_norm":0.3,"optimizer_steps":1,"skipped":0,"lr":0.0003,"gen_tokens_per_s":100.0,"train_tokens_per_s":50.0,"time_rollout_s":1.0,"time_reward_s":0.0,"time_reference_s":0.0,"time_update_s":2.0,"time_step_s":3.0,"sampler_effective_ratio":0.75,"sampler_spearman":0.5,"sampler_brier":0.1,"sampler_select_us":1,"sampler_update_us":2,"ds_rounds":2,"eval_accuracy":0.4,"eval_reward":0.4,"eval_prompts":50,"time_eval_s":1.0}"#;

/// Keys `script` reads as `VAR["key"]`, `VAR['key']`, `VAR.get("key"` or `"key" in VAR`.
fn keys_read(script: &str, var: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for open in [
        format!("{var}[\""),
        format!("{var}['"),
        format!("{var}.get(\""),
    ] {
        for (at, _) in script.match_indices(&open) {
            let before = script[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // a longer name ending in `var`
            }
            let rest = &script[at + open.len()..];
            let end = rest.find(['"', '\'']).unwrap();
            keys.insert(rest[..end].to_string());
        }
    }
    let close = format!("\" in {var}");
    for (at, _) in script.match_indices(&close) {
        let after = script[at + close.len()..].chars().next();
        if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `in rows`, not `in r`
        }
        let start = script[..at].rfind('"').unwrap();
        keys.insert(script[start + 1..at].to_string());
    }
    keys
}

#[test]
fn every_key_the_scripts_read_is_in_the_schema() {
    let full: StepMetrics = serde_json::from_str(FULL).unwrap();
    let written: BTreeSet<String> = serde_json::to_value(&full)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // The line above is complete: writing it back loses no key.
    let given: serde_json::Value = serde_json::from_str(FULL).unwrap();
    assert_eq!(written.len(), given.as_object().unwrap().len());

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (script, var) in [
        ("scripts/quickstart.sh", "r"),
        ("scripts/bench_trl.py", "m"),
    ] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        let read = keys_read(&text, var);
        assert!(!read.is_empty(), "{script}: found no metrics reads");
        let unknown: Vec<_> = read.difference(&written).collect();
        assert!(
            unknown.is_empty(),
            "{script} reads {unknown:?}, which StepMetrics does not write"
        );
    }
}
