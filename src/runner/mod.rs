//! Turns a validated scenario into a run and owns its results folder:
//! `results/<name>-<timestamp>/` with `scenario.toml`, `metrics.csv` (a row per evaluation, written
//! as the run goes) and `summary.json` (written at the end, atomically).

mod continual;
mod distill;
pub mod federated;
mod selmatch;

pub use continual::build_stream;

use crate::data::{self, cifar, Split};
use crate::device::{self, BackendJob};
use crate::error::{Error, Result};
use crate::model::{ConvNetSpec, MlpSpec, ModelSpec};
use crate::report::{mean_std, timestamp, write_json_atomic, CsvLog};
use crate::scenario::{self, Arch, DataSpec, Kind, Loaded};
use crate::train::{evaluate, train};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The folder that receives `<name>-<timestamp>/` (default `results`).
    pub results_root: PathBuf,
    /// No progress bar and no per-evaluation lines.
    pub quiet: bool,
}

impl RunOptions {
    /// Options for a run without progress output, with results under `root`.
    pub fn quiet(root: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            results_root: root.into(),
            quiet: true,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            results_root: PathBuf::from("results"),
            quiet: false,
        }
    }
}

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The run's results folder.
    pub dir: PathBuf,
    /// The summary written to `summary.json`.
    pub summary: serde_json::Value,
}

/// Loads the train/test split a scenario names.
pub fn load_data(loaded: &Loaded) -> Result<Split> {
    let r = |p: &Path| loaded.resolve(p);
    let split = match &loaded.scenario.data {
        DataSpec::Digits { split_seed } => data::embedded::digits_split(*split_seed),
        DataSpec::Idx {
            name,
            train_images,
            train_labels,
            test_images,
            test_labels,
        } => {
            let mut train = data::idx::load(&r(train_images), &r(train_labels), name)?;
            let mut test = data::idx::load(&r(test_images), &r(test_labels), name)?;
            if train.shape != test.shape {
                return Err(Error::data(
                    r(test_images),
                    format!(
                        "test images are {:?} but training images are {:?}",
                        test.shape, train.shape
                    ),
                ));
            }
            let norm = data::reference_normalization(name);
            let k = train.num_classes().max(test.num_classes());
            train.classes = data::class_names(name, k);
            test.classes = train.classes.clone();
            data::make_split(name, train, test, norm)
        }
        DataSpec::Cifar10 {
            dir,
            train_files,
            test_files,
            zca,
            zca_eps,
        } => load_cifar(
            loaded,
            cifar::Variant::Cifar10,
            dir,
            train_files,
            test_files,
            zca.then_some(*zca_eps),
        )?,
        DataSpec::Cifar100 {
            dir,
            train_files,
            test_files,
            zca,
            zca_eps,
        } => load_cifar(
            loaded,
            cifar::Variant::Cifar100,
            dir,
            train_files,
            test_files,
            zca.then_some(*zca_eps),
        )?,
        DataSpec::Synthetic {
            train,
            test,
            channels,
            size,
            classes,
            noise,
        } => {
            let shape = [*channels, *size, *size];
            let all = data::synthetic::generate(
                train + test,
                shape,
                *classes,
                *noise,
                loaded.scenario.seed,
            );
            let idx: Vec<usize> = (0..train + test).collect();
            let (tr, te) = idx.split_at(*train);
            data::make_split("synthetic", all.subset(tr), all.subset(te), None)
        }
    };
    for (set, ds) in [("training", &split.train), ("test", &split.test)] {
        ds.validate()
            .map_err(|m| Error::Other(format!("{set} set: {m}")))?;
        if ds.is_empty() {
            return Err(Error::Other(format!("the {set} set is empty")));
        }
    }
    Ok(split)
}

fn load_cifar(
    loaded: &Loaded,
    variant: cifar::Variant,
    dir: &Option<PathBuf>,
    train_files: &[PathBuf],
    test_files: &[PathBuf],
    zca: Option<f64>,
) -> Result<Split> {
    let (train_f, test_f): (Vec<PathBuf>, Vec<PathBuf>) = if !train_files.is_empty() {
        (
            train_files.iter().map(|p| loaded.resolve(p)).collect(),
            test_files.iter().map(|p| loaded.resolve(p)).collect(),
        )
    } else {
        let d = loaded.resolve(dir.as_ref().expect("validated"));
        match variant {
            cifar::Variant::Cifar10 => (
                (1..=5)
                    .map(|i| d.join(format!("data_batch_{i}.bin")))
                    .collect(),
                vec![d.join("test_batch.bin")],
            ),
            cifar::Variant::Cifar100 => (vec![d.join("train.bin")], vec![d.join("test.bin")]),
        }
    };
    let train = cifar::load(&train_f, variant)?;
    let test = cifar::load(&test_f, variant)?;
    let mut split = data::make_split(
        variant.name(),
        train,
        test,
        data::reference_normalization(variant.name()),
    );
    if let Some(eps) = zca {
        split.whiten(eps)?;
    }
    Ok(split)
}

/// The network a scenario asks for, sized for `split`.
pub fn model_spec(s: &scenario::Scenario, split: &Split) -> ModelSpec {
    let input = split.train.shape;
    let k = split.train.num_classes();
    match s.model.arch {
        Arch::Convnet => ModelSpec::ConvNet(ConvNetSpec {
            input,
            num_classes: k,
            width: s.model.width,
            depth: s.model.depth,
            norm: s.model.norm,
            pooling: s.model.pooling,
        }),
        Arch::Mlp => ModelSpec::Mlp(MlpSpec {
            input,
            num_classes: k,
            hidden: s.model.hidden,
        }),
    }
}

fn new_run_dir(root: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let base = format!("{name}-{}", timestamp());
    for k in 1.. {
        let dir = if k == 1 {
            root.join(&base)
        } else {
            root.join(format!("{base}-{k}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!()
}

/// Runs the scenario file at `path`.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<RunOutput> {
    run_file_on(path, None, None, opts)
}

/// Runs the scenario file at `path`, on `device` and with `seed` instead of the ones it names
/// when given (the results folder's copy of the scenario then names them, so `--resume` uses
/// them too). A `[experts] seed` in the file is kept: runs at other seeds share its experts.
pub fn run_file_on(
    path: &Path,
    device: Option<crate::device::DeviceKind>,
    seed: Option<u64>,
    opts: &RunOptions,
) -> Result<RunOutput> {
    let mut loaded = scenario::load(path)?;
    if let Some(d) = device {
        loaded.scenario.device = d;
        loaded.text = with_device(&loaded.text, d);
    }
    if let Some(s) = seed {
        loaded.scenario.seed = s;
        loaded.text = with_top_key(&loaded.text, "seed", &s.to_string());
    }
    run(&loaded, opts)
}

/// `text` (a scenario) with its top-level `device` key set to `d`: the key's line replaced, or
/// the key added as the first line.
pub fn with_device(text: &str, d: crate::device::DeviceKind) -> String {
    with_top_key(text, "device", &format!("\"{}\"", d.name()))
}

/// `text` (a scenario) with its top-level `key` set to `value` (TOML): the key's line replaced,
/// or the key added as the first line. Keys inside tables are left alone.
pub fn with_top_key(text: &str, key: &str, value: &str) -> String {
    let line = format!("{key} = {value}");
    let mut out = Vec::new();
    let mut top = true;
    let mut done = false;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            top = false;
        }
        let k = t.split('=').next().map(str::trim);
        if top && !done && k == Some(key) {
            out.push(line.clone());
            done = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !done {
        out.insert(0, line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Runs a loaded scenario, writing a new results folder.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<RunOutput> {
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(loaded)?;
    let dir = new_run_dir(&opts.results_root, &loaded.scenario.name)?;
    let copy = dir.join("scenario.toml");
    std::fs::write(&copy, &loaded.text).map_err(|e| Error::io(&copy, e))?;
    let origin = std::path::absolute(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
    write_json_atomic(
        &dir.join("run.json"),
        &json!({ "scenario": origin, "started": timestamp() }),
    )?;
    execute(loaded, &split, device, dir, opts, false)
}

/// Runs a federated scenario's server half over gRPC on `addr`; its clients are separate
/// `distillery client` processes. Writes a results folder as `run` does.
pub fn serve(path: &Path, addr: std::net::SocketAddr, opts: &RunOptions) -> Result<RunOutput> {
    let loaded = scenario::load(path)?;
    if loaded.scenario.kind != Kind::Federated {
        return Err(Error::Other(format!(
            "{}: `serve` runs kind = \"federated\" scenarios",
            path.display()
        )));
    }
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(&loaded)?;
    let dir = new_run_dir(&opts.results_root, &loaded.scenario.name)?;
    let copy = dir.join("scenario.toml");
    std::fs::write(&copy, &loaded.text).map_err(|e| Error::io(&copy, e))?;
    let summary = device::dispatch(
        device,
        federated::FederatedJob {
            loaded: &loaded,
            split: &split,
            dir: &dir,
            quiet: opts.quiet,
            clients: federated::Clients::Grpc(addr),
        },
    )?;
    write_json_atomic(&dir.join("summary.json"), &summary)?;
    Ok(RunOutput { dir, summary })
}

/// Runs client `id` of a federated scenario against the server at `url` until the server ends
/// the run; returns the number of tasks it did.
pub fn client(path: &Path, url: &str, id: usize) -> Result<usize> {
    let loaded = scenario::load(path)?;
    if loaded.scenario.kind != Kind::Federated {
        return Err(Error::Other(format!(
            "{}: `client` runs kind = \"federated\" scenarios",
            path.display()
        )));
    }
    let f = loaded.scenario.federated_section();
    if id >= f.clients {
        return Err(Error::Other(format!(
            "client id {id}: the scenario has clients 0..{}",
            f.clients
        )));
    }
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(&loaded)?;
    device::dispatch(
        device,
        ClientJob {
            loaded: &loaded,
            split: &split,
            url,
            id,
        },
    )
}

struct ClientJob<'a> {
    loaded: &'a Loaded,
    split: &'a Split,
    url: &'a str,
    id: usize,
}

impl BackendJob for ClientJob<'_> {
    type Output = Result<usize>;

    fn run<B: AutodiffBackend>(self, device: B::Device, _backend: &str) -> Self::Output {
        let s = &self.loaded.scenario;
        let f = s.federated_section();
        let mut data = federated::client_data(s, self.split)?;
        let settings = std::sync::Arc::new(federated::settings(s, self.split)?);
        crate::fed::grpc::run_client::<B>(
            self.url,
            self.id,
            data.swap_remove(self.id),
            settings,
            crate::fed::grpc::token(&f.token),
            f.max_message_bytes,
            device,
        )
    }
}

/// Continues an interrupted run in its results folder `dir` (distill runs resume from their last
/// checkpoint; the scenario is the copy in `dir`, its relative paths resolved as the original's).
pub fn resume(dir: &Path, opts: &RunOptions) -> Result<RunOutput> {
    let copy = dir.join("scenario.toml");
    if !copy.exists() {
        return Err(Error::Other(format!(
            "{}: not a results folder (no scenario.toml)",
            dir.display()
        )));
    }
    if dir.join("summary.json").exists() {
        return Err(Error::Other(format!(
            "{}: this run already finished (summary.json exists); start a new one with `distillery run`",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&copy).map_err(|e| Error::io(&copy, e))?;
    let origin = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["scenario"].as_str().map(PathBuf::from))
        .unwrap_or(copy.clone());
    let mut loaded = scenario::parse(&text, &copy)?;
    loaded.path = origin;
    if matches!(
        loaded.scenario.kind,
        Kind::Train | Kind::Continual | Kind::Federated
    ) {
        return Err(Error::Other(format!(
            "{}: only distill runs checkpoint and resume; run the scenario again instead",
            dir.display()
        )));
    }
    let device = device::check(loaded.scenario.device)?;
    let split = load_data(&loaded)?;
    execute(&loaded, &split, device, dir.to_path_buf(), opts, true)
}

fn execute(
    loaded: &Loaded,
    split: &Split,
    device: device::Available,
    dir: PathBuf,
    opts: &RunOptions,
    resuming: bool,
) -> Result<RunOutput> {
    let summary = match loaded.scenario.kind {
        Kind::Train => device::dispatch(
            device,
            TrainJob {
                loaded,
                split,
                dir: &dir,
                quiet: opts.quiet,
            },
        )?,
        Kind::Federated => device::dispatch(
            device,
            federated::FederatedJob {
                loaded,
                split,
                dir: &dir,
                quiet: opts.quiet,
                clients: federated::Clients::InProcess,
            },
        )?,
        Kind::Continual => device::dispatch(
            device,
            continual::ContinualJob {
                loaded,
                split,
                dir: &dir,
                quiet: opts.quiet,
            },
        )?,
        Kind::Distill | Kind::Experts => device::dispatch(
            device,
            distill::DistillJob {
                loaded,
                split,
                dir: &dir,
                quiet: opts.quiet,
                resuming,
                experts_root: opts.results_root.join("experts"),
            },
        )?,
    };
    write_json_atomic(&dir.join("summary.json"), &summary)?;
    Ok(RunOutput { dir, summary })
}

pub(crate) fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

struct TrainJob<'a> {
    loaded: &'a Loaded,
    split: &'a Split,
    dir: &'a Path,
    quiet: bool,
}

impl BackendJob for TrainJob<'_> {
    type Output = Result<serde_json::Value>;

    fn run<B: AutodiffBackend>(self, device: B::Device, backend: &str) -> Self::Output {
        let s = &self.loaded.scenario;
        let cfg = s.train_config();
        let spec = model_spec(s, self.split);
        let mut log = CsvLog::create(
            &self.dir.join("metrics.csv"),
            &[
                "repeat",
                "epoch",
                "lr",
                "train_loss",
                "test_loss",
                "test_acc",
                "elapsed_s",
            ],
        )?;
        let per_epoch = s
            .train
            .ipc
            .map(|ipc| {
                self.split
                    .train
                    .class_counts()
                    .iter()
                    .map(|&c| c.min(ipc))
                    .sum()
            })
            .unwrap_or(self.split.train.len());
        let steps = per_epoch.div_ceil(cfg.batch_size) * cfg.epochs * s.train.repeats;
        let pb = progress(steps as u64, self.quiet);
        let started = Instant::now();
        let mut finals = Vec::new();
        let mut epoch_secs = Vec::new();
        for rep in 0..s.train.repeats {
            let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed.wrapping_add(rep as u64));
            let train_set = match s.train.ipc {
                Some(ipc) => self.split.train.random_per_class(ipc, &mut rng),
                None => self.split.train.clone(),
            };
            let mut model = spec.init::<B::InnerBackend, _>(&mut rng, &device);
            let t0 = Instant::now();
            let mut last_acc = f64::NAN;
            let mut eval_secs = 0f64;
            train::<B, _>(
                &mut model,
                &train_set,
                &cfg,
                None,
                &mut rng,
                &device,
                || pb.inc(1),
                |epoch, loss, m| {
                    let last = epoch + 1 == cfg.epochs;
                    if (epoch + 1) % s.train.eval_every == 0 || last {
                        let te = Instant::now();
                        let (acc, tl) = evaluate(m, &self.split.test, 500, &device);
                        eval_secs += te.elapsed().as_secs_f64();
                        last_acc = acc;
                        log.row(&[
                            rep.to_string(),
                            (epoch + 1).to_string(),
                            format!("{}", cfg.lr_at(epoch)),
                            format!("{loss:.6}"),
                            format!("{tl:.6}"),
                            format!("{acc:.6}"),
                            format!("{:.3}", started.elapsed().as_secs_f64()),
                        ])?;
                        pb.set_message(format!("test acc {:.4}", acc));
                        if !self.quiet {
                            pb.println(format!(
                                "repeat {} epoch {:>4}: train loss {loss:.4}, test acc {acc:.4}",
                                rep + 1,
                                epoch + 1
                            ));
                        }
                    }
                    Ok(())
                },
            )?;
            epoch_secs.push((t0.elapsed().as_secs_f64() - eval_secs) / cfg.epochs as f64);
            finals.push(last_acc);
        }
        pb.finish_and_clear();
        let (mean, std) = mean_std(&finals);
        Ok(json!({
            "name": s.name,
            "kind": "train",
            "seed": s.seed,
            "device": backend,
            "dataset": {
                "name": self.split.name,
                "train": self.split.train.len(),
                "test": self.split.test.len(),
                "shape": self.split.train.shape,
                "classes": self.split.train.num_classes(),
                "normalization": self.split.norm,
            },
            "model": { "spec": spec, "params": spec.num_params() },
            "train": cfg,
            "ipc": s.train.ipc,
            "test_acc": finals,
            "test_acc_mean": mean,
            "test_acc_std": std,
            "seconds_per_epoch": mean_std(&epoch_secs).0,
            "wall_seconds": started.elapsed().as_secs_f64(),
        }))
    }
}
