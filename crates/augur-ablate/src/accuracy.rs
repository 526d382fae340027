//! Held-out greedy accuracy of an SFT run's checkpoints, measured after training so the runs'
//! wall clocks hold only training: each checkpoint's adapter on the base model, greedy
//! completions of the first `prompts` problems of the config's `[eval] file`, scored by the
//! math verifier against the completion field's final answer (GSM8K's `#### x`). The values
//! are kept next to the ablation's report (`<out>/accuracy/`), so a rerun measures only what is
//! new.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use augur_reward::jsonl::reference_of;
use augur_reward::{MathOptions, MathVerifier, Reference, TaskKind, Verifier};
use augur_rollout::{ChatTemplate, Engine, Message, SamplingParams};
use augur_train::policy::{load_policy, Policy};
use augur_train::sft::config::DataFormat;
use augur_train::sft::SftConfig;
use serde::{Deserialize, Serialize};

/// How accuracy is measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracySpec {
    /// The first this many held-out problems (must be > 0).
    pub prompts: usize,
    /// Generation budget per problem.
    pub max_new_tokens: usize,
}

/// One measured point, as cached in `<out>/accuracy/*.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Measured {
    step: u64,
    spec: AccuracySpec,
    /// When the measured adapter file was written (ns since the epoch; `None`: the starting
    /// model), so a checkpoint written again is measured again.
    written_ns: Option<u128>,
    eval_accuracy: f64,
}

/// When `adapter`'s weights file was last written, in ns since the epoch.
fn written_ns(adapter: Option<&Path>) -> anyhow::Result<Option<u128>> {
    let Some(dir) = adapter else { return Ok(None) };
    let file = dir.join("adapter_model.safetensors");
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Some(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    ))
}

/// The held-out accuracy of `cfg`'s model with the adapter in `adapter` (`None`: the fresh
/// adapters, i.e. the model every run starts from).
pub fn measure(
    cfg: &SftConfig,
    adapter: Option<&Path>,
    spec: &AccuracySpec,
) -> anyhow::Result<f64> {
    ensure!(
        spec.prompts > 0,
        "accuracy: give at least one held-out problem"
    );
    ensure!(
        cfg.data.format == DataFormat::PromptCompletion,
        "accuracy needs prompt/completion data ([data] format = \"prompt-completion\")"
    );
    let eval = cfg
        .eval
        .as_ref()
        .context("accuracy needs the held-out problems of an [eval] section")?;
    let rows = augur_data::read_rows(&eval.file)?;
    let mut problems: Vec<(String, Reference)> = Vec::new();
    for row in rows.iter().take(spec.prompts) {
        let field = |k: &str| -> anyhow::Result<&str> {
            row.fields
                .get(k)
                .and_then(|v| v.as_str())
                .with_context(|| format!("{}: no string field {k:?}", row.at))
        };
        let prompt = field(&cfg.data.prompt_field)?.to_string();
        let reference = reference_of(
            TaskKind::Math,
            &row.fields,
            Some(&cfg.data.completion_field),
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", row.at))?;
        problems.push((prompt, reference));
    }
    if problems.is_empty() {
        bail!("{}: no held-out problems", eval.file.display());
    }

    let mut model = cfg.model.clone();
    if let Some(dir) = adapter {
        model.adapter = Some(dir.to_path_buf());
    }
    let Policy { loaded, .. } = load_policy(&model, &cfg.lora)?;
    let tok = &loaded.tokenizer;
    let template = ChatTemplate::new(
        tok.chat_template.as_deref(),
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?;
    let prompts = problems
        .iter()
        .map(|(p, _)| -> anyhow::Result<Vec<u32>> {
            let text = match cfg.data.raw {
                true => p.clone(),
                false => template.render(&[Message::user(p)], true)?,
            };
            Ok(tok.encode(&text)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = SamplingParams {
        n: 1,
        temperature: 0.0,
        max_new_tokens: spec.max_new_tokens,
        ..Default::default()
    };
    let engine = Engine::new(&loaded.model, tok);
    let (samples, _) = engine.generate(&prompts, &params, &mut |_| {})?;
    let items: Vec<(&str, &Reference)> = samples
        .iter()
        .map(|s| (s.text.as_str(), &problems[s.prompt_index].1))
        .collect();
    let scores = MathVerifier::new(MathOptions::default()).score_batch(&items);
    Ok(scores.iter().filter(|s| s.correct).count() as f64 / scores.len().max(1) as f64)
}

/// A cache of measured points in one JSONL file.
pub struct Cache {
    path: PathBuf,
    points: Vec<Measured>,
}

impl Cache {
    /// Opens (or starts) the cache at `path`.
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let points = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str(l).with_context(|| {
                        format!("{}:{}: not an accuracy line", path.display(), i + 1)
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, points })
    }

    /// The accuracy at `step` of `adapter` (`None`: the starting model) under `spec`, measured
    /// by `measure` unless cached (then cached: the file is rewritten whole, so it never holds a
    /// torn line).
    pub fn get(
        &mut self,
        step: u64,
        adapter: Option<&Path>,
        spec: &AccuracySpec,
        measure: impl FnOnce() -> anyhow::Result<f64>,
    ) -> anyhow::Result<f64> {
        let written_ns = written_ns(adapter)?;
        let same = |m: &Measured| m.step == step && m.spec == *spec && m.written_ns == written_ns;
        if let Some(m) = self.points.iter().find(|m| same(m)) {
            return Ok(m.eval_accuracy);
        }
        let eval_accuracy = measure()?;
        self.points.retain(|m| m.step != step);
        self.points.push(Measured {
            step,
            spec: *spec,
            written_ns,
            eval_accuracy,
        });
        let text: String = self
            .points
            .iter()
            .map(|m| serde_json::to_string(m).map(|l| l + "\n"))
            .collect::<Result<_, _>>()?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("jsonl.partial");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(eval_accuracy)
    }
}
