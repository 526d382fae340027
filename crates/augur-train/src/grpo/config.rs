//! The GRPO run configuration: one TOML file with sections model / lora / data / rollout / reward /
//! algorithm / optimizer / sampler / checkpoint / logging. Unknown keys are errors naming the key, and
//! `--set key=value` overrides are applied to the parsed TOML before it is checked.

use std::path::{Path, PathBuf};

use augur_model::{KvDtype, WeightDtype};
use augur_rollout::SamplingParams;
use serde::{Deserialize, Serialize};

use super::data::PromptSpec;
use crate::advantage::AdvantageConfig;
use crate::loss::PolicyLossConfig;
use crate::optim::AdamWConfig;
use crate::schedule::{ScheduleConfig, ScheduleKind};
use crate::template::PromptTemplate;
use crate::{Error, Result};

/// A whole run. Every section has defaults except `model.path` and `data.train`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    pub model: ModelSection,
    pub lora: LoraSection,
    pub data: DataSection,
    pub rollout: RolloutSection,
    pub reward: RewardSection,
    pub algorithm: AlgorithmSection,
    pub optimizer: OptimizerSection,
    /// `[sampler]`: predictive prompt selection. Absent: the seeded uniform epoch order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerSection>,
    /// `[eval]`: periodic evaluation on held-out prompts. Absent: no evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalSection>,
    /// `[hub]`: push each checkpoint to the Hugging Face Hub while training. Absent: no push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubSection>,
    pub checkpoint: CheckpointSection,
    pub logging: LoggingSection,
}

/// `[model]`: the base model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// HF folder or GGUF file (required).
    pub path: PathBuf,
    /// Folder with `tokenizer.json` to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// `base_model_name_or_path` written into the PEFT adapter config. Default: `path`.
    pub name: Option<String>,
    /// Keep GGUF weights quantized (frozen base only). Default false.
    pub keep_quantized: bool,
    /// `cpu`, `cuda` or `cuda:N` (needs a build with `--features cuda`). Default `cpu`.
    pub device: String,
    /// Precision of the frozen weights on the CPU: `f32` (default) or `bf16` (AVX512-BF16
    /// CPUs; elsewhere f32 with a warning). Rollouts and updates both use it.
    pub dtype: WeightDtype,
    /// A PEFT adapter folder (e.g. an `augur sft` checkpoint) whose weights the `[lora]`
    /// adapters start from instead of their fresh init: a warm start. Its rank, alpha and
    /// targets must equal `[lora]`'s. Default none (`""` also means none, so `--set
    /// model.adapter=""` turns a config's warm start off).
    pub adapter: Option<PathBuf>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            tokenizer: None,
            name: None,
            keep_quantized: false,
            device: "cpu".into(),
            dtype: WeightDtype::F32,
            adapter: None,
        }
    }
}

impl ModelSection {
    /// Expands `~/` in the model, tokenizer and adapter paths; an empty adapter path means none
    /// (so `--set 'model.adapter=""'` turns a configured warm start off).
    pub(crate) fn expand_paths(&mut self) {
        self.path = expand_home(&self.path);
        self.tokenizer = self.tokenizer.as_deref().map(expand_home);
        self.adapter = self
            .adapter
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(expand_home);
    }

    /// The device named by `device`; an error names the value and why it cannot be used.
    pub fn device(&self) -> Result<candle_core::Device> {
        parse_device(&self.device)
            .map_err(|why| Error::Config(format!("model.device = {:?}: {why}", self.device)))
    }
}

/// `cpu`, `cuda` (GPU 0) or `cuda:N` as a candle device; the error says why it cannot be used
/// (a malformed name, or no such GPU / a build without `--features cuda`). Shared by
/// `[model] device` and `augur generate --device`.
pub fn parse_device(name: &str) -> std::result::Result<candle_core::Device, String> {
    let ordinal = match name {
        "cpu" => return Ok(candle_core::Device::Cpu),
        d => match d.strip_prefix("cuda") {
            Some("") => 0,
            Some(n) => n
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .ok_or("expected `cuda:N`")?,
            None => return Err("expected `cpu`, `cuda` or `cuda:N`".into()),
        },
    };
    candle_core::Device::new_cuda(ordinal).map_err(|e| e.to_string())
}

/// `[lora]`: the trainable adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    /// Train LoRA adapters (true, default) or, with false, every weight of the model (full
    /// fine-tuning, `augur sft` only; the other keys are then unused).
    pub enabled: bool,
    /// Rank. Default 8.
    pub rank: usize,
    /// Scale numerator (`alpha / rank`). Default 16.
    pub alpha: f64,
    /// Projections: `q`, `k`, `v`, `o`, `gate`, `up`, `down` (or PEFT names). Default q, v.
    pub targets: Vec<String>,
    /// Seed of the A-matrix init. Default 0.
    pub seed: u64,
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            enabled: true,
            rank: 8,
            alpha: 16.0,
            targets: vec!["q".into(), "v".into()],
            seed: 0,
        }
    }
}

/// `[data]`: the prompt set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Training prompts (required): a JSONL file, a `.parquet` file, or a Hub dataset split
    /// `hub:org/name[@revision]:[config/]split` (e.g. `hub:openai/gsm8k:main/train`).
    pub train: PathBuf,
    /// A known set's prompt template, answer field and verifier: `gsm8k`, `math500`, `aime24`,
    /// `amc23`, `countdown`, `humaneval`, `mbpp` ([`augur_data::recipe`]). They fill
    /// `data.template`, `reward.task` and `reward.answer_field` where the config does not set
    /// them. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Field holding the prompt text. Default `question`. Unused when `template` is set.
    pub prompt_field: String,
    /// Prompt template with `{field}` placeholders filled from each line, e.g.
    /// `"{question}\nPut the final answer in \\boxed{}."` (see [`crate::template`]). Default:
    /// the `prompt_field` text as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Feed the prompt as is instead of through the chat template. Default false.
    pub raw: bool,
    /// Seed of the prompt order. Default 0.
    pub seed: u64,
    /// A prompt too long for the model's context with `rollout.max_new_tokens`: `fail` (default,
    /// the error names file, line and id) or `skip` (left out, and counted on stderr).
    pub too_long: super::data::TooLong,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            recipe: None,
            prompt_field: "question".into(),
            template: None,
            raw: false,
            seed: 0,
            too_long: Default::default(),
        }
    }
}

/// `[rollout]`: sampling of the G completions per prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSection {
    /// Prompts per step (B). Default 4.
    pub prompts_per_step: usize,
    /// Completions per prompt (G). Default 8.
    pub group_size: usize,
    /// Default 1.0.
    pub temperature: f32,
    /// Default 1.0.
    pub top_p: f32,
    /// Default 0 (off).
    pub top_k: usize,
    /// Default 256.
    pub max_new_tokens: usize,
    /// Strings that end a completion. Default none.
    pub stop_strings: Vec<String>,
    /// Seed of sampling; step `s` samples with `seed + s`. Default 0.
    pub seed: u64,
    /// Most rows decoded together. Default 256.
    pub max_batch_rows: usize,
    /// Precision of the rollouts' KV cache: `f32` (default; rollout and update logprobs
    /// agree to f32 round-off) or `bf16` (half the cache and the bytes decode attention reads;
    /// keys and values rounded to bf16, which the update does not see, so the first-epoch
    /// importance ratio moves off 1 by that rounding). CPU only; elsewhere f32 with a warning.
    pub kv_dtype: KvDtype,
}

impl Default for RolloutSection {
    fn default() -> Self {
        Self {
            prompts_per_step: 4,
            group_size: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop_strings: Vec::new(),
            seed: 0,
            max_batch_rows: 256,
            kv_dtype: KvDtype::F32,
        }
    }
}

impl RolloutSection {
    /// The training rollouts' sampling parameters.
    pub fn sampling_params(&self) -> SamplingParams {
        SamplingParams {
            n: self.group_size,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_new_tokens: self.max_new_tokens,
            stop_strings: self.stop_strings.clone(),
            ..Default::default()
        }
    }
}

/// `[reward]`: the verifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardSection {
    /// `math` (field `answer` or `final`), `countdown` (fields `numbers`, `target`) or `code`
    /// (HumanEval's `test`/`entry_point`, MBPP's `test_list`, or stdin/stdout `cases`; run in
    /// the sandbox). Default `math`.
    pub task: String,
    /// Math: fall back to the last number when no boxed answer. Default true.
    pub last_number_fallback: bool,
    /// Math: the field holding the reference answer. Default: `final` when a line has it, else
    /// `answer`; a GSM8K-style `... #### x` solution yields `x` either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_field: Option<String>,
}

impl Default for RewardSection {
    fn default() -> Self {
        Self {
            task: "math".into(),
            last_number_fallback: true,
            answer_field: None,
        }
    }
}

/// `[algorithm]`: steps, batching, advantages and the policy loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlgorithmSection {
    /// Training steps (one rollout batch each). Default 10.
    pub steps: u64,
    /// Optimisation passes over each rollout batch. Default 1.
    pub ppo_epochs: usize,
    /// Completions per optimizer step; each epoch takes `ceil(B·G / mini_batch_size)` steps.
    /// 0 (default): the whole rollout batch is one step (on-policy GRPO).
    pub mini_batch_size: usize,
    /// Completions per forward/backward (gradient accumulation within a step). Default 8.
    pub micro_batch_size: usize,
    /// Run each prompt once per micro-batch and its completions on top of it, instead of
    /// prompt + completion per row: same logits and gradients, and far fewer tokens when
    /// a group's G completions share a prompt. Default true; false is for comparisons.
    pub shared_prefix: bool,
    /// Most memory (MiB) of f32 logits the update holds at once: on the CPU the LM head runs
    /// on the completion tokens in chunks of this size inside one op, so the `[B, C, V]`
    /// logits and their softmax never exist whole (large vocabularies: 150k for Qwen).
    /// Default 256.
    pub logits_memory_mb: usize,
    /// Activation (gradient) checkpointing of the policy's forward in the update: keep only
    /// each decoder block's input and run the block again in the backward, so one block's
    /// intermediate tensors are alive at a time instead of every block's. Same loss and
    /// gradients; costs a second forward of the blocks (about a third more update time).
    /// Default false.
    pub activation_checkpointing: bool,
    /// `[algorithm.advantage]`.
    pub advantage: AdvantageConfig,
    /// `[algorithm.loss]`: clipping, aggregation, KL (`beta`), entropy, truncation masking.
    pub loss: PolicyLossConfig,
}

impl Default for AlgorithmSection {
    fn default() -> Self {
        Self {
            steps: 10,
            ppo_epochs: 1,
            mini_batch_size: 0,
            micro_batch_size: 8,
            shared_prefix: true,
            logits_memory_mb: 256,
            activation_checkpointing: false,
            advantage: AdvantageConfig::default(),
            loss: PolicyLossConfig::default(),
        }
    }
}

/// `[optimizer]`: AdamW on the LoRA parameters and the learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    /// `[optimizer.adamw]`.
    pub adamw: AdamWConfig,
    /// `[optimizer.schedule]`; `total_steps = 0` means `algorithm.steps` × optimizer steps per
    /// batch (`ppo_epochs` × mini-batches).
    pub schedule: ScheduleConfig,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        Self {
            adamw: AdamWConfig::default(),
            schedule: ScheduleConfig {
                lr: 1e-4,
                kind: ScheduleKind::Constant,
                ..Default::default()
            },
        }
    }
}

/// `[sampler]`: an [`augur_sampler::SamplerConfig`] (`method = "mopps"`, `[sampler.mopps]`, ...)
/// plus `candidate_ratio`. Each step draws `candidate_ratio × prompts_per_step` candidates
/// uniformly without replacement (seeded by `data.seed` and the step; `0` = the whole dataset),
/// and the sampler picks `prompts_per_step` of them. `group_size` is taken from
/// `rollout.group_size`; `seed` is the sampler's own (Thompson draws, tie breaks).
/// `holdout_fraction` and `holdout_steps` keep a seeded random part of the dataset out of the
/// candidates for the first steps ([`super::selection::Holdout`]), so every sampler meets those
/// prompts for the first time after it has learned from the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table", into = "toml::Table")]
pub struct SamplerSection {
    /// Candidates per step as a multiple of `prompts_per_step`; 0 = every prompt. Default 8.
    pub candidate_ratio: usize,
    /// Chance that a prompt is held out, in [0, 1) (seeded by `data.seed`). Default 0.
    pub holdout_fraction: f64,
    /// Steps the held-out prompts stay out of the candidates; from step `holdout_steps + 1`
    /// on they are candidates like any other. Default 0.
    pub holdout_steps: u64,
    /// The sampler itself (method, predictor and acquisition settings).
    pub sampler: augur_sampler::SamplerConfig,
}

impl Default for SamplerSection {
    fn default() -> Self {
        Self {
            candidate_ratio: 8,
            holdout_fraction: 0.0,
            holdout_steps: 0,
            sampler: augur_sampler::SamplerConfig::default(),
        }
    }
}

impl TryFrom<toml::Table> for SamplerSection {
    type Error = String;
    fn try_from(mut t: toml::Table) -> std::result::Result<Self, String> {
        let candidate_ratio = match t.remove("candidate_ratio") {
            None => Self::default().candidate_ratio,
            Some(v) => v
                .as_integer()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| {
                    format!("sampler.candidate_ratio: expected an integer >= 0, got {v}")
                })?,
        };
        let holdout_fraction = match t.remove("holdout_fraction") {
            None => 0.0,
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|f| (0.0..1.0).contains(f))
                .ok_or_else(|| {
                    format!("sampler.holdout_fraction: expected a number in [0, 1), got {v}")
                })?,
        };
        let holdout_steps = match t.remove("holdout_steps") {
            None => 0,
            Some(v) => v
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| {
                    format!("sampler.holdout_steps: expected an integer >= 0, got {v}")
                })?,
        };
        let sampler = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| format!("sampler: {e}"))?;
        Ok(Self {
            candidate_ratio,
            holdout_fraction,
            holdout_steps,
            sampler,
        })
    }
}

impl From<SamplerSection> for toml::Table {
    fn from(s: SamplerSection) -> Self {
        let mut t = match toml::Value::try_from(&s.sampler) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        t.insert(
            "candidate_ratio".into(),
            toml::Value::Integer(s.candidate_ratio as i64),
        );
        if s.holdout_fraction > 0.0 || s.holdout_steps > 0 {
            t.insert(
                "holdout_fraction".into(),
                toml::Value::Float(s.holdout_fraction),
            );
            t.insert(
                "holdout_steps".into(),
                toml::Value::Integer(s.holdout_steps as i64),
            );
        }
        t
    }
}

/// `[eval]`: held-out prompts scored with the current policy every `every` steps, so a run shows
/// generalisation and not only its training reward. With `samples = 1` and `temperature = 0` the
/// metric is greedy pass@1; otherwise it is mean@k (the mean correctness of k samples per prompt).
/// Evaluation samples with a fixed seed, so successive evaluations differ only by the policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Held-out prompts, same fields and forms as `data.train` (JSONL, Parquet or `hub:`;
    /// required).
    pub file: PathBuf,
    /// Evaluate after every this many steps, and after the last one. 0: after the last step only.
    /// Default 0.
    pub every: u64,
    /// Also evaluate before the first step (logged as step 0). Default true.
    pub at_start: bool,
    /// Use the first this many prompts of the file; 0 = all. Default 0.
    pub max_prompts: usize,
    /// Samples per prompt (k). Default 1.
    pub samples: usize,
    /// 0 = greedy. Default 0.
    pub temperature: f32,
    /// Default: `rollout.max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// Sampling seed (when `temperature > 0`). Default 0.
    pub seed: u64,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            file: PathBuf::new(),
            every: 0,
            at_start: true,
            max_prompts: 0,
            samples: 1,
            temperature: 0.0,
            max_new_tokens: None,
            seed: 0,
        }
    }
}

impl EvalSection {
    /// Whether the policy is evaluated after `step` of a `total`-step run (step 0: before the
    /// first step).
    pub fn due(&self, step: u64, total: u64) -> bool {
        eval_due(self.at_start, self.every, step, total)
    }
}

/// `[checkpoint]`: the run folder and how often to save.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Run folder: `config.toml`, `metrics.jsonl`, `checkpoint-<step>/`. Default `runs/grpo`.
    pub dir: PathBuf,
    /// Save every this many steps (0: only at the end). Default 0.
    pub every: u64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runs/grpo"),
            every: 0,
        }
    }
}

/// `[hub]`: where checkpoints go while the run goes on (a background thread pushes each
/// one, so steps do not wait for the network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Model repo `org/name`, created if missing; checkpoint `N` goes to `checkpoint-N/`.
    pub push_to: String,
    /// Create the repo private. Default true.
    #[serde(default = "private_by_default")]
    pub private: bool,
    /// Branch to commit to. Default `main`.
    #[serde(default = "main_branch")]
    pub revision: String,
}

fn private_by_default() -> bool {
    true
}

fn main_branch() -> String {
    "main".into()
}

/// `[logging]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// Metrics JSONL path. Default `<checkpoint.dir>/metrics.jsonl`.
    pub metrics: Option<PathBuf>,
    /// Print one line per step to stderr. Default true.
    pub print: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            metrics: None,
            print: true,
        }
    }
}

impl LoggingSection {
    /// Where the metrics go: `metrics`, else `metrics.jsonl` in the run folder `run_dir`.
    pub fn metrics_path(&self, run_dir: &Path) -> PathBuf {
        self.metrics
            .clone()
            .unwrap_or_else(|| run_dir.join("metrics.jsonl"))
    }
}

impl GrpoConfig {
    /// Reads `path` and applies `overrides` (`key.path=value`, value in TOML syntax, bare words as strings).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::from_toml_str(&read_config(path)?, overrides).map_err(in_file(path))
    }

    /// The config of a run resumed from `checkpoint` without a config file: the checkpoint's
    /// own `config.toml`, with the run folder moved to the checkpoint's parent folder (and a
    /// metrics log inside the old run folder moved along), then `overrides`. So resuming a
    /// copied run folder writes into the copy, never into the folder it was copied from.
    pub fn load_for_resume(checkpoint: &Path, overrides: &[String]) -> Result<Self> {
        super::checkpoint::check_complete(checkpoint)?;
        let path = checkpoint.join(super::checkpoint::CONFIG);
        let text = read_config(&path)?;
        let in_file = in_file(&path);
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| in_file(Error::Config(e.to_string())))?;
        let old: Self = Self::from_table(&text, table.clone(), &[]).map_err(&in_file)?;
        let moved = resume_overrides(
            checkpoint,
            &old.checkpoint.dir,
            old.logging.metrics.as_deref(),
        )?;
        for o in moved.iter().chain(overrides) {
            apply_override(&mut table, o)?;
        }
        Self::from_table(&text, table, overrides).map_err(&in_file)
    }

    /// Parses TOML text, applies `overrides`, deserialises and validates. An error names the key
    /// and, when it is in `text`, its line.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        Self::from_table(text, value, overrides)
    }

    /// Deserialises and validates `table` (parsed from `text`, then `overrides` applied).
    fn from_table(text: &str, mut table: toml::Table, overrides: &[String]) -> Result<Self> {
        crate::recipe::fill_from_recipe(&mut table).map_err(|e| {
            Error::Config(format!(
                "data.recipe{}: {e}",
                locate(text, overrides, "data.recipe")
            ))
        })?;
        let mut cfg: GrpoConfig = deserialize_named(text, table, overrides)?;
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
        if self.algorithm.steps == 0 {
            return bad("algorithm.steps", "must be at least 1");
        }
        if self.checkpoint.dir.as_os_str().is_empty() {
            return bad("checkpoint.dir", "must name a folder");
        }
        if self.rollout.prompts_per_step == 0 {
            return bad("rollout.prompts_per_step", "must be at least 1");
        }
        if self.rollout.max_batch_rows == 0 {
            return bad("rollout.max_batch_rows", "must be at least 1");
        }
        if !self.lora.enabled {
            return bad(
                "lora.enabled",
                "false (full fine-tuning) is supported by `augur sft` only",
            );
        }
        if self.lora.rank == 0 {
            return bad("lora.rank", "must be at least 1");
        }
        if !self.lora.alpha.is_finite() {
            return bad("lora.alpha", "must be a finite number");
        }
        let batch = self
            .rollout
            .prompts_per_step
            .checked_mul(self.rollout.group_size)
            .filter(|b| self.algorithm.ppo_epochs.checked_mul(*b).is_some());
        if batch.is_none() {
            return bad(
                "rollout.prompts_per_step",
                "× group_size × algorithm.ppo_epochs overflows",
            );
        }
        self.rollout
            .sampling_params()
            .validate()
            .map_err(|e| match e {
                augur_rollout::RolloutError::Param { field, problem } => {
                    let key = if field == "n" { "group_size" } else { field };
                    Error::Config(format!("rollout.{key}: {problem}"))
                }
                e => Error::Config(format!("[rollout]: {e}")),
            })?;
        if self.rollout.group_size < 2 {
            return bad(
                "rollout.group_size",
                "must be at least 2 (advantages are relative to the group)",
            );
        }
        if self.algorithm.micro_batch_size == 0 || self.algorithm.ppo_epochs == 0 {
            return bad(
                "algorithm",
                "micro_batch_size and ppo_epochs must be at least 1",
            );
        }
        if !matches!(self.reward.task.as_str(), "math" | "countdown" | "code") {
            return bad("reward.task", "must be `math`, `countdown` or `code`");
        }
        self.prompt_spec()?;
        if let Some(e) = &self.eval {
            if e.file.as_os_str().is_empty() {
                return bad("eval.file", "is required when [eval] is present");
            }
            if e.samples == 0 {
                return bad("eval.samples", "must be at least 1");
            }
            if e.temperature < 0.0 || !e.temperature.is_finite() {
                return bad("eval.temperature", "must be a finite number >= 0");
            }
            if e.max_new_tokens == Some(0) {
                return bad("eval.max_new_tokens", "must be at least 1");
            }
        }
        self.algorithm.loss.validate()?;
        self.optimizer.adamw.validate()?;
        if let Some(s) = &self.sampler {
            if (s.holdout_fraction > 0.0) != (s.holdout_steps > 0) {
                return bad(
                    "sampler.holdout_fraction",
                    &format!(
                        "holdout_fraction = {} and holdout_steps = {} must be set together \
                         (both > 0 to hold prompts out, or both 0)",
                        s.holdout_fraction, s.holdout_steps
                    ),
                );
            }
            if s.holdout_steps >= self.algorithm.steps && s.holdout_steps > 0 {
                return bad(
                    "sampler.holdout_steps",
                    &format!(
                        "{} must be less than algorithm.steps = {} (the held-out prompts would \
                         never be candidates)",
                        s.holdout_steps, self.algorithm.steps
                    ),
                );
            }
            if s.sampler.method != augur_sampler::Method::Ds {
                s.sampler
                    .build()
                    .map_err(|e| Error::Config(format!("sampler: {e}")))?;
            }
        }
        Ok(())
    }

    /// Optimizer steps per rollout batch: `ppo_epochs` × mini-batches of the nominal B·G batch.
    pub fn optimizer_steps_per_batch(&self) -> u64 {
        let batch = self.rollout.prompts_per_step * self.rollout.group_size;
        let minis = match self.algorithm.mini_batch_size {
            0 => 1,
            m => batch.div_ceil(m),
        };
        (self.algorithm.ppo_epochs * minis) as u64
    }

    /// The schedule with `total_steps` filled in.
    pub fn schedule(&self) -> ScheduleConfig {
        let mut s = self.optimizer.schedule.clone();
        if s.total_steps == 0 {
            s.total_steps = self.algorithm.steps * self.optimizer_steps_per_batch();
        }
        s
    }

    /// How dataset lines become prompts: `[data] prompt_field`/`template` and the reward's
    /// reference fields. Errors name `data.template` or `reward.task`.
    pub fn prompt_spec(&self) -> Result<PromptSpec> {
        let template = match &self.data.template {
            Some(t) => Some(
                PromptTemplate::parse(t)
                    .map_err(|e| Error::Config(format!("data.template: {e}")))?,
            ),
            None => None,
        };
        Ok(PromptSpec {
            field: self.data.prompt_field.clone(),
            template,
            task: self
                .reward
                .task
                .parse()
                .map_err(|e: String| Error::Config(format!("reward.task: {e}")))?,
            answer_field: self.reward.answer_field.clone(),
        })
    }

    /// Where the metrics go.
    pub fn metrics_path(&self) -> PathBuf {
        self.logging.metrics_path(&self.checkpoint.dir)
    }
}

/// Deserialises a config `table` (parsed from `text`, then `overrides` applied); an error names
/// the key and, when it is in `text`, its line, or `(--set)` when an override set it.
pub(crate) fn deserialize_named<T: serde::de::DeserializeOwned>(
    text: &str,
    table: toml::Table,
    overrides: &[String],
) -> Result<T> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let at = locate(text, overrides, &key);
        Error::Config(format!("{key}{at}: {}", e.into_inner().message()))
    })
}

/// Where `key` (a dotted path) was set: ` (line N)` in `text`, ` (--set)` when an override set
/// it, or nothing.
fn locate(text: &str, overrides: &[String], key: &str) -> String {
    let from_set = overrides.iter().any(|o| {
        o.split_once('=')
            .is_some_and(|(k, _)| key == k.trim() || key.starts_with(&format!("{}.", k.trim())))
    });
    if from_set {
        return " (--set)".into();
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return String::new();
    };
    let mut table = doc.get_ref();
    let mut span = None;
    for seg in key.split('.') {
        let Some((_, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == seg) else {
            break;
        };
        span = Some(v.span());
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    match span {
        Some(s) => {
            let before = text.get(..s.start).unwrap_or(text);
            format!(" (line {})", before.matches('\n').count() + 1)
        }
        None => String::new(),
    }
}

/// `~/x` → `$HOME/x`.
pub(crate) fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The overrides that move a resumed run into its checkpoint's parent folder: `checkpoint.dir`
/// becomes that folder, and a metrics log that was inside the old run folder (`old_metrics`
/// under `old_dir`) moves along. Shared by `grpo` and `sft`, so resuming a copied run folder
/// writes into the copy, never into the folder it was copied from.
pub(crate) fn resume_overrides(
    checkpoint: &Path,
    old_dir: &Path,
    old_metrics: Option<&Path>,
) -> Result<Vec<String>> {
    let parent = match checkpoint.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let as_toml = |p: &Path| -> Result<String> {
        let s = p
            .to_str()
            .ok_or_else(|| Error::Config(format!("{}: path is not valid UTF-8", p.display())))?;
        Ok(toml::Value::String(s.into()).to_string())
    };
    let mut moved = vec![format!("checkpoint.dir={}", as_toml(&parent)?)];
    if let Some(rest) = old_metrics.and_then(|m| m.strip_prefix(old_dir).ok()) {
        moved.push(format!("logging.metrics={}", as_toml(&parent.join(rest))?));
    }
    Ok(moved)
}

/// The text of the config file `path`.
pub(crate) fn read_config(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Names the config file `path` in a config error (other errors pass unchanged).
pub(crate) fn in_file(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        e => e,
    }
}

/// The `[eval]` schedule both trainers share: before the first step (step 0) when `at_start`,
/// after every `every` steps (0: never in between), and after the last of `total`.
pub(crate) fn eval_due(at_start: bool, every: u64, step: u64, total: u64) -> bool {
    match step {
        0 => at_start,
        s => s == total || (every > 0 && s.is_multiple_of(every)),
    }
}

/// Sets `a.b.c = value` in `table` (one `--set`), as `augur sampler --set` does; the key's
/// validity is checked later by deserialisation (unknown keys error there, naming the key).
pub(crate) fn apply_override(table: &mut toml::Table, o: &str) -> Result<()> {
    augur_sampler::apply_override(table, o).map_err(Error::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[model]\npath = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n";

    #[test]
    fn unknown_key_is_named() {
        let err = GrpoConfig::from_toml_str(&format!("{BASE}[rollout]\ngroup_sise = 4\n"), &[])
            .unwrap_err();
        assert!(err.to_string().contains("group_sise"), "{err}");
        let err =
            GrpoConfig::from_toml_str(BASE, &["algorithm.loss.betta=0.1".into()]).unwrap_err();
        assert!(err.to_string().contains("betta"), "{err}");
    }

    #[test]
    fn overrides_apply_before_deserialising() {
        let sets = [
            "rollout.group_size=4".to_string(),
            "algorithm.loss.beta = 0.05".into(),
            "algorithm.loss.aggregation=token-mean".into(),
            "checkpoint.dir=runs/x".into(),
        ];
        let cfg = GrpoConfig::from_toml_str(BASE, &sets).unwrap();
        assert_eq!(cfg.rollout.group_size, 4);
        assert_eq!(cfg.algorithm.loss.beta, 0.05);
        assert_eq!(
            cfg.algorithm.loss.aggregation,
            crate::loss::LossAggregation::TokenMean
        );
        assert_eq!(cfg.checkpoint.dir, PathBuf::from("runs/x"));
        let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn activation_checkpointing_is_off_unless_asked_for() {
        assert!(
            !GrpoConfig::from_toml_str(BASE, &[])
                .unwrap()
                .algorithm
                .activation_checkpointing
        );
        let toml = format!("{BASE}[algorithm]\nactivation_checkpointing = true\n");
        let cfg = GrpoConfig::from_toml_str(&toml, &[]).unwrap();
        assert!(cfg.algorithm.activation_checkpointing);
        let set = ["algorithm.activation_checkpointing=true".to_string()];
        assert_eq!(GrpoConfig::from_toml_str(BASE, &set).unwrap(), cfg);
        let err = GrpoConfig::from_toml_str(
            &format!("{BASE}[algorithm]\nactivation_checkpointing = \"yes\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("activation_checkpointing"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_and_bad_values() {
        assert!(GrpoConfig::from_toml_str("", &[])
            .unwrap_err()
            .to_string()
            .contains("model.path"));
        let err = GrpoConfig::from_toml_str(BASE, &["rollout.group_size=1".into()]).unwrap_err();
        assert!(err.to_string().contains("group_size"), "{err}");
        assert!(GrpoConfig::from_toml_str(BASE, &["nokey".into()]).is_err());
    }

    /// `[model] dtype` takes `f32` (the default) or `bf16` and survives the saved config; any
    /// other value is an error naming the key and the value.
    #[test]
    fn model_dtype_is_parsed_and_checked() {
        assert_eq!(
            GrpoConfig::from_toml_str(BASE, &[]).unwrap().model.dtype,
            WeightDtype::F32
        );
        let cfg = GrpoConfig::from_toml_str(BASE, &["model.dtype=\"bf16\"".into()]).unwrap();
        assert_eq!(cfg.model.dtype, WeightDtype::Bf16);
        let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(back.model.dtype, WeightDtype::Bf16);
        let err = GrpoConfig::from_toml_str(BASE, &["model.dtype=\"fp8\"".into()]).unwrap_err();
        assert!(
            err.to_string().contains("dtype") && err.to_string().contains("fp8"),
            "{err}"
        );
    }

    /// `[rollout] kv_dtype` takes `f32` (the default) or `bf16` and survives the saved config;
    /// any other value is an error naming the key, the value and where it was set.
    #[test]
    fn rollout_kv_dtype_is_parsed_and_checked() {
        assert_eq!(
            GrpoConfig::from_toml_str(BASE, &[])
                .unwrap()
                .rollout
                .kv_dtype,
            KvDtype::F32
        );
        let cfg =
            GrpoConfig::from_toml_str(&format!("{BASE}[rollout]\nkv_dtype = \"bf16\"\n"), &[])
                .unwrap();
        assert_eq!(cfg.rollout.kv_dtype, KvDtype::Bf16);
        let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(back.rollout.kv_dtype, KvDtype::Bf16);
        let err = GrpoConfig::from_toml_str(BASE, &["rollout.kv_dtype=\"f16\"".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rollout.kv_dtype") && err.contains("f16") && err.contains("(--set)"),
            "{err}"
        );
        let text = format!("{BASE}[rollout]\nkv_dtype = \"fp8\"\n");
        let err = GrpoConfig::from_toml_str(&text, &[])
            .unwrap_err()
            .to_string();
        let line = text
            .lines()
            .position(|l| l.starts_with("kv_dtype"))
            .unwrap()
            + 1;
        assert!(
            err.contains("rollout.kv_dtype")
                && err.contains("fp8")
                && err.contains(&format!("line {line}")),
            "{err}"
        );
    }

    #[test]
    fn eval_and_device_values_are_checked() {
        let with = |extra: &str| GrpoConfig::from_toml_str(&format!("{BASE}{extra}"), &[]);
        let err = with("[eval]\nevery = 2\n").unwrap_err();
        assert!(err.to_string().contains("eval.file"), "{err}");
        let err = with("[eval]\nfile = \"e.jsonl\"\nsamples = 0\n").unwrap_err();
        assert!(err.to_string().contains("eval.samples"), "{err}");
        let e = with("[eval]\nfile = \"e.jsonl\"\nevery = 4\n")
            .unwrap()
            .eval
            .unwrap();
        let due: Vec<u64> = (0..=10).filter(|&s| e.due(s, 10)).collect();
        assert_eq!(due, [0, 4, 8, 10]);
        let m = |d: &str| ModelSection {
            device: d.into(),
            ..Default::default()
        };
        assert!(matches!(m("cpu").device(), Ok(candle_core::Device::Cpu)));
        for bad in ["gpu", "cuda:x"] {
            let err = m(bad).device().unwrap_err().to_string();
            assert!(err.contains("model.device") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn every_shipped_config_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for dir in [root.clone(), root.join("gpu")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Ablation, simulation and SFT configs are not GRPO configs.
                    let sft = path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("sft-"));
                    if text.contains("[model]") && !sft {
                        GrpoConfig::from_toml_str(&text, &[])
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                        n += 1;
                    }
                }
            }
        }
        assert!(n >= 8, "only {n} GRPO configs found");
    }

    #[test]
    fn shipped_sampler_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for (file, method) in [
            ("quickstart-mopps.toml", augur_sampler::Method::Mopps),
            ("quickstart-dps.toml", augur_sampler::Method::Dps),
        ] {
            let cfg = GrpoConfig::load(&dir.join(file), &[]).unwrap();
            assert_eq!(cfg.sampler.unwrap().sampler.method, method, "{file}");
        }
    }

    #[test]
    fn sampler_section_round_trips_and_names_unknown_keys() {
        assert_eq!(GrpoConfig::from_toml_str(BASE, &[]).unwrap().sampler, None);
        let text = format!(
            "{BASE}[sampler]\nmethod = \"mopps\"\ncandidate_ratio = 4\n[sampler.mopps]\nlambda = 0.5\n"
        );
        let cfg = GrpoConfig::from_toml_str(&text, &[]).unwrap();
        let s = cfg.sampler.clone().unwrap();
        assert_eq!(s.candidate_ratio, 4);
        assert_eq!(s.sampler.method, augur_sampler::Method::Mopps);
        let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(back, cfg);
        let err = GrpoConfig::from_toml_str(&text, &["sampler.methd=dps".into()]).unwrap_err();
        assert!(err.to_string().contains("methd"), "{err}");
        let cfg = GrpoConfig::from_toml_str(BASE, &["sampler.method=dps".into()]).unwrap();
        assert_eq!(cfg.sampler.unwrap().candidate_ratio, 8);
    }

    #[test]
    fn holdout_keys_parse_round_trip_and_reject_out_of_range_values() {
        let with = |extra: &str| {
            format!("{BASE}[sampler]\nmethod = \"gps\"\n{extra}[algorithm]\nsteps = 36\n")
        };
        let cfg =
            GrpoConfig::from_toml_str(&with("holdout_fraction = 0.4\nholdout_steps = 12\n"), &[])
                .unwrap();
        let s = cfg.sampler.clone().unwrap();
        assert_eq!((s.holdout_fraction, s.holdout_steps), (0.4, 12));
        let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(back, cfg);
        let h = super::super::selection::Holdout::of(&cfg).unwrap();
        assert_eq!((h.fraction, h.steps, h.seed), (0.4, 12, cfg.data.seed));
        // Absent keys: no hold-out, and the saved config does not mention them.
        let plain = GrpoConfig::from_toml_str(&with(""), &[]).unwrap();
        assert_eq!(super::super::selection::Holdout::of(&plain), None);
        assert!(!plain.to_toml().unwrap().contains("holdout"));
        for (extra, key) in [
            (
                "holdout_fraction = 1.0\nholdout_steps = 12\n",
                "holdout_fraction",
            ),
            (
                "holdout_fraction = -0.1\nholdout_steps = 12\n",
                "holdout_fraction",
            ),
            (
                "holdout_fraction = \"a\"\nholdout_steps = 12\n",
                "holdout_fraction",
            ),
            (
                "holdout_fraction = 0.4\nholdout_steps = -1\n",
                "holdout_steps",
            ),
            ("holdout_fraction = 0.4\n", "holdout_fraction"),
            ("holdout_steps = 5\n", "holdout_fraction"),
            (
                "holdout_fraction = 0.4\nholdout_steps = 36\n",
                "holdout_steps",
            ),
        ] {
            let err = GrpoConfig::from_toml_str(&with(extra), &[]).unwrap_err();
            assert!(
                err.to_string().contains(&format!("sampler.{key}")),
                "{extra}: {err}"
            );
        }
    }
}
