//! The GRPO loop, top to bottom: select prompts (uniform order or a `[sampler]`) → roll out G
//! completions each (adapters on) → score them → sampler observes the outcomes → group
//! advantages → policy update → (held-out evaluation) → metrics line → checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use augur_hub::{BackgroundPush, Hub};
use augur_reward::jsonl::{verifier_for, ScoreOptions, TaskKind};
use augur_reward::MathOptions;
use augur_rollout::{ChatTemplate, Engine, FinishReason};
use augur_sampler::{SamplerError, StepTelemetry};
use serde_json::{json, Value};

use super::checkpoint::{
    check_complete, load_checkpoint, load_sampler_state, read_trainer_state, save_checkpoint,
    CheckpointParts, TrainerState,
};
use super::config::GrpoConfig;
use super::data::{fitting_prompts, load_prompts, Prompt};
use super::embed::cached_mean_pooled_hidden;
use super::eval::{eval_params, evaluate};
use super::rollout::{encode_prompt, train_params, Batch, Roller};
use super::selection::{candidate_pool, telemetry_json, PromptSource};
use super::update::{policy_update, Rollout};
use crate::advantage::{group_advantages, zero_variance_fraction};
use crate::optim::FusedAdamW;
use crate::policy::{load_policy, Policy};
use crate::run_dir::{Launch, RunDir};
use crate::schedule::LrSchedule;
use crate::{Error, Result};

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: u64,
    pub run_dir: PathBuf,
    pub final_checkpoint: PathBuf,
    /// Mean reward of each step run by this call.
    pub rewards: Vec<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// Runs (or, with `launch.resume`, continues) the training described by `cfg` in the run folder
/// `checkpoint.dir` (see [`RunDir`] for what it refuses and keeps); with `logging.print` each
/// metrics line is also printed to stderr as [`summary_line`].
pub fn run(cfg: &GrpoConfig, launch: &Launch) -> Result<RunSummary> {
    run_with(cfg, launch, &mut |line| {
        if cfg.logging.print {
            eprintln!("{}", summary_line(line));
        }
    })
}

/// [`run`], handing each metrics line to `on_line` as it is written (and printing nothing
/// itself), so a front end can draw progress its own way.
pub fn run_with(
    cfg: &GrpoConfig,
    launch: &Launch,
    on_line: &mut dyn FnMut(&Value),
) -> Result<RunSummary> {
    let resume = launch.resume.as_deref();
    // The checkpoint and the run folder are checked before the (slow) model load.
    let resumed_step = match resume {
        Some(dir) => {
            check_complete(dir)?;
            Some(read_trainer_state(dir)?.step)
        }
        None => None,
    };
    RunDir::check(
        &cfg.checkpoint.dir,
        &cfg.metrics_path(),
        resumed_step.zip(resume),
        launch.overwrite,
    )?;
    // A push target that cannot be written to stops the run before its folder is touched.
    let pusher = match &cfg.hub {
        Some(h) => Some(
            BackgroundPush::start(Hub::from_env(), &h.push_to, h.private, &h.revision)
                .map_err(|e| Error::Config(format!("hub.push_to: {e}")))?,
        ),
        None => None,
    };
    let task: TaskKind = cfg.reward.task.parse().map_err(Error::Config)?;
    let Policy { loaded, peft } = load_policy(&cfg.model, &cfg.lora)?;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let vars = model.lora_vars();
    let mut opt = FusedAdamW::new(vars.clone(), cfg.optimizer.adamw.clone())?;
    let schedule = LrSchedule::new(cfg.schedule())?;

    let spec = cfg.prompt_spec()?;
    let score_opts = ScoreOptions {
        math: MathOptions {
            last_number_fallback: cfg.reward.last_number_fallback,
        },
        ..Default::default()
    };
    let verifier = verifier_for(task, &score_opts).map_err(|e| Error::Config(e.to_string()))?;
    let template = ChatTemplate::new(
        tok.chat_template.as_deref(),
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?;
    // Prompts that leave no room for their completions are found here, not when drawn.
    let load = |path: &Path, max_new_tokens: usize, keep: usize| -> Result<Vec<Prompt>> {
        let mut all = load_prompts(path, &spec)?;
        if keep > 0 {
            all.truncate(keep);
        }
        let total = all.len();
        let tokens = |p: &Prompt| Ok(encode_prompt(cfg, &template, tok, p)?.len());
        let context = model.max_positions();
        let (kept, skipped) = fitting_prompts(
            path,
            all,
            tokens,
            context,
            max_new_tokens,
            cfg.data.too_long,
        )?;
        if let (Some(first), true) = (skipped.first(), cfg.logging.print) {
            eprintln!(
                "data: {}: skipped {} of {total} prompts too long for the context of {context} \
                 with max_new_tokens {max_new_tokens} (first: {})",
                path.display(),
                skipped.len(),
                first.origin()
            );
        }
        Ok(kept)
    };
    let prompts = load(&cfg.data.train, cfg.rollout.max_new_tokens, 0)?;
    let eval_prompts: Vec<Prompt> = match &cfg.eval {
        Some(e) => load(
            &e.file,
            e.max_new_tokens.unwrap_or(cfg.rollout.max_new_tokens),
            e.max_prompts,
        )?,
        None => Vec::new(),
    };

    let mut state = TrainerState {
        step: 0,
        data_cursor: 0,
        data_seed: cfg.data.seed,
        rollout_seed: cfg.rollout.seed,
        rollouts_used: 0,
    };
    if let Some(dir) = resume {
        state = load_checkpoint(dir, &vars, &mut opt)?;
    }
    let mut source = PromptSource::new(cfg, prompts.len(), state.data_cursor)?;
    if let Some(dir) = resume {
        match (load_sampler_state(dir)?, cfg.sampler.is_some()) {
            (Some(bytes), true) => source.load_state_json(&bytes)?,
            (None, false) => {}
            (Some(_), false) => {
                return Err(Error::Checkpoint(format!(
                    "{}: the checkpoint has a sampler state but the config has no [sampler]",
                    dir.display()
                )))
            }
            (None, true) => {
                return Err(Error::Checkpoint(format!(
                    "{}: the config has a [sampler] but the checkpoint has no sampler.json",
                    dir.display()
                )))
            }
        }
    }

    let folder = RunDir::open(
        &cfg.checkpoint.dir,
        &cfg.metrics_path(),
        resume.map(|dir| (state.step, dir)),
        launch.overwrite,
    )?;
    let run_dir = cfg.checkpoint.dir.clone();
    let config_toml = cfg.to_toml()?;
    folder.write_config(&config_toml)?;
    let metrics_path = cfg.metrics_path();
    let mut metrics = folder.append_metrics()?;
    let mut emit = |line: Value| -> Result<()> {
        writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
        on_line(&line);
        Ok(())
    };

    let g = cfg.rollout.group_size;
    let mut engine = Engine::new(model, tok);
    engine.max_batch_rows = cfg.rollout.max_batch_rows;
    let roller = Roller {
        cfg,
        params: train_params(cfg),
        engine: &engine,
        tok,
        template: &template,
        prompts: &prompts,
        verifier: verifier.as_ref(),
    };
    let eval_roller = cfg.eval.as_ref().map(|e| Roller {
        params: eval_params(cfg, e),
        prompts: &eval_prompts,
        ..roller
    });
    let run_eval = |step: u64| -> Result<Option<Value>> {
        match (&eval_roller, &cfg.eval) {
            (Some(r), Some(e)) if e.due(step, cfg.algorithm.steps) => {
                Ok(Some(evaluate(r, e.seed)?.to_json()))
            }
            _ => Ok(None),
        }
    };
    if resume.is_none() {
        if let Some(fields) = run_eval(0)? {
            let mut line = json!({"step": 0, "rollouts_used": 0});
            merge(&mut line, fields);
            emit(line)?;
        }
    }
    if let PromptSource::Predictive { sampler, .. } = &mut source {
        if sampler.uses_embeddings() {
            // GPS: embeddings of every prompt by the frozen base, cached in the run folder.
            let rows = (0..prompts.len())
                .map(|i| roller.encode(i))
                .collect::<Result<Vec<_>>>()?;
            let t0 = Instant::now();
            let cache = run_dir.join("prompt_embeddings.safetensors");
            let (data, cached) = cached_mean_pooled_hidden(
                &cache,
                &cfg.model.path.display().to_string(),
                model,
                &rows,
                tok.pad_id,
                cfg.algorithm.micro_batch_size,
            )?;
            let ids: Vec<u32> = (0..prompts.len() as u32).collect();
            sampler.set_embeddings(&ids, &data)?;
            if cfg.logging.print {
                eprintln!(
                    "sampler: {} {} prompt embeddings in {:.1}s",
                    if cached { "loaded" } else { "computed" },
                    rows.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    let mut rewards_log = Vec::new();
    let mut last_ckpt = None;
    while state.step < cfg.algorithm.steps {
        let t_step = Instant::now();
        // Prompts → rollouts → rewards (→ the sampler observes the outcomes).
        let seed = state.rollout_seed.wrapping_add(state.step);
        let selected = select_and_roll(&mut source, &roller, cfg, state.step, seed)?;
        let batch = &selected.batch;
        let (samples, scores) = (&batch.samples, &batch.scores);
        let rewards: Vec<f32> = scores.iter().map(|s| s.reward).collect();

        // Advantages and update.
        let adv = group_advantages(&rewards, g, &cfg.algorithm.advantage)?;
        let zero_var = zero_variance_fraction(&rewards, g)?;
        let rollouts: Vec<Rollout> = samples
            .iter()
            .zip(&adv)
            .map(|(s, &a)| Rollout {
                prompt_ids: batch.prompt_ids[s.prompt_index].clone(),
                completion: s.token_ids.clone(),
                old_logp: s.logprobs.clone(),
                advantage: a,
                truncated: s.finish_reason == FinishReason::Length,
            })
            .filter(|r| !r.completion.is_empty())
            .collect();
        let up = policy_update(
            model,
            &mut opt,
            &schedule,
            &rollouts,
            &cfg.algorithm,
            tok.pad_id,
        )?;

        state.step += 1;
        state.data_cursor = source.cursor();
        state.rollouts_used += selected.rollouts;
        let n = rewards.len().max(1) as f64;
        let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / n;
        let std = (rewards
            .iter()
            .map(|&r| (r as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let acc = scores.iter().filter(|s| s.correct).count() as f64 / n;
        let resp_len = samples.iter().map(|s| s.token_ids.len()).sum::<usize>() as f64 / n;
        let truncated = samples
            .iter()
            .filter(|s| s.finish_reason == FinishReason::Length)
            .count() as f64
            / n;
        let last = up.steps.last();
        let mut line = json!({
            "step": state.step,
            "reward_mean": mean,
            "reward_std": std,
            "accuracy": acc,
            "zero_variance_groups": zero_var,
            "response_len": resp_len,
            "truncated_frac": truncated,
            "loss": up.loss,
            "pg_loss": up.stats.pg_loss,
            "clip_frac": up.stats.clip_frac,
            "ratio_mean": up.stats.ratio_mean,
            "approx_kl_old": up.stats.approx_kl_old,
            "kl": up.stats.kl,
            "entropy": up.stats.entropy,
            "grad_norm": last.map(|s| s.grad_norm),
            "optimizer_steps": up.steps.len(),
            "skipped": up.steps.iter().filter(|s| s.skipped).count(),
            "lr": up.lr,
            "gen_tokens_per_s": batch.gen.tokens_per_sec(),
            "train_tokens_per_s": up.train_tokens as f64 / up.update_secs.max(1e-9),
            "time_rollout_s": batch.rollout_secs,
            "time_reward_s": batch.reward_secs,
            "time_reference_s": up.reference_secs,
            "time_update_s": up.update_secs,
            "time_step_s": t_step.elapsed().as_secs_f64(),
            "rollouts_used": state.rollouts_used,
        });
        if let Some(t) = &selected.telemetry {
            merge(&mut line, telemetry_json(t));
        }
        if let Some(r) = selected.ds_rounds {
            merge(&mut line, json!({ "ds_rounds": r }));
        }
        let outcomes = batch.outcomes(cfg.rollout.group_size);
        merge(
            &mut line,
            json!({
                "prompt_ids": outcomes.iter().map(|o| o.id).collect::<Vec<_>>(),
                "prompt_successes": outcomes.iter().map(|o| o.successes).collect::<Vec<_>>(),
            }),
        );
        if let Some(p) = &selected.predicted {
            merge(&mut line, json!({ "sampler_predicted": p }));
        }
        if let Some(fields) = run_eval(state.step)? {
            merge(&mut line, fields);
        }
        emit(line)?;
        rewards_log.push(mean);

        let every = cfg.checkpoint.every;
        if (every > 0 && state.step.is_multiple_of(every)) || state.step == cfg.algorithm.steps {
            let sampler_json = source.state_json()?;
            let parts = CheckpointParts {
                peft: &peft,
                vars: &vars,
                optimizer: &opt,
                state: &state,
                config_toml: &config_toml,
                sampler: sampler_json.as_deref(),
            };
            let dir = folder.save_checkpoint(state.step, |dir| save_checkpoint(dir, &parts))?;
            if let Some(p) = &pusher {
                p.push(&dir);
            }
            last_ckpt = Some(dir);
        }
    }
    for (dir, e) in pusher.map(BackgroundPush::finish).unwrap_or_default() {
        eprintln!(
            "warning: {} was not pushed ({e}); `augur push {} --repo REPO` sends it later",
            dir.display(),
            dir.display()
        );
    }
    let final_checkpoint =
        last_ckpt.unwrap_or_else(|| resume.map(Path::to_path_buf).unwrap_or_default());
    Ok(RunSummary {
        steps: state.step,
        run_dir,
        final_checkpoint,
        rewards: rewards_log,
    })
}

/// The groups a step trains on, and what choosing them cost.
struct Selected {
    batch: Batch,
    /// Completions generated this step (DS: every round's).
    rollouts: u64,
    telemetry: Option<StepTelemetry>,
    ds_rounds: Option<u32>,
    /// The predictor's expected success rate of each trained prompt, in `batch.idx` order
    /// (predictive samplers only): with the logged successes, the calibration of the run.
    predicted: Option<Vec<f32>>,
}

/// Chooses this step's prompts with `source`, rolls them out and scores them; a sampler then
/// observes the per-prompt outcomes (successes = completions judged correct, out of G).
fn select_and_roll(
    source: &mut PromptSource,
    roller: &Roller,
    cfg: &GrpoConfig,
    step: u64,
    seed: u64,
) -> Result<Selected> {
    let (b, g) = (cfg.rollout.prompts_per_step, cfg.rollout.group_size);
    let n = roller.prompts.len();
    match source {
        PromptSource::Uniform(order) => {
            let batch = roller.roll(&order.next_batch(b), seed)?;
            let rollouts = batch.samples.len() as u64;
            Ok(Selected {
                batch,
                rollouts,
                telemetry: None,
                ds_rounds: None,
                predicted: None,
            })
        }
        PromptSource::Predictive { sampler, ratio } => {
            let pool = candidate_pool(n, *ratio, b, cfg.data.seed, step);
            let sel = sampler.select(&pool, b)?;
            let idx: Vec<usize> = sel.ids.iter().map(|&i| i as usize).collect();
            let batch = roller.roll(&idx, seed)?;
            let telemetry = sampler.observe(&batch.outcomes(g))?;
            let rollouts = batch.samples.len() as u64;
            Ok(Selected {
                batch,
                rollouts,
                telemetry: Some(telemetry),
                ds_rounds: None,
                predicted: Some(sel.predicted),
            })
        }
        PromptSource::Dynamic { ds, ratio } => {
            let pool = candidate_pool(n, *ratio, b, cfg.data.seed, step);
            let mut rounds: Vec<Batch> = Vec::new();
            let mut failure = None;
            let res = ds.step(&pool, b, |ids| {
                let idx: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                // Round 0 samples with the same seed as a uniform step; later rounds differ.
                let round_seed = seed.wrapping_add((rounds.len() as u64) << 32);
                match roller.roll(&idx, round_seed) {
                    Ok(batch) => {
                        let outs = batch.outcomes(g);
                        rounds.push(batch);
                        Ok(outs)
                    }
                    Err(e) => {
                        failure = Some(e);
                        Err(SamplerError::InvalidState("ds: rollout failed".into()))
                    }
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
            let res = res?;
            // Train on the kept groups (0 < s < k); when max_rounds ran out before B were
            // found, fill up with the other groups in rollout order (zero advantage under GRPO).
            let kept: std::collections::HashSet<u32> = res.kept.iter().map(|o| o.id).collect();
            let mut batch = Batch::default();
            for r in &rounds {
                let keep: Vec<usize> = (0..r.idx.len())
                    .filter(|&p| kept.contains(&(r.idx[p] as u32)))
                    .collect();
                batch.extend_groups(r, &keep, g);
            }
            for r in &rounds {
                let room = b.saturating_sub(batch.idx.len());
                let fill: Vec<usize> = (0..r.idx.len())
                    .filter(|&p| !kept.contains(&(r.idx[p] as u32)))
                    .take(room)
                    .collect();
                batch.extend_groups(r, &fill, g);
                batch.add_costs(r);
            }
            let rollouts = rounds.iter().map(|r| r.samples.len() as u64).sum();
            Ok(Selected {
                batch,
                rollouts,
                telemetry: Some(res.telemetry),
                ds_rounds: Some(res.rounds),
                predicted: None,
            })
        }
    }
}

/// Opens the metrics log for appending. A fresh run (`kept_steps` None) starts a fresh log; a
/// resumed one keeps only the lines of the steps its checkpoint covers, so steps logged after
/// the checkpoint by a crashed run are not duplicated.
pub(crate) fn open_metrics(path: &Path, kept_steps: Option<u64>) -> Result<std::fs::File> {
    let kept: String = match kept_steps {
        None => String::new(),
        Some(last) => std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= last)
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    super::checkpoint::write_atomic(path, kept.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(path))
}

/// Adds the fields of the object `extra` to the object `line`.
pub(crate) fn merge(line: &mut Value, extra: Value) {
    if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), extra) {
        obj.extend(extra);
    }
}

/// One human-readable line for a metrics line (what `logging.print` shows per step).
pub fn summary_line(line: &Value) -> String {
    let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
    let step = line["step"].as_u64().unwrap_or(0);
    let mut out = match line.get("reward_mean") {
        None => format!("step {step:>4}"),
        Some(_) => format!(
            "step {step:>4}  reward {:.3}  acc {:.3}  zero-var {:.2}  len {:.1}  grad {:.3}  rollout {:.1}s  update {:.1}s",
            f("reward_mean"),
            f("accuracy"),
            f("zero_variance_groups"),
            f("response_len"),
            f("grad_norm"),
            f("time_rollout_s"),
            f("time_update_s"),
        ),
    };
    if line.get("sampler_effective_ratio").is_some() {
        out += &format!("  eff {:.2}", f("sampler_effective_ratio"));
    }
    if line.get("eval_accuracy").is_some() {
        out += &format!(
            "  eval acc {:.3} ({:.1}s)",
            f("eval_accuracy"),
            f("time_eval_s")
        );
    }
    out
}
