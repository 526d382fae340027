//! Dataset splits from Hub dataset repos: which files of a revision hold a config's split, and
//! fetching them into the shared cache (`datasets--org--name/…`, the layout Python's `datasets`
//! and `huggingface_hub` use).
//!
//! Hub datasets keep a split as one or more Parquet (or JSONL) files, named in one of the
//! layouts `datasets` and the Hub write:
//! * `CONFIG/SPLIT-00000-of-00001.parquet` (`push_to_hub` with a config, e.g. `openai/gsm8k`'s
//!   `main/train-….parquet`), or `data/SPLIT-….parquet` for the default config;
//! * `CONFIG/SPLIT/0000.parquet` (the `refs/convert/parquet` branch);
//! * `CONFIG/NAME-SPLIT.parquet` (older parquet conversions);
//! * `SPLIT.jsonl` / `SPLIT.parquet` at the repo root (e.g. `test.jsonl`).

use std::path::{Path, PathBuf};

use crate::download::Sibling;
use crate::error::{HubError, Result};
use crate::hub::Hub;
use crate::id::HubDataset;

/// Folders that hold the default config's files when no config is named.
const DEFAULT_CONFIG_DIRS: [&str; 2] = ["data", "default"];

impl Hub {
    /// The local paths of the files holding `ds`'s split, in file-name order (shard order):
    /// downloaded once, then served from the cache (offline too).
    pub fn dataset_files(&self, ds: &HubDataset) -> Result<Vec<PathBuf>> {
        self.block_on(self.dataset_files_async(ds))
    }

    async fn dataset_files_async(&self, ds: &HubDataset) -> Result<Vec<PathBuf>> {
        let id = &ds.id;
        let Some(info) = self.online_info(id).await? else {
            let miss = || self.offline_miss(id, &format!("the files of split {}", ds.display()));
            let snapshot = self.snapshot_dir(id, &self.cached_commit(id).map_err(|_| miss())?);
            let mut names = Vec::new();
            list_files(&snapshot, &snapshot, &mut names);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let chosen = split_files(&refs, ds.config.as_deref(), &ds.split).map_err(|_| miss())?;
            return Ok(chosen.iter().map(|f| snapshot.join(f)).collect());
        };
        let names: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let chosen =
            split_files(&names, ds.config.as_deref(), &ds.split).map_err(|why| HubError::Repo {
                repo: format!("{} (dataset)", id.display()),
                why,
            })?;
        let wanted: Vec<&Sibling> = info
            .siblings
            .iter()
            .filter(|s| chosen.contains(&s.rfilename))
            .collect();
        self.fetch(id, &info.sha, &wanted).await?;
        self.write_ref(id, &info.sha)?;
        let snapshot = self.snapshot_dir(id, &info.sha);
        Ok(chosen.iter().map(|f| snapshot.join(f)).collect())
    }
}

/// Every file under `dir`, as a `/`-separated path relative to `root`.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The data files among `names` (repo paths) that hold `split` of `config` (see the module
/// doc for the layouts), sorted; Parquet files win over JSONL ones when both are there. The
/// error lists the configs and splits the repo has, so a typo can be fixed at once.
pub(crate) fn split_files(
    names: &[&str],
    config: Option<&str>,
    split: &str,
) -> std::result::Result<Vec<String>, String> {
    let data: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.ends_with(".parquet") || n.ends_with(".jsonl"))
        .filter(|n| !n.split('/').any(|p| p.starts_with('.')))
        .collect();
    let in_config = |n: &str| {
        let parts: Vec<&str> = n.split('/').collect();
        match config {
            Some(c) => parts.len() > 1 && parts[0] == c,
            None => parts.len() == 1 || DEFAULT_CONFIG_DIRS.contains(&parts[0]),
        }
    };
    let mut chosen: Vec<&str> = data
        .iter()
        .copied()
        .filter(|n| in_config(n) && split_of(n).contains(&split))
        .collect();
    if chosen.iter().any(|n| n.ends_with(".parquet")) {
        chosen.retain(|n| n.ends_with(".parquet"));
    }
    if chosen.is_empty() {
        let mut have: Vec<String> = data
            .iter()
            .map(|n| {
                let parts: Vec<&str> = n.split('/').collect();
                let config = match parts.len() {
                    1 => None,
                    _ if DEFAULT_CONFIG_DIRS.contains(&parts[0]) => None,
                    _ => Some(parts[0]),
                };
                let split = split_of(n)[0];
                match config {
                    Some(c) => format!("{c}/{split}"),
                    None => split.to_string(),
                }
            })
            .collect();
        have.sort();
        have.dedup();
        let wanted = match config {
            Some(c) => format!("split {split:?} of config {c:?}"),
            None => format!("split {split:?} of the default config"),
        };
        return Err(match have.is_empty() {
            true => format!("has no .parquet or .jsonl files, so no {wanted}"),
            false => format!(
                "has no {wanted}; it has (config/split): {}",
                have.join(", ")
            ),
        });
    }
    let mut chosen: Vec<String> = chosen.into_iter().map(str::to_string).collect();
    chosen.sort();
    Ok(chosen)
}

/// The split names a file's path can stand for, likeliest first: its folder when the file is
/// a numbered shard (`…/SPLIT/0000.parquet`), the part before the shard suffix
/// (`SPLIT-00000-of-00001`), its stem (`SPLIT.jsonl`), and the part after the last `-`
/// (`NAME-SPLIT.parquet`).
fn split_of(name: &str) -> Vec<&str> {
    let (dir, file) = name.rsplit_once('/').unwrap_or(("", name));
    let stem = file.split('.').next().unwrap_or(file);
    let mut out = Vec::new();
    let folder = dir.rsplit('/').next().filter(|f| !f.is_empty());
    if let Some(folder) = folder.filter(|_| stem.chars().all(|c| c.is_ascii_digit())) {
        out.push(folder);
    }
    if let Some(shard) = stem.find("-0").filter(|&i| i > 0) {
        out.push(&stem[..shard]);
    }
    out.push(stem);
    if let Some((_, last)) = stem.rsplit_once('-') {
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layout_finds_its_split() {
        let gsm8k = [
            ".gitattributes",
            "README.md",
            "main/test-00000-of-00001.parquet",
            "main/train-00000-of-00001.parquet",
            "socratic/train-00000-of-00001.parquet",
        ];
        assert_eq!(
            split_files(&gsm8k, Some("main"), "train").unwrap(),
            ["main/train-00000-of-00001.parquet"]
        );
        let err = split_files(&gsm8k, None, "train").unwrap_err();
        assert!(
            err.contains("main/test, main/train, socratic/train"),
            "{err}"
        );
        let err = split_files(&gsm8k, Some("main"), "validation").unwrap_err();
        assert!(err.contains("\"validation\" of config \"main\""), "{err}");

        let sharded = [
            "data/train-00001-of-00002.parquet",
            "data/train-00000-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
        ];
        assert_eq!(
            split_files(&sharded, None, "train").unwrap(),
            [
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ]
        );
        let converted = [
            "default/train/0000.parquet",
            "default/train/0001.parquet",
            "default/test/0000.parquet",
        ];
        assert_eq!(split_files(&converted, None, "test").unwrap().len(), 1);
        assert_eq!(
            split_files(
                &["full/mbpp-train.parquet", "full/mbpp-test.parquet"],
                Some("full"),
                "test"
            )
            .unwrap(),
            ["full/mbpp-test.parquet"]
        );
        assert_eq!(
            split_files(&["test.jsonl", "README.md"], None, "test").unwrap(),
            ["test.jsonl"]
        );
        assert_eq!(
            split_files(
                &["data/test.jsonl", "data/test-00000-of-00001.parquet"],
                None,
                "test"
            )
            .unwrap(),
            ["data/test-00000-of-00001.parquet"]
        );
        let err = split_files(&["README.md"], None, "test").unwrap_err();
        assert!(err.contains("no .parquet or .jsonl files"), "{err}");
    }
}
