//! Where a scenario's data comes from (`[data]`): the embedded digits, IDX files, CIFAR binary
//! files or procedural images, and loading them into a normalised train/test [`Split`].

use super::{cifar, Split};
use crate::error::{Error, Problem, Problems, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// The 8x8 digits embedded in the binary (1797 images, seeded 80/20 split).
    Digits {
        /// Seed of the train/test split (kept apart from the run seed so the test set is stable).
        #[serde(default)]
        split_seed: u64,
    },
    /// MNIST-family IDX files (gzip or raw). Relative paths are relative to the scenario file.
    Idx {
        /// `mnist`, `fashion_mnist`, or another name (normalisation then comes from the data).
        #[serde(default = "default_idx_name")]
        name: String,
        /// Training images file.
        train_images: PathBuf,
        /// Training labels file.
        train_labels: PathBuf,
        /// Test images file.
        test_images: PathBuf,
        /// Test labels file.
        test_labels: PathBuf,
    },
    /// CIFAR-10 binary files: `dir` holding `data_batch_{1..5}.bin` and `test_batch.bin`, or
    /// explicit `train_files` / `test_files`.
    Cifar10 {
        /// The extracted `cifar-10-batches-bin` folder.
        dir: Option<PathBuf>,
        /// Training batch files (instead of `dir`).
        #[serde(default)]
        train_files: Vec<PathBuf>,
        /// Test batch files (instead of `dir`).
        #[serde(default)]
        test_files: Vec<PathBuf>,
        /// ZCA-whiten train and test images with the training set's statistics (MTT's reference
        /// does for CIFAR; SelMatch's does not).
        #[serde(default)]
        zca: bool,
        /// The regulariser added to the covariance's eigenvalues.
        #[serde(default = "default_zca_eps")]
        zca_eps: f64,
    },
    /// CIFAR-100 binary files: `dir` holding `train.bin` and `test.bin`, or explicit files.
    Cifar100 {
        /// The extracted `cifar-100-binary` folder.
        dir: Option<PathBuf>,
        /// Training files (instead of `dir`).
        #[serde(default)]
        train_files: Vec<PathBuf>,
        /// Test files (instead of `dir`).
        #[serde(default)]
        test_files: Vec<PathBuf>,
        /// ZCA-whiten train and test images with the training set's statistics (MTT's reference
        /// does for CIFAR; SelMatch's does not).
        #[serde(default)]
        zca: bool,
        /// The regulariser added to the covariance's eigenvalues.
        #[serde(default = "default_zca_eps")]
        zca_eps: f64,
    },
    /// Procedural images (class prototypes plus noise).
    Synthetic {
        /// Training images.
        train: usize,
        /// Test images.
        test: usize,
        /// Channels.
        #[serde(default = "one")]
        channels: usize,
        /// Height and width.
        #[serde(default = "default_size")]
        size: usize,
        /// Number of classes.
        #[serde(default = "ten")]
        classes: usize,
        /// Pixel noise standard deviation.
        #[serde(default = "default_noise")]
        noise: f32,
    },
}

fn default_zca_eps() -> f64 {
    0.1
}

fn default_idx_name() -> String {
    "mnist".into()
}
fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn default_size() -> usize {
    28
}
fn default_noise() -> f32 {
    0.3
}

impl DataSpec {
    /// The values that cannot work.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        match self {
            DataSpec::Synthetic {
                train,
                test,
                channels,
                size,
                classes,
                noise,
            } => {
                p.positive("train", *train);
                p.positive("test", *test);
                p.require(
                    (1..=4).contains(channels),
                    "channels",
                    channels,
                    "1 to 4 channels",
                );
                p.require(
                    (4..=256).contains(size),
                    "size",
                    size,
                    "an image size from 4 to 256",
                );
                p.require(
                    (2..=1000).contains(classes),
                    "classes",
                    classes,
                    "2 to 1000 classes",
                );
                p.require(
                    *train >= *classes,
                    "train",
                    train,
                    "at least one training image per class",
                );
                p.require(
                    (0.0..=10.0).contains(noise),
                    "noise",
                    noise,
                    "a noise level from 0 to 10",
                );
            }
            DataSpec::Cifar10 {
                dir,
                train_files,
                test_files,
                zca_eps,
                ..
            }
            | DataSpec::Cifar100 {
                dir,
                train_files,
                test_files,
                zca_eps,
                ..
            } => {
                p.require(
                    zca_eps.is_finite() && *zca_eps > 0.0,
                    "zca_eps",
                    zca_eps,
                    "a positive regulariser (the reference's is 0.1)",
                );
                p.require(
                    dir.is_some() || (!train_files.is_empty() && !test_files.is_empty()),
                    "dir",
                    "(missing)",
                    "either `dir` (the extracted binary folder) or both `train_files` and `test_files`",
                );
            }
            DataSpec::Idx { .. } | DataSpec::Digits { .. } => {}
        }
        p.into_vec()
    }

    /// Loads the train/test split this names; relative paths go through `resolve` (the
    /// scenario's folder), and procedural data draws from `seed`.
    pub fn load(&self, resolve: &dyn Fn(&Path) -> PathBuf, seed: u64) -> Result<Split> {
        let r = resolve;
        let split = match self {
            DataSpec::Digits { split_seed } => super::embedded::digits_split(*split_seed),
            DataSpec::Idx {
                name,
                train_images,
                train_labels,
                test_images,
                test_labels,
            } => {
                let mut train = super::idx::load(&r(train_images), &r(train_labels), name)?;
                let mut test = super::idx::load(&r(test_images), &r(test_labels), name)?;
                if train.shape != test.shape {
                    return Err(Error::data(
                        r(test_images),
                        format!(
                            "test images are {:?} but training images are {:?}",
                            test.shape, train.shape
                        ),
                    ));
                }
                let norm = super::reference_normalization(name);
                let k = train.num_classes().max(test.num_classes());
                train.classes = super::class_names(name, k);
                test.classes = train.classes.clone();
                super::make_split(name, train, test, norm)
            }
            DataSpec::Cifar10 {
                dir,
                train_files,
                test_files,
                zca,
                zca_eps,
            } => load_cifar(
                resolve,
                cifar::Variant::Cifar10,
                dir,
                train_files,
                test_files,
                zca.then_some(*zca_eps),
            )?,
            DataSpec::Cifar100 {
                dir,
                train_files,
                test_files,
                zca,
                zca_eps,
            } => load_cifar(
                resolve,
                cifar::Variant::Cifar100,
                dir,
                train_files,
                test_files,
                zca.then_some(*zca_eps),
            )?,
            DataSpec::Synthetic {
                train,
                test,
                channels,
                size,
                classes,
                noise,
            } => {
                let shape = [*channels, *size, *size];
                let all = super::synthetic::generate(train + test, shape, *classes, *noise, seed);
                let idx: Vec<usize> = (0..train + test).collect();
                let (tr, te) = idx.split_at(*train);
                super::make_split("synthetic", all.subset(tr), all.subset(te), None)
            }
        };
        for (set, ds) in [("training", &split.train), ("test", &split.test)] {
            ds.validate()
                .map_err(|m| Error::Other(format!("{set} set: {m}")))?;
            if ds.is_empty() {
                return Err(Error::Other(format!("the {set} set is empty")));
            }
        }
        Ok(split)
    }
}

fn load_cifar(
    resolve: &dyn Fn(&Path) -> PathBuf,
    variant: cifar::Variant,
    dir: &Option<PathBuf>,
    train_files: &[PathBuf],
    test_files: &[PathBuf],
    zca: Option<f64>,
) -> Result<Split> {
    let (train_f, test_f): (Vec<PathBuf>, Vec<PathBuf>) = if !train_files.is_empty() {
        (
            train_files.iter().map(|p| resolve(p)).collect(),
            test_files.iter().map(|p| resolve(p)).collect(),
        )
    } else {
        let d = resolve(dir.as_deref().ok_or_else(|| {
            Error::Other("CIFAR data needs `dir` or both `train_files` and `test_files`".into())
        })?);
        match variant {
            cifar::Variant::Cifar10 => (
                (1..=5)
                    .map(|i| d.join(format!("data_batch_{i}.bin")))
                    .collect(),
                vec![d.join("test_batch.bin")],
            ),
            cifar::Variant::Cifar100 => (vec![d.join("train.bin")], vec![d.join("test.bin")]),
        }
    };
    let train = cifar::load(&train_f, variant)?;
    let test = cifar::load(&test_f, variant)?;
    let mut split = super::make_split(
        variant.name(),
        train,
        test,
        super::reference_normalization(variant.name()),
    );
    if let Some(eps) = zca {
        split.whiten(eps)?;
    }
    Ok(split)
}
