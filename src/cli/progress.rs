//! Per-tensor progress for the GGUF tools: a bar when stderr is a terminal, one line per
//! tensor with --verbose otherwise, nothing with --quiet.

use std::io::IsTerminal;

use super::GlobalOptions;

/// Reports tensors as they are done. Cheap to clone (the bar is shared).
#[derive(Debug, Clone)]
pub(crate) struct TensorProgress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl TensorProgress {
    /// Progress as the global flags and the terminal allow.
    pub fn new(global: &GlobalOptions) -> TensorProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!global.quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} tensors {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        TensorProgress { bar, lines: global.verbose && !terminal }
    }

    /// Tensor `index` of `total` (1-based) is done; `detail` says what happened to it.
    pub fn tensor(&self, index: usize, total: usize, name: &str, detail: &str) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            bar.set_message(super::escape::terminal_safe(name).into_owned());
        } else if self.lines {
            let name = super::escape::terminal_safe(name);
            eprintln!("[{index:>4}/{total}] {name:<40} {detail}");
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Progress over items (questions, documents, tasks): a bar when stderr is a terminal,
/// nothing otherwise or with --quiet.
#[derive(Debug, Clone)]
pub(crate) struct ItemProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl ItemProgress {
    /// A bar of `total` items named `what`.
    pub fn new(global: &GlobalOptions, total: usize, what: &str) -> ItemProgress {
        let bar = (!global.quiet && std::io::stderr().is_terminal()).then(|| {
            let template = format!("{{bar:30}} {{pos}}/{{len}} {what} {{msg}}");
            let bar = indicatif::ProgressBar::new(total as u64).with_style(
                indicatif::ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        ItemProgress { bar }
    }

    /// `done` items are finished.
    pub fn set(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    /// Says what is being done now.
    pub fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
