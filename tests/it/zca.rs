//! ZCA whitening against slow, obvious f64 loops: the whitened training set has identity
//! covariance (eps = 0), W is symmetric with W (C + eps I) W = I, a test image is transformed with
//! the training statistics, and bad input is a named error.

use distillery::data::zca::Zca;
use distillery::data::Dataset;
use rand::{Rng, SeedableRng};

/// `n` images of shape [c, h, w] with correlated pixels: x = z A + b, z standard normal-ish.
fn correlated(n: usize, shape: [usize; 3], seed: u64) -> Dataset {
    let d: usize = shape.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let a: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b: Vec<f64> = (0..d).map(|_| rng.random_range(-2.0..2.0)).collect();
    let mut images = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z: Vec<f64> = (0..d)
            .map(|_| (0..12).map(|_| rng.random_range(0.0..1.0)).sum::<f64>() - 6.0)
            .collect();
        for j in 0..d {
            let v: f64 = (0..d).map(|k| z[k] * a[k * d + j]).sum::<f64>() + b[j];
            images.push(v as f32);
        }
    }
    Dataset {
        images,
        labels: vec![0; n],
        shape,
        classes: vec!["a".into()],
    }
}

/// Mean and unbiased covariance of the rows, by loops.
fn mean_cov(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut mean = vec![0f64; d];
    for r in x.chunks_exact(d) {
        for j in 0..d {
            mean[j] += r[j] as f64 / n as f64;
        }
    }
    let mut cov = vec![0f64; d * d];
    for r in x.chunks_exact(d) {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] +=
                    (r[i] as f64 - mean[i]) * (r[j] as f64 - mean[j]) / (n - 1) as f64;
            }
        }
    }
    (mean, cov)
}

#[test]
fn whitened_training_set_has_identity_covariance() {
    let shape = [3, 2, 2];
    let d = 12;
    let mut data = correlated(400, shape, 1);
    let zca = Zca::fit(&data, 0.0).unwrap();
    zca.apply(&mut data).unwrap();
    let (mean, cov) = mean_cov(&data.images, d);
    for j in 0..d {
        assert!(mean[j].abs() < 1e-4, "mean[{j}] = {}", mean[j]);
        for k in 0..d {
            let want = if j == k { 1.0 } else { 0.0 };
            let got = cov[j * d + k];
            assert!((got - want).abs() < 1e-3, "cov[{j},{k}] = {got}");
        }
    }
}

#[test]
fn the_matrix_is_the_inverse_square_root_of_the_regularised_covariance() {
    let shape = [1, 3, 3];
    let d = 9;
    let data = correlated(50, shape, 2);
    let eps = 0.1;
    let zca = Zca::fit(&data, eps).unwrap();
    let (mean, mut cov) = mean_cov(&data.images, d);
    for j in 0..d {
        assert!((zca.mean[j] - mean[j]).abs() < 1e-9);
        cov[j * d + j] += eps;
    }
    let w = |i: usize, j: usize| zca.matrix[(i, j)];
    for i in 0..d {
        for j in 0..d {
            assert!(
                (w(i, j) - w(j, i)).abs() < 1e-9,
                "W not symmetric at {i},{j}"
            );
            // (W (C + eps I) W)[i, j] must be the identity.
            let mut v = 0.0;
            for k in 0..d {
                for l in 0..d {
                    v += w(i, k) * cov[k * d + l] * w(l, j);
                }
            }
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-8, "[{i},{j}] = {v}");
        }
    }
    // W is positive definite: x^T W x > 0 for a few vectors.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..5 {
        let x: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let q: f64 = (0..d)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| x[i] * w(i, j) * x[j])
            .sum();
        assert!(q > 0.0);
    }
}

#[test]
fn other_images_use_the_training_statistics() {
    let shape = [1, 2, 3];
    let d = 6;
    let train = correlated(40, shape, 4);
    let mut test = correlated(3, shape, 5);
    let before = test.images.clone();
    let zca = Zca::fit(&train, 0.1).unwrap();
    zca.apply(&mut test).unwrap();
    for (r, row) in before.chunks_exact(d).enumerate() {
        for j in 0..d {
            let want: f64 = (0..d)
                .map(|k| (row[k] as f64 - zca.mean[k]) * zca.matrix[(k, j)])
                .sum();
            let got = test.images[r * d + j] as f64;
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
        }
    }
}

#[test]
fn fewer_images_than_pixels_and_bad_input() {
    // Rank-deficient covariance: eps keeps every inverse square root finite.
    let mut data = correlated(5, [1, 4, 4], 6);
    let zca = Zca::fit(&data, 0.1).unwrap();
    zca.apply(&mut data).unwrap();
    assert!(data.images.iter().all(|v| v.is_finite()));
    let one = correlated(1, [1, 2, 2], 7);
    let e = Zca::fit(&one, 0.1).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    let e = Zca::fit(&data, -1.0).unwrap_err().to_string();
    assert!(e.contains("eps"), "{e}");
    let mut other = correlated(3, [1, 3, 3], 8);
    let e = zca.apply(&mut other).unwrap_err().to_string();
    assert!(e.contains("16") && e.contains("9"), "{e}");
}
