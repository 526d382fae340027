//! `augur inspect MODEL`.

use std::path::PathBuf;

use augur_model::{load_model, BuildOptions};

#[derive(clap::Args)]
pub struct Args {
    /// HF model folder, GGUF file, or Hub id `org/name[@revision]`.
    model: PathBuf,
    /// Folder with tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = augur_hub::model_path(&args.model)?;
    let loaded = load_model(&model, args.tokenizer.as_deref(), &BuildOptions::default())?;
    let m = &loaded.model;
    let c = &m.cfg;
    let t = &loaded.tokenizer;
    println!("path:            {}", loaded.path.display());
    println!("format:          {:?}", loaded.format);
    println!("architecture:    {}", c.arch.name());
    println!("layers:          {}", c.num_layers);
    println!(
        "hidden / ffn:    {} / {}",
        c.hidden_size, c.intermediate_size
    );
    println!(
        "heads (q / kv):  {} / {} (head_dim {})",
        c.num_heads, c.num_kv_heads, c.head_dim
    );
    println!("rope_theta:      {}", c.rope_theta);
    println!("rms_norm_eps:    {}", c.rms_norm_eps);
    println!("context:         {}", c.max_position_embeddings);
    println!("tied lm_head:    {}", c.tie_word_embeddings);
    println!("qkv bias / qk norm: {} / {}", c.qkv_bias, c.qk_norm);
    println!(
        "parameters:      {} ({:.1} M)",
        m.base_param_count(),
        m.base_param_count() as f64 / 1e6
    );
    println!("compute dtype:   {:?}", m.dtype());
    println!(
        "vocab (model / tokenizer): {} / {}",
        c.vocab_size,
        t.vocab_size()
    );
    println!(
        "bos / eos:       {:?} / {:?} (eos ids {:?}, pad id {})",
        t.bos_token, t.eos_token, t.eos_ids, t.pad_id
    );
    match &t.chat_template {
        Some(tpl) => println!(
            "chat template:   {} chars, starts {:?}",
            tpl.len(),
            tpl.chars().take(60).collect::<String>()
        ),
        None => println!("chat template:   none (ChatML fallback)"),
    }
    Ok(())
}
