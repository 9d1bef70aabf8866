//! The scenario's `[report]` section: what a run writes for people to look at when it ends.

use serde::{Deserialize, Serialize};

/// `[report]`: the HTML report (on by default) and TensorBoard event files (off by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Write `report.html` in the results folder at the end of the run.
    #[serde(default = "yes")]
    pub html: bool,
    /// Write a TensorBoard event file (`events.out.tfevents.*`) in the results folder.
    #[serde(default)]
    pub tensorboard: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            html: true,
            tensorboard: false,
        }
    }
}
