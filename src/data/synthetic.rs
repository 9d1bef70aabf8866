//! Procedural data of any size: class prototypes plus noise, for tests and scale benchmarks.

use super::Dataset;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Generates `n` images of `shape` in `classes` classes (balanced), seeded.
///
/// Each class has a smooth random prototype (a sum of a few blobs); an image is its class prototype
/// under a random shift plus Gaussian noise of standard deviation `noise`. Pixels are in [0, 1].
pub fn generate(n: usize, shape: [usize; 3], classes: usize, noise: f32, seed: u64) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let [c, h, w] = shape;
    let protos: Vec<Vec<f32>> = (0..classes)
        .map(|_| {
            let mut p = vec![0f32; c * h * w];
            for _ in 0..3 {
                let (cy, cx) = (
                    rng.random_range(0.0..h as f32),
                    rng.random_range(0.0..w as f32),
                );
                let r = rng.random_range(0.15..0.35) * h.max(w) as f32;
                let amp: Vec<f32> = (0..c).map(|_| rng.random_range(0.3..1.0)).collect();
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            let d2 = (y as f32 - cy).powi(2) + (x as f32 - cx).powi(2);
                            p[ch * h * w + y * w + x] += amp[ch] * (-d2 / (2.0 * r * r)).exp();
                        }
                    }
                }
            }
            p
        })
        .collect();
    let normal = Normal::new(0.0f32, noise.max(0.0)).expect("valid std");
    let mut images = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = i % classes;
        let (dy, dx) = (rng.random_range(-1i32..=1), rng.random_range(-1i32..=1));
        for ch in 0..c {
            for yy in 0..h {
                for xx in 0..w {
                    let sy = (yy as i32 - dy).clamp(0, h as i32 - 1) as usize;
                    let sx = (xx as i32 - dx).clamp(0, w as i32 - 1) as usize;
                    let v = protos[y][ch * h * w + sy * w + sx] + normal.sample(&mut rng);
                    images.push(v.clamp(0.0, 1.0));
                }
            }
        }
        labels.push(y);
    }
    Dataset {
        images,
        labels,
        shape,
        classes: (0..classes).map(|i| i.to_string()).collect(),
    }
}
