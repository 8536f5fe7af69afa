//! What a run prints while it goes: a progress bar on a terminal, one line per node
//! otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::graph::{Node, ResourceType};

/// Where per-node lines go: a progress bar on a terminal, plain lines otherwise.
pub(super) struct Output {
    bar: Option<ProgressBar>,
}

impl Output {
    pub(super) fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() && total > 0 {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Output { bar: Some(bar) }
        } else {
            Output { bar: None }
        }
    }

    pub(super) fn line(&self, text: &str) {
        let text = &*crate::env::mask(text);
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    pub(super) fn running(&self, running: &[&str], done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            let names: Vec<&str> = running.iter().copied().take(4).collect();
            bar.set_message(format!("running: {}", names.join(", ")));
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(super) fn describe(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Seed => format!("seed {}", node.relation),
        ResourceType::Test => format!("test {}", node.name),
        ResourceType::UnitTest => format!(
            "unit test {}.{}",
            node.unit().map_or("", |u| u.model.as_str()),
            node.name
        ),
        _ => format!("{} {}", node.materialized().as_str(), node.relation),
    }
}
