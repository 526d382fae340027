//! Learning-rate schedules: linear warmup, then constant or cosine decay.
//!
//! `lr_at(s)` is the rate for optimizer update `s` (0-based). Warmup is `lr * (s + 1) / warmup_steps`
//! for `s < warmup_steps`, so the first update already moves the weights (HF's
//! `get_cosine_schedule_with_warmup` gives 0 at the first update). Cosine then decays from `lr` at
//! `s = warmup_steps` to `min_lr_ratio * lr` at `s = total_steps` and stays there.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Shape of the schedule after warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Hold the peak rate.
    Constant,
    /// Half-cosine down to `min_lr_ratio * lr` at `total_steps`.
    #[default]
    Cosine,
}

/// Schedule options, as they appear in the `[optimizer]` TOML table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Peak learning rate. Default `1e-5`.
    pub lr: f64,
    /// `constant` or `cosine`. Default `cosine`.
    pub kind: ScheduleKind,
    /// Linear warmup updates. Default 0.
    pub warmup_steps: u64,
    /// Total updates, the end of the cosine. Default 0 (must be set for `cosine`).
    pub total_steps: u64,
    /// Floor of the cosine as a fraction of `lr`. Default 0.
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            kind: ScheduleKind::Cosine,
            warmup_steps: 0,
            total_steps: 0,
            min_lr_ratio: 0.0,
        }
    }
}

/// A validated schedule. It holds no state: the step index comes from the caller, so resuming a
/// run needs nothing from the schedule but its config.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    cfg: ScheduleConfig,
}

impl LrSchedule {
    /// Errors when `lr` is negative or not finite, `min_lr_ratio` is outside `[0, 1]`, or a cosine
    /// schedule has `total_steps <= warmup_steps`.
    pub fn new(cfg: ScheduleConfig) -> Result<Self> {
        if !(cfg.lr.is_finite() && cfg.lr >= 0.0) {
            return Err(Error::Invalid(format!("lr must be >= 0, got {}", cfg.lr)));
        }
        if !(0.0..=1.0).contains(&cfg.min_lr_ratio) {
            return Err(Error::Invalid(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                cfg.min_lr_ratio
            )));
        }
        if cfg.kind == ScheduleKind::Cosine && cfg.total_steps <= cfg.warmup_steps {
            return Err(Error::Invalid(format!(
                "cosine schedule needs total_steps ({}) > warmup_steps ({})",
                cfg.total_steps, cfg.warmup_steps
            )));
        }
        Ok(Self { cfg })
    }

    /// The config this schedule was built from.
    pub fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }

    /// Learning rate for update `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        let c = &self.cfg;
        if step < c.warmup_steps {
            return c.lr * (step + 1) as f64 / c.warmup_steps as f64;
        }
        match c.kind {
            ScheduleKind::Constant => c.lr,
            ScheduleKind::Cosine => {
                let span = (c.total_steps - c.warmup_steps) as f64;
                let progress = ((step - c.warmup_steps) as f64 / span).min(1.0);
                let floor = c.min_lr_ratio * c.lr;
                floor + (c.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }

    #[test]
    fn warmup_then_cosine_by_hand() {
        let s = LrSchedule::new(ScheduleConfig {
            lr: 1e-3,
            kind: ScheduleKind::Cosine,
            warmup_steps: 4,
            total_steps: 12,
            min_lr_ratio: 0.1,
        })
        .unwrap();
        close(s.lr_at(0), 2.5e-4);
        close(s.lr_at(1), 5e-4);
        close(s.lr_at(3), 1e-3);
        close(s.lr_at(4), 1e-3); // progress 0
                                 // progress 0.5: floor + (lr - floor) / 2 = 1e-4 + 4.5e-4
        close(s.lr_at(8), 5.5e-4);
        // progress 0.25: 1e-4 + 9e-4 * 0.5 * (1 + cos(pi/4))
        close(s.lr_at(6), 1e-4 + 9e-4 * 0.5 * (1.0 + 0.5f64.sqrt()));
        close(s.lr_at(12), 1e-4);
        close(s.lr_at(1000), 1e-4);
    }

    #[test]
    fn constant_with_and_without_warmup() {
        let s = LrSchedule::new(ScheduleConfig {
            lr: 2e-5,
            kind: ScheduleKind::Constant,
            warmup_steps: 2,
            ..Default::default()
        })
        .unwrap();
        close(s.lr_at(0), 1e-5);
        close(s.lr_at(1), 2e-5);
        close(s.lr_at(50), 2e-5);
        let s = LrSchedule::new(ScheduleConfig {
            lr: 3e-4,
            kind: ScheduleKind::Constant,
            ..Default::default()
        })
        .unwrap();
        close(s.lr_at(0), 3e-4);
    }

    #[test]
    fn invalid_configs() {
        let cosine = ScheduleConfig {
            warmup_steps: 10,
            total_steps: 10,
            ..Default::default()
        };
        assert!(LrSchedule::new(cosine).is_err());
        let neg = ScheduleConfig {
            lr: -1.0,
            kind: ScheduleKind::Constant,
            ..Default::default()
        };
        assert!(LrSchedule::new(neg).is_err());
        assert!(toml::from_str::<ScheduleConfig>("warmup = 3").is_err());
        let c: ScheduleConfig = toml::from_str("kind = \"constant\"\nlr = 1e-4").unwrap();
        assert_eq!(c.kind, ScheduleKind::Constant);
    }
}
