//! The GRPO loop, top to bottom: select prompts (uniform order or a `[sampler]`) → roll out G
//! completions each (adapters on) → score them → sampler observes the outcomes → group
//! advantages → policy update → (held-out evaluation) → metrics line → checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use augur_hub::{BackgroundPush, Hub};
use augur_reward::jsonl::{verifier_for, ScoreOptions, TaskKind};
use augur_reward::MathOptions;
use augur_rollout::{ChatTemplate, Engine, FinishReason};

use super::checkpoint::{
    check_complete, load_checkpoint, load_sampler_state, read_trainer_state, save_checkpoint,
    CheckpointParts, TrainerState,
};
use super::config::GrpoConfig;
use super::data::{fitting_prompts, load_prompts, Prompt};
use super::embed::cached_mean_pooled_hidden;
use super::eval::{eval_params, evaluate};
use super::rollout::{encode_prompt, Batch, Roller};
use super::selection::{select_and_roll, PromptSource};
use super::update::{policy_update, Rollout, UpdateReport};
use crate::advantage::{group_advantages, zero_variance_fraction};
use crate::metrics::{EvalMetrics, GrpoTrainMetrics, PromptMetrics, StepMetrics};
use crate::optim::FusedAdamW;
use crate::policy::{load_policy, Policy};
use crate::run_dir::{check_launch, ActiveRun, Launch};
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

/// Runs (or, with `launch.resume`, continues) the training described by `cfg` in the run folder
/// `checkpoint.dir` (see [`RunDir`] for what it refuses and keeps); with `logging.print` each
/// metrics line is also printed to stderr as [`StepMetrics::summary`].
pub fn run(cfg: &GrpoConfig, launch: &Launch) -> Result<RunSummary> {
    run_with(cfg, launch, &mut |line| {
        if cfg.logging.print {
            eprintln!("{}", line.summary());
        }
    })
}

/// [`run`], handing each metrics line to `on_line` as it is written (and printing nothing
/// itself), so a front end can draw progress its own way.
pub fn run_with(
    cfg: &GrpoConfig,
    launch: &Launch,
    on_line: &mut dyn FnMut(&StepMetrics),
) -> Result<RunSummary> {
    let resume = launch.resume.as_deref();
    check_launch(&cfg.checkpoint.dir, &cfg.metrics_path(), launch, |dir| {
        check_complete(dir)?;
        Ok(read_trainer_state(dir)?.step)
    })?;
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

    let config_toml = cfg.to_toml()?;
    let mut run = ActiveRun::open(
        &cfg.checkpoint.dir,
        &cfg.metrics_path(),
        launch,
        state.step,
        &config_toml,
        on_line,
    )?;

    let g = cfg.rollout.group_size;
    let mut engine = Engine::new(model, tok);
    engine.max_batch_rows = cfg.rollout.max_batch_rows;
    engine.kv_dtype = cfg.rollout.kv_dtype;
    if let (_, Some(why)) = cfg.rollout.kv_dtype.resolve(model.dtype(), model.device()) {
        eprintln!("warning: {why}");
    }
    let roller = Roller {
        cfg,
        params: cfg.rollout.sampling_params(),
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
    let run_eval = |step: u64| -> Result<Option<EvalMetrics>> {
        match (&eval_roller, &cfg.eval) {
            (Some(r), Some(e)) if e.due(step, cfg.algorithm.steps) => {
                Ok(Some(evaluate(r, e.seed)?))
            }
            _ => Ok(None),
        }
    };
    if resume.is_none() {
        if let Some(eval) = run_eval(0)? {
            run.emit(StepMetrics {
                step: 0,
                rollouts_used: Some(0),
                train: None,
                sampler: None,
                ds_rounds: None,
                eval: Some(eval),
                prompts: None,
            })?;
        }
    }
    if let PromptSource::Predictive { sampler, .. } = &mut source {
        if sampler.uses_embeddings() {
            // GPS: embeddings of every prompt by the frozen base, cached in the run folder.
            let rows = (0..prompts.len())
                .map(|i| roller.encode(i))
                .collect::<Result<Vec<_>>>()?;
            let t0 = Instant::now();
            let cache = run.root().join("prompt_embeddings.safetensors");
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
    while state.step < cfg.algorithm.steps {
        let t_step = Instant::now();
        // Prompts → rollouts → rewards (→ the sampler observes the outcomes).
        let seed = state.rollout_seed.wrapping_add(state.step);
        let selected = select_and_roll(&mut source, &roller, cfg, state.step, seed)?;
        let batch = &selected.batch;
        let rewards: Vec<f32> = batch.scores.iter().map(|s| s.reward).collect();

        // Advantages and update.
        let adv = group_advantages(&rewards, g, &cfg.algorithm.advantage)?;
        let zero_var = zero_variance_fraction(&rewards, g)?;
        let rollouts: Vec<Rollout> = batch
            .samples
            .iter()
            .zip(&adv)
            .map(|(s, &a)| Rollout {
                group: s.prompt_index,
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
        let train = train_metrics(batch, &up, zero_var, t_step.elapsed().as_secs_f64());
        let reward_mean = train.reward_mean;
        let line = StepMetrics {
            step: state.step,
            rollouts_used: Some(state.rollouts_used),
            train: Some(train),
            sampler: selected.telemetry.as_ref().map(Into::into),
            ds_rounds: selected.ds_rounds,
            eval: run_eval(state.step)?,
            prompts: Some(prompt_metrics(batch, g, selected.predicted.clone())),
        };
        run.emit(line)?;
        rewards_log.push(reward_mean);

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
            let dir = run.save_checkpoint(state.step, |dir| save_checkpoint(dir, &parts))?;
            if let Some(p) = &pusher {
                p.push(&dir);
            }
        }
    }
    for (dir, e) in pusher.map(BackgroundPush::finish).unwrap_or_default() {
        eprintln!(
            "warning: {} was not pushed ({e}); `augur push {} --repo REPO` sends it later",
            dir.display(),
            dir.display()
        );
    }
    Ok(RunSummary {
        steps: state.step,
        run_dir: run.root().to_path_buf(),
        final_checkpoint: run.final_checkpoint(),
        rewards: rewards_log,
    })
}

/// The per-prompt record of a step: each group's prompt id and successes out of `g`, with the
/// sampler's predictions when it made them.
fn prompt_metrics(batch: &Batch, g: usize, predicted: Option<Vec<f32>>) -> PromptMetrics {
    let outcomes = batch.outcomes(g);
    PromptMetrics {
        prompt_ids: outcomes.iter().map(|o| o.id).collect(),
        prompt_successes: outcomes.iter().map(|o| o.successes).collect(),
        sampler_predicted: predicted,
    }
}

/// The training part of a step's metrics line: what its rollouts scored and what the update did.
fn train_metrics(
    batch: &Batch,
    up: &UpdateReport,
    zero_variance_groups: f64,
    step_secs: f64,
) -> GrpoTrainMetrics {
    let (samples, scores) = (&batch.samples, &batch.scores);
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().map(|s| s.reward as f64).sum::<f64>() / n;
    let var = scores
        .iter()
        .map(|s| (s.reward as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let truncated = samples
        .iter()
        .filter(|s| s.finish_reason == FinishReason::Length)
        .count();
    GrpoTrainMetrics {
        accuracy: scores.iter().filter(|s| s.correct).count() as f64 / n,
        reward_mean: mean,
        reward_std: var.sqrt(),
        zero_variance_groups,
        response_len: samples.iter().map(|s| s.token_ids.len()).sum::<usize>() as f64 / n,
        truncated_frac: truncated as f64 / n,
        loss: up.loss,
        pg_loss: up.stats.pg_loss,
        clip_frac: up.stats.clip_frac,
        ratio_mean: up.stats.ratio_mean,
        approx_kl_old: up.stats.approx_kl_old,
        kl: up.stats.kl,
        entropy: up.stats.entropy,
        grad_norm: up.steps.last().map(|s| s.grad_norm),
        optimizer_steps: up.steps.len(),
        skipped: up.steps.iter().filter(|s| s.skipped).count(),
        lr: up.lr,
        gen_tokens_per_s: batch.gen.tokens_per_sec(),
        train_tokens_per_s: up.train_tokens as f64 / up.update_secs.max(1e-9),
        time_rollout_s: batch.rollout_secs,
        time_reward_s: batch.reward_secs,
        time_reference_s: up.reference_secs,
        time_update_s: up.update_secs,
        time_step_s: step_secs,
    }
}
