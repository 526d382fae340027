//! `augur export --model M --adapter DIR --merge --out DIR`: an HF model folder with
//! the LoRA adapter merged into the base weights (safetensors + config + tokenizer).
//! Without `--adapter` the model is written as it is: a GGUF file as an HF folder, or a
//! fully fine-tuned `augur sft` checkpoint (itself an HF folder) as a clean one.

use std::path::PathBuf;

use anyhow::{bail, Context};
use augur_model::{load_model, BuildOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Base model: HF folder, GGUF file (weights dequantized to f32) or Hub id `org/name[@revision]`.
    #[arg(long)]
    model: PathBuf,
    /// PEFT adapter folder (e.g. runs/quickstart/checkpoint-12) or `hub:org/name[@revision][/subdir]`.
    /// Leave it out to export the model alone (e.g. a fully fine-tuned SFT checkpoint).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge the adapter into the base weights (the only export mode with an adapter).
    #[arg(long)]
    merge: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.adapter.is_some() && !args.merge {
        bail!("pass --merge: augur exports merged models; the adapter folder itself is already PEFT format");
    }
    let model = augur_hub::model_path(&args.model)?;
    let mut loaded = load_model(&model, None, &BuildOptions::default())?;
    if let Some(spec) = &args.adapter {
        let adapter = augur_hub::checkpoint_path(spec)?;
        augur_model::peft::attach_peft_adapter(&mut loaded.model, &adapter)
            .with_context(|| format!("adapter {}", spec.display()))?;
    }
    loaded.model.export_hf(&loaded.tokenizer, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
