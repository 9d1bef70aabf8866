//! Trajectory matching on tiny data: the matching loss falls, the step size is learned, a resumed
//! run equals the uninterrupted one, and experts too short for the settings are a clear error.

use burn::backend::Flex;
use distillery::data::augment::{Dsa, STRATEGY_DIGITS};
use distillery::data::Dataset;
use distillery::distill::mtt::experts::{Experts, Trajectory};
use distillery::distill::mtt::{draw_iteration, step, Mtt, MttConfig, MttSettings};
use distillery::distill::{Checkpoint, Ctx, DistillObserver, Distiller, SyntheticSet};
use distillery::report::records::Outcome;
use distillery::train::events::Flow;

use crate::common::{iterations, spec, AD};

fn setup() -> (Dataset, Vec<Trajectory>) {
    crate::common::experts(150, 6, 2)
}

fn cfg(iterations: usize) -> MttConfig {
    MttConfig::new(
        MttSettings {
            iterations,
            syn_steps: 4,
            expert_epochs: 2,
            max_start_epoch: 3,
            lr_img: 100.0,
            lr_lr: 1e-4,
            lr_teacher: 0.05,
            ..MttSettings::default()
        },
        spec(),
        &Dsa::new(STRATEGY_DIGITS).unwrap(),
    )
}

fn ctx<'a>(on: &'a mut DistillObserver<'a>, resume: Option<Checkpoint>) -> Ctx<'a, AD> {
    crate::common::ctx(8, on, resume)
}

/// Mean matching loss of `set` over iterations 500..506's draws (never used while distilling).
fn held_out(c: &MttConfig, experts: &[Trajectory], set: &SyntheticSet) -> f64 {
    let dev = Default::default();
    let n = set.len();
    let mut total = 0.0;
    for it in 500..506 {
        let d = draw_iteration(c, experts.len(), n, (8, 8), 99, it);
        let x = burn::tensor::Tensor::<Flex, 4>::from_data(
            burn::tensor::TensorData::new(set.images.clone(), [n, 1, 8, 8]),
            &dev,
        );
        let e = &experts[d.expert].params;
        total += step::<AD>(
            c,
            &e[d.start],
            &e[d.start + c.settings.expert_epochs],
            &d,
            x,
            &set.labels,
            set.syn_lr.unwrap(),
        )
        .0;
    }
    total / 6.0
}

#[test]
fn matching_loss_falls_and_the_step_size_is_learned() {
    let (d, experts) = setup();
    let c = cfg(25);
    let mut first = None;
    let mut on = iterations(|_: usize, _: f64, snap: &dyn Fn() -> Checkpoint| {
        if first.is_none() {
            let mut s = snap().set;
            s.images = Vec::new();
            first = Some(s);
        }
        Ok(Flow::Continue)
    });
    let set = Mtt::new(c.clone(), Experts::Loaded(experts.clone()))
        .distill(&d, 2, &mut ctx(&mut on, None))
        .unwrap();
    // The starting set: the same real selection with the initial step size.
    let mut start = set.clone();
    let init = distillery::distill::Selection {
        kind: distillery::distill::InitKind::Real,
        spec: spec(),
        settings: Default::default(),
    }
    .indices::<AD>(&d, 2, 8, &Default::default())
    .unwrap();
    start.images = d.subset(&init).images;
    start.syn_lr = Some(0.05);
    let (before, after) = (held_out(&c, &experts, &start), held_out(&c, &experts, &set));
    assert!(
        after < 0.9 * before,
        "held-out matching loss {before:.4} -> {after:.4} after 25 iterations"
    );
    let lr = set.syn_lr.unwrap();
    assert!(lr.is_finite() && lr > 0.0 && lr != 0.05, "syn_lr {lr}");
}

/// `mtt` run on `d` at IPC 2, killed after saving its checkpoint at iteration 3, then resumed
/// from that checkpoint file to its end.
fn killed_and_resumed(mtt: &Mtt, d: &Dataset) -> SyntheticSet {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck.safetensors");
    let mut stop = iterations(|it: usize, _: f64, snap: &dyn Fn() -> Checkpoint| {
        if it == 3 {
            snap().save(&p)?;
            return Err(distillery::Error::Other("stop".into()));
        }
        Ok(Flow::Continue)
    });
    assert!(mtt
        .clone()
        .distill(d, 2, &mut ctx(&mut stop, None))
        .is_err());
    let ck = Checkpoint::load(&p).unwrap();
    let mut none = iterations(|_, _, _| Ok(Flow::Continue));
    mtt.clone()
        .distill(d, 2, &mut ctx(&mut none, Some(ck)))
        .unwrap()
}

#[test]
fn resumed_mtt_equals_the_uninterrupted_run() {
    let (d, experts) = setup();
    let mut none = iterations(|_, _, _| Ok(Flow::Continue));
    let full = Mtt::new(cfg(6), Experts::Loaded(experts.clone()))
        .distill(&d, 2, &mut ctx(&mut none, None))
        .unwrap();
    let mtt = Mtt::new(cfg(6), Experts::Loaded(experts));
    let resumed = killed_and_resumed(&mtt, &d);
    assert_eq!(resumed.images, full.images);
    assert_eq!(resumed.syn_lr, full.syn_lr);
}

#[test]
fn a_stop_returns_the_set_of_that_iteration() {
    let (d, experts) = setup();
    let mut mtt = Mtt::new(cfg(6), Experts::Loaded(experts));
    // The snapshot at iteration 3, taken by a callback that lets the run go on.
    let mut at3 = None;
    let mut watch = iterations(|it: usize, _: f64, snap: &dyn Fn() -> Checkpoint| {
        if it == 3 {
            at3 = Some(snap().set);
        }
        Ok(Flow::Continue)
    });
    let full = mtt
        .clone()
        .distill(&d, 2, &mut ctx(&mut watch, None))
        .unwrap();
    let at3 = at3.unwrap();
    let mut seen = Vec::new();
    let mut stop = iterations(|it: usize, _: f64, _: &dyn Fn() -> Checkpoint| {
        seen.push(it);
        Ok(if it == 3 { Flow::Stop } else { Flow::Continue })
    });
    let stopped = mtt.distill(&d, 2, &mut ctx(&mut stop, None)).unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(stopped.provenance.iterations, 3);
    assert_eq!(full.provenance.iterations, 6);
    assert_eq!(stopped.images, at3.images);
    assert_eq!(stopped.syn_lr, at3.syn_lr);
    assert_ne!(stopped.images, full.images);
}

#[test]
fn experts_too_short_for_the_settings_are_an_error() {
    let (d, experts) = setup();
    let mut c = cfg(3);
    c.settings.max_start_epoch = 6;
    let mut none = iterations(|_, _, _| Ok(Flow::Continue));
    let e = Mtt::new(c, Experts::Loaded(experts))
        .distill(&d, 2, &mut ctx(&mut none, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the experts have 6 epochs") && e.contains("need 7"),
        "{e}"
    );
}

fn mtt_scenario(kind: &str) -> String {
    mtt_scenario_with(kind, "")
}

/// The tiny MTT scenario with `extra` lines added to its `[distill]` section.
fn mtt_scenario_with(kind: &str, extra: &str) -> String {
    format!(
        r#"
name = "tiny-mtt"
kind = "{kind}"
seed = 4
[data]
source = "synthetic"
train = 150
test = 90
size = 8
classes = 3
[model]
width = 8
depth = 2
[experts]
count = 2
epochs = 4
lr = 0.05
batch_size = 32
[distill]
method = "mtt"
ipc = 2
iterations = 6
syn_steps = 3
expert_epochs = 1
max_start_epoch = 2
lr_img = 100.0
lr_lr = 1e-4
lr_teacher = 0.05
log_every = 1
baselines = ["random"]
{extra}
[eval]
epochs = 30
batch_size = 16
repeats = 2
"#
    )
}

/// Runs scenario `text` quietly with its results under `root`.
fn run_scenario(text: &str, root: &std::path::Path) -> distillery::experiment::RunOutput {
    let l = distillery::scenario::parse(text, std::path::Path::new("t.toml")).unwrap();
    let opts = distillery::experiment::RunOptions::quiet(root);
    distillery::experiment::run(&l, &opts).unwrap()
}

#[test]
fn mtt_scenario_trains_experts_once_and_evaluates_with_the_learned_step_size() {
    let root = tempfile::tempdir().unwrap();
    let run = |kind: &str| run_scenario(&mtt_scenario(kind), root.path());
    // `kind = "experts"` trains the experts only.
    let out = run("experts");
    let csv = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.starts_with("experts,")).count(), 2);
    assert_eq!(csv.lines().filter(|l| l.starts_with("eval,")).count(), 0);
    let Outcome::Experts(e) = &out.summary.outcome else {
        panic!("an experts run")
    };
    let dir = e.experts.dir.clone();
    assert!(dir.starts_with(root.path().join("experts")));
    assert!(dir.join("manifest.json").is_file() && dir.join("expert_0001.safetensors").is_file());
    // The distill run reuses them (no expert rows) and evaluates MTT with its learned syn_lr.
    let out = run("distill");
    let csv = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.starts_with("experts,")).count(), 0);
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("distill,mtt")).count(),
        6
    );
    let set = SyntheticSet::load(&out.dir.join("mtt.safetensors")).unwrap();
    let lr = set.syn_lr.expect("a learned step size");
    assert!(lr.is_finite() && lr > 0.0 && lr != 0.05, "{lr}");
    for m in ["mtt", "random"] {
        let acc = out.summary.distill().unwrap().results[m]["convnet"].mean;
        assert!(acc > 0.6, "{m}: {acc} (chance is 1/3)");
    }
    // Another seed with `[experts] seed = 4` distils anew on the same experts. (Synthetic data
    // is drawn from the run's seed, so this part runs on the embedded digits, which are not.)
    let digits = |seed: u64| {
        mtt_scenario("distill")
            .replace("seed = 4", &format!("seed = {seed}"))
            .replace("[experts]\n", "[experts]\nseed = 4\n")
            .replace(
                "source = \"synthetic\"\ntrain = 150\ntest = 90\nsize = 8\nclasses = 3",
                "source = \"digits\"",
            )
    };
    let first = run_scenario(&digits(4), root.path());
    let again = run_scenario(&digits(5), root.path());
    let rows = |o: &distillery::experiment::RunOutput| {
        let csv = std::fs::read_to_string(o.dir.join("metrics.csv")).unwrap();
        csv.lines().filter(|l| l.starts_with("experts,")).count()
    };
    assert_eq!((rows(&first), rows(&again)), (2, 0));
    let experts_of = |o: &distillery::experiment::RunOutput| {
        o.summary.distill().unwrap().experts.clone().unwrap().dir
    };
    assert_eq!(experts_of(&again), experts_of(&first));
    assert_eq!(
        std::fs::read_dir(root.path().join("experts"))
            .unwrap()
            .count(),
        2,
        "the synthetic data's experts and the digits' experts"
    );
    let a = SyntheticSet::load(&first.dir.join("mtt.safetensors")).unwrap();
    let b = SyntheticSet::load(&again.dir.join("mtt.safetensors")).unwrap();
    assert_ne!(a.images, b.images);
}

#[test]
fn a_time_budget_stops_distillation_and_is_reported() {
    let root = tempfile::tempdir().unwrap();
    // A budget that is spent after the first iteration.
    let out = run_scenario(
        &mtt_scenario_with("distill", "max_seconds = 1e-6"),
        root.path(),
    );
    let m = &out.summary.distill().unwrap().distilled["mtt"];
    assert_eq!(m.iterations, 1, "{m:?}");
    assert!(m.stopped_by_budget);
    assert!(m.seconds > 0.0);
    let set = SyntheticSet::load(&out.dir.join("mtt.safetensors")).unwrap();
    assert_eq!(set.provenance.iterations, 1);
    let csv = std::fs::read_to_string(out.dir.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with("distill,mtt"))
        .collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(rows[0].starts_with("distill,mtt,,1,"), "{}", rows[0]);
    // The set is evaluated at the iteration it reached.
    assert!(
        csv.lines().any(|l| l.starts_with("eval,mtt,convnet,1,")),
        "{csv}"
    );
    // A budget that is not a positive number is refused by name.
    for bad in ["0.0", "-3.0"] {
        let text = mtt_scenario_with("distill", &format!("max_seconds = {bad}"));
        let e = distillery::scenario::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_seconds"), "{e}");
    }
}

fn labelled(iterations: usize) -> MttConfig {
    let mut c = cfg(iterations);
    c.settings.lr_labels = Some(5.0);
    c
}

#[test]
fn the_label_logit_gradient_matches_central_differences() {
    use burn::tensor::{Tensor, TensorData};
    use distillery::distill::mtt::{step_with, Targets};
    let (d, experts) = setup();
    let c = labelled(1);
    let dev = Default::default();
    let n = 6;
    let draw = draw_iteration(&c, experts.len(), n, (8, 8), 4, 0);
    let e = &experts[draw.expert].params;
    let pair = (&e[draw.start][..], &e[draw.start + 2][..]);
    let x = Tensor::<Flex, 4>::from_data(
        TensorData::new(d.images[..n * 64].to_vec(), [n, 1, 8, 8]),
        &dev,
    );
    let z0: Vec<f32> = (0..n * 3)
        .map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.6)
        .collect();
    let loss = |z: &[f32]| {
        let z = Tensor::<Flex, 2>::from_data(TensorData::new(z.to_vec(), [n, 3]), &dev);
        step_with::<AD>(&c, pair, &draw, x.clone(), Targets::Logits(z), 0.05)
    };
    let g: Vec<f32> = loss(&z0)
        .labels
        .unwrap()
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    let gnorm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!(gnorm > 0.0, "the labels get no gradient");
    let eps = 1e-2f32;
    for (trial, i) in [0usize, 4, 11, 17].into_iter().enumerate() {
        let mut up = z0.clone();
        let mut down = z0.clone();
        up[i] += eps;
        down[i] -= eps;
        let fd = (loss(&up).loss - loss(&down).loss) / (2.0 * eps as f64);
        let err = (fd - g[i] as f64).abs() / gnorm;
        assert!(
            err < 2e-2,
            "logit {i} (trial {trial}): autodiff {} vs central difference {fd}",
            g[i]
        );
    }
}

#[test]
fn learned_labels_move_stay_distributions_and_resume_exactly() {
    let (d, experts) = setup();
    let mut none = iterations(|_, _, _| Ok(Flow::Continue));
    let full = Mtt::new(labelled(6), Experts::Loaded(experts.clone()))
        .distill(&d, 2, &mut ctx(&mut none, None))
        .unwrap();
    let mut first = None;
    let mut watch = iterations(|it: usize, _: f64, snap: &dyn Fn() -> Checkpoint| {
        if it == 1 {
            first = snap().set.soft_labels;
        }
        Ok(Flow::Continue)
    });
    Mtt::new(labelled(1), Experts::Loaded(experts.clone()))
        .distill(&d, 2, &mut ctx(&mut watch, None))
        .unwrap();
    let soft = full.soft_labels.clone().expect("learned soft labels");
    assert_eq!(soft.len(), 6 * 3);
    for row in soft.chunks(3) {
        let sum: f32 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5 && row.iter().all(|&p| p >= 0.0),
            "{row:?}"
        );
    }
    assert_ne!(
        Some(soft.clone()),
        first,
        "the labels never moved after iteration 1"
    );
    let mtt = Mtt::new(labelled(6), Experts::Loaded(experts));
    let resumed = killed_and_resumed(&mtt, &d);
    assert_eq!(resumed.images, full.images);
    assert_eq!(resumed.soft_labels, full.soft_labels);
    // A plain MTT checkpoint cannot continue a run that learns labels.
    let mut plain_ck = None;
    let mut grab = iterations(|it: usize, _: f64, snap: &dyn Fn() -> Checkpoint| {
        if it == 2 {
            plain_ck = Some(snap());
        }
        Ok(Flow::Continue)
    });
    Mtt::new(cfg(3), mtt.experts.clone())
        .distill(&d, 2, &mut ctx(&mut grab, None))
        .unwrap();
    let mut none3 = iterations(|_, _, _| Ok(Flow::Continue));
    let e = mtt
        .clone()
        .distill(&d, 2, &mut ctx(&mut none3, plain_ck))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lr_labels"), "{e}");
}
