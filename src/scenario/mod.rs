//! The scenario file: a TOML document that fully determines a run (with its seed).
//!
//! Unknown fields are rejected; every value is validated, and each message names the file, the
//! field, the value, what was expected and, where it can be found, the line. Each section's
//! type lives with the code that runs it ([`DataSpec`], [`MethodConfig`] with [`DistillRun`],
//! [`EvalSettings`], [`ExpertSettings`]) or in [`sections`].

pub mod distill;
pub mod edit;
pub mod report;
pub mod sections;
pub mod shortcut;
pub mod validate;

use crate::audit::AuditSettings;
pub use crate::data::spec::DataSpec;
use crate::data::Split;
use crate::device::DeviceKind;
use crate::distill::eval::EvalSettings;
use crate::distill::mtt::experts::ExpertSettings;
use crate::distill::MethodConfig;
use crate::error::{Error, Result};
use crate::model::{ConvNetSpec, MlpSpec, ModelSpec};
pub use distill::{DistillRun, DistillSection, MethodEntry};
pub use report::ReportSettings;
pub use sections::{
    Arch, ClEntry, ContinualSection, FederatedSection, ModelSection, Protocol, Published, Schedule,
    StrategyEntry, StreamKind, TrainSection,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; the results folder is `results/<name>-<timestamp>/`.
    pub name: String,
    /// Free text describing the scenario.
    #[serde(default)]
    pub description: String,
    /// What the run does.
    pub kind: Kind,
    /// Seed of every random choice in the run.
    #[serde(default)]
    pub seed: u64,
    /// Where tensors live.
    #[serde(default)]
    pub device: DeviceKind,
    /// The dataset.
    pub data: DataSpec,
    /// The network.
    #[serde(default)]
    pub model: ModelSection,
    /// Training: `kind = "train"`; the learner's per task (continual); FedAvg's local epochs.
    #[serde(default)]
    pub train: TrainSection,
    /// The method and the distillation run's settings.
    pub distill: Option<DistillSection>,
    /// How synthetic sets are evaluated (distill runs; the server's training, federated).
    pub eval: Option<EvalSettings>,
    /// Expert trajectories (trajectory-matching methods, or `kind = "experts"`).
    pub experts: Option<ExpertSettings>,
    /// The task stream, memory and learner (`kind = "continual"`).
    pub continual: Option<ContinualSection>,
    /// Clients, partition, strategies and the wire (`kind = "federated"`).
    pub federated: Option<FederatedSection>,
    /// The privacy audit of the run's sets (on by default in distill, continual and federated
    /// runs; `kind = "audit"` audits a set file).
    pub audit: Option<AuditSettings>,
    /// What the run writes for people at its end: `report.html`, TensorBoard events.
    #[serde(default)]
    pub report: ReportSettings,
    /// The published figure this scenario reproduces (read by `distillery fidelity`).
    pub published: Option<Published>,
}

/// The kinds of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Train fresh networks on the training set (or a random `ipc` selection) and test them.
    Train,
    /// Distil a synthetic set, then evaluate it (and the baselines) with fresh networks.
    Distill,
    /// Only train (the missing) expert trajectories of a `[experts]` section, for later runs.
    Experts,
    /// Stream tasks to a learner with a replay memory and measure forgetting (`[continual]`).
    Continual,
    /// Simulate federated clients and a server (`[federated]`).
    Federated,
    /// Federated clients whose data arrives as a task stream (`[federated]` and `[continual]`).
    FederatedContinual,
    /// Audit a synthetic set made elsewhere (`[audit] set`) against the data it came from.
    Audit,
}

impl Kind {
    /// The kind as a scenario names it (`federated_continual`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Train => "train",
            Kind::Distill => "distill",
            Kind::Experts => "experts",
            Kind::Continual => "continual",
            Kind::Federated => "federated",
            Kind::FederatedContinual => "federated_continual",
            Kind::Audit => "audit",
        }
    }

    /// True for the kinds whose sets the privacy audit examines.
    pub fn audited(self) -> bool {
        matches!(
            self,
            Kind::Distill | Kind::Continual | Kind::Federated | Kind::Audit
        )
    }
}

/// A scenario read from a file, with the file's location kept for resolving relative paths.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The parsed, validated scenario.
    pub scenario: Scenario,
    /// The file it came from.
    pub path: PathBuf,
    /// The file's exact text (copied into the results folder).
    pub text: String,
}

impl Loaded {
    /// Resolves a path from the scenario: absolute as is, relative to the scenario's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The settings `entry` runs with ([`DistillSection::config_for`]), paths resolved.
    pub fn method_config(&self, entry: &MethodEntry) -> Result<MethodConfig> {
        let d = self.scenario.distill_section();
        d.config_for(entry)
            .map(|c| c.resolved(|p| self.resolve(p)))
            .map_err(|m| Error::Scenario {
                path: self.path.clone(),
                msg: format!("{:?}: expected {m}", entry.name()),
            })
    }

    /// The `[distill]` table's own method, paths resolved.
    pub fn method(&self) -> MethodConfig {
        self.scenario
            .distill_section()
            .method
            .resolved(|p| self.resolve(p))
    }

    /// The scenario with its top-level `key` set to `value`, in the results' copy too.
    pub fn with_top_key(mut self, key: &str, value: impl Into<toml_edit::Value>) -> Result<Self> {
        self.text = edit::with_top_key(&self.text, key, value);
        let path = self.path.clone();
        let again = parse(&self.text, &path)?;
        self.scenario = again.scenario;
        Ok(self)
    }
}

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Parses and validates scenario text; `path` is used in messages and to resolve data paths.
pub fn parse(text: &str, path: &Path) -> Result<Loaded> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| Error::Scenario {
        path: path.to_path_buf(),
        msg: e.to_string().trim_end().to_string(),
    })?;
    validate::validate(&scenario, text).map_err(|msg| Error::Scenario {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok(Loaded {
        scenario,
        path: path.to_path_buf(),
        text: text.to_string(),
    })
}

impl Scenario {
    /// The distillation settings (defaults when the section is absent).
    pub fn distill_section(&self) -> DistillSection {
        self.distill.clone().unwrap_or_default()
    }

    /// The expert settings (defaults when the section is absent).
    pub fn experts_section(&self) -> ExpertSettings {
        self.experts.clone().unwrap_or_default()
    }

    /// The federated settings (defaults when the section is absent).
    pub fn federated_section(&self) -> FederatedSection {
        self.federated.clone().unwrap_or_default()
    }

    /// The continual settings (defaults when the section is absent).
    pub fn continual_section(&self) -> ContinualSection {
        self.continual.clone().unwrap_or_default()
    }

    /// The audit settings (defaults when the section is absent: on, a small budget).
    pub fn audit_section(&self) -> AuditSettings {
        self.audit.clone().unwrap_or_default()
    }

    /// The audit settings when this run is audited (None: not audited, or `enabled = false`).
    pub fn audit_if_on(&self) -> Option<AuditSettings> {
        let a = self.audit_section();
        (self.kind.audited() && a.enabled).then_some(a)
    }

    /// The evaluation settings (defaults when the section is absent).
    pub fn eval_section(&self) -> EvalSettings {
        self.eval.clone().unwrap_or_default()
    }

    /// The training configuration the `[train]` section describes.
    pub fn train_config(&self) -> crate::train::TrainConfig {
        use crate::train::{LrSchedule, TrainConfig};
        let t = &self.train;
        TrainConfig {
            epochs: t.epochs,
            batch_size: t.batch_size,
            lr: t.lr,
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            schedule: match t.schedule {
                Schedule::Step => LrSchedule::Step {
                    milestones: t.milestones.clone().unwrap_or(vec![t.epochs / 2 + 1]),
                    gamma: t.gamma,
                },
                Schedule::Cosine => LrSchedule::Cosine {
                    min_factor: t.min_lr_factor,
                },
                Schedule::Constant => LrSchedule::Constant,
            },
        }
    }

    /// The task stream `[continual]` asks for, cut from `split`.
    pub fn stream(
        &self,
        split: &Split,
    ) -> std::result::Result<Vec<crate::data::stream::Task>, String> {
        use crate::data::stream;
        let c = self.continual_section();
        match c.stream {
            StreamKind::ClassIncremental => match &c.class_groups {
                Some(g) => stream::class_groups(split, g),
                None => stream::class_incremental(split, c.tasks, c.shuffle_classes, self.seed),
            },
            StreamKind::Permuted => Ok(stream::permuted(split, c.tasks, self.seed)),
            StreamKind::Rotated => Ok(stream::rotated(split, c.tasks, c.max_degrees)),
        }
    }

    /// The network this scenario asks for, sized for `split`.
    pub fn model_spec(&self, split: &Split) -> ModelSpec {
        let input = split.train.shape;
        let k = split.train.num_classes();
        let m = &self.model;
        match m.arch {
            Arch::Convnet => ModelSpec::ConvNet(ConvNetSpec {
                input,
                num_classes: k,
                width: m.width,
                depth: m.depth,
                norm: m.norm,
                pooling: m.pooling,
            }),
            Arch::Mlp => ModelSpec::Mlp(MlpSpec {
                input,
                num_classes: k,
                hidden: m.hidden,
            }),
        }
    }
}
