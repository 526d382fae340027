//! The model card (`README.md`) pushed with a checkpoint: base model, method, LoRA settings,
//! the metrics of the checkpoint's step, the run config, and the augur version; front matter
//! that the Hub reads (`base_model`, `library_name: peft`, tags).

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::{io, HubError, Result};
use crate::id::HubId;

/// Writes the card for checkpoint `folder` pushed to `repo`. Every input is optional except
/// that a folder with none of them is not a checkpoint.
pub fn model_card(folder: &Path, repo: &str) -> Result<String> {
    let adapter = read_json(&folder.join("adapter_config.json"))?;
    let state = read_json(&folder.join("trainer_state.json"))?;
    let config = match std::fs::read_to_string(folder.join("config.toml")) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(folder.join("config.toml"))(e)),
    };
    if adapter.is_none() && state.is_none() && config.is_none() {
        return Err(HubError::Repo {
            repo: repo.into(),
            why: format!(
                "{} has no adapter_config.json, trainer_state.json or config.toml: not an augur checkpoint",
                folder.display()
            ),
        });
    }
    let table: Option<toml::Table> = config.as_deref().and_then(|c| c.parse().ok());
    let base = adapter
        .as_ref()
        .and_then(|a| a["base_model_name_or_path"].as_str().map(str::to_string))
        .or_else(|| {
            let model = table.as_ref()?.get("model")?;
            let name = model.get("name").or_else(|| model.get("path"))?;
            name.as_str().map(str::to_string)
        });
    let method = match &table {
        Some(t) if t.contains_key("rollout") => "GRPO",
        Some(t) if t.contains_key("sft") => "SFT",
        _ => "LoRA fine-tuning",
    };
    let step = state.as_ref().and_then(|s| s["step"].as_u64());

    let mut card = String::from("---\nlibrary_name: peft\n");
    // The Hub links `base_model` only for a repo id.
    if let Some(id) = base.as_deref().and_then(|b| HubId::parse(b).ok()) {
        writeln!(card, "base_model: {}", id.repo).ok();
    }
    writeln!(
        card,
        "tags:\n- augur\n- lora\n- {}\n---\n",
        method.to_lowercase()
    )
    .ok();
    writeln!(card, "# {}\n", repo.rsplit('/').next().unwrap_or(repo)).ok();
    writeln!(
        card,
        "LoRA adapter trained with {method} by [augur](https://github.com/augur-rl/augur) {}{}.\n",
        env!("CARGO_PKG_VERSION"),
        step.map(|s| format!(", checkpoint at step {s}"))
            .unwrap_or_default()
    )
    .ok();
    writeln!(
        card,
        "- base model: `{}`",
        base.as_deref().unwrap_or("unknown")
    )
    .ok();
    writeln!(card, "- method: {method}").ok();
    if let Some(a) = &adapter {
        writeln!(
            card,
            "- LoRA: rank {}, alpha {}, modules {}",
            a["r"], a["lora_alpha"], a["target_modules"]
        )
        .ok();
    }
    if let Some(line) = metrics_at(folder, step)? {
        writeln!(
            card,
            "\n## Metrics{}\n\n| metric | value |\n|---|---|",
            step.map(|s| format!(" at step {s}")).unwrap_or_default()
        )
        .ok();
        if let Value::Object(m) = line {
            for (k, v) in m.iter().filter(|(_, v)| v.is_number()) {
                writeln!(card, "| {k} | {v} |").ok();
            }
        }
    }
    writeln!(card, "\n## Use\n\n```sh\naugur grpo --resume hub:{repo} --set algorithm.steps=N   # continue training\n```\n").ok();
    writeln!(
        card,
        "With Python `peft`: `PeftModel.from_pretrained(base_model, \"{repo}\")`."
    )
    .ok();
    if let Some(text) = &config {
        writeln!(card, "\n## Config\n\n```toml\n{}\n```", text.trim_end()).ok();
    }
    Ok(card)
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HubError::Repo {
                repo: path.display().to_string(),
                why: format!("not JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The run's `metrics.jsonl` line (next to the checkpoint folder) for `step`.
fn metrics_at(folder: &Path, step: Option<u64>) -> Result<Option<Value>> {
    let Some(path) = folder.parent().map(|p| p.join("metrics.jsonl")) else {
        return Ok(None);
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| step.is_none() || v["step"].as_u64() == step))
}
