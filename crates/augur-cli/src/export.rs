//! `augur export --model M --adapter DIR --merge --out DIR`: an HF model folder with
//! the LoRA adapter merged into the base weights (safetensors + config + tokenizer).

use std::path::PathBuf;

use anyhow::{bail, Context};
use augur_model::{load_model, BuildOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Base model: HF folder or GGUF file (GGUF weights are dequantized to f32).
    #[arg(long)]
    model: PathBuf,
    /// PEFT adapter folder (e.g. runs/quickstart/checkpoint-12).
    #[arg(long)]
    adapter: PathBuf,
    /// Merge the adapter into the base weights (the only export mode).
    #[arg(long)]
    merge: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.merge {
        bail!("pass --merge: augur exports merged models; the adapter folder itself is already PEFT format");
    }
    let mut loaded = load_model(&args.model, None, &BuildOptions::default())?;
    augur_train::grpo::checkpoint::attach_peft_adapter(&mut loaded.model, &args.adapter)
        .with_context(|| format!("adapter {}", args.adapter.display()))?;
    loaded.model.export_hf(&loaded.tokenizer, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
