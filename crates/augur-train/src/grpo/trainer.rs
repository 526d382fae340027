//! The GRPO loop, top to bottom: sample prompts → roll out G completions each (adapters on) →
//! score them → group advantages → policy update → metrics line → checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use augur_model::{load_model, BuildOptions, LoraConfig, Target};
use augur_reward::jsonl::{verifier_for, ScoreOptions, TaskKind};
use augur_reward::{MathOptions, Reference};
use augur_rollout::{ChatTemplate, Engine, FinishReason, Message, SamplingParams};
use serde_json::json;

use super::checkpoint::{
    load_checkpoint, save_checkpoint, CheckpointParts, PeftConfig, TrainerState,
};
use super::config::GrpoConfig;
use super::data::{load_prompts, PromptSampler};
use super::update::{policy_update, Rollout};
use crate::advantage::{group_advantages, zero_variance_fraction};
use crate::optim::FusedAdamW;
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

/// Runs (or, with `resume`, continues) the training described by `cfg`.
pub fn run(cfg: &GrpoConfig, resume: Option<&Path>) -> Result<RunSummary> {
    let task: TaskKind = cfg.reward.task.parse().map_err(Error::Config)?;
    let opts = BuildOptions {
        keep_quantized: cfg.model.keep_quantized,
        ..Default::default()
    };
    let mut loaded = load_model(&cfg.model.path, cfg.model.tokenizer.as_deref(), &opts)?;
    let targets = cfg
        .lora
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let lora = LoraConfig {
        rank: cfg.lora.rank,
        alpha: cfg.lora.alpha,
        targets: targets.clone(),
        seed: cfg.lora.seed,
    };
    loaded.model.attach_lora(&lora)?;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let vars = model.lora_vars();
    let mut opt = FusedAdamW::new(vars.clone(), cfg.optimizer.adamw.clone())?;
    let schedule = LrSchedule::new(cfg.schedule())?;
    let peft = PeftConfig::new(
        cfg.lora.rank,
        cfg.lora.alpha,
        targets
            .iter()
            .map(|t| t.module_name().to_string())
            .collect(),
        cfg.model
            .name
            .clone()
            .unwrap_or_else(|| cfg.model.path.display().to_string()),
    );

    let prompts = load_prompts(&cfg.data.train, &cfg.data.prompt_field, task)?;
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
    let mut sampler = PromptSampler::new(prompts.len(), state.data_seed, state.data_cursor);

    let run_dir = cfg.checkpoint.dir.clone();
    std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;
    let config_toml = cfg.to_toml()?;
    super::checkpoint::write_atomic(&run_dir.join("config.toml"), config_toml.as_bytes())?;
    let metrics_path = cfg.metrics_path();
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io(&metrics_path))?;

    let (b, g) = (cfg.rollout.prompts_per_step, cfg.rollout.group_size);
    let mut engine = Engine::new(model, tok);
    engine.max_batch_rows = cfg.rollout.max_batch_rows;
    let mut rewards_log = Vec::new();
    let mut last_ckpt = None;
    while state.step < cfg.algorithm.steps {
        let t_step = Instant::now();
        // Prompts.
        let idx = sampler.next_batch(b);
        let prompt_ids = idx
            .iter()
            .map(|&i| {
                let p = &prompts[i];
                let text = match cfg.data.raw {
                    true => p.text.clone(),
                    false => template.render(&[Message::user(&p.text)], true)?,
                };
                Ok(tok.encode(&text)?)
            })
            .collect::<Result<Vec<_>>>()?;

        // Rollouts with the current policy.
        let t0 = Instant::now();
        let params = SamplingParams {
            n: g,
            temperature: cfg.rollout.temperature,
            top_p: cfg.rollout.top_p,
            top_k: cfg.rollout.top_k,
            max_new_tokens: cfg.rollout.max_new_tokens,
            stop_strings: cfg.rollout.stop_strings.clone(),
            seed: state.rollout_seed.wrapping_add(state.step),
            ..Default::default()
        };
        let (mut samples, gen) = engine.generate(&prompt_ids, &params, &mut |_| {})?;
        samples.sort_by_key(|s| (s.prompt_index, s.sample_index));
        let rollout_secs = t0.elapsed().as_secs_f64();

        // Rewards.
        let t0 = Instant::now();
        let refs: Vec<&Reference> = samples
            .iter()
            .map(|s| &prompts[idx[s.prompt_index]].reference)
            .collect();
        let items: Vec<(&str, &Reference)> = samples
            .iter()
            .zip(&refs)
            .map(|(s, r)| (s.text.as_str(), *r))
            .collect();
        let scores = verifier.score_batch(&items);
        let rewards: Vec<f32> = scores.iter().map(|s| s.reward).collect();
        let reward_secs = t0.elapsed().as_secs_f64();

        // Advantages and update.
        let adv = group_advantages(&rewards, g, &cfg.algorithm.advantage)?;
        let zero_var = zero_variance_fraction(&rewards, g)?;
        let rollouts: Vec<Rollout> = samples
            .iter()
            .zip(&adv)
            .map(|(s, &a)| Rollout {
                prompt_ids: prompt_ids[s.prompt_index].clone(),
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
        state.data_cursor = sampler.cursor;
        state.rollouts_used += samples.len() as u64;
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
        let line = json!({
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
            "skipped": up.steps.iter().filter(|s| s.skipped).count(),
            "lr": up.lr,
            "gen_tokens_per_s": gen.tokens_per_sec(),
            "train_tokens_per_s": up.train_tokens as f64 / up.update_secs.max(1e-9),
            "time_rollout_s": rollout_secs,
            "time_reward_s": reward_secs,
            "time_reference_s": up.reference_secs,
            "time_update_s": up.update_secs,
            "time_step_s": t_step.elapsed().as_secs_f64(),
            "rollouts_used": state.rollouts_used,
        });
        writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
        if cfg.logging.print {
            eprintln!(
                "step {:>4}  reward {:.3}  acc {:.3}  zero-var {:.2}  len {:.1}  grad {:.3}  rollout {:.1}s  update {:.1}s",
                state.step,
                mean,
                acc,
                zero_var,
                resp_len,
                last.map_or(f64::NAN, |s| s.grad_norm),
                rollout_secs,
                up.update_secs
            );
        }
        rewards_log.push(mean);

        let every = cfg.checkpoint.every;
        if (every > 0 && state.step.is_multiple_of(every)) || state.step == cfg.algorithm.steps {
            let dir = run_dir.join(format!("checkpoint-{}", state.step));
            let parts = CheckpointParts {
                peft: &peft,
                vars: &vars,
                optimizer: &opt,
                state: &state,
                config_toml: &config_toml,
            };
            save_checkpoint(&dir, &parts)?;
            last_ckpt = Some(dir);
        }
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
