//! DSA augmentation: Siamese draws, exact flip and crop, affine resampling, colour formulas and
//! differentiability.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use distillery::data::augment::{Draw, Dsa, STRATEGY_DEFAULT, STRATEGY_DIGITS};
use rand::{Rng, SeedableRng};

type B = Flex;

fn t4(v: Vec<f32>, s: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(v, s), &Default::default())
}

fn host(t: Tensor<B, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

#[test]
fn strategies_parse_and_reject_unknown_ops() {
    assert_eq!(Dsa::new(STRATEGY_DEFAULT).unwrap().families.len(), 6);
    assert_eq!(Dsa::new(STRATEGY_DIGITS).unwrap().families.len(), 5);
    let e = Dsa::new("color_blur").unwrap_err();
    assert!(e.contains("\"blur\""), "{e}");
}

#[test]
fn one_siamese_draw_gives_identical_outputs_for_every_family() {
    let dsa = Dsa::new(STRATEGY_DEFAULT).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = rand_vec(3 * 2 * 8 * 8, 1);
    let bigger: Vec<f32> = x.iter().cloned().chain(rand_vec(2 * 2 * 64, 2)).collect();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..60 {
        let d = dsa.draw(None, 8, 8, &mut rng);
        seen.insert(std::mem::discriminant(&d));
        let a = host(d.apply(t4(x.clone(), [3, 2, 8, 8])));
        let b = host(d.apply(t4(x.clone(), [3, 2, 8, 8])));
        assert_eq!(a, b, "{d:?}");
        // Siamese across batch sizes: a 5-image batch whose first 3 images are the same gets the
        // same transformation on those 3 (colour statistics are per image).
        let c = host(d.apply(t4(bigger.clone(), [5, 2, 8, 8])));
        for (u, v) in a.iter().zip(&c[..a.len()]) {
            assert!((u - v).abs() < 1e-5, "{d:?}");
        }
        assert!(a.iter().all(|v| v.is_finite()));
    }
    assert_eq!(
        seen.len(),
        5,
        "flip, crop, cutout, colour and affine all drawn"
    );
    // Per-sample draws differ between the images of a batch.
    let d = dsa.draw(Some(4), 8, 8, &mut rng);
    match &d {
        Draw::Color { brightness, .. } => assert_eq!(brightness.len(), 4),
        Draw::Affine(t) => assert_eq!(t.len(), 4),
        Draw::Flip(f) => assert_eq!(f.len(), 4),
        Draw::Crop(t) => assert_eq!(t.len(), 4),
        Draw::Cutout { offsets, .. } => assert_eq!(offsets.len(), 4),
    }
}

#[test]
fn flip_and_integer_crop_are_exact() {
    // One 1-channel 3x3 image with values 1..9, row-major.
    let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let x = || t4(img.clone(), [1, 1, 3, 3]);
    assert_eq!(
        host(Draw::Flip(vec![true]).apply(x())),
        vec![3., 2., 1., 6., 5., 4., 9., 8., 7.]
    );
    assert_eq!(host(Draw::Flip(vec![false]).apply(x())), img);
    // Shift by one row down in the source: output row i reads input row i + 1, the last row
    // reads the zero padding.
    assert_eq!(
        host(Draw::Crop(vec![(1, 0)]).apply(x())),
        vec![4., 5., 6., 7., 8., 9., 0., 0., 0.]
    );
    assert_eq!(
        host(Draw::Crop(vec![(0, -1)]).apply(x())),
        vec![0., 1., 2., 0., 4., 5., 0., 7., 8.]
    );
    // Beyond the padding the reference clamps to it: still zeros, never wrapped pixels.
    assert_eq!(host(Draw::Crop(vec![(-3, 0)]).apply(x())), vec![0.; 9]);
    assert_eq!(host(Draw::Crop(vec![(0, 0)]).apply(x())), img);
}

#[test]
fn affine_resampling_matches_exact_ops() {
    let x = rand_vec(2 * 3 * 6 * 7, 3);
    let id =
        host(Draw::Affine(vec![[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]).apply(t4(x.clone(), [2, 3, 6, 7])));
    for (a, b) in id.iter().zip(&x) {
        assert!((a - b).abs() < 1e-5, "identity affine: {a} vs {b}");
    }
    // x -> -x with align_corners maps pixel centres onto pixel centres: a horizontal flip.
    let mirrored = host(
        Draw::Affine(vec![[-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]).apply(t4(x.clone(), [2, 3, 6, 7])),
    );
    let flipped = host(Draw::Flip(vec![true]).apply(t4(x.clone(), [2, 3, 6, 7])));
    for (a, b) in mirrored.iter().zip(&flipped) {
        assert!((a - b).abs() < 1e-5, "affine mirror vs flip: {a} vs {b}");
    }
}

#[test]
fn colour_and_cutout_follow_the_reference_formulas() {
    let x = rand_vec(2 * 3 * 2 * 2, 4);
    let d = Draw::Color {
        brightness: vec![0.25, -0.1],
        saturation: vec![1.5, 0.5],
        contrast: vec![0.75, 1.2],
    };
    let got = host(d.apply(t4(x.clone(), [2, 3, 2, 2])));
    for s in 0..2 {
        let mut v: Vec<f32> = x[s * 12..(s + 1) * 12]
            .iter()
            .map(|p| p + [0.25, -0.1][s])
            .collect();
        for p in 0..4 {
            let m = (0..3).map(|c| v[c * 4 + p]).sum::<f32>() / 3.0;
            for c in 0..3 {
                v[c * 4 + p] = (v[c * 4 + p] - m) * [1.5, 0.5][s] + m;
            }
        }
        let m = v.iter().sum::<f32>() / 12.0;
        for (k, val) in v.iter().enumerate() {
            let want = (val - m) * [0.75, 1.2][s] + m;
            assert!((got[s * 12 + k] - want).abs() < 1e-5, "colour at {s},{k}");
        }
    }
    // Cutout of a 4x4 square (ratio 0.5 of 8) centred at offset (4, 4): rows/cols 2..6 zeroed.
    let ones = vec![1f32; 64];
    let out = host(
        Draw::Cutout {
            size: (4, 4),
            offsets: vec![(4, 4)],
        }
        .apply(t4(ones, [1, 1, 8, 8])),
    );
    for y in 0..8 {
        for x in 0..8 {
            let inside = (2..6).contains(&y) && (2..6).contains(&x);
            assert_eq!(out[y * 8 + x], if inside { 0.0 } else { 1.0 }, "({y},{x})");
        }
    }
}

#[test]
fn every_family_is_differentiable_in_the_images() {
    type AD = Autodiff<Flex>;
    let dsa = Dsa::new(STRATEGY_DEFAULT).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let weights = rand_vec(2 * 8 * 8, 5);
    let mut families = std::collections::HashSet::new();
    for _ in 0..40 {
        let d = dsa.draw(Some(1), 8, 8, &mut rng);
        families.insert(std::mem::discriminant(&d));
        let x = Tensor::<AD, 4>::from_data(
            TensorData::new(rand_vec(128, 6), [1, 2, 8, 8]),
            &Default::default(),
        )
        .require_grad();
        let w = Tensor::<AD, 4>::from_data(
            TensorData::new(weights.clone(), [1, 2, 8, 8]),
            &Default::default(),
        );
        let loss = (d.apply(x.clone()) * w).sum();
        let g = x
            .grad(&loss.backward())
            .expect("gradient reaches the images");
        let g: Vec<f32> = g.into_data().convert::<f32>().into_vec().unwrap();
        let nonzero = g.iter().filter(|v| v.abs() > 1e-7).count();
        assert!(
            nonzero > 32,
            "{d:?}: only {nonzero} of 128 gradient entries are non-zero"
        );
    }
    assert_eq!(families.len(), 5);
}
