//! `augur push CHECKPOINT --repo org/name`: a checkpoint folder to a Hub model repo, with a
//! model card.

use std::path::PathBuf;
use std::time::Instant;

use augur_hub::{Hub, PushOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder (`<run>/checkpoint-<step>`).
    checkpoint: PathBuf,
    /// Target repo `org/name`; created if missing.
    #[arg(long)]
    repo: String,
    /// Create the repo private (an existing repo keeps its visibility).
    #[arg(long)]
    private: bool,
    /// Branch to commit to; created from `main` if missing.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Folder inside the repo (default: its root).
    #[arg(long, default_value = "")]
    path_in_repo: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = args
        .checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = PushOptions {
        private: args.private,
        revision: args.revision,
        path_in_repo: args.path_in_repo,
        message: format!("augur {}: {name}", env!("CARGO_PKG_VERSION")),
    };
    let t0 = Instant::now();
    let done = Hub::from_env().push_folder(&args.checkpoint, &args.repo, &opts)?;
    eprintln!(
        "pushed {} files ({} via LFS, {:.1} MB) in {:.2}s: {}",
        done.files,
        done.lfs_files,
        done.bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        done.commit_url
    );
    Ok(())
}
