//! The `[distill]` table: the method (its `method` key and settings, a [`MethodConfig`]) and the
//! run's own keys ([`DistillRun`]: images per class, baselines, logging, checkpoints, budgets).
//! The same table means the same thing in a distill, federated or continual scenario.

use crate::distill::MethodConfig;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// A method named in a list (a baseline, a continual memory): bare, or with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum MethodEntry {
    /// `"herding"`: the settings of [`DistillSection::config_for`].
    Named(String),
    /// `{ method = "herding", pool = 2000 }`: its own settings over the defaults.
    Inline(Box<MethodConfig>),
}

impl MethodEntry {
    /// The method's name.
    pub fn name(&self) -> String {
        match self {
            MethodEntry::Named(n) => n.clone(),
            MethodEntry::Inline(c) => c.name().to_string(),
        }
    }
}

impl Serialize for MethodEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MethodEntry::Named(n) => s.serialize_str(n),
            MethodEntry::Inline(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MethodEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(MethodEntry::Named(s)),
            Value::Object(m) => MethodConfig::from_map(&m)
                .map(|c| MethodEntry::Inline(Box::new(c)))
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "{other}: expected a method name or a table with `method` and its settings"
            ))),
        }
    }
}

/// The keys of a `[distill]` table that belong to the run rather than the method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistillRun {
    /// Images per class.
    pub ipc: usize,
    /// Methods evaluated beside the method with the same protocol (distill runs).
    pub baselines: Vec<MethodEntry>,
    /// Write the loss to `metrics.csv` every this many iterations.
    pub log_every: usize,
    /// Save a resumable checkpoint every this many iterations.
    pub checkpoint_every: usize,
    /// Evaluate the set every this many iterations (0: only at the end).
    pub eval_every: usize,
    /// Measure the set's coverage every this many iterations into `coverage.csv` (0: only at
    /// the end); needs `[eval] coverage`.
    pub coverage_every: usize,
    /// A time budget: each optimising method stops after the first iteration that ends this many
    /// seconds into its distillation (mid-run evaluations and SelMatch's selection not counted;
    /// a resumed run's budget counts from the resume). Absent: run all iterations.
    pub max_seconds: Option<f64>,
    /// DSA strategy for distillation, evaluation and experts; default
    /// `color_crop_cutout_flip_scale_rotate`, without `flip` for digit datasets.
    pub dsa_strategy: Option<String>,
}

impl Default for DistillRun {
    fn default() -> Self {
        DistillRun {
            ipc: 10,
            baselines: ["random", "herding", "kcenter"]
                .map(|m| MethodEntry::Named(m.into()))
                .to_vec(),
            log_every: 10,
            checkpoint_every: 100,
            eval_every: 0,
            coverage_every: 0,
            max_seconds: None,
            dsa_strategy: None,
        }
    }
}

/// The `[distill]` table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistillSection {
    /// The method and its settings.
    #[serde(flatten)]
    pub method: MethodConfig,
    /// The run's keys.
    #[serde(flatten)]
    pub run: DistillRun,
    /// The keys the scenario wrote (the rest are defaults).
    #[serde(skip)]
    pub given: BTreeSet<String>,
}

impl Default for DistillSection {
    fn default() -> Self {
        DistillSection {
            method: MethodConfig::defaults("dm").expect("dm is a method"),
            run: DistillRun::default(),
            given: BTreeSet::new(),
        }
    }
}

impl DistillSection {
    /// Reads a `[distill]` table: its run keys into [`DistillRun`], the rest into the method.
    pub fn from_map(table: &Map<String, Value>) -> Result<Self, String> {
        let run_keys: BTreeSet<String> = match serde_json::to_value(DistillRun::default()) {
            Ok(Value::Object(m)) => m.keys().cloned().collect(),
            _ => BTreeSet::new(),
        };
        let (run, method): (Map<String, Value>, Map<String, Value>) = table
            .clone()
            .into_iter()
            .partition(|(k, _)| run_keys.contains(k));
        let mut merged = match serde_json::to_value(DistillRun::default()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        merged.extend(run);
        let run: DistillRun = serde_json::from_value(Value::Object(merged))
            .map_err(|e| format!("a run key of [distill]: {e}"))?;
        Ok(DistillSection {
            method: MethodConfig::from_map(&method)?,
            run,
            given: table.keys().cloned().collect(),
        })
    }

    /// The settings a method entry runs with (an error says what a bad name should have been):
    /// an inline entry's own; for a bare name, this
    /// table's method when it is that one, the trajectory matching of a SelMatch table for
    /// `mtt` (same settings, so the two sets differ only by SelMatch's window and partial
    /// updates), else the method's reference defaults.
    pub fn config_for(&self, entry: &MethodEntry) -> Result<MethodConfig, String> {
        match entry {
            MethodEntry::Inline(c) => Ok((**c).clone()),
            MethodEntry::Named(n) if n == self.method.name() => Ok(self.method.clone()),
            MethodEntry::Named(n) => match (&self.method, n.as_str()) {
                (MethodConfig::Selmatch(s), "mtt") => Ok(MethodConfig::Mtt(s.mtt.clone())),
                _ => MethodConfig::defaults(n)
                    .ok_or_else(|| format!("one of {}", MethodConfig::names().join(", "))),
            },
        }
    }
}

impl<'de> Deserialize<'de> for DistillSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Map::<String, Value>::deserialize(d)?;
        DistillSection::from_map(&table).map_err(D::Error::custom)
    }
}
