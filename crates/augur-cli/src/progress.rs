//! The step progress shared by `augur grpo` and `augur sft`: a bar on terminals, one summary
//! line per step either way (printed above the bar, or plainly when it is hidden), and a closing
//! line naming where the metrics and the last adapter are.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::rss::peak_rss;

/// A run's progress over `steps` training steps.
pub struct StepProgress {
    bar: ProgressBar,
    print: bool,
}

impl StepProgress {
    /// `print`: the run's `logging.print`, whether each step's summary line is shown.
    pub fn new(steps: u64, print: bool) -> anyhow::Result<Self> {
        let bar = ProgressBar::new(steps);
        bar.set_style(ProgressStyle::with_template(
            "{bar:30} step {pos}/{len}  {elapsed} elapsed, ~{eta} left  {msg}",
        )?);
        Ok(Self { bar, print })
    }

    /// Shows one metrics line: its `step` on the bar, `message` beside it, and `summary`.
    pub fn step(&self, step: u64, message: Option<String>, summary: impl FnOnce() -> String) {
        self.bar.set_position(step);
        if let Some(m) = message {
            self.bar.set_message(m);
        }
        if self.print {
            match self.bar.is_hidden() {
                true => eprintln!("{}", summary()),
                false => self.bar.println(summary()),
            }
        }
    }

    /// Clears the bar and prints the run's closing line.
    pub fn finish(self, steps: u64, metrics: &Path, adapter: &Path) {
        self.bar.finish_and_clear();
        eprintln!(
            "{steps} steps; metrics in {}; adapter in {}; peak RSS {}",
            metrics.display(),
            adapter.display(),
            peak_rss()
        );
    }
}
