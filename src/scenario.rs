//! The scenario file: a TOML document that fully determines a run (with its seed).
//!
//! Unknown fields are rejected; every value is validated, and each message names the file, the
//! field, the value, what was expected and, where it can be found, the line.

use crate::device::DeviceKind;
use crate::error::{Error, Result};
use crate::model::{Norm, Pooling};
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
    /// Training settings (`kind = "train"`).
    #[serde(default)]
    pub train: TrainSection,
    /// Distillation settings (`kind = "distill"`).
    pub distill: Option<DistillSection>,
    /// How synthetic sets are evaluated (`kind = "distill"`).
    pub eval: Option<EvalSection>,
    /// Expert trajectories (`method = "mtt"`, or `kind = "experts"`).
    pub experts: Option<ExpertsSection>,
    /// The task stream, memory and learner (`kind = "continual"`).
    pub continual: Option<ContinualSection>,
    /// Clients, partition, strategies and the wire (`kind = "federated"`).
    pub federated: Option<FederatedSection>,
}

/// The kinds of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Train fresh networks on the training set (or a random `ipc` selection) and test them.
    Train,
    /// Distil a synthetic set, then evaluate it (and the selection baselines) with fresh networks.
    Distill,
    /// Only train (the missing) expert trajectories of a `[experts]` section, for later MTT runs.
    Experts,
    /// Stream tasks to a learner with a replay memory and measure forgetting (`[continual]`).
    Continual,
    /// Simulate federated clients and a server (`[federated]`).
    Federated,
}

/// Distillation methods and selection baselines, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Distribution matching.
    Dm,
    /// Matching training trajectories.
    Mtt,
    /// SelMatch: MTT from a difficulty window with partial updates.
    Selmatch,
    /// Random real images per class.
    Random,
    /// Herding in a ConvNet's embedding.
    Herding,
    /// K-center greedy in a ConvNet's embedding.
    Kcenter,
}

impl Method {
    /// The name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Dm => "dm",
            Method::Mtt => "mtt",
            Method::Selmatch => "selmatch",
            Method::Random => "random",
            Method::Herding => "herding",
            Method::Kcenter => "kcenter",
        }
    }
}

/// The `[distill]` section (defaults are the DM reference's, REFERENCE.md §1.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillSection {
    /// The method whose set is made.
    pub method: Method,
    /// Images per class.
    pub ipc: usize,
    /// Optimisation iterations (default: dm 20000, mtt 5000).
    pub iterations: Option<usize>,
    /// Learning rate of the synthetic images (default: dm 1, mtt 1000).
    pub lr_img: Option<f64>,
    /// Momentum of the image optimiser.
    pub momentum: f64,
    /// Real images per class per iteration.
    pub batch_real: usize,
    /// Initialisation: `noise`, `real`, `herding` or `kcenter`.
    pub init: crate::distill::InitKind,
    /// Differentiable Siamese augmentation while distilling and evaluating.
    pub dsa: bool,
    /// DSA strategy; default `color_crop_cutout_flip_scale_rotate`, without `flip` for digits.
    pub dsa_strategy: Option<String>,
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
    /// a resumed run's budget counts from the resume). Absent: run all `iterations`.
    pub max_seconds: Option<f64>,
    /// Candidates per class embedded by herding / k-center (all when absent).
    pub pool: Option<usize>,
    /// Epochs the herding / k-center embedding net trains on real data first (0: random init).
    pub embed_epochs: usize,
    /// Selection baselines evaluated beside the method with the same protocol.
    pub baselines: Vec<Method>,
    /// MTT: inner SGD steps on the synthetic set (N).
    pub syn_steps: usize,
    /// MTT: expert epochs matched (M).
    pub expert_epochs: usize,
    /// MTT: start epochs are drawn from 0..max_start_epoch.
    pub max_start_epoch: usize,
    /// MTT: learning rate of the learnable step size.
    pub lr_lr: f64,
    /// MTT: initial step size (the experts' learning rate).
    pub lr_teacher: f64,
    /// MTT: synthetic images per inner step (default all).
    pub batch_syn: Option<usize>,
    /// MTT: unroll with the hand-written ConvNet backward (one autodiff level) where supported;
    /// false: nested autodiff. Same gradient either way.
    pub hand_written_backward: bool,
    /// MTT: how the hand-written backward forms convolution gradients: `conv` (conv2d on swapped
    /// dims and conv_transpose2d, as burn's own backward) or `matmul` (shifted-window matmuls and
    /// a flipped-kernel 3x3 conv2d). Same numbers; `matmul` avoids image-sized convolution kernels.
    pub conv_grads: crate::model::backward::ConvGrads,
    /// MTT on a GPU: check the first iteration's step against the CPU's from the same inputs and,
    /// if the configured gradient form disagrees, go on with one that agrees (or stop with an
    /// error when none does). Ignored on the CPU.
    pub check_device: bool,
    /// SelMatch: the fraction of each class's images that is distilled (the easier ones).
    pub alpha: f64,
    /// SelMatch: the window start (skip `floor(ipc * beta)` hardest per class); absent: search
    /// `beta_grid` and keep the window whose images train the best network.
    pub beta: Option<f64>,
    /// SelMatch: the window starts the search tries.
    pub beta_grid: Vec<f64>,
    /// SelMatch: evaluation networks trained on each candidate window.
    pub window_repeats: usize,
    /// SelMatch: epochs those networks train (default: the evaluation's).
    pub window_epochs: Option<usize>,
    /// SelMatch: difficulty scores computed in-house, `forgetting` or `el2n`.
    pub difficulty: crate::distill::selmatch::scores::ScoreKind,
    /// SelMatch: epochs of the training run that scores difficulty.
    pub difficulty_epochs: usize,
    /// SelMatch: precomputed scores instead (CSV `index,score`, higher is harder).
    pub scores_csv: Option<PathBuf>,
}

impl DistillSection {
    /// Iterations, or the method's reference default.
    pub fn iterations(&self) -> usize {
        self.iterations.unwrap_or(match self.method {
            Method::Mtt => 5000,
            Method::Selmatch => 10000,
            Method::Dm => 20000,
            _ => 0,
        })
    }

    /// The image learning rate, or the method's reference default.
    pub fn lr_img(&self) -> f64 {
        self.lr_img.unwrap_or(match self.method {
            Method::Mtt | Method::Selmatch => 1000.0,
            _ => 1.0,
        })
    }
}

/// The `[experts]` section: expert trajectories for MTT (defaults REFERENCE.md §1.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpertsSection {
    /// Folder of the experts (relative to the scenario); default `<results>/experts/<settings>`.
    pub dir: Option<PathBuf>,
    /// Number of experts.
    pub count: usize,
    /// Epochs each expert trains (snapshots after each).
    pub epochs: usize,
    /// Their learning rate (no momentum, no weight decay, as the reference).
    pub lr: f64,
    /// Their minibatch size.
    pub batch_size: usize,
    /// DSA while training them.
    pub dsa: bool,
    /// The seed they train from (default: the scenario's), so that runs with other seeds can
    /// reuse one set of experts, as the reference reuses its buffers.
    pub seed: Option<u64>,
}

impl ExpertsSection {
    /// The seed the experts train from: theirs when set, else the scenario's `scenario_seed`.
    pub fn seed_or(&self, scenario_seed: u64) -> u64 {
        self.seed.unwrap_or(scenario_seed)
    }
}

impl Default for ExpertsSection {
    fn default() -> Self {
        ExpertsSection {
            dir: None,
            count: 100,
            epochs: 50,
            lr: 0.01,
            batch_size: 256,
            dsa: true,
            seed: None,
        }
    }
}

impl Default for DistillSection {
    fn default() -> Self {
        DistillSection {
            method: Method::Dm,
            ipc: 10,
            iterations: None,
            lr_img: None,
            momentum: 0.5,
            batch_real: 256,
            init: crate::distill::InitKind::Real,
            dsa: true,
            dsa_strategy: None,
            log_every: 10,
            checkpoint_every: 100,
            eval_every: 0,
            coverage_every: 0,
            max_seconds: None,
            pool: None,
            embed_epochs: 0,
            baselines: vec![Method::Random, Method::Herding, Method::Kcenter],
            syn_steps: 20,
            expert_epochs: 3,
            max_start_epoch: 25,
            lr_lr: 1e-5,
            lr_teacher: 0.01,
            batch_syn: None,
            hand_written_backward: true,
            conv_grads: crate::model::backward::ConvGrads::Conv,
            check_device: true,
            alpha: 0.5,
            beta: None,
            beta_grid: (0..10).map(|i| i as f64 / 10.0).collect(),
            window_repeats: 1,
            window_epochs: None,
            difficulty: crate::distill::selmatch::scores::ScoreKind::Forgetting,
            difficulty_epochs: 10,
            scores_csv: None,
        }
    }
}

/// The `[federated]` section. FedAvg's local training is `[train]` (epochs per round); the
/// server's training on synthetic sets is `[eval]`'s protocol; DM clients use `[distill]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederatedSection {
    /// Number of clients.
    pub clients: usize,
    /// How the training set is spread over them (`{ kind = "dirichlet", alpha = 0.1, min_size = 10 }`).
    pub partition: crate::data::partition::Partitioning,
    /// Strategies compared, in order.
    pub strategies: Vec<crate::fed::strategy::StrategyKind>,
    /// Rounds of fedavg and distilled_iterative.
    pub rounds: usize,
    /// Share of clients selected per round.
    pub fraction: f64,
    /// Fewest accepted updates for a round to count.
    pub min_clients: usize,
    /// Seconds the server waits for answers each round (none: until all answered).
    pub deadline_seconds: Option<f64>,
    /// Probability that a selected client drops out of a round.
    pub dropout: f64,
    /// How tensors travel: `f32`, `f16` or `u8`.
    pub quantization: crate::fed::wire::Quantization,
    /// Largest message accepted (bytes).
    pub max_message_bytes: usize,
    /// Images per class each client sends (distilled strategies).
    pub ipc: usize,
    /// How clients make their sets: `dm`, `random`, `herding`, `kcenter`.
    pub distiller: crate::fed::strategy::ClientDistiller,
    /// distilled_iterative: norm of the random perturbation of the global model.
    pub rho: f64,
    /// Stop fedavg once it reaches distilled_oneshot's accuracy (when that ran before it).
    pub fedavg_until_oneshot: bool,
    /// Shared token clients present over gRPC (also `DISTILLERY_TOKEN`).
    pub token: Option<String>,
    /// Worker threads for client compute (default: all cores).
    pub workers: Option<usize>,
    /// Injected faults, for testing robustness.
    pub faults: crate::fed::engine::Faults,
}

impl Default for FederatedSection {
    fn default() -> Self {
        FederatedSection {
            clients: 10,
            partition: crate::data::partition::Partitioning::Iid,
            strategies: vec![
                crate::fed::strategy::StrategyKind::DistilledOneshot,
                crate::fed::strategy::StrategyKind::Fedavg,
            ],
            rounds: 20,
            fraction: 1.0,
            min_clients: 1,
            deadline_seconds: None,
            dropout: 0.0,
            quantization: crate::fed::wire::Quantization::F32,
            max_message_bytes: 64 << 20,
            ipc: 10,
            distiller: crate::fed::strategy::ClientDistiller::Dm,
            rho: 5.0,
            fedavg_until_oneshot: true,
            token: None,
            workers: None,
            faults: crate::fed::engine::Faults::default(),
        }
    }
}

/// How a continual stream is built from the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Disjoint groups of classes, one shared head (Split-MNIST: 5 tasks of 2 classes).
    ClassIncremental,
    /// Every class in every task, pixels permuted by a fixed per-task permutation.
    Permuted,
    /// Every class in every task, rotated by a fixed per-task angle.
    Rotated,
}

/// How the continual learner uses its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// One network trained task after task on the task's data mixed with replayed memory.
    Streaming,
    /// After each task a fresh network trains on the whole memory only (GDumb; the DM paper's
    /// continual protocol, REFERENCE.md §4.1).
    Gdumb,
}

/// What a continual learner keeps and trains on, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClStrategy {
    /// No memory: train on each task in turn (the lower bound; streaming whatever the protocol).
    Finetune,
    /// All data seen so far (the upper bound; a fresh network per task under `gdumb`).
    Joint,
    /// A memory of random real images.
    Random,
    /// A memory of herding-selected real images.
    Herding,
    /// A memory of k-center-selected real images.
    Kcenter,
    /// A memory of DM-distilled images (settings from `[distill]`).
    Dm,
}

impl ClStrategy {
    /// The name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            ClStrategy::Finetune => "finetune",
            ClStrategy::Joint => "joint",
            ClStrategy::Random => "random",
            ClStrategy::Herding => "herding",
            ClStrategy::Kcenter => "kcenter",
            ClStrategy::Dm => "dm",
        }
    }

    /// True for strategies that fill a memory.
    pub fn has_memory(self) -> bool {
        !matches!(self, ClStrategy::Finetune | ClStrategy::Joint)
    }
}

/// The `[continual]` section: task stream, memory and learner. The learner's per-task training
/// is the `[train]` section (epochs per task); distilled memories use `[distill]`'s settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContinualSection {
    /// `class_incremental`, `permuted` or `rotated`.
    pub stream: StreamKind,
    /// Number of tasks (class-incremental: must divide the number of classes).
    pub tasks: usize,
    /// Class-incremental: shuffle the class order with the seed (else 0, 1, 2, ...).
    pub shuffle_classes: bool,
    /// Class-incremental: explicit groups of classes, one task each (instead of `tasks` equal
    /// groups), e.g. `[[0, 1, 2], [3, 4], [5, 6, 7, 8, 9]]`.
    pub class_groups: Option<Vec<Vec<usize>>>,
    /// Rotated: task t is rotated by t * max_degrees / (tasks - 1) degrees.
    pub max_degrees: f64,
    /// Task-incremental evaluation and training: a task's own classes form its head.
    pub task_incremental: bool,
    /// `streaming` or `gdumb`.
    pub protocol: Protocol,
    /// Strategies compared, each from the same initial network.
    pub strategies: Vec<ClStrategy>,
    /// Memory images per class (per class and task on domain streams).
    pub memory_per_class: Option<usize>,
    /// Memory images in all, shared equally by the classes seen (instead of per class).
    pub memory_total: Option<usize>,
    /// Streaming: share of each minibatch replayed from the memory.
    pub replay_fraction: f64,
    /// Gdumb: epochs of the fresh network on the memory (its optimiser is `[train]`'s).
    pub memory_epochs: usize,
    /// Per-sample DSA while the learner trains.
    pub dsa: bool,
}

impl Default for ContinualSection {
    fn default() -> Self {
        ContinualSection {
            stream: StreamKind::ClassIncremental,
            tasks: 5,
            shuffle_classes: false,
            class_groups: None,
            max_degrees: 90.0,
            task_incremental: false,
            protocol: Protocol::Streaming,
            strategies: vec![
                ClStrategy::Finetune,
                ClStrategy::Random,
                ClStrategy::Herding,
                ClStrategy::Dm,
                ClStrategy::Joint,
            ],
            memory_per_class: None,
            memory_total: None,
            replay_fraction: 0.5,
            memory_epochs: 300,
            dsa: false,
        }
    }
}

impl ContinualSection {
    /// The memory budget (10 per class when neither field is given).
    pub fn budget(&self) -> crate::cl::memory::Budget {
        use crate::cl::memory::Budget;
        match (self.memory_total, self.memory_per_class) {
            (Some(t), _) => Budget::Total(t),
            (None, Some(n)) => Budget::PerClass(n),
            (None, None) => Budget::PerClass(10),
        }
    }
}

/// The `[eval]` section: the evaluation protocol (defaults REFERENCE.md §1.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Epochs each fresh network trains on the set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Learning rate (divided by 10 at epochs / 2 + 1).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Fresh networks per architecture.
    pub repeats: usize,
    /// DSA (one draw per sample) while training them.
    pub dsa: bool,
    /// Architectures: `convnet` (the `[model]` net), `convnet_bn`, `convnet_nonorm`,
    /// `convnet_maxpool`, `convnet_wide`, `mlp`.
    pub models: Vec<String>,
    /// Learning-rate schedule: `step` (x0.1 at epochs / 2 + 1, the reference) or `cosine`
    /// (to zero, SelMatch's evaluation).
    pub schedule: EvalSchedule,
    /// Train with a set's learned step size when it has one (MTT's evaluation); false: `lr`.
    pub learned_lr: bool,
    /// Plain augmentation of selected real images (SelMatch's combined augmentation): largest
    /// shift in pixels.
    pub plain_pad: usize,
    /// Plain augmentation: mirror half of the images (default: yes, except for digits).
    pub plain_flip: Option<bool>,
    /// Report every set's coverage (SelMatch's diagnostic) in the summary.
    pub coverage: bool,
    /// Epochs the coverage network trains on the real data.
    pub coverage_epochs: usize,
    /// Real training samples (a seeded random subset) that set the coverage radius.
    pub coverage_sample: usize,
}

/// The evaluation's learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSchedule {
    /// x0.1 at epochs / 2 + 1.
    #[default]
    Step,
    /// Cosine decay to zero.
    Cosine,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            epochs: 1000,
            batch_size: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            repeats: 5,
            dsa: true,
            models: vec!["convnet".into()],
            schedule: EvalSchedule::Step,
            learned_lr: true,
            plain_pad: 4,
            plain_flip: None,
            coverage: true,
            coverage_epochs: 1,
            coverage_sample: 2000,
        }
    }
}

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// The 8x8 digits embedded in the binary (1797 images, seeded 80/20 split).
    Digits {
        /// Seed of the train/test split (kept apart from the run seed so the test set is stable).
        #[serde(default)]
        split_seed: u64,
    },
    /// MNIST-family IDX files (gzip or raw). Relative paths are relative to the scenario file.
    Idx {
        /// `mnist`, `fashion_mnist`, or another name (normalisation then comes from the data).
        #[serde(default = "default_idx_name")]
        name: String,
        /// Training images file.
        train_images: PathBuf,
        /// Training labels file.
        train_labels: PathBuf,
        /// Test images file.
        test_images: PathBuf,
        /// Test labels file.
        test_labels: PathBuf,
    },
    /// CIFAR-10 binary files: `dir` holding `data_batch_{1..5}.bin` and `test_batch.bin`, or
    /// explicit `train_files` / `test_files`.
    Cifar10 {
        /// The extracted `cifar-10-batches-bin` folder.
        dir: Option<PathBuf>,
        /// Training batch files (instead of `dir`).
        #[serde(default)]
        train_files: Vec<PathBuf>,
        /// Test batch files (instead of `dir`).
        #[serde(default)]
        test_files: Vec<PathBuf>,
        /// ZCA-whiten train and test images with the training set's statistics (MTT's reference
        /// does for CIFAR; SelMatch's does not).
        #[serde(default)]
        zca: bool,
        /// The regulariser added to the covariance's eigenvalues.
        #[serde(default = "default_zca_eps")]
        zca_eps: f64,
    },
    /// CIFAR-100 binary files: `dir` holding `train.bin` and `test.bin`, or explicit files.
    Cifar100 {
        /// The extracted `cifar-100-binary` folder.
        dir: Option<PathBuf>,
        /// Training files (instead of `dir`).
        #[serde(default)]
        train_files: Vec<PathBuf>,
        /// Test files (instead of `dir`).
        #[serde(default)]
        test_files: Vec<PathBuf>,
        /// ZCA-whiten train and test images with the training set's statistics (MTT's reference
        /// does for CIFAR; SelMatch's does not).
        #[serde(default)]
        zca: bool,
        /// The regulariser added to the covariance's eigenvalues.
        #[serde(default = "default_zca_eps")]
        zca_eps: f64,
    },
    /// Procedural images (class prototypes plus noise).
    Synthetic {
        /// Training images.
        train: usize,
        /// Test images.
        test: usize,
        /// Channels.
        #[serde(default = "one")]
        channels: usize,
        /// Height and width.
        #[serde(default = "default_size")]
        size: usize,
        /// Number of classes.
        #[serde(default = "ten")]
        classes: usize,
        /// Pixel noise standard deviation.
        #[serde(default = "default_noise")]
        noise: f32,
    },
}

/// Network architecture families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The DD-literature ConvNet.
    Convnet,
    /// The 3-layer perceptron.
    Mlp,
}

/// The `[model]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `convnet` or `mlp`.
    pub arch: Arch,
    /// ConvNet channels per layer.
    pub width: usize,
    /// ConvNet blocks.
    pub depth: usize,
    /// ConvNet normalisation.
    pub norm: Norm,
    /// ConvNet pooling.
    pub pooling: Pooling,
    /// MLP hidden width.
    pub hidden: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            arch: Arch::Convnet,
            width: 128,
            depth: 3,
            norm: Norm::Instance,
            pooling: Pooling::Avg,
            hidden: 128,
        }
    }
}

/// Learning-rate schedule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Drop by `gamma` at `milestones` (default: once, at epoch E/2 + 1, as the reference).
    Step,
    /// Cosine decay to `lr * min_lr_factor`.
    Cosine,
    /// Fixed rate.
    Constant,
}

/// The `[train]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Step schedule milestones (0-based epochs); default `[epochs / 2 + 1]`.
    pub milestones: Option<Vec<usize>>,
    /// Step schedule factor.
    pub gamma: f64,
    /// Cosine schedule floor as a fraction of `lr`.
    pub min_lr_factor: f64,
    /// Train on a random selection of this many images per class instead of the full set.
    pub ipc: Option<usize>,
    /// Number of freshly initialised networks trained (results give mean and std).
    pub repeats: usize,
    /// Evaluate on the test set every this many epochs (and always after the last).
    pub eval_every: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 10,
            batch_size: 256,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Step,
            milestones: None,
            gamma: 0.1,
            min_lr_factor: 0.01,
            ipc: None,
            repeats: 1,
            eval_every: 1,
        }
    }
}

fn default_zca_eps() -> f64 {
    0.1
}

fn default_idx_name() -> String {
    "mnist".into()
}
fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn default_size() -> usize {
    28
}
fn default_noise() -> f32 {
    0.3
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
    validate(&scenario, text).map_err(|msg| Error::Scenario {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok(Loaded {
        scenario,
        path: path.to_path_buf(),
        text: text.to_string(),
    })
}

/// The 1-based line of `key` inside `[section]` (or at top level when `section` is empty).
fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        if current == section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

struct Checker<'a> {
    text: &'a str,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, section: &str, key: &str, value: impl std::fmt::Display, expected: &str) {
        let field = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        };
        let at = locate(self.text, section, key)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        self.errors
            .push(format!("{field} = {value}{at}: expected {expected}"));
    }

    fn positive(&mut self, section: &str, key: &str, v: usize) {
        if v == 0 {
            self.fail(section, key, v, "a positive integer");
        }
    }

    /// Checks an SGD learning rate, momentum and weight decay in `section`.
    fn sgd(&mut self, section: &str, lr: f64, momentum: f64, weight_decay: f64) {
        self.require(
            lr > 0.0 && lr <= 100.0,
            section,
            "lr",
            lr,
            "a learning rate in (0, 100]",
        );
        self.require(
            (0.0..1.0).contains(&momentum),
            section,
            "momentum",
            momentum,
            "a momentum in [0, 1)",
        );
        self.require(
            (0.0..=1.0).contains(&weight_decay),
            section,
            "weight_decay",
            weight_decay,
            "a weight decay in [0, 1]",
        );
    }

    /// Records a problem unless `ok`.
    fn require(
        &mut self,
        ok: bool,
        section: &str,
        key: &str,
        value: impl std::fmt::Display,
        what: &str,
    ) {
        if !ok {
            self.fail(section, key, value, what);
        }
    }
}

/// Checks every value of a parsed scenario; returns all problems found, one per line.
pub fn validate(s: &Scenario, text: &str) -> std::result::Result<(), String> {
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    if s.name.trim().is_empty()
        || !s
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.fail(
            "",
            "name",
            format!("{:?}", s.name),
            "a non-empty name of letters, digits, '-', '_' or '.' (it names the results folder)",
        );
    }
    match &s.data {
        DataSpec::Synthetic {
            train,
            test,
            channels,
            size,
            classes,
            noise,
        } => {
            c.positive("data", "train", *train);
            c.positive("data", "test", *test);
            if !(1..=4).contains(channels) {
                c.fail("data", "channels", channels, "1 to 4 channels");
            }
            if !(4..=256).contains(size) {
                c.fail("data", "size", size, "an image size from 4 to 256");
            }
            if !(2..=1000).contains(classes) {
                c.fail("data", "classes", classes, "2 to 1000 classes");
            }
            if *train < *classes {
                c.fail(
                    "data",
                    "train",
                    train,
                    "at least one training image per class",
                );
            }
            c.require(
                (0.0..=10.0).contains(noise),
                "data",
                "noise",
                noise,
                "a noise level from 0 to 10",
            );
        }
        DataSpec::Cifar10 {
            dir,
            train_files,
            test_files,
            zca_eps,
            ..
        }
        | DataSpec::Cifar100 {
            dir,
            train_files,
            test_files,
            zca_eps,
            ..
        } => {
            c.require(
                zca_eps.is_finite() && *zca_eps > 0.0,
                "data",
                "zca_eps",
                zca_eps,
                "a positive regulariser (the reference's is 0.1)",
            );
            if dir.is_none() && (train_files.is_empty() || test_files.is_empty()) {
                c.fail(
                    "data",
                    "dir",
                    "(missing)",
                    "either `dir` (the extracted binary folder) or both `train_files` and `test_files`",
                );
            }
        }
        DataSpec::Idx { .. } | DataSpec::Digits { .. } => {}
    }
    let m = &s.model;
    c.positive("model", "width", m.width);
    if m.width > 4096 {
        c.fail("model", "width", m.width, "at most 4096 channels");
    }
    if !(1..=8).contains(&m.depth) {
        c.fail("model", "depth", m.depth, "a depth from 1 to 8");
    }
    c.positive("model", "hidden", m.hidden);
    let t = &s.train;
    c.positive("train", "epochs", t.epochs);
    c.positive("train", "batch_size", t.batch_size);
    c.positive("train", "repeats", t.repeats);
    c.positive("train", "eval_every", t.eval_every);
    c.sgd("train", t.lr, t.momentum, t.weight_decay);
    c.require(
        t.gamma > 0.0 && t.gamma <= 1.0,
        "train",
        "gamma",
        t.gamma,
        "a decay factor in (0, 1]",
    );
    c.require(
        (0.0..=1.0).contains(&t.min_lr_factor),
        "train",
        "min_lr_factor",
        t.min_lr_factor,
        "a fraction in [0, 1]",
    );
    if let Some(ipc) = t.ipc {
        c.positive("train", "ipc", ipc);
    }
    if let Some(ms) = &t.milestones {
        if t.schedule != Schedule::Step {
            c.fail(
                "train",
                "milestones",
                format!("{ms:?}"),
                "milestones only with schedule = \"step\"",
            );
        }
        if ms.windows(2).any(|w| w[0] >= w[1]) {
            c.fail(
                "train",
                "milestones",
                format!("{ms:?}"),
                "strictly increasing epochs",
            );
        }
    }
    let x = s.experts_section();
    match s.kind {
        Kind::Distill => {
            if s.continual.is_some() {
                c.fail(
                    "",
                    "kind",
                    "\"distill\"",
                    "kind = \"continual\" when a [continual] section is given",
                );
            }
            validate_distill(&mut c, &s.distill_section(), &s.eval_section(), &x);
            validate_experts(&mut c, &x);
        }
        Kind::Experts => validate_experts(&mut c, &x),
        Kind::Continual => validate_continual(&mut c, s),
        Kind::Federated => validate_federated(&mut c, s),
        Kind::Train => {
            for (present, section) in [
                (s.distill.is_some(), "a [distill]"),
                (s.eval.is_some(), "an [eval]"),
                (s.experts.is_some(), "an [experts]"),
                (s.continual.is_some(), "a [continual]"),
                (s.federated.is_some(), "a [federated]"),
            ] {
                if present {
                    c.fail(
                        "",
                        "kind",
                        "\"train\"",
                        &format!(
                            "kind = \"distill\", \"experts\", \"continual\" or \"federated\" when {section} section is given"
                        ),
                    );
                }
            }
        }
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors.join("\n"))
    }
}

/// The `[distill]` section where it only configures DM (continual memories, federated clients).
fn validate_dm_settings(c: &mut Checker, s: &Scenario, role: &str) {
    let Some(d) = &s.distill else { return };
    if d.method != Method::Dm {
        c.fail(
            "distill",
            "method",
            d.method.name(),
            &format!("\"dm\" ({role})"),
        );
    }
    c.require(
        d.lr_img() > 0.0 && d.lr_img().is_finite(),
        "distill",
        "lr_img",
        d.lr_img(),
        "a positive learning rate",
    );
    c.positive("distill", "batch_real", d.batch_real);
    if let Some(st) = &d.dsa_strategy {
        if let Err(m) = crate::data::augment::Dsa::new(st) {
            c.fail("distill", "dsa_strategy", format!("{st:?}"), &m);
        }
    }
}

fn validate_federated(c: &mut Checker, s: &Scenario) {
    let f = s.federated.clone().unwrap_or_default();
    c.positive("federated", "clients", f.clients);
    c.positive("federated", "rounds", f.rounds);
    c.positive("federated", "ipc", f.ipc);
    c.positive("federated", "max_message_bytes", f.max_message_bytes);
    if f.strategies.is_empty() {
        c.fail("federated", "strategies", "[]", "at least one strategy");
    }
    c.require(
        f.fraction > 0.0 && f.fraction <= 1.0,
        "federated",
        "fraction",
        f.fraction,
        "a share of clients in (0, 1]",
    );
    c.require(
        (0.0..1.0).contains(&f.dropout),
        "federated",
        "dropout",
        f.dropout,
        "a probability in [0, 1)",
    );
    c.require(
        f.rho >= 0.0 && f.rho.is_finite(),
        "federated",
        "rho",
        f.rho,
        "a radius >= 0",
    );
    if f.min_clients > f.clients {
        c.fail(
            "federated",
            "min_clients",
            f.min_clients,
            &format!("at most the {} clients", f.clients),
        );
    }
    if let Some(d) = f.deadline_seconds {
        c.require(
            d > 0.0 && d.is_finite(),
            "federated",
            "deadline_seconds",
            d,
            "a positive number of seconds",
        );
    }
    if let Some(w) = f.workers {
        c.positive("federated", "workers", w);
    }
    let x = &f.faults;
    for (key, ids) in [("crash", &x.crash), ("nan", &x.nan), ("slow", &x.slow)] {
        if let Some(i) = ids.iter().find(|&&i| i >= f.clients) {
            c.fail(
                "federated.faults",
                key,
                i,
                &format!("client ids below {}", f.clients),
            );
        }
    }
    c.require(
        x.slow_seconds >= 0.0 && x.slow_seconds.is_finite(),
        "federated.faults",
        "slow_seconds",
        x.slow_seconds,
        "seconds >= 0",
    );
    if let Err(m) = crate::data::partition::check(&f.partition) {
        c.fail("federated", "partition", format!("{:?}", f.partition), &m);
    }
    if s.experts.is_some() || s.continual.is_some() {
        c.fail(
            "",
            "kind",
            "\"federated\"",
            "no [experts] or [continual] section in a federated scenario",
        );
    }
    validate_dm_settings(
        c,
        s,
        "the clients' distiller settings; choose selection clients with [federated] distiller",
    );
    let e = s.eval_section();
    c.positive("eval", "epochs", e.epochs);
    c.positive("eval", "batch_size", e.batch_size);
    c.sgd("eval", e.lr, e.momentum, e.weight_decay);
}

fn validate_continual(c: &mut Checker, s: &Scenario) {
    let k = s.continual.clone().unwrap_or_default();
    c.positive("continual", "tasks", k.tasks);
    if k.strategies.is_empty() {
        c.fail("continual", "strategies", "[]", "at least one strategy");
    }
    if let (Some(_), Some(_)) = (k.memory_total, k.memory_per_class) {
        c.fail(
            "continual",
            "memory_total",
            "(with memory_per_class)",
            "either memory_total or memory_per_class, not both",
        );
    }
    if let Some(n) = k.memory_per_class {
        c.positive("continual", "memory_per_class", n);
    }
    if let Some(n) = k.memory_total {
        c.positive("continual", "memory_total", n);
    }
    c.require(
        k.replay_fraction > 0.0 && k.replay_fraction < 1.0,
        "continual",
        "replay_fraction",
        k.replay_fraction,
        "a share of the batch in (0, 1)",
    );
    c.positive("continual", "memory_epochs", k.memory_epochs);
    c.require(
        k.max_degrees.is_finite() && k.max_degrees.abs() <= 360.0,
        "continual",
        "max_degrees",
        k.max_degrees,
        "an angle from -360 to 360",
    );
    if k.class_groups.is_some() && k.stream != StreamKind::ClassIncremental {
        c.fail(
            "continual",
            "class_groups",
            "(given)",
            "class groups on a class_incremental stream",
        );
    }
    if k.task_incremental && k.stream != StreamKind::ClassIncremental {
        c.fail(
            "continual",
            "task_incremental",
            "true",
            "task-incremental heads on a class_incremental stream (domain streams share all classes)",
        );
    }
    if s.eval.is_some() || s.experts.is_some() {
        c.fail(
            "",
            "kind",
            "\"continual\"",
            "no [eval] or [experts] section in a continual scenario (the learner trains with [train])",
        );
    }
    validate_dm_settings(
        c,
        s,
        "the distiller of continual memories; mtt would need experts per task",
    );
}

fn validate_experts(c: &mut Checker, x: &ExpertsSection) {
    c.positive("experts", "count", x.count);
    c.positive("experts", "epochs", x.epochs);
    c.positive("experts", "batch_size", x.batch_size);
    c.sgd("experts", x.lr, 0.0, 0.0);
}

fn validate_distill(c: &mut Checker, d: &DistillSection, e: &EvalSection, x: &ExpertsSection) {
    c.positive("distill", "ipc", d.ipc);
    if d.ipc > 10000 {
        c.fail("distill", "ipc", d.ipc, "at most 10000 images per class");
    }
    c.require(
        d.lr_img() > 0.0 && d.lr_img().is_finite(),
        "distill",
        "lr_img",
        d.lr_img(),
        "a positive learning rate",
    );
    if d.method == Method::Selmatch {
        c.require(
            (0.0..=1.0).contains(&d.alpha),
            "distill",
            "alpha",
            d.alpha,
            "a fraction in [0, 1]",
        );
        let betas_ok = d
            .beta
            .iter()
            .chain(&d.beta_grid)
            .all(|b| b.is_finite() && *b >= 0.0);
        c.require(
            betas_ok,
            "distill",
            "beta_grid",
            format!("{:?} / {:?}", d.beta, d.beta_grid),
            "non-negative window starts (multiples of ipc)",
        );
        c.require(
            d.beta.is_some() || !d.beta_grid.is_empty(),
            "distill",
            "beta_grid",
            "[]",
            "a beta or a non-empty grid",
        );
        if d.scores_csv.is_none() {
            c.positive("distill", "difficulty_epochs", d.difficulty_epochs);
        }
    }
    if matches!(d.method, Method::Mtt | Method::Selmatch) {
        c.positive("distill", "syn_steps", d.syn_steps);
        c.positive("distill", "expert_epochs", d.expert_epochs);
        c.positive("distill", "max_start_epoch", d.max_start_epoch);
        c.require(
            d.lr_lr > 0.0 && d.lr_lr.is_finite(),
            "distill",
            "lr_lr",
            d.lr_lr,
            "a positive learning rate",
        );
        c.require(
            d.lr_teacher > 0.0 && d.lr_teacher.is_finite(),
            "distill",
            "lr_teacher",
            d.lr_teacher,
            "a positive step size",
        );
        if let Some(b) = d.batch_syn {
            c.positive("distill", "batch_syn", b);
        }
        if d.max_start_epoch - 1 + d.expert_epochs > x.epochs {
            c.fail(
                "distill",
                "max_start_epoch",
                d.max_start_epoch,
                &format!(
                    "max_start_epoch - 1 + expert_epochs ({}) within the experts' epochs ({})",
                    d.max_start_epoch.max(1) - 1 + d.expert_epochs,
                    x.epochs
                ),
            );
        }
    }
    c.require(
        (0.0..1.0).contains(&d.momentum),
        "distill",
        "momentum",
        d.momentum,
        "a momentum in [0, 1)",
    );
    c.positive("distill", "batch_real", d.batch_real);
    c.positive("distill", "log_every", d.log_every);
    c.positive("distill", "checkpoint_every", d.checkpoint_every);
    c.require(
        d.coverage_every == 0 || e.coverage,
        "distill",
        "coverage_every",
        d.coverage_every,
        "0 while [eval] coverage = false",
    );
    if let Some(t) = d.max_seconds {
        c.require(
            t.is_finite() && t > 0.0,
            "distill",
            "max_seconds",
            t,
            "a positive number of seconds",
        );
    }
    if let Some(p) = d.pool {
        c.require(
            p >= d.ipc,
            "distill",
            "pool",
            p,
            "at least ipc candidates per class",
        );
    }
    if let Some(st) = &d.dsa_strategy {
        if let Err(m) = crate::data::augment::Dsa::new(st) {
            c.fail("distill", "dsa_strategy", format!("{st:?}"), &m);
        }
    }
    // Plain MTT may stand beside SelMatch (same experts, settings and iterations).
    let optimising_baseline = d.baselines.iter().any(|b| match b {
        Method::Dm | Method::Selmatch => true,
        Method::Mtt => d.method != Method::Selmatch,
        _ => false,
    });
    if optimising_baseline {
        c.fail(
            "distill",
            "baselines",
            format!("{:?}", d.baselines),
            "selection baselines only (random, herding, kcenter), plus mtt beside selmatch",
        );
    }
    if d.init == crate::distill::InitKind::Noise && !matches!(d.method, Method::Dm | Method::Mtt) {
        c.fail(
            "distill",
            "init",
            "\"noise\"",
            "a real-image init for selection methods (noise applies to dm)",
        );
    }
    c.positive("eval", "epochs", e.epochs);
    c.positive("eval", "batch_size", e.batch_size);
    c.positive("eval", "repeats", e.repeats);
    c.sgd("eval", e.lr, e.momentum, e.weight_decay);
    if e.models.is_empty() {
        c.fail("eval", "models", "[]", "at least one architecture");
    }
    for m in &e.models {
        if !crate::distill::eval::ARCHITECTURES.contains(&m.as_str()) {
            c.fail(
                "eval",
                "models",
                format!("{m:?}"),
                &format!(
                    "architectures from {}",
                    crate::distill::eval::ARCHITECTURES.join(", ")
                ),
            );
        }
    }
}

impl Scenario {
    /// The distillation settings (defaults when the section is absent).
    pub fn distill_section(&self) -> DistillSection {
        self.distill.clone().unwrap_or_default()
    }

    /// The expert settings (defaults when the section is absent).
    pub fn experts_section(&self) -> ExpertsSection {
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

    /// The evaluation settings (defaults when the section is absent).
    pub fn eval_section(&self) -> EvalSection {
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
}
