//! Hub repository ids as users write them: `org/name[@revision]` for models,
//! `hub:org/name[@revision][/subdir]` for checkpoints and `hub:org/name[@revision]:[config/]split`
//! for dataset splits.

use std::path::Path;

use crate::error::HubError;

/// A repository on the Hub at one revision (branch, tag or commit sha).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit sha; `main` when the id names none.
    pub revision: String,
    /// Model or dataset repo: they live in separate namespaces (URLs and cache folders).
    pub kind: RepoKind,
}

/// The Hub keeps models and datasets apart: `org/name` may be both, and they are different
/// repos (`api/models/…` vs `api/datasets/…`; `models--…` vs `datasets--…` in the cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepoKind {
    #[default]
    Model,
    Dataset,
}

impl RepoKind {
    /// The plural the Hub's URLs and cache folders use (`models`, `datasets`).
    pub fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

/// The prefix that marks a `--resume` argument as a Hub checkpoint.
pub const HUB_PREFIX: &str = "hub:";

impl HubId {
    /// Parses `org/name[@revision]`. Names follow the Hub's rules (letters, digits, `-`, `_`, `.`;
    /// no `--` or `..`; `-` and `.` neither first nor last), so a local path such as
    /// `/models/x` or `./x` is never mistaken for an id.
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let bad = |why: &'static str| HubError::BadId {
            spec: spec.into(),
            why,
        };
        let (repo, revision) = match spec.split_once('@') {
            Some((_, "")) => return Err(bad("the revision after '@' is empty")),
            Some((repo, rev)) => (repo, rev),
            None => (spec, "main"),
        };
        let mut parts = repo.split('/');
        let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("a repo id has exactly one '/'"));
        };
        for part in [org, name] {
            if !valid_name(part) {
                return Err(bad("org and name use letters, digits, '-', '_', '.' (no '--' or '..', no '-' or '.' at either end)"));
            }
        }
        Ok(Self {
            repo: repo.into(),
            revision: revision.into(),
            kind: RepoKind::Model,
        })
    }

    /// The id as the user writes it (`org/name`, with `@revision` unless it is `main`).
    pub fn display(&self) -> String {
        match self.revision.as_str() {
            "main" => self.repo.clone(),
            rev => format!("{}@{rev}", self.repo),
        }
    }

    /// Recognises a snapshot folder of the Hub cache (`…/models--org--name/snapshots/<sha>`),
    /// the form a model id takes in a saved run config, so that a checkpoint made on another
    /// machine can fetch its base model again at the same commit.
    pub fn from_cache_path(path: &Path) -> Option<Self> {
        let mut rev = path.components().rev().map(|c| c.as_os_str().to_str());
        let (Some(Some(sha)), Some(Some("snapshots")), Some(Some(folder))) =
            (rev.next(), rev.next(), rev.next())
        else {
            return None;
        };
        let repo = folder.strip_prefix("models--")?.replacen("--", "/", 1);
        Self::parse(&format!("{repo}@{sha}")).ok()
    }
}

/// A checkpoint folder inside a Hub repo: `hub:org/name[@revision][/subdir]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFolder {
    pub id: HubId,
    /// Folder inside the repo; empty for the repo root.
    pub subdir: String,
}

impl HubFolder {
    /// Parses the text after `hub:`. The revision ends at the first `/` after `@`, so a branch
    /// name with a `/` cannot be combined with a subdir.
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let mut parts = spec.splitn(3, '/');
        let (org, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let subdir = parts.next().unwrap_or("").trim_end_matches('/');
        if subdir.split('/').any(|p| p == ".." || p == ".") {
            return Err(HubError::BadId {
                spec: spec.into(),
                why: "the subdir may not contain '.' or '..'",
            });
        }
        Ok(Self {
            id: HubId::parse(&format!("{org}/{rest}"))?,
            subdir: subdir.into(),
        })
    }
}

/// A split of a Hub dataset repo: `hub:org/name[@revision]:[config/]split`, e.g.
/// `hub:openai/gsm8k:main/train`. `:` cannot occur in repo names or git refs, so it always
/// ends the id; the config is the repo folder holding the split's files (none: the default
/// config, files in `data/`, `default/` or the repo root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubDataset {
    pub id: HubId,
    pub config: Option<String>,
    pub split: String,
}

impl HubDataset {
    /// Parses the text after `hub:`.
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let bad = |why: &'static str| HubError::BadId {
            spec: format!("{HUB_PREFIX}{spec}"),
            why,
        };
        let Some((id, selector)) = spec.split_once(':') else {
            return Err(bad("a dataset is `hub:org/name[@revision]:[config/]split`, e.g. `hub:openai/gsm8k:main/train`; the `:split` is missing"));
        };
        let mut id = HubId::parse(id).map_err(|e| match e {
            HubError::BadId { why, .. } => bad(why),
            e => e,
        })?;
        id.kind = RepoKind::Dataset;
        let (config, split) = match selector.split_once('/') {
            Some((c, s)) => (Some(c.to_string()), s),
            None => (None, selector),
        };
        let ok = |p: &str| valid_name(p) && !p.contains('/');
        if !ok(split) || config.as_deref().is_some_and(|c| !ok(c)) {
            return Err(bad("config and split are single names of letters, digits, '-', '_', '.' (e.g. `main/train` or `test`)"));
        }
        Ok(Self {
            id,
            config,
            split: split.into(),
        })
    }

    /// As the user writes it (without `hub:`).
    pub fn display(&self) -> String {
        let config = self
            .config
            .as_deref()
            .map(|c| format!("{c}/"))
            .unwrap_or_default();
        format!("{}:{config}{}", self.id.display(), self.split)
    }
}

fn valid_name(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c != '-' && c != '.');
    !s.is_empty()
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.contains("--")
        && !s.contains("..")
        && edge(s.chars().next())
        && edge(s.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions() {
        let id = HubId::parse("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("Qwen/Qwen2.5-0.5B-Instruct", "main")
        );
        let id = HubId::parse("org/m@v1.0").unwrap();
        assert_eq!((id.repo.as_str(), id.revision.as_str()), ("org/m", "v1.0"));
        assert_eq!(id.display(), "org/m@v1.0");
        for bad in [
            "model.gguf",
            "/abs/path",
            "./rel/x",
            "../x/y",
            "a/b/c",
            "org/m@",
            "org/-m",
            "org/m--x",
            "",
        ] {
            assert!(HubId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_and_cache_paths() {
        let f = HubFolder::parse("org/run@dev/checkpoint-12").unwrap();
        assert_eq!(f.id, HubId::parse("org/run@dev").unwrap());
        assert_eq!(f.subdir, "checkpoint-12");
        let f = HubFolder::parse("org/run/a/b/").unwrap();
        assert_eq!((f.id.revision.as_str(), f.subdir.as_str()), ("main", "a/b"));
        assert!(HubFolder::parse("org/run/../x").is_err());
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let p = format!("/home/u/.cache/huggingface/hub/models--my-org--m.x/snapshots/{sha}");
        let id = HubId::from_cache_path(Path::new(&p)).unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("my-org/m.x", sha)
        );
        assert_eq!(HubId::from_cache_path(Path::new("/models/m")), None);
    }

    #[test]
    fn dataset_splits() {
        let d = HubDataset::parse("openai/gsm8k@v1:main/train").unwrap();
        assert_eq!(
            (d.id.repo.as_str(), d.id.revision.as_str(), d.id.kind),
            ("openai/gsm8k", "v1", RepoKind::Dataset)
        );
        assert_eq!(
            (d.config.as_deref(), d.split.as_str()),
            (Some("main"), "train")
        );
        assert_eq!(d.display(), "openai/gsm8k@v1:main/train");
        let d = HubDataset::parse("org/set:test").unwrap();
        assert_eq!(
            (d.config, d.split.as_str(), d.id.revision.as_str()),
            (None, "test", "main")
        );
        for bad in [
            "org/set",
            "org/set:",
            "org/set:a/b/c",
            "org/set:main/",
            "a/b/c:train",
            "org/set@:train",
        ] {
            let err = HubDataset::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("hub:{bad}")), "{bad}: {err}");
        }
    }
}
