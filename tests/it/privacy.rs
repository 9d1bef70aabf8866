//! The privacy audit's measures on hand-made inputs: nearest-real distances and near-copies,
//! the ROC figures, each example's loss and confidence, the member split, and the attacks on
//! networks that did and did not see the scored images.

use crate::common::AD;
use distillery::audit::attack::{calibrated_attack, example, loss_attack, reference_mean, seen};
use distillery::audit::nearest::{nearest, own_nearest, quantile, Distances, Rows};
use distillery::audit::roc::{auc, roc_curve, tpr_at_fpr, RocFigures};
use distillery::audit::split::{membership, sample, MemberRule};
use distillery::data::augment::Dsa;
use distillery::data::{embedded, Dataset};
use distillery::distill::eval::{train_net, EvalConfig};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::train::events::Progress;
use distillery::train::{LrSchedule, TrainConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;

#[test]
fn nearest_real_finds_the_two_copied_training_images_at_distance_zero() {
    // Five real points in 2-D: (0,0), (3,0), (0,4), (10,10), (10,15). Their own nearest-neighbour
    // distances are 3, 3, 4, 5, 5 (hand-computed), so the 0.5-quantile threshold is 4.
    let reals = [0.0, 0.0, 3.0, 0.0, 0.0, 4.0, 10.0, 10.0, 10.0, 15.0];
    let r = Rows::new(&reals, 2);
    let own = own_nearest(r, &[0, 1, 2, 3, 4]);
    assert_eq!(own, vec![3.0, 3.0, 4.0, 5.0, 5.0]);
    let threshold = quantile(&own, 0.5);
    assert_eq!(threshold, 4.0);
    // Copies of real points 1 and 3; (10,21), 6 from real 4; (1,1), sqrt 2 from real 0 (under
    // the threshold, so a near-copy though not an exact one).
    let syn = [3.0, 0.0, 10.0, 10.0, 10.0, 21.0, 1.0, 1.0];
    let found = nearest(Rows::new(&syn, 2), r);
    assert_eq!(found[0], (0.0, 1));
    assert_eq!(found[1], (0.0, 3));
    assert_eq!(found[2], (6.0, 4));
    assert_eq!(found[3].1, 0);
    let r2 = 2f64.sqrt();
    assert!((found[3].0 - r2).abs() < 1e-12);
    let d: Vec<f64> = found.iter().map(|p| p.0).collect();
    let f = Distances::of(&d, threshold);
    assert_eq!(f.near_copies, 3);
    assert_eq!(f.min, 0.0);
    assert!((f.median - r2 / 2.0).abs() < 1e-12);
    assert!((f.mean - (6.0 + r2) / 4.0).abs() < 1e-12);
    // With a threshold of 1 only the two exact copies count.
    let strict = Distances::of(&d, 1.0);
    assert_eq!(strict.near_copies, 2);
    assert_eq!(strict.near_copy_share, 0.5);
}

#[test]
fn a_set_copying_two_digits_has_exactly_those_two_near_copies() {
    let split = embedded::digits_split(0);
    let train = &split.train;
    let l = train.image_len();
    let r = Rows::new(&train.images, l);
    let idx: Vec<usize> = (0..train.len()).step_by(3).collect();
    let threshold = quantile(&own_nearest(r, &idx), 0.05);
    assert!(threshold > 0.0, "digits have no duplicate images");
    // Two copies, and six images half-way between two random training images of different classes
    // plus noise: far from every training image.
    let mut set = train.subset(&[17, 400]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for k in 0..6 {
        let v: Vec<f32> = train
            .image(k * 50)
            .iter()
            .zip(train.image(k * 50 + 25))
            .map(|(a, b)| 0.5 * (a + b) + rand::Rng::random_range(&mut rng, -2.0..2.0))
            .collect();
        set.images.extend_from_slice(&v);
        set.labels.push(0);
    }
    let found = nearest(Rows::new(&set.images, l), r);
    assert_eq!(found[0], (0.0, 17));
    assert_eq!(found[1], (0.0, 400));
    let d: Vec<f64> = found.iter().map(|p| p.0).collect();
    assert!(
        d[2..].iter().all(|&x| x > threshold),
        "{d:?} vs {threshold}"
    );
    let f = Distances::of(&d, threshold);
    assert_eq!(f.near_copies, 2);
    assert_eq!(f.near_copy_share, 0.25);
}

#[test]
fn roc_figures_match_hand_counts() {
    // Members 0.9, 0.8, 0.4; non-members 0.7, 0.4, 0.1. Pairs won: 0.9 beats 3, 0.8 beats 3,
    // 0.4 beats 1 and ties 1: (3 + 3 + 1.5) / 9.
    let (m, n) = ([0.9, 0.8, 0.4], [0.7, 0.4, 0.1]);
    assert!((auc(&m, &n) - 7.5 / 9.0).abs() < 1e-12);
    let curve = roc_curve(&m, &n);
    let third = 1.0 / 3.0;
    let want = [
        (0.0, 0.0),
        (0.0, third),
        (0.0, 2.0 * third),
        (third, 2.0 * third),
        (2.0 * third, 1.0),
        (1.0, 1.0),
    ];
    assert_eq!(curve.len(), want.len());
    for (a, b) in curve.iter().zip(want) {
        assert!(
            (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12,
            "{curve:?}"
        );
    }
    assert!((tpr_at_fpr(&curve, 0.01) - 2.0 * third).abs() < 1e-12);
    let f = RocFigures::of(&m, &n);
    assert!((f.advantage - 2.0 * third).abs() < 1e-12);
    assert_eq!(f.tpr_at_1pct_fpr, f.tpr_at_0_1pct_fpr);
    // Identical scores learn nothing; reversed ones are perfectly wrong.
    assert_eq!(auc(&[1.0, 1.0], &[1.0, 1.0, 1.0]), 0.5);
    assert_eq!(RocFigures::of(&[1.0, 1.0], &[1.0]).advantage, 0.0);
    assert_eq!(auc(&[0.0, 0.1], &[0.5, 0.6]), 0.0);
    assert!(auc(&[], &[1.0]).is_nan());
}

#[test]
fn loss_and_logit_confidence_of_an_example_are_exact() {
    // Logits (2, 0, 0), label 0: p = e^2 / (e^2 + 2); loss = -ln p; confidence = ln(p / (1 - p))
    // = 2 - ln 2.
    let (loss, conf) = example(&[2.0, 0.0, 0.0], 0);
    let e2 = 2f64.exp();
    assert!((loss - ((e2 + 2.0) / e2).ln()).abs() < 1e-12);
    assert!((conf - (2.0 - 2f64.ln())).abs() < 1e-12);
    // Stable at logits that overflow a naive exp.
    let (loss, conf) = example(&[800.0, 0.0], 1);
    assert!((loss - 800.0).abs() < 1e-9 && (conf + 800.0).abs() < 1e-9);
}

#[test]
fn the_member_split_is_disjoint_stratified_and_seeded() {
    let labels: Vec<usize> = (0..1000).map(|i| (i * 7) % 10).collect();
    let (m, n) = membership(&labels, MemberRule::Share(0.3), 4);
    assert_eq!(m.len(), 300);
    assert_eq!(n.len(), 700);
    let mut all: Vec<usize> = m.iter().chain(&n).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>(), "every image once");
    for c in 0..10 {
        assert_eq!(m.iter().filter(|&&i| labels[i] == c).count(), 30);
    }
    assert_eq!(
        membership(&labels, MemberRule::Share(0.3), 4),
        (m.clone(), n)
    );
    let (other, _) = membership(&labels, MemberRule::Share(0.3), 5);
    assert_ne!(other, m, "another seed draws other members");
    let (m, n) = membership(&labels, MemberRule::PerClass(2), 4);
    assert_eq!((m.len(), n.len()), (20, 980));
    // A class of one image keeps it as a member; a rule asking for all keeps one non-member.
    let (m, n) = membership(&[0, 1, 1, 1], MemberRule::PerClass(10), 0);
    assert_eq!(m.len(), 3);
    assert_eq!(n.len(), 1);
    let s = sample(&(0..50).collect::<Vec<_>>(), 10, 3);
    assert_eq!(s.len(), 10);
    assert_eq!(s, sample(&(0..50).collect::<Vec<_>>(), 10, 3));
    assert!(s.windows(2).all(|w| w[0] < w[1]));
}

fn digits_net() -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 10,
        width: 16,
        depth: 2,
        norm: Norm::Instance,
        pooling: Pooling::Avg,
    })
}

fn protocol(epochs: usize, dsa: bool) -> EvalConfig {
    EvalConfig {
        train: TrainConfig {
            epochs,
            batch_size: 32,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: LrSchedule::Constant,
        },
        dsa: dsa.then(|| Dsa::new("color_crop_cutout_scale_rotate").unwrap()),
        repeats: 1,
        combined: None,
    }
}

/// The digits' training images in a seeded order.
fn shuffled_digits(seed: u64) -> (Dataset, Vec<usize>) {
    let train = embedded::digits_split(0).train;
    let mut idx: Vec<usize> = (0..train.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    (train, idx)
}

fn trained(
    set: &Dataset,
    epochs: usize,
    dsa: bool,
    seed: u64,
) -> distillery::model::Model<burn::backend::Flex> {
    train_net::<AD>(
        set,
        &digits_net(),
        &protocol(epochs, dsa),
        seed,
        &Default::default(),
        &Progress::hidden(),
    )
    .unwrap()
}

#[test]
fn the_attack_learns_nothing_about_images_the_network_never_saw() {
    // Trained on 200 digits; "members" and "non-members" are two disjoint draws of 300 from the
    // rest, so neither was seen. Tolerance 0.08: about 3.4 standard deviations of the AUC of
    // two samples of 300 from one distribution (sqrt(601 / (12 * 300 * 300)) = 0.024).
    let (train, idx) = shuffled_digits(1);
    let dev = Default::default();
    let mut net = trained(&train.subset(&idx[..200]), 30, false, 2);
    let m = seen(&mut net, &train.subset(&idx[200..500]), &dev);
    let n = seen(&mut net, &train.subset(&idx[500..800]), &dev);
    let a = loss_attack(&m, &n);
    assert!((a.auc - 0.5).abs() < 0.08, "loss AUC {}", a.auc);
    // The calibrated attack, with two reference networks on other unseen images.
    let refs: Vec<_> = [(800, 3), (1000, 4)]
        .iter()
        .map(|&(at, seed)| {
            let mut r = trained(&train.subset(&idx[at..at + 200]), 30, false, seed);
            (
                seen(&mut r, &train.subset(&idx[200..500]), &dev),
                seen(&mut r, &train.subset(&idx[500..800]), &dev),
            )
        })
        .collect();
    let mr = reference_mean(&refs.iter().map(|r| r.0.clone()).collect::<Vec<_>>());
    let nr = reference_mean(&refs.iter().map(|r| r.1.clone()).collect::<Vec<_>>());
    let c = calibrated_attack(&m, &n, &mr, &nr);
    assert!((c.auc - 0.5).abs() < 0.08, "calibrated AUC {}", c.auc);
}

#[test]
fn the_attack_finds_the_members_of_a_network_overfit_on_a_few() {
    // 30 members trained on for 150 epochs without augmentation (a training loss near zero) and
    // 300 non-members never seen: the members' losses sit far below the rest.
    let (train, idx) = shuffled_digits(3);
    let dev = Default::default();
    let members = train.subset(&idx[..30]);
    let mut net = trained(&members, 150, false, 5);
    let m = seen(&mut net, &members, &dev);
    let n = seen(&mut net, &train.subset(&idx[30..330]), &dev);
    let a = loss_attack(&m, &n);
    assert!(a.auc > 0.8, "loss AUC {}", a.auc);
    assert!(a.advantage > 0.4, "advantage {}", a.advantage);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&m.loss) < 0.5 * mean(&n.loss));
}
