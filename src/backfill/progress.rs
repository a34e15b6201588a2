//! Progress of a backfill run: an indicatif bar when stderr is a terminal,
//! one JSON object per line on stdout otherwise (for logs and scripts).

use super::summary::{ObjectReport, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};

/// Chosen once per run with [`Progress::auto`].
pub enum Progress {
    Bar(ProgressBar),
    JsonLines,
    /// Tests and the demo: report nothing.
    Silent,
}

impl Progress {
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar(ProgressBar::hidden())
        } else {
            Self::JsonLines
        }
    }

    /// `objects` spillover objects matched the filters.
    pub fn start(&self, objects: u64) {
        match self {
            Self::Bar(bar) => {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(objects);
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} objects  {msg}",
                ) {
                    bar.set_style(style);
                }
            }
            Self::JsonLines => line(&serde_json::json!({"event": "start", "objects": objects})),
            Self::Silent => {}
        }
    }

    pub fn object(&self, report: &ObjectReport) {
        match self {
            Self::Bar(bar) => {
                bar.inc(1);
                if let Some(err) = &report.error {
                    bar.println(format!("left behind: {}: {err}", report.key));
                }
                bar.set_message(report.key.clone());
            }
            Self::JsonLines => {
                let mut v = serde_json::to_value(report).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("event".into(), "object".into());
                }
                line(&v);
            }
            Self::Silent => {}
        }
    }

    /// Prints the summary: a table on a terminal, a JSON line otherwise.
    pub fn finish(&self, summary: &Summary) {
        match self {
            Self::Bar(bar) => {
                bar.finish_and_clear();
                let _ = write!(std::io::stdout().lock(), "{summary}");
            }
            Self::JsonLines => {
                let mut v = serde_json::to_value(summary).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("event".into(), "summary".into());
                }
                line(&v);
            }
            Self::Silent => {}
        }
    }
}

fn line(v: &serde_json::Value) {
    // A closed stdout is not a reason to stop replaying data.
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}
