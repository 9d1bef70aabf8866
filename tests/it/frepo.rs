//! FRePo: the kernel ridge regression's solve and predictions against a dense reference, its
//! loss gradients against central finite differences, the label margin term, resuming (in
//! process and after `kill -9`), and the method's settings errors.

use crate::common::{ctx, iterations, quiet_ctx, spec};
use crate::resume::{csvs, data_rows, full, killed_when, resume, summary, write};
use distillery::data::augment::Dsa;
use distillery::data::{self, Dataset};
use distillery::distill::frepo::krr::{self, loss_and_grads, mat, predict, values};
use distillery::distill::frepo::{Frepo, FrepoConfig, FrepoSettings};
use distillery::distill::{Checkpoint, Distiller};
use distillery::train::events::Flow;
use rand::{Rng, SeedableRng};
use std::path::Path;

fn randn(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `A⁻¹ B` by Gauss-Jordan elimination with partial pivoting (row-major, `n x n` and `n x k`).
fn dense_solve(a: &[f64], b: &[f64], n: usize, k: usize) -> Vec<f64> {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap();
        for j in 0..n {
            a.swap(col * n + j, piv * n + j);
        }
        for j in 0..k {
            b.swap(col * k + j, piv * k + j);
        }
        let d = a[col * n + col];
        for row in 0..n {
            if row == col {
                continue;
            }
            let f = a[row * n + col] / d;
            for j in 0..n {
                a[row * n + j] -= f * a[col * n + j];
            }
            for j in 0..k {
                b[row * k + j] -= f * b[col * k + j];
            }
        }
    }
    (0..n * k).map(|i| b[i] / a[(i / k) * n + i / k]).collect()
}

fn matmul_t(x: &[f64], y: &[f64], r: usize, s: usize, f: usize) -> Vec<f64> {
    // x: r x f, y: s x f -> x yᵀ: r x s
    (0..r * s)
        .map(|i| {
            (0..f)
                .map(|l| x[(i / s) * f + l] * y[(i % s) * f + l])
                .sum()
        })
        .collect()
}

/// The KRR predictions the obvious way: kernels by loops, the solve by Gauss-Jordan.
fn dense_predict(
    fs: &[f64],
    ys: &[f64],
    ft: &[f64],
    (n, m, f, k): (usize, usize, usize, usize),
    reg: f64,
) -> Vec<f64> {
    let mut kss = matmul_t(fs, fs, n, n, f);
    let ridge = reg * (0..n).map(|i| kss[i * n + i]).sum::<f64>() / n as f64;
    for i in 0..n {
        kss[i * n + i] += ridge;
    }
    let alpha = dense_solve(&kss, ys, n, k);
    let kts = matmul_t(ft, fs, m, n, f);
    (0..m * k)
        .map(|i| {
            (0..n)
                .map(|l| kts[(i / k) * n + l] * alpha[l * k + i % k])
                .sum()
        })
        .collect()
}

const DIMS: (usize, usize, usize, usize) = (5, 7, 9, 3);

fn inputs(seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, m, f, k) = DIMS;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (
        randn(n * f, &mut rng),
        randn(n * k, &mut rng),
        randn(m * f, &mut rng),
        randn(m * k, &mut rng),
    )
}

#[test]
fn frepo_solve_and_predictions_match_a_dense_reference() {
    let (n, m, f, k) = DIMS;
    let (fs, ys, ft, _) = inputs(1);
    for reg in [1e-6, 0.1] {
        let got = predict(
            mat(&fs, n, f).as_ref(),
            mat(&ys, n, k).as_ref(),
            mat(&ft, m, f).as_ref(),
            reg,
        );
        let want = dense_predict(&fs, &ys, &ft, DIMS, reg);
        for (a, b) in values(got.as_ref()).iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-7 * b.abs().max(1.0),
                "reg {reg}: {a} vs {b}"
            );
        }
    }
    // The solve alone, on a symmetric positive definite system.
    let a = krr::regularised(mat(&fs, n, f).as_ref(), 0.01);
    let x = krr::solve(a.as_ref(), mat(&ys, n, k).as_ref());
    let want = dense_solve(&values(a.as_ref()), &ys, n, k);
    for (u, v) in values(x.as_ref()).iter().zip(&want) {
        assert!((u - v).abs() < 1e-9 * v.abs().max(1.0), "{u} vs {v}");
    }
}

#[test]
fn frepo_krr_gradients_match_central_differences() {
    let (n, m, f, k) = DIMS;
    let (fs, ys, ft, yt) = inputs(2);
    let reg = 0.05;
    let loss = |fs: &[f64], ys: &[f64]| {
        let g = loss_and_grads(
            mat(fs, n, f).as_ref(),
            mat(ys, n, k).as_ref(),
            mat(&ft, m, f).as_ref(),
            mat(&yt, m, k).as_ref(),
            reg,
        );
        g.loss
    };
    // The loss itself against the dense predictions.
    let p = dense_predict(&fs, &ys, &ft, DIMS, reg);
    let want = 0.5 * p.iter().zip(&yt).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / m as f64;
    assert!((loss(&fs, &ys) - want).abs() < 1e-9 * want.max(1.0));
    let g = loss_and_grads(
        mat(&fs, n, f).as_ref(),
        mat(&ys, n, k).as_ref(),
        mat(&ft, m, f).as_ref(),
        mat(&yt, m, k).as_ref(),
        reg,
    );
    let eps = 1e-6;
    let (gf, gy) = (values(g.features.as_ref()), values(g.labels.as_ref()));
    for i in 0..fs.len() {
        let (mut a, mut b) = (fs.clone(), fs.clone());
        a[i] += eps;
        b[i] -= eps;
        let fd = (loss(&a, &ys) - loss(&b, &ys)) / (2.0 * eps);
        assert!(
            (fd - gf[i]).abs() < 1e-6 * fd.abs().max(1.0),
            "dF_s[{i}]: {} vs {fd}",
            gf[i]
        );
    }
    for i in 0..ys.len() {
        let (mut a, mut b) = (ys.clone(), ys.clone());
        a[i] += eps;
        b[i] -= eps;
        let fd = (loss(&fs, &a) - loss(&fs, &b)) / (2.0 * eps);
        assert!(
            (fd - gy[i]).abs() < 1e-6 * fd.abs().max(1.0),
            "dY_s[{i}]: {} vs {fd}",
            gy[i]
        );
    }
}

#[test]
fn frepo_label_margin_is_capped_at_one_over_k() {
    // Row 0: margin 0.05 < 1/4, gradient pushes top1 up and top2 down; row 1: margin 0.9, capped.
    let ys = [0.3, 0.25, 0.0, 0.0, 1.0, 0.1, 0.0, 0.0];
    let (v, g) = krr::margin_loss(&ys, 4);
    assert!((v - (-(0.05) - 0.25) / 2.0).abs() < 1e-12, "{v}");
    assert_eq!(g[..4], [-0.5, 0.5, 0.0, 0.0]);
    assert_eq!(g[4..], [0.0; 4]);
}

fn tiny() -> Dataset {
    let mut d = data::synthetic::generate(60, [1, 8, 8], 3, 0.4, 3);
    let norm = d.channel_stats();
    d.normalize(&norm);
    d
}

fn frepo(iterations: usize) -> Frepo {
    let settings = FrepoSettings {
        iterations,
        lr_img: 0.01,
        batch_real: 16,
        models: 2,
        max_online_updates: 2,
        ..Default::default()
    };
    let dsa = Dsa::new("color_crop_cutout_scale_rotate").unwrap();
    Frepo {
        cfg: FrepoConfig::new(settings, spec(), &dsa),
    }
}

#[test]
fn frepo_moves_images_learns_labels_and_resumes_exactly() {
    let d = tiny();
    let mut none = iterations(|_, l: f64, _| {
        assert!(l.is_finite());
        Ok(Flow::Continue)
    });
    let fullset = frepo(6)
        .distill(&d, 2, &mut ctx(3, &mut none, None))
        .unwrap();
    let start = frepo(0).distill(&d, 2, &mut quiet_ctx(3)).unwrap();
    assert_ne!(fullset.images, start.images, "the images never moved");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck.safetensors");
    // Stopped at 4: past a pool member's reset (max_online_updates 2), so the pool is mid-life.
    let mut stop = iterations(|it: usize, _, snap: &dyn Fn() -> Checkpoint| {
        if it == 4 {
            snap().save(&p)?;
            return Err(distillery::Error::Other("stop".into()));
        }
        Ok(Flow::Continue)
    });
    assert!(frepo(6)
        .distill(&d, 2, &mut ctx(3, &mut stop, None))
        .is_err());
    let ck = Checkpoint::load(&p).unwrap();
    // The checkpoint keeps the raw regression targets, which have moved off the centred one-hot.
    let k = ck.set.num_classes();
    let initial =
        distillery::distill::frepo::centred_one_hot(&ck.set.labels, k, (k as f64 / 10.0).sqrt());
    assert_ne!(
        ck.set.soft_labels.as_ref(),
        Some(&initial),
        "the labels never moved"
    );
    let mut none2 = iterations(|_, _, _| Ok(Flow::Continue));
    let resumed = frepo(6)
        .distill(&d, 2, &mut ctx(3, &mut none2, Some(ck)))
        .unwrap();
    assert_eq!(resumed.images, fullset.images);
    assert_eq!(resumed.soft_labels, fullset.soft_labels);
    // The set's soft labels are distributions (the wire refuses anything else), and an
    // unlearned set's are its hard labels' one-hot rows.
    let k = fullset.num_classes();
    for set in [&fullset, &start] {
        let soft = set.soft_labels.as_ref().expect("FRePo's learned labels");
        for row in soft.chunks(k) {
            assert!(row.iter().all(|&p| p >= 0.0), "{row:?}");
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
    }
    let one_hot = distillery::distill::soft::one_hot_rows(&start.labels, k);
    assert_eq!(start.soft_labels.as_ref(), Some(&one_hot));
}

#[test]
fn frepo_targets_become_distributions_by_their_positive_part() {
    use distillery::distill::frepo::{as_distributions, centred_one_hot};
    let c = centred_one_hot(&[2, 0], 3, 1.0);
    assert_eq!(
        as_distributions(&c, &[2, 0], 3),
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    );
    let learned = [0.6, -0.2, 0.2, -0.1, -0.3, -0.5];
    let p = as_distributions(&learned, &[0, 1], 3);
    let want = [0.75, 0.0, 0.25, 0.0, 1.0, 0.0];
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{p:?}");
    }
}

const DISTILL: &str = r#"
name = "frepo-resume"
kind = "distill"
seed = 2
[data]
source = "synthetic"
train = 150
test = 90
size = 8
classes = 3
[model]
width = 8
depth = 2
[distill]
method = "frepo"
ipc = 2
iterations = 300
batch_real = 32
models = 3
max_online_updates = 20
lr_img = 0.001
log_every = 1
checkpoint_every = 30
[eval]
epochs = 5
batch_size = 16
repeats = 1
"#;

#[test]
fn a_frepo_run_killed_between_checkpoints_resumes_to_the_same_rows() {
    let root = tempfile::tempdir().unwrap();
    let scen = write(root.path(), DISTILL);
    let reference = full(&scen, &root.path().join("full"));
    let cut = killed_when(&scen, &root.path().join("cut"), |d| {
        d.join("frepo.checkpoint.safetensors").exists() && data_rows(d, "metrics.csv") >= 35
    });
    resume(&cut, "resuming from iteration ");
    let (a, b) = (csvs(&reference), csvs(&cut));
    assert_eq!(a["metrics.csv"], b["metrics.csv"]);
    assert_eq!(summary(&reference), summary(&cut));
}

#[test]
fn frepo_settings_errors_name_the_key() {
    let parse = |extra: &str| {
        let text = DISTILL.replace("models = 3", extra);
        distillery::scenario::parse(&text, Path::new("bad.toml"))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    for (extra, key) in [
        ("reg = 0.0", "reg"),
        ("models = 0", "models"),
        ("online_lr = -1.0", "online_lr"),
    ] {
        let e = parse(extra);
        assert!(e.contains(key), "{extra}: {e}");
    }
    let e = parse("outer_loop = 3");
    assert!(e.contains("outer_loop") && e.contains("dc"), "{e}");
}
