//! SelMatch: partial updates (alpha = 0 never changes the set, alpha = 1 is MTT's update, in
//! between only the easier images move), the distilled/selected split, the beta search, combined
//! augmentation, difficulty-score files, and a whole scenario run.

use burn::backend::Flex;
use burn::prelude::*;
use distillery::data::augment::{BatchAug, Combined, Dsa, Plain};
use distillery::data::{self, Dataset};
use distillery::distill::mtt::distiller::Start;
use distillery::distill::mtt::experts::{Experts, Trajectory};
use distillery::distill::mtt::{Mtt, MttConfig, MttSettings};
use distillery::distill::selmatch::scores::{self, ScoreKind};
use distillery::distill::selmatch::window::{distilled_mask, distilled_per_class, search_beta};
use distillery::distill::SyntheticSet;
use distillery::train::TrainConfig;
use rand::SeedableRng;

use crate::common::{spec, AD};

fn setup() -> (Dataset, Vec<Trajectory>) {
    crate::common::experts(150, 3, 1)
}

fn cfg() -> MttConfig {
    MttConfig::new(
        MttSettings {
            iterations: 4,
            syn_steps: 3,
            expert_epochs: 1,
            max_start_epoch: 2,
            lr_img: 100.0,
            lr_lr: 1e-4,
            lr_teacher: 0.05,
            ..MttSettings::default()
        },
        spec(),
        &Dsa::new("color_crop").unwrap(),
    )
}

/// Runs MTT from the first `ipc` images of each class with update flags `trainable`.
fn run(
    d: &Dataset,
    experts: &[Trajectory],
    ipc: usize,
    trainable: Option<Vec<bool>>,
) -> SyntheticSet {
    let start: Vec<usize> = d
        .class_indices()
        .iter()
        .flat_map(|c| c[..ipc].to_vec())
        .collect();
    let start = Start {
        images: Some(&start),
        trainable: trainable.as_deref(),
    };
    Mtt::new(cfg(), Experts::Loaded(experts.to_vec()))
        .run(d, ipc, &start, "mtt", &mut crate::common::quiet_ctx(2))
        .unwrap()
}

#[test]
fn partial_updates_move_only_the_distilled_images() {
    let (d, experts) = setup();
    let ipc = 4;
    let start: Vec<usize> = d
        .class_indices()
        .iter()
        .flat_map(|c| c[..ipc].to_vec())
        .collect();
    let original = d.subset(&start).images;
    let l = d.image_len();
    // alpha = 0: nothing is distilled, the set never changes.
    let frozen = run(&d, &experts, ipc, Some(distilled_mask(3, ipc, 0.0)));
    assert_eq!(frozen.images, original);
    // alpha = 1 is exactly MTT's update of the whole set.
    let all = run(&d, &experts, ipc, Some(distilled_mask(3, ipc, 1.0)));
    let plain = run(&d, &experts, ipc, None);
    assert_eq!(all.images, plain.images);
    assert_ne!(all.images, original);
    // alpha = 0.5: per class the first (hardest) two stay, the other two move.
    let half = run(&d, &experts, ipc, Some(distilled_mask(3, ipc, 0.5)));
    for i in 0..3 * ipc {
        let (a, b) = (
            &half.images[i * l..(i + 1) * l],
            &original[i * l..(i + 1) * l],
        );
        if i % ipc < 2 {
            assert_eq!(a, b, "selected image {i} moved");
        } else {
            assert_ne!(a, b, "distilled image {i} did not move");
        }
    }
}

#[test]
fn the_split_follows_the_reference_counts() {
    // cpc = floor(ipc * alpha) distilled per class, the harder ipc - cpc first.
    assert_eq!(distilled_per_class(10, 0.6), 6);
    assert_eq!(distilled_per_class(250, 0.6), 150);
    assert_eq!(distilled_per_class(5, 0.3), 1);
    let m = distilled_mask(2, 5, 0.6);
    assert_eq!(
        m,
        vec![false, false, true, true, true, false, false, true, true, true]
    );
}

#[test]
fn the_beta_search_keeps_the_best_window_and_scores_every_fitting_one() {
    // 2 classes x 10 samples; score = index, so class c's ranking is its indices descending.
    let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
    let scores: Vec<f64> = (0..20).map(|i| i as f64).collect();
    let mut seen = Vec::new();
    let (best, rows) = search_beta(
        &labels,
        &scores,
        2,
        3,
        &[0.0, 1.0, 2.0, 3.0],
        |beta, idx| {
            seen.push((beta, idx.to_vec()));
            // A made-up accuracy peaking at beta = 1.
            Ok(vec![1.0 - (beta - 1.0).abs() * 0.1])
        },
    )
    .unwrap();
    assert_eq!(best, 1.0);
    // beta = 3 skips 9 of a class's 10: the window does not fit and is skipped.
    assert_eq!(rows.len(), 3);
    // beta = 1 skips the 3 hardest (highest index) of each class and takes the next 3.
    assert_eq!(seen[1].1, vec![12, 10, 8, 13, 11, 9]);
    assert!(search_beta(&labels, &scores, 2, 3, &[5.0], |_, _| Ok(vec![1.0])).is_err());
}

#[test]
fn combined_augmentation_treats_selected_and_distilled_rows_apart() {
    let dev = Default::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let v: Vec<f32> = (0..6 * 16).map(|i| (i as f32 * 0.7).sin()).collect();
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(v.clone(), [6, 1, 4, 4]), &dev);
    // Plain augmentation with no shift and no flip is the identity, DSA colour never is.
    let aug = Combined {
        dsa: Some(Dsa::new("color").unwrap()),
        plain: Plain {
            pad: 0,
            flip: false,
        },
        fixed: vec![
            true, false, true, false, false, true, false, false, false, false,
        ],
    };
    // Batch rows are training rows 5, 1, 0, 3, 2, 4.
    let rows = [5, 1, 0, 3, 2, 4];
    let out = aug
        .apply(x, &rows, &mut rng)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    for (p, &r) in rows.iter().enumerate() {
        let (a, b) = (&out[p * 16..(p + 1) * 16], &v[p * 16..(p + 1) * 16]);
        if aug.fixed[r] {
            assert_eq!(a, b, "selected row {r} (batch position {p}) was changed");
        } else {
            assert_ne!(a, b, "distilled row {r} (batch position {p}) got no DSA");
        }
    }
    // A shift by up to 1 px with zero fill: every output pixel is 0 or an input pixel.
    let shift = Plain { pad: 1, flip: true };
    let y = Tensor::<Flex, 4>::from_data(TensorData::new(v.clone(), [6, 1, 4, 4]), &dev);
    let out = shift
        .augment(y, &mut rng)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    assert!(out.iter().all(|o| *o == 0.0 || v.contains(o)));
    assert_ne!(out, v);
}

#[test]
fn score_files_round_trip_and_bad_ones_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.csv");
    scores::save_csv(&p, &[0.5, 2.0, -1.0]).unwrap();
    assert_eq!(scores::load_csv(&p, 3).unwrap(), vec![0.5, 2.0, -1.0]);
    for (text, needle) in [
        ("index,score\n0,1\n1,2\n", "no score for sample 2"),
        ("0,1\n1,2\n1,3\n", "appears twice"),
        ("0,1\n1,nan\n2,3\n", "not finite"),
        ("0,1\n7,2\n2,3\n", "outside the 3"),
        ("0,1\n1,x\n2,3\n", "expected `index,score`"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = scores::load_csv(&p, 3).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("s.csv"), "{text:?}: {e}");
    }
    // The cache computes once, then reads the file.
    let c = dir.path().join("cache/c.csv");
    let first = scores::cached(&c, 2, || Ok(vec![3.0, 4.0])).unwrap();
    let again = scores::cached(&c, 2, || panic!("recomputed")).unwrap();
    assert_eq!(first, again);
}

#[test]
fn forgetting_and_el2n_scores_rank_mislabelled_samples_hard() {
    // Well-separated classes with 10 labels flipped: those samples are the hard ones.
    let mut d = data::synthetic::generate(120, [1, 8, 8], 3, 0.2, 5);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let flipped: Vec<usize> = (0..10).map(|i| i * 12).collect();
    for &i in &flipped {
        d.labels[i] = (d.labels[i] + 1) % 3;
    }
    let cfg = TrainConfig {
        batch_size: 16,
        lr: 0.05,
        ..TrainConfig::reference(8)
    };
    for kind in [ScoreKind::Forgetting, ScoreKind::El2n] {
        let s =
            scores::compute::<AD>(&d, &spec(), kind, &cfg, 0, &Default::default(), |_| {}).unwrap();
        assert_eq!(s.len(), d.len());
        let mean = |idx: &mut dyn Iterator<Item = usize>| {
            let v: Vec<f64> = idx.map(|i| s[i]).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let hard = mean(&mut flipped.iter().copied());
        let rest = mean(&mut (0..d.len()).filter(|i| !flipped.contains(i)));
        assert!(
            hard > 2.0 * rest,
            "{kind:?}: flipped {hard:.3} vs rest {rest:.3}"
        );
    }
}

#[test]
fn selmatch_scenario_searches_the_window_and_keeps_the_selected_images() {
    let text = r#"
name = "tiny-selmatch"
kind = "distill"
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
count = 1
epochs = 3
lr = 0.05
batch_size = 32
[distill]
method = "selmatch"
ipc = 4
iterations = 3
syn_steps = 3
expert_epochs = 1
max_start_epoch = 2
lr_img = 100.0
lr_lr = 1e-4
lr_teacher = 0.05
alpha = 0.5
beta_grid = [0.0, 1.0, 2.0]
difficulty = "forgetting"
difficulty_epochs = 3
baselines = ["random"]
coverage_every = 2
[eval]
epochs = 20
batch_size = 16
repeats = 1
"#;
    let root = tempfile::tempdir().unwrap();
    let opts = distillery::experiment::RunOptions::quiet(root.path());
    let l = distillery::scenario::parse(text, std::path::Path::new("t.toml")).unwrap();
    let out = distillery::experiment::run(&l, &opts).unwrap();
    let windows = std::fs::read_to_string(out.dir.join("windows.csv")).unwrap();
    assert_eq!(windows.lines().count(), 1 + 3, "{windows}");
    let set = SyntheticSet::load(&out.dir.join("selmatch.safetensors")).unwrap();
    let fixed = set.fixed.clone().expect("selected flags");
    assert_eq!(
        fixed,
        distilled_mask(3, 4, 0.5)
            .iter()
            .map(|t| !t)
            .collect::<Vec<_>>()
    );
    assert_eq!(set.provenance.method, "selmatch");
    // The selected images are real training images, untouched.
    let train = out_train_images(&l);
    let len = 64;
    for i in (0..12).filter(|&i| fixed[i]) {
        let img = &set.images[i * len..(i + 1) * len];
        assert!(
            train.chunks_exact(len).any(|t| t == img),
            "selected image {i} is not a training image"
        );
    }
    let scores_dir = root.path().join("scores");
    assert_eq!(std::fs::read_dir(&scores_dir).unwrap().count(), 1);
    // Every set's coverage is in the summary: fractions, the overall one between the halves.
    for m in ["selmatch", "random"] {
        let c = serde_json::to_value(&out.summary.distill().unwrap().coverage[m]).unwrap();
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        assert!(f("radius") > 0.0, "{m}: {c}");
        for k in ["overall", "easy", "hard"] {
            assert!((0.0..=1.0).contains(&f(k)), "{m}: {c}");
        }
        let (lo, hi) = (f("easy").min(f("hard")), f("easy").max(f("hard")));
        assert!(
            f("overall") >= lo - 1e-9 && f("overall") <= hi + 1e-9,
            "{m}: {c}"
        );
    }
    // coverage.csv: SelMatch at iteration 2 (coverage_every) and at the end (3), random once;
    // the final rows are the summary's figures.
    let csv = std::fs::read_to_string(out.dir.join("coverage.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let keys: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        keys,
        [("selmatch", "2"), ("selmatch", "3"), ("random", "0")],
        "{csv}"
    );
    for r in &rows[1..] {
        let c = serde_json::to_value(&out.summary.distill().unwrap().coverage[r[0]]).unwrap();
        for (col, k) in [(2, "overall"), (3, "easy"), (4, "hard"), (5, "radius")] {
            let v: f64 = r[col].parse().unwrap();
            assert!(
                (v - c[k].as_f64().unwrap()).abs() < 1e-6,
                "{k}: {csv} vs {c}"
            );
        }
    }
    // Resuming the finished run measures the same coverage again (the same seeded probe).
    // It needs no experts: every trajectory-matching set is saved.
    std::fs::remove_file(out.dir.join("summary.json")).unwrap();
    let experts = root.path().join("experts");
    assert!(experts.is_dir());
    std::fs::remove_dir_all(&experts).unwrap();
    let again = distillery::experiment::resume(&out.dir, &opts).unwrap();
    assert!(!experts.exists(), "the resumed run trained experts");
    // On the CPU nothing is checked against the CPU.
    assert!(out.summary.distill().unwrap().device_check.is_empty());
    assert_eq!(
        again.summary.distill().unwrap().coverage,
        out.summary.distill().unwrap().coverage
    );
    // The rows after the last set was saved are cut and measured again, not repeated.
    let csv2 = std::fs::read_to_string(out.dir.join("coverage.csv")).unwrap();
    assert_eq!(csv2, csv);
    let acc = out.summary.distill().unwrap().results["selmatch"]["convnet"].mean;
    assert!(acc > 0.6, "selmatch: {acc} (chance is 1/3)");
}

fn out_train_images(l: &distillery::scenario::Loaded) -> Vec<f32> {
    distillery::experiment::load_data(l).unwrap().train.images
}
