//! The SFT run configuration: one TOML file with sections model / lora / data / train /
//! selection / optimizer / eval / checkpoint / logging. `[model]`, `[lora]`, `[optimizer]`,
//! `[checkpoint]` and `[logging]` are the same sections as `augur grpo`'s. Unknown keys are
//! errors naming the key; `--set key=value` overrides apply before the check.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::check_complete;
use crate::grpo::checkpoint::CONFIG;
use crate::grpo::config::{
    apply_override, deserialize_named, eval_due, in_file, read_config, resume_overrides,
    CheckpointSection, LoggingSection, LoraSection, ModelSection, OptimizerSection,
};
use crate::schedule::ScheduleConfig;
use crate::{Error, Result};

/// A whole SFT run. Every section has defaults except `model.path` and `data.train`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    pub model: ModelSection,
    pub lora: LoraSection,
    pub data: SftDataSection,
    pub train: TrainSection,
    pub selection: SelectionSection,
    pub optimizer: OptimizerSection,
    /// `[eval]`: held-out loss. Absent: no evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<SftEvalSection>,
    pub checkpoint: CheckpointSection,
    pub logging: LoggingSection,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            model: ModelSection::default(),
            lora: LoraSection::default(),
            data: SftDataSection::default(),
            train: TrainSection::default(),
            selection: SelectionSection::default(),
            optimizer: OptimizerSection::default(),
            eval: None,
            checkpoint: CheckpointSection {
                dir: PathBuf::from("runs/sft"),
                every: 0,
            },
            logging: LoggingSection::default(),
        }
    }
}

/// How a data line holds its example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A prompt field and a completion field (GSM8K: `question` / `answer`). The prompt goes
    /// through the chat template as one user turn (unless `raw`); the completion, followed
    /// by the end-of-sequence token, is what the loss is taken on.
    #[default]
    PromptCompletion,
    /// A chat: an array of `{role, content}` in `messages_field`. The loss is taken on every
    /// assistant turn as the chat template renders it (end-of-turn marker included).
    Messages,
}

/// `[data]`: the training examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftDataSection {
    /// Training examples (required): a JSONL or `.parquet` file, or a Hub dataset split
    /// `hub:org/name[@revision]:[config/]split`.
    pub train: PathBuf,
    /// `prompt-completion` (default) or `messages`.
    pub format: DataFormat,
    /// Default `question`.
    pub prompt_field: String,
    /// Default `answer`.
    pub completion_field: String,
    /// Default `messages`.
    pub messages_field: String,
    /// Prompt-completion only: use the prompt as is instead of the chat template. Default false.
    pub raw: bool,
    /// Longest example in tokens (prompt + completion); longer ones are cut at the end and
    /// counted as truncated. Default 512.
    pub max_seq_len: usize,
    /// Seed of the example order (a fresh permutation each epoch). Default 0.
    pub seed: u64,
}

impl Default for SftDataSection {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            format: DataFormat::PromptCompletion,
            prompt_field: "question".into(),
            completion_field: "answer".into(),
            messages_field: "messages".into(),
            raw: false,
            max_seq_len: 512,
            seed: 0,
        }
    }
}

/// `[train]`: how long and in what pieces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Optimizer steps; each trains on `selection.keep` examples. Default 100.
    pub steps: u64,
    /// Examples per forward/backward (gradient accumulation within a step), and per scoring
    /// forward; with `packing`, packed rows per training forward. Default 4.
    pub micro_batch_size: usize,
    /// Pack the step's examples into rows of up to `data.max_seq_len` tokens, each example
    /// attending only to itself (same loss, less padding; see [`super::packing`]). Scoring
    /// and held-out forwards stay one example per row. Default true: the step's loss and
    /// gradient are the unpacked step's, and a GSM8K LoRA step trained 1.14x the tokens per
    /// second with it (`scripts/bench_trl_sft.py`); `false` runs one example per row, padded
    /// to the micro-batch's longest.
    pub packing: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            steps: 100,
            micro_batch_size: 4,
            packing: true,
        }
    }
}

/// Which candidates a step trains on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionMethod {
    /// `keep` of the candidates at random; no scoring forward.
    #[default]
    Uniform,
    /// Utility + diversity (UDS, arXiv 2510.16882).
    Uds,
    /// Highest per-example loss under the policy.
    Maxloss,
    /// RHO-lite: policy loss minus reference (adapters off) loss.
    Rho,
}

/// `[selection]`: online batch selection. Each step draws `candidates` examples (in the seeded
/// epoch order), scores them with one no-grad forward and trains on the best `keep`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionSection {
    /// Default `uniform`.
    pub method: SelectionMethod,
    /// Examples drawn per step (N). Default 16.
    pub candidates: usize,
    /// Examples trained on per step (K ≤ N). Default 4 (keep 1 of 4).
    pub keep: usize,
    /// UDS: weight of the diversity term. Default 2.5e-3.
    pub alpha: f64,
    /// UDS: capacity of the FIFO buffer of selected examples' projections. Default 1024.
    pub buffer: usize,
    /// Seed of the UDS projection and of uniform's picks. Default 0.
    pub seed: u64,
}

impl Default for SelectionSection {
    fn default() -> Self {
        Self {
            method: SelectionMethod::Uniform,
            candidates: 16,
            keep: 4,
            alpha: 2.5e-3,
            buffer: 1024,
            seed: 0,
        }
    }
}

/// `[eval]`: mean token loss (completion tokens only) on held-out examples, with the adapters
/// on and no gradients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftEvalSection {
    /// Held-out examples in the `[data]` format and forms (JSONL, Parquet or `hub:`; required).
    pub file: PathBuf,
    /// Evaluate after every this many steps, and after the last one. 0: after the last only.
    pub every: u64,
    /// Also evaluate before the first step (logged as step 0). Default true.
    pub at_start: bool,
    /// Use the first this many examples; 0 = all. Default 0.
    pub max_examples: usize,
}

impl Default for SftEvalSection {
    fn default() -> Self {
        Self {
            file: PathBuf::new(),
            every: 0,
            at_start: true,
            max_examples: 0,
        }
    }
}

impl SftEvalSection {
    /// Whether to evaluate after `step` of `total` (step 0: before the first).
    pub fn due(&self, step: u64, total: u64) -> bool {
        eval_due(self.at_start, self.every, step, total)
    }
}

impl SftConfig {
    /// Reads `path` and applies `overrides` (`key.path=value`, value in TOML syntax).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::from_toml_str(&read_config(path)?, overrides).map_err(in_file(path))
    }

    /// The config of a run resumed from `checkpoint` without a config file: the checkpoint's
    /// own `config.toml` with the run folder moved to the checkpoint's parent (as `augur grpo`
    /// does), then `overrides`.
    pub fn load_for_resume(checkpoint: &Path, overrides: &[String]) -> Result<Self> {
        check_complete(checkpoint)?;
        let path = checkpoint.join(CONFIG);
        let text = read_config(&path)?;
        let in_file = in_file(&path);
        let old = Self::from_toml_str(&text, &[]).map_err(&in_file)?;
        let moved = resume_overrides(
            checkpoint,
            &old.checkpoint.dir,
            old.logging.metrics.as_deref(),
        )?;
        let all: Vec<String> = moved.into_iter().chain(overrides.iter().cloned()).collect();
        Self::from_toml_str(&text, &all).map_err(&in_file)
    }

    /// Parses TOML text, applies `overrides`, deserialises and validates. An error names the key
    /// and, when it is in `text`, its line.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let mut cfg: SftConfig = deserialize_named(text, value, overrides)?;
        cfg.model.expand_paths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML (saved in the run folder and in checkpoints).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(Error::Config(format!("{k}: {why}")));
        if self.model.path.as_os_str().is_empty() {
            return bad("model.path", "is required");
        }
        if self.data.train.as_os_str().is_empty() {
            return bad("data.train", "is required");
        }
        if self.data.max_seq_len < 2 {
            return bad("data.max_seq_len", "must be at least 2");
        }
        if self.train.micro_batch_size == 0 {
            return bad("train.micro_batch_size", "must be at least 1");
        }
        let s = &self.selection;
        if s.keep == 0 || s.keep > s.candidates {
            return bad(
                "selection.keep",
                "must be at least 1 and at most selection.candidates",
            );
        }
        if s.buffer == 0 {
            return bad("selection.buffer", "must be at least 1");
        }
        if !(s.alpha.is_finite() && s.alpha >= 0.0) {
            return bad("selection.alpha", "must be a finite number >= 0");
        }
        if !self.lora.enabled {
            // Full fine-tuning: no adapters to switch off or start from, dense weights only.
            if s.method == SelectionMethod::Rho {
                return bad(
                    "selection.method",
                    "rho needs LoRA (its reference is the model with the adapters off); with \
                     [lora] enabled = false use uniform, maxloss or uds",
                );
            }
            if self.model.adapter.is_some() {
                return bad(
                    "model.adapter",
                    "a LoRA warm start needs [lora] enabled = true",
                );
            }
            if self.model.keep_quantized {
                return bad(
                    "model.keep_quantized",
                    "full fine-tuning ([lora] enabled = false) trains dense weights",
                );
            }
        }
        if let Some(e) = &self.eval {
            if e.file.as_os_str().is_empty() {
                return bad("eval.file", "is required when [eval] is present");
            }
        }
        crate::schedule::LrSchedule::new(self.schedule())
            .map_err(|e| Error::Config(format!("optimizer.schedule: {e}")))?;
        self.optimizer.adamw.validate()
    }

    /// The schedule with `total_steps` filled in (0 = `train.steps`).
    pub fn schedule(&self) -> ScheduleConfig {
        let mut s = self.optimizer.schedule.clone();
        if s.total_steps == 0 {
            s.total_steps = self.train.steps;
        }
        s
    }

    /// Where the metrics go.
    pub fn metrics_path(&self) -> PathBuf {
        self.logging.metrics_path(&self.checkpoint.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[model]\npath = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n";

    #[test]
    fn type_errors_name_the_key_and_line() {
        let text = format!("{BASE}[train]\nsteps = \"ten\"\n");
        let err = SftConfig::from_toml_str(&text, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.steps (line 6)"), "{err}");
        let err = SftConfig::from_toml_str(BASE, &["selection.keep=\"all\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("selection.keep (--set)"), "{err}");
    }

    #[test]
    fn defaults_overrides_and_unknown_keys() {
        let cfg = SftConfig::from_toml_str(BASE, &[]).unwrap();
        assert_eq!(cfg.checkpoint.dir, PathBuf::from("runs/sft"));
        assert_eq!(cfg.data.prompt_field, "question");
        assert_eq!(cfg.data.completion_field, "answer");
        assert_eq!(cfg.selection.method, SelectionMethod::Uniform);
        assert_eq!((cfg.selection.candidates, cfg.selection.keep), (16, 4));
        assert_eq!(cfg.schedule().total_steps, 100);
        let cfg = SftConfig::from_toml_str(
            BASE,
            &[
                "selection.method=uds".into(),
                "data.format=messages".into(),
                "train.steps=7".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.selection.method, SelectionMethod::Uds);
        assert_eq!(cfg.data.format, DataFormat::Messages);
        assert_eq!(cfg.schedule().total_steps, 7);
        assert_eq!(
            SftConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap(),
            cfg
        );
        for bad in ["train.stepz=3", "selection.method=best", "data.format=chat"] {
            let err = SftConfig::from_toml_str(BASE, &[bad.into()]).unwrap_err();
            let key = bad.split(['=', '.']).nth(1).unwrap();
            let val = bad.split('=').nth(1).unwrap();
            let msg = err.to_string();
            assert!(msg.contains(key) || msg.contains(val), "{bad}: {msg}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (set, key) in [
            ("selection.keep=5", "selection.keep"),
            ("selection.keep=0", "selection.keep"),
            ("train.micro_batch_size=0", "train.micro_batch_size"),
            ("data.max_seq_len=1", "data.max_seq_len"),
            ("eval.every=2", "eval.file"),
        ] {
            let mut sets = vec![set.to_string()];
            if key == "selection.keep" {
                sets.push("selection.candidates=4".into());
            }
            let err = SftConfig::from_toml_str(BASE, &sets).unwrap_err();
            assert!(err.to_string().contains(key), "{set}: {err}");
        }
        assert!(SftConfig::from_toml_str("", &[])
            .unwrap_err()
            .to_string()
            .contains("model.path"));
    }

    #[test]
    fn shipped_sft_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sft-")
            {
                SftConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no configs/sft-*.toml");
    }
}
