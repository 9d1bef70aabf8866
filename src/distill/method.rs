//! The one place methods are named. A `[distill]` table (or a method entry in a list) reads into a
//! [`MethodConfig`]: its `method` key picks the variant, and the variant is that method's settings
//! struct, whose `Default` holds the method's reference defaults. A key another method takes is
//! an error naming the key, the method that takes it and the keys this one takes.

use super::dc::DcSettings;
use super::dm::DmSettings;
use super::frepo::FrepoSettings;
use super::mtt::MttSettings;
use super::select::SelectionSettings;
use super::selmatch::SelMatchSettings;
use super::soft::{self, SoftLabelSettings};
use crate::error::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// A method and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Distribution matching (Zhao & Bilen, WACV 2023).
    Dm(DmSettings),
    /// Matching training trajectories (Cazenavette et al., CVPR 2022).
    Mtt(MttSettings),
    /// Gradient matching, DC / DSA (Zhao et al., ICLR 2021; Zhao & Bilen, ICML 2021).
    Dc(DcSettings),
    /// Neural feature regression with a model pool, FRePo (Zhou et al., NeurIPS 2022).
    Frepo(FrepoSettings),
    /// SelMatch: MTT from a difficulty window with partial updates (Lee et al., ICML 2024).
    Selmatch(SelMatchSettings),
    /// Random real images per class.
    Random(SelectionSettings),
    /// Herding in a ConvNet's embedding.
    Herding(SelectionSettings),
    /// K-center greedy in a ConvNet's embedding.
    Kcenter(SelectionSettings),
}

impl MethodConfig {
    /// Every method, with its reference defaults.
    pub fn all() -> Vec<MethodConfig> {
        vec![
            MethodConfig::Dm(DmSettings::default()),
            MethodConfig::Mtt(MttSettings::default()),
            MethodConfig::Dc(DcSettings::default()),
            MethodConfig::Frepo(FrepoSettings::default()),
            MethodConfig::Selmatch(SelMatchSettings::default()),
            MethodConfig::Random(SelectionSettings::default()),
            MethodConfig::Herding(SelectionSettings::default()),
            MethodConfig::Kcenter(SelectionSettings::default()),
        ]
    }

    /// The method's name in scenarios, files and tables.
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Dm(_) => "dm",
            MethodConfig::Mtt(_) => "mtt",
            MethodConfig::Dc(_) => "dc",
            MethodConfig::Frepo(_) => "frepo",
            MethodConfig::Selmatch(_) => "selmatch",
            MethodConfig::Random(_) => "random",
            MethodConfig::Herding(_) => "herding",
            MethodConfig::Kcenter(_) => "kcenter",
        }
    }

    /// The method `name` with its reference defaults.
    pub fn defaults(name: &str) -> Option<MethodConfig> {
        Self::all().into_iter().find(|m| m.name() == name)
    }

    /// Every method's name.
    pub fn names() -> Vec<&'static str> {
        Self::all().iter().map(MethodConfig::name).collect()
    }

    /// Optimisation iterations (0 for a selection, which makes its set in one go).
    pub fn iterations(&self) -> usize {
        match self {
            MethodConfig::Dm(s) => s.iterations,
            MethodConfig::Mtt(s) => s.iterations,
            MethodConfig::Dc(s) => s.iterations,
            MethodConfig::Frepo(s) => s.iterations,
            MethodConfig::Selmatch(s) => s.mtt.iterations,
            _ => 0,
        }
    }

    /// Candidates per class a herding / k-center start or selection embeds (None: all).
    pub fn pool(&self) -> Option<usize> {
        match self {
            MethodConfig::Dm(s) => s.pool,
            MethodConfig::Dc(s) => s.pool,
            MethodConfig::Random(s) | MethodConfig::Herding(s) | MethodConfig::Kcenter(s) => s.pool,
            _ => None,
        }
    }

    /// Its differential privacy, when private (DM with `[distill.dp]`): the settings and the
    /// real images per class each iteration samples.
    pub fn privacy(&self) -> Option<(&crate::dp::DpSettings, usize)> {
        match self {
            MethodConfig::Dm(s) => s.dp.as_ref().map(|dp| (dp, s.batch_real)),
            _ => None,
        }
    }

    /// What `steps` of its iterations spent on data of class sizes `counts` (the classes of at
    /// least `min` images), when it is private.
    pub fn dp_spent(
        &self,
        counts: &[usize],
        min: usize,
        steps: usize,
    ) -> Option<crate::dp::DpSpent> {
        self.privacy()
            .map(|(dp, batch)| dp.spent(crate::dp::max_rate(batch, counts, min), steps))
    }

    /// True when it can distil around a given network (FedDM: DM's embedding taken with the
    /// global model).
    pub fn distils_around_a_network(&self) -> bool {
        matches!(self, MethodConfig::Dm(_))
    }

    /// True when the method optimises its set iteration after iteration (and so checkpoints).
    pub fn optimises(&self) -> bool {
        self.iterations() > 0
    }

    /// The trajectory matching it runs, if any (such a method needs expert trajectories).
    pub fn trajectory_matching(&self) -> Option<&MttSettings> {
        match self {
            MethodConfig::Mtt(s) => Some(s),
            MethodConfig::Selmatch(s) => Some(&s.mtt),
            _ => None,
        }
    }

    /// Parts per side of each stored image (IDM's partition and expansion; 1 for plain images).
    pub fn expand(&self) -> usize {
        match self {
            MethodConfig::Dm(d) => d.expand,
            _ => 1,
        }
    }

    /// Where its sets' soft labels come from (the keys every method takes).
    pub fn labels(&self) -> &SoftLabelSettings {
        match self {
            MethodConfig::Dm(s) => &s.labels,
            MethodConfig::Mtt(s) => &s.labels,
            MethodConfig::Dc(s) => &s.labels,
            MethodConfig::Frepo(s) => &s.labels,
            MethodConfig::Selmatch(s) => &s.mtt.labels,
            MethodConfig::Random(s) | MethodConfig::Herding(s) | MethodConfig::Kcenter(s) => {
                &s.labels
            }
        }
    }

    /// The real-image part of a set it makes: true for the selection baselines.
    pub fn selects(&self) -> bool {
        matches!(
            self,
            MethodConfig::Random(_) | MethodConfig::Herding(_) | MethodConfig::Kcenter(_)
        )
    }

    /// The settings' values that cannot work (`expert_epochs`: the experts' epochs).
    pub fn problems(&self, expert_epochs: usize) -> Vec<Problem> {
        let mut p = self.labels().problems();
        p.extend(match self {
            MethodConfig::Dm(s) => s.problems(),
            MethodConfig::Mtt(s) => s.problems(expert_epochs),
            MethodConfig::Dc(s) => s.problems(),
            MethodConfig::Frepo(s) => s.problems(),
            MethodConfig::Selmatch(s) => s.problems(expert_epochs),
            MethodConfig::Random(s) | MethodConfig::Herding(s) | MethodConfig::Kcenter(s) => {
                s.problems()
            }
        });
        p
    }

    /// This configuration with relative paths in it (SelMatch's `scores_csv`) resolved by `f`.
    pub fn resolved(mut self, f: impl Fn(&Path) -> std::path::PathBuf) -> Self {
        if let MethodConfig::Selmatch(s) = &mut self {
            s.scores_csv = s.scores_csv.as_deref().map(f);
        }
        self
    }

    /// The keys the method takes (besides `method`).
    pub fn keys(&self) -> BTreeSet<String> {
        let mut keys = keys_of(self);
        // `dp` is left out of a default's serialisation (so summaries of plain DM do not grow a
        // null field), but it is a key DM takes.
        // IDM's keys are left out when off for the same reason.
        if matches!(self, MethodConfig::Dm(_)) {
            keys.extend(["dp", "model_pool", "ce_weight", "expand"].map(String::from));
        }
        if matches!(self, MethodConfig::Mtt(_) | MethodConfig::Selmatch(_)) {
            keys.insert("lr_labels".into());
        }
        // Likewise the soft-label keys, which every method takes.
        keys.extend(soft::KEYS.map(String::from));
        keys
    }

    /// The method a table names (`method`, default `dm`) with the table's other keys over its
    /// reference defaults. An unknown key, a key of another method or a value of the wrong type
    /// is an error naming the key.
    pub fn from_map(table: &Map<String, Value>) -> Result<MethodConfig, String> {
        let name = match table.get("method") {
            None => "dm",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(format!("method = {other}: expected a method name")),
        };
        let Some(defaults) = MethodConfig::defaults(name) else {
            return Err(format!(
                "method = {name:?}: expected one of {}",
                MethodConfig::names().join(", ")
            ));
        };
        let keys = defaults.keys();
        for k in table.keys().filter(|k| *k != "method") {
            if !keys.contains(k) {
                return Err(foreign_key(k, name, &keys));
            }
        }
        let mut merged = match serde_json::to_value(&defaults) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("{name}: its defaults do not serialise as a table")),
        };
        for (k, v) in table {
            merged.insert(k.clone(), v.clone());
        }
        serde_json::from_value(Value::Object(merged.clone())).map_err(|e| {
            // Name the key whose value does not fit: the first that fails on its own.
            let bad = table.iter().find(|(k, v)| {
                let mut one = serde_json::to_value(&defaults)
                    .ok()
                    .and_then(|d| d.as_object().cloned())
                    .unwrap_or_default();
                one.insert((*k).clone(), (*v).clone());
                serde_json::from_value::<MethodConfig>(Value::Object(one)).is_err()
            });
            match bad {
                Some((k, v)) => format!("{k} = {v}: {e}"),
                None => e.to_string(),
            }
        })
    }
}

/// The keys (besides `method`) a value serialises with.
fn keys_of(v: &impl Serialize) -> BTreeSet<String> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m.keys().filter(|k| *k != "method").cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// The message for `key`, which method `name` does not take.
fn foreign_key(key: &str, name: &str, keys: &BTreeSet<String>) -> String {
    let owners: Vec<&str> = MethodConfig::all()
        .iter()
        .filter(|m| m.keys().contains(key))
        .map(MethodConfig::name)
        .collect();
    let takes = keys.iter().cloned().collect::<Vec<_>>().join(", ");
    if owners.is_empty() {
        format!("unknown key `{key}`; method = \"{name}\" takes {takes}")
    } else {
        format!(
            "`{key}` is a setting of {}, not of method = \"{name}\" (which takes {takes})",
            owners.join(" and ")
        )
    }
}
