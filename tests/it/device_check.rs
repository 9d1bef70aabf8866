//! The first-step check of a GPU run: a device that agrees with the CPU keeps the configured
//! gradient form; one whose configured form is wrong is switched to a form that agrees; one where
//! no form agrees is an error naming the numbers. On the CPU against itself, the check agrees to
//! rounding and leaves the run's result unchanged.

use burn::backend::Flex;
use distillery::data::augment::{Dsa, STRATEGY_DIGITS};
use distillery::data::Dataset;
use distillery::distill::mtt::check::{check_step, decide, form_name, Outcome};
use distillery::distill::mtt::experts::{Experts, Trajectory};
use distillery::distill::mtt::{draw_iteration, Mtt, MttConfig, MttSettings};
use distillery::distill::{Distiller, Event};
use distillery::model::backward::ConvGrads;
use distillery::train::events::Flow;

use crate::common::{spec, AD};

fn cfg() -> MttConfig {
    MttConfig::new(
        MttSettings {
            iterations: 3,
            syn_steps: 4,
            expert_epochs: 1,
            max_start_epoch: 2,
            lr_img: 100.0,
            lr_lr: 1e-4,
            lr_teacher: 0.05,
            ..MttSettings::default()
        },
        spec(),
        &Dsa::new(STRATEGY_DIGITS).unwrap(),
    )
}

fn setup() -> (Dataset, Vec<Trajectory>) {
    crate::common::experts(90, 3, 1)
}

fn reference() -> Outcome {
    Outcome {
        loss: 0.8,
        image_grad: vec![0.3, -0.2, 0.1, 0.05],
        lr_grad: -1.5,
    }
}

/// A device that returns `reference` slightly rounded, except for the forms named in `wrong`,
/// whose image gradient is off by half its size.
fn device<'a>(
    wrong: &'a [&'a str],
    calls: &'a mut Vec<String>,
) -> impl FnMut(&MttConfig) -> Outcome + 'a {
    move |c: &MttConfig| {
        calls.push(form_name(c).to_string());
        let mut o = reference();
        o.image_grad.iter_mut().for_each(|g| *g *= 1.0 + 1e-4);
        if wrong.contains(&form_name(c)) {
            o.image_grad[0] += 0.5 * 0.3;
        }
        o
    }
}

#[test]
fn an_agreeing_device_keeps_the_configured_form() {
    let mut calls = Vec::new();
    let (check, chosen) = decide(&cfg(), &reference(), "gpu", device(&[], &mut calls)).unwrap();
    assert_eq!(calls, ["hand-written (conv)"]);
    assert_eq!(check.chosen, "hand-written (conv)");
    assert_eq!(check.configured, check.chosen);
    assert_eq!(form_name(&chosen), "hand-written (conv)");
    let t = &check.tried[0];
    assert!(t.ok());
    assert!((t.image_grad - 1e-4).abs() < 1e-6, "{}", t.image_grad);
    assert_eq!(t.loss, 0.0);
}

#[test]
fn a_wrong_configured_form_is_replaced_by_one_that_agrees() {
    let mut calls = Vec::new();
    let (check, chosen) = decide(
        &cfg(),
        &reference(),
        "gpu",
        device(&["hand-written (conv)"], &mut calls),
    )
    .unwrap();
    assert_eq!(calls, ["hand-written (conv)", "hand-written (matmul)"]);
    assert!(chosen.settings.hand_written_backward);
    assert_eq!(chosen.settings.conv_grads, ConvGrads::Matmul);
    assert_eq!(check.chosen, "hand-written (matmul)");
    // ||(0.15, 0, 0, 0)|| / ||(0.3, -0.2, 0.1, 0.05)|| (plus the 1e-4 rounding), by hand.
    let norm = (0.3f64 * 0.3 + 0.04 + 0.01 + 0.0025).sqrt();
    assert!((check.tried[0].image_grad - 0.15 / norm).abs() < 1e-3);
    assert!(!check.tried[0].ok() && check.tried[1].ok());
    let msg = check.to_string();
    assert!(
        msg.contains("so this run uses hand-written (matmul)"),
        "{msg}"
    );
    // Everything else about the run is kept.
    assert_eq!(chosen.settings.syn_steps, cfg().settings.syn_steps);
    assert_eq!(chosen.settings.lr_img, cfg().settings.lr_img);
}

#[test]
fn the_other_forms_are_tried_in_order_from_a_matmul_configuration() {
    let mut calls = Vec::new();
    let mut matmul = cfg();
    matmul.settings.conv_grads = ConvGrads::Matmul;
    let (check, chosen) = decide(
        &matmul,
        &reference(),
        "gpu",
        device(
            &["hand-written (matmul)", "hand-written (conv)"],
            &mut calls,
        ),
    )
    .unwrap();
    assert_eq!(
        calls,
        [
            "hand-written (matmul)",
            "hand-written (conv)",
            "nested autodiff"
        ]
    );
    assert!(!chosen.settings.hand_written_backward);
    assert_eq!(check.tried.len(), 3);
}

#[test]
fn no_agreeing_form_is_an_error_naming_the_errors() {
    let mut calls = Vec::new();
    let all = [
        "hand-written (conv)",
        "hand-written (matmul)",
        "nested autodiff",
    ];
    let err = decide(&cfg(), &reference(), "cuda", device(&all, &mut calls))
        .unwrap_err()
        .to_string();
    assert_eq!(calls.len(), 3);
    for needle in [
        "no form agrees",
        "distillery doctor --device cuda",
        "check_device = false",
        "nested autodiff: loss 0.0e0",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    // A NaN from the device never passes.
    let mut calls = Vec::new();
    let nan = |c: &MttConfig| {
        calls.push(form_name(c).to_string());
        Outcome {
            lr_grad: f32::NAN,
            ..reference()
        }
    };
    assert!(decide(&cfg(), &reference(), "cuda", nan).is_err());
}

/// Plumbing only: the CPU is both the device and the reference here, so this checks that the
/// check runs and agrees with itself, not a device's numerics (`distillery doctor` on a GPU does).
#[test]
fn plumbing_cpu_against_cpu_the_check_agrees_to_rounding() {
    let (d, experts) = setup();
    let c = cfg();
    let dev = Default::default();
    let n = 6;
    let idx: Vec<usize> = (0..n).collect();
    let set = d.subset(&idx);
    let images = burn::tensor::Tensor::<Flex, 4>::from_data(
        burn::tensor::TensorData::new(set.images.clone(), [n, 1, 8, 8]),
        &dev,
    );
    let draw = draw_iteration(&c, 1, n, (8, 8), 5, 0);
    let e = &experts[0].params;
    let (check, chosen) = check_step::<AD>(
        &c,
        "cpu",
        (&e[draw.start], &e[draw.start + 1]),
        &draw,
        &images,
        &set.labels,
        0.05,
    )
    .unwrap();
    assert_eq!(check.tried.len(), 1);
    assert_eq!(form_name(&chosen), "hand-written (conv)");
    let t = &check.tried[0];
    assert!(
        t.loss < 1e-6 && t.lr_grad < 1e-6 && t.image_grad < 1e-6,
        "{t:?}"
    );
}

/// The set a run makes, and the form its device check chose (the check reported as an event).
fn run(check: Option<&str>) -> (Vec<f32>, Option<String>) {
    let (d, experts) = setup();
    let mut chosen = None;
    let mut on = |e: Event<'_>| {
        if let Event::DeviceChecked(c) = e {
            chosen = Some(c.chosen.clone());
        }
        Ok(Flow::Continue)
    };
    let mut ctx = crate::common::ctx(8, &mut on, None);
    let mut mtt = Mtt::new(cfg(), Experts::Loaded(experts));
    mtt.check_device = check.map(str::to_string);
    let set = mtt.distill(&d, 2, &mut ctx).unwrap();
    drop(ctx);
    (set.images, chosen)
}

/// Plumbing only (the CPU checked against itself): a checked run reports its check and makes the
/// same set as an unchecked one.
#[test]
fn plumbing_a_run_checked_cpu_against_cpu_distils_the_same_set() {
    let (plain, none) = run(None);
    let (checked, chosen) = run(Some("cpu"));
    assert_eq!(none, None);
    assert_eq!(chosen.as_deref(), Some("hand-written (conv)"));
    assert_eq!(plain, checked);
}
