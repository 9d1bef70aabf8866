//! Private DM ([`distillery::dp`]): the clipping and noise against hand-computed values and
//! sample statistics, Poisson sampling at its rate, the settings refused with their keys, and a
//! private digits run whose reported ε is the accountant's for its rate, noise and iterations.

use crate::common::run_text;
use burn::backend::Flex;
use burn::prelude::*;
use distillery::dp::{clipped, noisy_mean, poisson, rate, rdp, DpSettings};
use rand::SeedableRng;

type B = Flex;

fn host(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn tensor(rows: &[[f32; 2]]) -> Tensor<B, 2> {
    let v: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(v, [rows.len(), 2]), &Default::default())
}

fn settings(noise_multiplier: f64, clip: f64) -> DpSettings {
    DpSettings {
        noise_multiplier,
        clip,
        delta: 1e-5,
    }
}

#[test]
fn rows_longer_than_clip_are_scaled_to_it_and_shorter_ones_kept() {
    // Norms 5, 0.5 and 2 against clip 1: (3,4)/5, (0.3,0.4) as it is, (0,2)/2.
    let e = tensor(&[[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]]);
    let got = host(clipped(e, 1.0));
    let want = [0.6, 0.8, 0.3, 0.4, 0.0, 1.0];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?}");
    }
}

#[test]
fn the_noisy_mean_is_the_clipped_sum_over_the_expected_batch_plus_noise_of_sigma_clip() {
    let dev = Default::default();
    // No noise to speak of: the clipped rows' sum over the expected batch size (4).
    let e = tensor(&[[3.0, 4.0], [0.3, 0.4]]);
    let m = host(noisy_mean(Some(e), 2, &settings(1e-9, 1.0), 4.0, 7, &dev));
    assert!(
        (m[0] - 0.9 / 4.0).abs() < 1e-6 && (m[1] - 1.2 / 4.0).abs() < 1e-6,
        "{m:?}"
    );
    // Noise alone: mean 0, standard deviation noise_multiplier * clip / expected = 2 * 0.5 / 2.
    let n = 20_000;
    let v = host(noisy_mean(None, n, &settings(2.0, 0.5), 2.0, 11, &dev));
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!(mean.abs() < 0.02, "{mean}");
    assert!((sd - 0.5).abs() < 0.015, "{sd}");
    // One more image moves the sum (before noise) by at most clip: the sensitivity.
    let a = tensor(&[[3.0, 4.0], [1.0, 0.0]]);
    let b = tensor(&[[3.0, 4.0], [1.0, 0.0], [-30.0, 40.0]]);
    let (sa, sb) = (
        host(noisy_mean(Some(a), 2, &settings(1e-9, 1.0), 1.0, 3, &dev)),
        host(noisy_mean(Some(b), 2, &settings(1e-9, 1.0), 1.0, 3, &dev)),
    );
    let moved = ((sa[0] - sb[0]).powi(2) + (sa[1] - sb[1]).powi(2)).sqrt();
    assert!((moved - 1.0).abs() < 1e-5, "{moved}");
}

#[test]
fn poisson_batches_keep_each_image_at_the_rate() {
    let class: Vec<usize> = (0..10_000).collect();
    let q = rate(256, class.len());
    assert!((q - 0.0256).abs() < 1e-12);
    assert_eq!(rate(500, 100), 1.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let got = poisson(&class, q, &mut rng).len() as f64;
    // Binomial(10000, 0.0256): sd about 15.8.
    assert!((got - 256.0).abs() < 80.0, "{got}");
}

fn digits(dp: &str, init: &str) -> String {
    format!(
        r#"
name = "digits-dp"
kind = "distill"
seed = 3
[data]
source = "digits"
[model]
width = 8
depth = 2
[eval]
epochs = 60
repeats = 1
[distill]
method = "dm"
ipc = 5
iterations = 60
batch_real = 32
init = "{init}"
{dp}
[audit]
enabled = false
"#
    )
}

#[test]
fn a_private_digits_run_reports_the_accountants_epsilon_and_beats_chance() {
    let root = tempfile::tempdir().unwrap();
    let text = digits("dp = { noise_multiplier = 2.0, clip = 5.0 }", "noise");
    let out = run_text(&text, root.path());
    let d = out.summary.distill().unwrap();
    let spent = d.distilled["dm"].dp.clone().expect("the dp record");
    // The rate is batch_real over the smallest class of the training images.
    let counts = distillery::experiment::load_data(
        &distillery::scenario::parse(&text, std::path::Path::new("t.toml")).unwrap(),
    )
    .unwrap()
    .train
    .class_counts();
    let q = counts.iter().map(|&n| rate(32, n)).fold(0.0, f64::max);
    assert_eq!(spent.sampling_rate, q);
    assert_eq!(spent.steps, 60);
    assert_eq!(spent.epsilon, rdp::spent(q, 2.0, 60, 1e-5).0);
    assert!(spent.epsilon.is_finite() && spent.epsilon > 0.0);
    let acc = d.test_acc_mean.unwrap();
    assert!(acc > 0.3, "private DM at {acc} (chance 0.1)");
    assert!(out
        .summary
        .report
        .iter()
        .any(|l| l.contains("differentially private: epsilon")));
}

#[test]
fn private_dm_refuses_a_real_start_and_bad_settings_by_name() {
    let parse = |t: &str| {
        distillery::scenario::parse(t, std::path::Path::new("t.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = parse(&digits("dp = { noise_multiplier = 1.0 }", "real"));
    assert!(e.contains("init") && e.contains("noise"), "{e}");
    let e = parse(&digits("dp = { noise_multiplier = -1.0 }", "noise"));
    assert!(e.contains("dp.noise_multiplier"), "{e}");
    let e = parse(&digits(
        "dp = { noise_multiplier = 1.0, delta = 2.0 }",
        "noise",
    ));
    assert!(e.contains("dp.delta"), "{e}");
    let e = parse(&digits(
        "dp = { noise_multiplier = 1.0, sigma = 2.0 }",
        "noise",
    ));
    assert!(e.contains("sigma"), "{e}");
}

#[test]
fn a_private_client_sends_no_real_images_of_its_poor_classes() {
    use distillery::experiment as runner;
    use distillery::fed::strategy::ClientState;
    let dir = tempfile::tempdir().unwrap();
    let text = |dp: &str| {
        crate::federated::scenario_text("dp-client", "strategies = [\"distilled_oneshot\"]")
            .replace(
                "method = \"random\"\nipc = 3",
                &format!("method = \"dm\"\nipc = 20\niterations = 5\nbatch_real = 16\ninit = \"noise\"\n{dp}"),
            )
            .replace("{ kind = \"iid\" }", "{ kind = \"dirichlet\", alpha = 0.3, min_size = 20 }")
    };
    // Labels sent by client 0, and its classes with fewer than ipc images.
    let sent = |t: &str| {
        let l = distillery::scenario::parse(t, std::path::Path::new("t.toml")).unwrap();
        let split = runner::load_data(&l).unwrap();
        let data = distillery::plan::federated::client_data(&l, &split).unwrap();
        let entry = &l.scenario.federated_section().strategies[0];
        let state = ClientState::new(0, data[0].clone());
        let set = crate::fed_clients::client_set(&l, &split, entry, state, dir.path());
        let counts = data[0].class_counts();
        let poor: Vec<usize> = (0..counts.len())
            .filter(|&c| counts[c] > 0 && counts[c] < 20)
            .collect();
        (set.labels, poor)
    };
    let (plain, poor) = sent(&text(""));
    assert!(
        !poor.is_empty(),
        "client 0 holds a class with fewer than 20 images"
    );
    assert!(
        plain.iter().any(|y| poor.contains(y)),
        "plain DM sends them as they are"
    );
    let (private, _) = sent(&text("dp = { noise_multiplier = 1.0 }"));
    assert!(!private.is_empty());
    assert!(
        private.iter().all(|y| !poor.contains(y)),
        "{private:?} {poor:?}"
    );
}

#[test]
fn a_private_feddm_run_reports_each_clients_epsilon_over_the_rounds_it_worked_in() {
    use distillery::experiment as runner;
    let text = crate::federated::scenario_text(
        "dp-fed",
        "strategies = [\"distilled_iterative\"]\nrounds = 2\nfedavg_until_oneshot = false",
    )
    .replace(
        "method = \"random\"\nipc = 3",
        "method = \"dm\"\nipc = 3\niterations = 4\nbatch_real = 16\ninit = \"noise\"\ndp = { noise_multiplier = 1.5 }",
    )
    .replace("[eval]\nepochs = 40", "[eval]\nepochs = 5\n[audit]\nenabled = false");
    let root = tempfile::tempdir().unwrap();
    let out = run_text(&text, root.path());
    let f = out.summary.federated().unwrap();
    let spent = f.strategies["distilled_iterative"]
        .dp
        .clone()
        .expect("dp record");
    let l = distillery::scenario::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let split = runner::load_data(&l).unwrap();
    let data = distillery::plan::federated::client_data(&l, &split).unwrap();
    // Every client works in both rounds (fraction 1): 2 x 4 iterations each.
    assert_eq!(spent.clients.len(), data.len());
    for (c, d) in spent.clients.iter().zip(&data) {
        let q = d
            .class_counts()
            .into_iter()
            .filter(|&n| n >= 3)
            .map(|n| rate(16, n))
            .fold(0.0, f64::max);
        assert_eq!(c.sampling_rate, q);
        assert_eq!(c.steps, 8);
        assert_eq!(c.epsilon, rdp::spent(q, 1.5, 8, 1e-5).0);
    }
    let max = spent.clients.iter().map(|c| c.epsilon).fold(0.0, f64::max);
    assert_eq!(spent.epsilon_max, max);
    assert!(out
        .summary
        .report
        .iter()
        .any(|l| l.contains("differentially private clients")));
}
