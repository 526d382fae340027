//! What a run writes to `metrics.jsonl`, one JSON object per line: the schema of both loops, in
//! one place. `augur grpo` writes [`StepMetrics`], `augur sft` writes [`SftStepMetrics`]; the
//! progress bar, the ablation reports and the scripts read them back (the Python scripts by these
//! key names).
//!
//! A line is the step number plus groups of fields that are there or not as a whole: a training
//! step's numbers, a sampler's telemetry, a held-out evaluation. The line logged before the first
//! step (`step` 0) holds only an evaluation. Groups are flattened into the one object, so the key
//! names are those of the fields below.
//!
//! Reading is lenient where older files differ: a value logged as `null` (a non-finite float, which
//! JSON cannot hold) reads as NaN, and a field added after a file was written reads as NaN (floats)
//! or its documented default. Each group is recognised by one key that every version wrote
//! (`accuracy` / `loss` for training, `eval_accuracy` / `eval_loss` for evaluations,
//! `sampler_effective_ratio` for sampler telemetry, `prompt_ids` for the per-prompt record).

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// One line of a GRPO run's `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct StepMetrics {
    /// Training steps done when the line was written (0: before the first).
    pub step: u64,
    /// Completions generated since the run began (every DS round counts); absent in lines that
    /// predate it.
    pub rollouts_used: Option<u64>,
    /// The step's rollouts, rewards and update (absent on the step-0 line).
    #[serde(flatten)]
    pub train: Option<GrpoTrainMetrics>,
    /// The prompt sampler's telemetry (runs with a `[sampler]`).
    #[serde(flatten)]
    pub sampler: Option<SamplerMetrics>,
    /// DAPO dynamic sampling: rollout rounds this step took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_rounds: Option<u32>,
    /// Held-out evaluation (steps where `[eval]` is due).
    #[serde(flatten)]
    pub eval: Option<EvalMetrics>,
    /// Which prompts the step trained on and how each went (absent in lines that predate it).
    #[serde(flatten)]
    pub prompts: Option<PromptMetrics>,
}

/// The prompts a GRPO step trained on, one entry per group in training order. With the
/// predictions, a sampler's calibration (predicted vs observed success rate) and its record on
/// each prompt's first appearance can be read back from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptMetrics {
    /// Prompt ids (0-based line numbers of the training file).
    pub prompt_ids: Vec<u32>,
    /// Completions judged correct, out of the group size, per prompt.
    pub prompt_successes: Vec<u32>,
    /// The predictor's expected success rate of each prompt before its rollout (predictive
    /// samplers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_predicted: Option<Vec<f32>>,
}

/// A GRPO step's rollouts, rewards and policy update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpoTrainMetrics {
    /// Fraction of the step's completions judged correct.
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    /// Mean and (population) standard deviation of the completions' rewards.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub reward_mean: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub reward_std: f64,
    /// Fraction of groups whose G rewards are all equal (zero advantage under GRPO).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub zero_variance_groups: f64,
    /// Mean completion length, tokens.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub response_len: f64,
    /// Fraction of completions cut at `max_new_tokens`.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub truncated_frac: f64,
    /// Loss of the update, and its policy-gradient part.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub pg_loss: f64,
    /// Fraction of tokens whose ratio was clipped; mean policy / rollout ratio.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub clip_frac: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub ratio_mean: f64,
    /// Approximate KL to the rollout policy.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub approx_kl_old: f64,
    /// KL to the reference (adapters off); `null` when `beta = 0` (not computed).
    #[serde(default)]
    pub kl: Option<f64>,
    /// Mean token entropy of the policy on the completions; `null` when not computed.
    #[serde(default)]
    pub entropy: Option<f64>,
    /// Gradient norm (before clipping) of the step's last optimizer step; `null` when none ran.
    #[serde(default)]
    pub grad_norm: Option<f64>,
    /// Optimizer steps the update took (one per mini-batch and PPO epoch; 1 in lines that
    /// predate mini-batches).
    #[serde(default = "one")]
    pub optimizer_steps: usize,
    /// Of those, steps skipped by the NaN/Inf guard.
    #[serde(default)]
    pub skipped: usize,
    /// Learning rate of the step.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Generated tokens per second of the rollout; trained tokens per second of the update.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub gen_tokens_per_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub train_tokens_per_s: f64,
    /// Wall time of the step's parts and of the whole step, seconds.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_rollout_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_reward_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_reference_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_update_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_step_s: f64,
}

/// A prompt sampler's numbers for one step ([`augur_sampler::StepTelemetry`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerMetrics {
    /// Fraction of rolled-out groups with 0 < successes < G.
    #[serde(rename = "sampler_effective_ratio", deserialize_with = "nan_if_null")]
    pub effective_ratio: f64,
    /// Spearman ρ of predicted vs observed success rates (`null` when undefined).
    #[serde(rename = "sampler_spearman", default)]
    pub spearman: Option<f64>,
    /// Brier score of the predictions (`null` without predictions).
    #[serde(rename = "sampler_brier", default)]
    pub brier: Option<f64>,
    /// Wall time of `select` and of the update in `observe`, microseconds.
    #[serde(rename = "sampler_select_us", default)]
    pub select_us: u64,
    #[serde(rename = "sampler_update_us", default)]
    pub update_us: u64,
}

impl From<&augur_sampler::StepTelemetry> for SamplerMetrics {
    fn from(t: &augur_sampler::StepTelemetry) -> Self {
        Self {
            effective_ratio: t.effective_ratio,
            spearman: t.spearman,
            brier: t.brier,
            select_us: t.select_us,
            update_us: t.update_us,
        }
    }
}

/// A held-out evaluation of a GRPO run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Fraction of completions judged correct (pass@1 when greedy, mean@k otherwise).
    #[serde(deserialize_with = "nan_if_null")]
    pub eval_accuracy: f64,
    /// Mean reward of the completions.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub eval_reward: f64,
    /// Held-out prompts evaluated.
    #[serde(default)]
    pub eval_prompts: usize,
    /// Wall time of the evaluation, seconds.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_eval_s: f64,
}

impl StepMetrics {
    /// The fraction of the step's groups that carried a learning signal: the sampler's
    /// effective ratio, else `1 - zero_variance_groups` (the same quantity for uniform steps).
    pub fn effective_ratio(&self) -> Option<f64> {
        self.sampler
            .as_ref()
            .map(|s| s.effective_ratio)
            .or_else(|| self.train.as_ref().map(|t| 1.0 - t.zero_variance_groups))
    }

    /// One human-readable line (what `logging.print` shows per step).
    pub fn summary(&self) -> String {
        let mut out = format!("step {:>4}", self.step);
        if let Some(t) = &self.train {
            out += &format!(
                "  reward {:.3}  acc {:.3}  zero-var {:.2}  len {:.1}  grad {:.3}  rollout {:.1}s  update {:.1}s",
                t.reward_mean,
                t.accuracy,
                t.zero_variance_groups,
                t.response_len,
                t.grad_norm.unwrap_or(f64::NAN),
                t.time_rollout_s,
                t.time_update_s,
            );
        }
        if let Some(s) = &self.sampler {
            out += &format!("  eff {:.2}", s.effective_ratio);
        }
        if let Some(e) = &self.eval {
            out += &format!("  eval acc {:.3} ({:.1}s)", e.eval_accuracy, e.time_eval_s);
        }
        out
    }
}

/// One line of an SFT run's `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct SftStepMetrics {
    /// Training steps done when the line was written (0: before the first).
    pub step: u64,
    /// Examples trained on since the run began.
    pub samples_trained: u64,
    /// The step's selection and update (absent on the step-0 line).
    #[serde(flatten)]
    pub train: Option<SftTrainMetrics>,
    /// Held-out loss (steps where `[eval]` is due).
    #[serde(flatten)]
    pub eval: Option<SftEvalMetrics>,
}

/// An SFT step: which examples were chosen, the update, and the time split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftTrainMetrics {
    /// Mean token cross-entropy over the step's completion tokens.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Gradient norm before clipping.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Whether the NaN/Inf guard skipped the optimizer step.
    #[serde(default)]
    pub skipped: bool,
    /// Examples trained on (K) out of the `candidates` scored (N).
    #[serde(default)]
    pub samples: usize,
    #[serde(default)]
    pub candidates: usize,
    /// The chosen examples' indices in the training file (0-based, file order).
    #[serde(default)]
    pub selected: Vec<usize>,
    /// Completion tokens the loss was taken over.
    #[serde(default)]
    pub target_tokens: usize,
    /// Of the chosen examples, those cut at `data.max_seq_len`.
    #[serde(default)]
    pub truncated: usize,
    /// Input tokens per second of the forward/backward passes.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub train_tokens_per_s: f64,
    /// Wall time of scoring the candidates, of training on the chosen, of the step; the share of
    /// the step spent scoring.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_score_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_train_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_step_s: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub score_share: f64,
    /// Completion tokens trained on since the run began.
    #[serde(default)]
    pub tokens_trained: u64,
    /// What the selection rule measured (none for `uniform`).
    #[serde(flatten)]
    pub selection: SelectionMetrics,
}

/// The scores behind an SFT step's choice (all absent for `uniform`, which scores nothing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SelectionMetrics {
    /// Mean score of the chosen examples and of all candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_score_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_score_mean: Option<f64>,
    /// UDS: mean intra-example (nuclear norm) and inter-example (sketch distance) terms of
    /// the chosen, and the sketch buffer's fill after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uds_intra_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uds_inter_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uds_buffer: Option<usize>,
}

/// A held-out evaluation of an SFT run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftEvalMetrics {
    /// Mean token loss over the held-out examples' completions.
    #[serde(deserialize_with = "nan_if_null")]
    pub eval_loss: f64,
    #[serde(default)]
    pub eval_examples: usize,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub time_eval_s: f64,
}

impl SftStepMetrics {
    /// One human-readable line (what `logging.print` shows per step).
    pub fn summary(&self) -> String {
        let mut out = format!("step {:>4}", self.step);
        if let Some(t) = &self.train {
            out += &format!(
                "  loss {:.4}  grad {:.3}  lr {:.2e}  {:.0} tok/s  score {:.2}s  train {:.2}s",
                t.loss, t.grad_norm, t.lr, t.train_tokens_per_s, t.time_score_s, t.time_train_s,
            );
        }
        if let Some(e) = &self.eval {
            out += &format!("  eval loss {:.4} ({:.1}s)", e.eval_loss, e.time_eval_s);
        }
        out
    }
}

/// Reads a `metrics.jsonl` in step order; no file means no steps yet. Lines with the same `step`
/// are merged first (later keys win), so an evaluation logged on a line of its own lands on the
/// step it belongs to. A line that is not a JSON object with an integer `step`, or does not fit
/// `T`, is an error naming the file and line.
pub fn read_metrics<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: path.into(),
                source,
            })
        }
    };
    let bad =
        |line: usize, what: String| Error::Metrics(format!("{}:{line}: {what}", path.display()));
    let mut by_step: BTreeMap<u64, (usize, Map<String, Value>)> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let obj: Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| bad(i + 1, format!("not a JSON object ({e})")))?;
        let step = obj
            .get("step")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(i + 1, "no integer \"step\"".into()))?;
        let entry = by_step.entry(step).or_insert((i + 1, Map::new()));
        entry.1.extend(obj);
    }
    by_step
        .into_values()
        .map(|(line, obj)| {
            serde_json::from_value(Value::Object(obj)).map_err(|e| bad(line, e.to_string()))
        })
        .collect()
}

/// The keys outside the groups of a GRPO line.
#[derive(Deserialize)]
struct GrpoHead {
    step: u64,
    #[serde(default)]
    rollouts_used: Option<u64>,
    #[serde(default)]
    ds_rounds: Option<u32>,
}

/// The keys outside the groups of an SFT line.
#[derive(Deserialize)]
struct SftHead {
    step: u64,
    #[serde(default)]
    samples_trained: u64,
}

/// Groups are read strictly once their key is there: a malformed value is an error, not a
/// silently missing group (what `#[serde(flatten)] Option<_>` would make of it).
impl TryFrom<Map<String, Value>> for StepMetrics {
    type Error = serde_json::Error;

    fn try_from(obj: Map<String, Value>) -> serde_json::Result<Self> {
        let obj = Value::Object(obj);
        let head = GrpoHead::deserialize(&obj)?;
        Ok(Self {
            step: head.step,
            rollouts_used: head.rollouts_used,
            train: group(&obj, "accuracy")?,
            sampler: group(&obj, "sampler_effective_ratio")?,
            ds_rounds: head.ds_rounds,
            eval: group(&obj, "eval_accuracy")?,
            prompts: group(&obj, "prompt_ids")?,
        })
    }
}

impl TryFrom<Map<String, Value>> for SftStepMetrics {
    type Error = serde_json::Error;

    fn try_from(obj: Map<String, Value>) -> serde_json::Result<Self> {
        let obj = Value::Object(obj);
        let head = SftHead::deserialize(&obj)?;
        Ok(Self {
            step: head.step,
            samples_trained: head.samples_trained,
            train: group(&obj, "loss")?,
            eval: group(&obj, "eval_loss")?,
        })
    }
}

/// The group `T` of the line `obj` when its key `key` is there.
fn group<T: DeserializeOwned>(obj: &Value, key: &str) -> serde_json::Result<Option<T>> {
    match obj.get(key) {
        None => Ok(None),
        Some(_) => T::deserialize(obj).map(Some),
    }
}

fn nan() -> f64 {
    f64::NAN
}

fn one() -> usize {
    1
}

/// A float that JSON holds as `null` when it was not finite.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `augur grpo` / `augur sft` wrote them before the schema was typed (the quickstart
    /// and an SFT UDS run); `kl` and `entropy` were not computed, so JSON holds `null`.
    const GRPO_EVAL: &str = r#"{"eval_accuracy":0.4,"eval_prompts":50,"eval_reward":0.4,"rollouts_used":0,"step":0,"time_eval_s":22.536551066}"#;
    const GRPO_STEP: &str = r#"{"accuracy":0.0625,"approx_kl_old":0.000106207936965633,"clip_frac":0.0,"entropy":null,"gen_tokens_per_s":103.73152511880672,"grad_norm":0.11937370737736865,"kl":null,"loss":8.924398571252823e-7,"lr":0.0003,"optimizer_steps":1,"pg_loss":8.931211359194035e-7,"ratio_mean":0.999893799362583,"response_len":26.875,"reward_mean":0.0625,"reward_std":0.24206145913796356,"rollouts_used":32,"skipped":0,"step":1,"time_reference_s":2.1e-7,"time_reward_s":0.000224394,"time_rollout_s":8.291073804,"time_step_s":41.889689472,"time_update_s":33.597980473,"train_tokens_per_s":67.2659477796941,"truncated_frac":0.59375,"zero_variance_groups":0.75}"#;
    const GRPO_SAMPLER: &str = r#"{"accuracy":0.5,"reward_mean":0.5,"rollouts_used":64,"step":2,"zero_variance_groups":0.5,"sampler_effective_ratio":0.75,"sampler_spearman":null,"sampler_brier":0.125,"sampler_select_us":12,"sampler_update_us":34,"ds_rounds":2,"eval_accuracy":0.25}"#;
    const SFT_STEP: &str = r#"{"candidate_score_mean":340813.5901952733,"candidates":8,"eval_examples":2,"eval_loss":2.0328123910086497,"grad_norm":0.32847958784297765,"loss":1.3761296272277832,"lr":0.00015,"samples":2,"samples_trained":4,"score_share":0.4975369255706966,"select_score_mean":451538.75626291404,"selected":[1546,1363],"skipped":false,"step":2,"target_tokens":445,"time_eval_s":1.6265631040000001,"time_score_s":13.848679899,"time_step_s":27.834476573,"time_train_s":13.985795963,"tokens_trained":805,"train_tokens_per_s":54.76985378783479,"truncated":2,"uds_buffer":4,"uds_inter_mean":113535086.52448454,"uds_intra_mean":167701.03995170267}"#;
    const SFT_UNIFORM: &str = r#"{"candidates":4,"grad_norm":0.5,"loss":1.5,"lr":0.0003,"samples":2,"samples_trained":2,"score_share":0.0,"selected":[3,1],"skipped":false,"step":1,"target_tokens":40,"time_score_s":0.0,"time_step_s":2.0,"time_train_s":2.0,"tokens_trained":40,"train_tokens_per_s":20.0,"truncated":0}"#;

    fn value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    /// Reading a line and writing it again gives the same JSON object (key order aside).
    fn round_trips<T: DeserializeOwned + Serialize>(line: &str) -> T {
        let m: T = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), value(line), "{line}");
        m
    }

    #[test]
    fn grpo_lines_of_the_untyped_format_load_and_write_back_unchanged() {
        let e: StepMetrics = round_trips(GRPO_EVAL);
        assert_eq!((e.step, e.rollouts_used), (0, Some(0)));
        assert!(e.train.is_none() && e.sampler.is_none());
        assert_eq!(e.eval.as_ref().unwrap().eval_prompts, 50);
        assert_eq!(e.effective_ratio(), None);

        let s: StepMetrics = round_trips(GRPO_STEP);
        let t = s.train.as_ref().unwrap();
        assert_eq!(t.reward_mean, 0.0625);
        assert_eq!(t.grad_norm, Some(0.11937370737736865));
        assert_eq!((t.kl, t.entropy), (None, None));
        assert_eq!((t.optimizer_steps, t.skipped), (1, 0));
        assert!(s.eval.is_none() && s.sampler.is_none() && s.ds_rounds.is_none());
        assert_eq!(s.effective_ratio(), Some(0.25));
        assert_eq!(
            s.summary(),
            "step    1  reward 0.062  acc 0.062  zero-var 0.75  len 26.9  grad 0.119  rollout 8.3s  update 33.6s"
        );

        let m: StepMetrics = serde_json::from_str(GRPO_SAMPLER).unwrap();
        let sm = m.sampler.as_ref().unwrap();
        assert_eq!((sm.spearman, sm.brier), (None, Some(0.125)));
        assert_eq!((sm.select_us, sm.update_us, m.ds_rounds), (12, 34, Some(2)));
        // The sampler's ratio wins over 1 - zero_variance_groups.
        assert_eq!(m.effective_ratio(), Some(0.75));
        assert!(
            m.summary().ends_with("  eff 0.75  eval acc 0.250 (NaNs)"),
            "{}",
            m.summary()
        );
    }

    #[test]
    fn lines_that_predate_a_field_read_its_default() {
        // The first format had no `optimizer_steps` (one optimizer step per update).
        let mut v = value(GRPO_STEP);
        v.as_object_mut().unwrap().remove("optimizer_steps");
        let m: StepMetrics = serde_json::from_value(v).unwrap();
        assert_eq!(m.train.unwrap().optimizer_steps, 1);
        // A wrong type is an error, not a silently missing group.
        let mut v = value(GRPO_STEP);
        v["skipped"] = "no".into();
        let err = serde_json::from_value::<StepMetrics>(v).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn sft_lines_load_and_write_back_unchanged() {
        let m: SftStepMetrics = round_trips(SFT_STEP);
        let t = m.train.as_ref().unwrap();
        assert_eq!(t.selected, vec![1546, 1363]);
        assert_eq!(t.selection.uds_buffer, Some(4));
        assert_eq!(m.eval.as_ref().unwrap().eval_loss, 2.0328123910086497);
        let u: SftStepMetrics = round_trips(SFT_UNIFORM);
        assert_eq!(u.train.unwrap().selection, SelectionMetrics::default());
        assert!(u.eval.is_none());
        assert_eq!(
            m.summary(),
            "step    2  loss 1.3761  grad 0.328  lr 1.50e-4  55 tok/s  score 13.85s  train 13.99s  eval loss 2.0328 (1.6s)"
        );
    }

    #[test]
    fn read_merges_lines_of_a_step_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        assert!(read_metrics::<StepMetrics>(&p).unwrap().is_empty());
        let eval = r#"{"step":1,"eval_accuracy":0.5}"#;
        std::fs::write(&p, format!("{GRPO_EVAL}\n{GRPO_STEP}\n\n{eval}\n")).unwrap();
        let ms: Vec<StepMetrics> = read_metrics(&p).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].eval.as_ref().unwrap().eval_accuracy, 0.5);
        assert_eq!(ms[1].train.as_ref().unwrap().accuracy, 0.0625);

        std::fs::write(&p, format!("{GRPO_STEP}\n{{\"step\":\"x\"}}\n")).unwrap();
        let err = read_metrics::<StepMetrics>(&p).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl:2: no integer \"step\""),
            "{err}"
        );
        std::fs::write(&p, "{\"step\":3,\"loss\":\"high\"}\n").unwrap();
        let err = read_metrics::<SftStepMetrics>(&p).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1:"), "{err}");
    }
}
