//! Continual-learning task streams built from a train/test split, all seeded: class-incremental
//! splits (disjoint class groups; labels stay global, one shared head), permuted domains (one fixed
//! pixel permutation per task, the first task unpermuted) and rotated domains (one fixed angle
//! per task, bilinear resampling, zero outside).

use super::{Dataset, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One task of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Position in the stream (0-based).
    pub id: usize,
    /// The classes this task trains on (all classes for domain streams).
    pub classes: Vec<usize>,
    /// Its training images.
    pub train: Dataset,
    /// Its test images.
    pub test: Dataset,
}

fn class_subset(d: &Dataset, classes: &[usize]) -> Dataset {
    let idx: Vec<usize> = (0..d.len())
        .filter(|&i| classes.contains(&d.labels[i]))
        .collect();
    d.subset(&idx)
}

/// Splits the classes into `tasks` disjoint groups of equal size (class order shuffled with
/// `seed` when `shuffle` is set, else 0, 1, 2, ...).
pub fn class_incremental(
    split: &Split,
    tasks: usize,
    shuffle: bool,
    seed: u64,
) -> Result<Vec<Task>, String> {
    let k = split.train.num_classes();
    if tasks == 0 || !k.is_multiple_of(tasks) {
        return Err(format!(
            "tasks = {tasks}: the {k} classes must split into equal groups (a divisor of {k})"
        ));
    }
    let mut order: Vec<usize> = (0..k).collect();
    if shuffle {
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    }
    let groups: Vec<Vec<usize>> = order.chunks(k / tasks).map(<[usize]>::to_vec).collect();
    class_groups(split, &groups)
}

/// One task per group of classes, in the order given (any sizes; no class in two groups).
pub fn class_groups(split: &Split, groups: &[Vec<usize>]) -> Result<Vec<Task>, String> {
    let k = split.train.num_classes();
    let mut seen = vec![false; k];
    for (t, g) in groups.iter().enumerate() {
        if g.is_empty() {
            return Err(format!("group {t} is empty"));
        }
        for &c in g {
            if c >= k {
                return Err(format!(
                    "class {c} in group {t}: the data has classes 0..{k}"
                ));
            }
            if std::mem::replace(&mut seen[c], true) {
                return Err(format!("class {c} is in two groups"));
            }
        }
    }
    Ok(groups
        .iter()
        .enumerate()
        .map(|(id, g)| {
            let mut classes = g.clone();
            classes.sort_unstable();
            Task {
                id,
                train: class_subset(&split.train, &classes),
                test: class_subset(&split.test, &classes),
                classes,
            }
        })
        .collect())
}

fn map_images(d: &Dataset, f: &impl Fn(&[f32]) -> Vec<f32>) -> Dataset {
    let l = d.image_len();
    Dataset {
        images: d.images.chunks_exact(l).flat_map(f).collect(),
        ..d.clone()
    }
}

/// Task `t` of a domain stream: every class, every image (train and test) transformed by `f`.
fn domain_task(split: &Split, t: usize, f: impl Fn(&[f32]) -> Vec<f32>) -> Task {
    Task {
        id: t,
        classes: (0..split.train.num_classes()).collect(),
        train: map_images(&split.train, &f),
        test: map_images(&split.test, &f),
    }
}

/// The pixel permutation of task `t` (identity for task 0), over `h * w` positions.
pub fn permutation(h: usize, w: usize, t: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..h * w).collect();
    if t > 0 {
        p.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            crate::rng::step_seed(seed, t as u64),
        ));
    }
    p
}

/// `tasks` copies of the split, task `t` with every image's pixels permuted by
/// [`permutation`]`(t)` (the same permutation for every channel and image).
pub fn permuted(split: &Split, tasks: usize, seed: u64) -> Vec<Task> {
    let [c, h, w] = split.train.shape;
    (0..tasks)
        .map(|t| {
            let p = permutation(h, w, t, seed);
            domain_task(split, t, |img| {
                (0..c)
                    .flat_map(|ch| p.iter().map(move |&q| img[ch * h * w + q]))
                    .collect()
            })
        })
        .collect()
}

/// Rotates one CHW image by `deg` degrees about its centre (bilinear, zero outside).
pub fn rotate(img: &[f32], shape: [usize; 3], deg: f64) -> Vec<f32> {
    let [c, h, w] = shape;
    let (s, co) = deg.to_radians().sin_cos();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let at = |ch: usize, y: isize, x: isize| -> f64 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            img[ch * h * w + y as usize * w + x as usize] as f64
        }
    };
    let mut out = vec![0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            // Inverse map: where in the source this output pixel comes from.
            let (dy, dx) = (y as f64 - cy, x as f64 - cx);
            let sy = co * dy - s * dx + cy;
            let sx = s * dy + co * dx + cx;
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            for ch in 0..c {
                let v = at(ch, y0, x0) * (1.0 - fy) * (1.0 - fx)
                    + at(ch, y0, x0 + 1) * (1.0 - fy) * fx
                    + at(ch, y0 + 1, x0) * fy * (1.0 - fx)
                    + at(ch, y0 + 1, x0 + 1) * fy * fx;
                out[ch * h * w + y * w + x] = v as f32;
            }
        }
    }
    out
}

/// `tasks` copies of the split, task `t` rotated by `t * max_degrees / (tasks - 1)` degrees
/// (task 0 unrotated).
pub fn rotated(split: &Split, tasks: usize, max_degrees: f64) -> Vec<Task> {
    let shape = split.train.shape;
    (0..tasks)
        .map(|t| {
            let deg = if tasks > 1 {
                t as f64 * max_degrees / (tasks - 1) as f64
            } else {
                0.0
            };
            domain_task(split, t, |img| rotate(img, shape, deg))
        })
        .collect()
}
