//! The SFT loop, top to bottom: draw N candidates in the seeded epoch order → score them and
//! keep K ([`super::selection`]) → forward/backward the K in micro-batches (optionally packed,
//! [`super::packing`]), loss on completion tokens only → one AdamW step → (held-out loss) → metrics line → checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use augur_rollout::ChatTemplate;
use candle_core::DType;

use super::checkpoint::{self, check_complete, Parts, SftState};
use super::config::SftConfig;
use super::data::{DataStats, Encoder, Example};
use super::loss::{batch, pack, per_example_mean, target_nll};
use super::packing::pack_rows;
use super::selection::Selector;
use super::weights;
use crate::grpo::data::ShuffledEpochs;
use crate::metrics::{SftEvalMetrics, SftStepMetrics, SftTrainMetrics};
use crate::optim::FusedAdamW;
use crate::run_dir::{check_launch, ActiveRun, Launch};
use crate::schedule::LrSchedule;
use crate::Result;
use augur_model::DecoderModel;
use augur_model::Grad;

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct SftSummary {
    pub steps: u64,
    pub run_dir: PathBuf,
    pub final_checkpoint: PathBuf,
    /// The training file's line counts (truncated / dropped by `data.max_seq_len`).
    pub data: DataStats,
    /// Held-out loss of each evaluation this call ran, as `(step, loss)`.
    pub eval_losses: Vec<(u64, f64)>,
}

/// Runs (or, with `launch.resume`, continues) the SFT run described by `cfg` in the run folder
/// `checkpoint.dir` (the same folder contract as `augur grpo`, see [`RunDir`]), handing each
/// metrics line to `on_line` as it is written.
pub fn run_with(
    cfg: &SftConfig,
    launch: &Launch,
    on_line: &mut dyn FnMut(&SftStepMetrics),
) -> Result<SftSummary> {
    let resume = launch.resume.as_deref();
    check_launch(&cfg.checkpoint.dir, &cfg.metrics_path(), launch, |dir| {
        check_complete(dir)?;
        Ok(checkpoint::read_state(dir)?.step)
    })?;

    // Model, trained weights (adapters, or all of them), optimizer.
    let trained = weights::load(&cfg.model, &cfg.lora)?;
    let (model, tok) = (&trained.loaded.model, &trained.loaded.tokenizer);
    let mut opt = FusedAdamW::new(trained.vars.clone(), cfg.optimizer.adamw.clone())?;
    let schedule = LrSchedule::new(cfg.schedule())?;

    // Data.
    let template = ChatTemplate::new(
        tok.chat_template.as_deref(),
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?;
    let encoder = Encoder {
        tok,
        template: &template,
        cfg: &cfg.data,
    };
    let (examples, data_stats) = encoder.load(&cfg.data.train)?;
    let eval_examples: Vec<Example> = match &cfg.eval {
        Some(e) => {
            let (mut x, _) = encoder.load(&e.file)?;
            if e.max_examples > 0 {
                x.truncate(e.max_examples);
            }
            x
        }
        None => Vec::new(),
    };
    if cfg.logging.print {
        eprintln!(
            "data: {} examples from {} ({} truncated at {} tokens, {} dropped with no completion left)",
            examples.len(),
            cfg.data.train.display(),
            data_stats.truncated,
            cfg.data.max_seq_len,
            data_stats.dropped
        );
    }

    // State: fresh, or from a checkpoint.
    let mut selector = Selector::new(&cfg.selection, model.cfg.vocab_size, cfg.data.max_seq_len);
    let mut state = SftState::default();
    if let Some(dir) = resume {
        state = checkpoint::load(dir, &trained, &mut opt, &mut selector.buffer)?;
    }
    let mut order = ShuffledEpochs::new(examples.len(), cfg.data.seed, state.data_cursor);

    // The run folder: config snapshot, metrics log (a resume keeps the lines up to its step).
    let config_toml = cfg.to_toml()?;
    let mut run = ActiveRun::open(
        &cfg.checkpoint.dir,
        &cfg.metrics_path(),
        launch,
        state.step,
        &config_toml,
        on_line,
    )?;

    let (micro, pad) = (cfg.train.micro_batch_size, tok.pad_id);
    let mut eval_losses = Vec::new();
    let mut run_eval = |step: u64| -> Result<Option<SftEvalMetrics>> {
        match &cfg.eval {
            Some(e) if e.due(step, cfg.train.steps) => {
                let t0 = Instant::now();
                let loss = held_out_loss(model, &eval_examples, micro, pad)?;
                eval_losses.push((step, loss));
                Ok(Some(SftEvalMetrics {
                    eval_loss: loss,
                    eval_examples: eval_examples.len(),
                    time_eval_s: t0.elapsed().as_secs_f64(),
                }))
            }
            _ => Ok(None),
        }
    };
    if resume.is_none() {
        if let Some(eval) = run_eval(0)? {
            run.emit(SftStepMetrics {
                step: 0,
                samples_trained: 0,
                train: None,
                eval: Some(eval),
            })?;
        }
    }

    while state.step < cfg.train.steps {
        let t_step = Instant::now();
        // Candidates → the K to train on.
        let candidates = order.next_batch(cfg.selection.candidates);
        let choice = selector.choose(model, &examples, &candidates, state.step, micro, pad)?;
        let score_secs = t_step.elapsed().as_secs_f64();

        // Forward/backward in micro-batches; the loss is the mean over the step's targets.
        let t_train = Instant::now();
        let rows: Vec<&Example> = choice.chosen.iter().map(|&i| &examples[i]).collect();
        let targets: usize = rows.iter().map(|e| e.target_count()).sum();
        let packing = cfg.train.packing;
        let mut forward_rows: Vec<Vec<&Example>> = match packing {
            true => pack_rows(&rows, cfg.data.max_seq_len),
            false => rows.iter().map(|&e| vec![e]).collect(),
        };
        // Rows of similar length share a micro-batch, so fewer padding tokens run: the step's
        // loss and gradient are sums over its rows, whatever the order.
        forward_rows.sort_by_key(|r| r.iter().map(|e| e.ids.len()).sum::<usize>());
        let (mut loss, mut input_tokens) = (0.0, 0);
        for chunk in forward_rows.chunks(micro) {
            let p = batch(chunk, packing, pad, model.device())?;
            let nll = target_nll(model, &p, true, Grad::Tracked)?;
            let part = (nll.sum_all()? / targets as f64)?;
            loss += part.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            opt.accumulate(&part.backward()?)?;
            input_tokens += p.tokens;
        }
        let lr = schedule.lr_at(opt.steps());
        let report = opt.step(lr)?;
        let train_secs = t_train.elapsed().as_secs_f64();

        state.step += 1;
        state.data_cursor = order.cursor;
        state.samples_trained += rows.len() as u64;
        state.tokens_trained += targets as u64;
        let step_secs = t_step.elapsed().as_secs_f64();
        let train = SftTrainMetrics {
            loss,
            lr,
            grad_norm: report.grad_norm,
            skipped: report.skipped,
            samples: rows.len(),
            candidates: candidates.len(),
            target_tokens: targets,
            truncated: rows.iter().filter(|e| e.truncated).count(),
            train_tokens_per_s: input_tokens as f64 / train_secs.max(1e-9),
            time_score_s: score_secs,
            time_train_s: train_secs,
            time_step_s: step_secs,
            score_share: score_secs / step_secs.max(1e-9),
            tokens_trained: state.tokens_trained,
            selected: choice.chosen,
            selection: choice.telemetry,
        };
        run.emit(SftStepMetrics {
            step: state.step,
            samples_trained: state.samples_trained,
            train: Some(train),
            eval: run_eval(state.step)?,
        })?;

        let every = cfg.checkpoint.every;
        if (every > 0 && state.step.is_multiple_of(every)) || state.step == cfg.train.steps {
            let parts = Parts {
                weights: &trained,
                optimizer: &opt,
                state: &state,
                config_toml: &config_toml,
                buffer: &selector.buffer,
            };
            run.save_checkpoint(state.step, |dir| checkpoint::save(dir, &parts))?;
        }
    }
    Ok(SftSummary {
        steps: state.step,
        final_checkpoint: run.final_checkpoint(),
        run_dir: run.root().to_path_buf(),
        data: data_stats,
        eval_losses,
    })
}

/// Mean token loss over `examples` (adapters on, no gradients).
pub fn held_out_loss(
    model: &DecoderModel,
    examples: &[Example],
    micro: usize,
    pad_id: u32,
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    let rows: Vec<&Example> = examples.iter().collect();
    for chunk in rows.chunks(micro) {
        let p = pack(chunk, pad_id, model.device())?;
        let sums = target_nll(model, &p, true, Grad::Off)?.sum(candle_core::D::Minus1)?;
        let per = per_example_mean(&sums, &p.counts)?;
        sum += per
            .iter()
            .zip(&p.counts)
            .map(|(m, &c)| m * c as f64)
            .sum::<f64>();
        count += p.counts.iter().sum::<usize>();
    }
    Ok(sum / count.max(1) as f64)
}
