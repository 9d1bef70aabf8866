//! Where a scenario's data comes from (`[data]`): the embedded digits, a dataset by name (from
//! the data folder, fetched when missing, or an existing torchvision folder), IDX files, CIFAR
//! files or procedural images, and loading them into a normalised train/test [`Split`].

use super::named::{self, Named};
use super::store::DataAccess;
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
    /// MNIST by name: the data folder's copy (fetched when missing), or `root`.
    Mnist(Named),
    /// Fashion-MNIST by name.
    FashionMnist(Named),
    /// Kuzushiji-MNIST by name.
    Kmnist(Named),
    /// USPS (16x16 digits) by name.
    Usps(Named),
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
    /// CIFAR-10: by name (the data folder's copy, or `root`), or the binary files in `dir` /
    /// `train_files` and `test_files`.
    Cifar10(CifarSource),
    /// CIFAR-100: by name, or the binary files in `dir` / `train_files` and `test_files`.
    Cifar100(CifarSource),
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

/// Where CIFAR comes from: by name when neither `dir` nor files are given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifarSource {
    /// An extracted binary folder (`cifar-10-batches-bin`, `cifar-100-binary`); relative to
    /// the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Binary training files (instead of `dir`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_files: Vec<PathBuf>,
    /// Binary test files (instead of `dir`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_files: Vec<PathBuf>,
    /// By name: an existing torchvision folder to read (`root/cifar-10-batches-py/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Only the first this many training images, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_first: Option<usize>,
    /// Only the first this many test images, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_first: Option<usize>,
    /// ZCA-whiten train and test images with the training set's statistics (MTT's reference
    /// does for CIFAR; SelMatch's does not).
    #[serde(default)]
    pub zca: bool,
    /// The regulariser added to the covariance's eigenvalues.
    #[serde(default = "default_zca_eps")]
    pub zca_eps: f64,
}

impl CifarSource {
    /// True when the files are named (`dir` or `train_files`/`test_files`), not the dataset.
    pub fn by_path(&self) -> bool {
        self.dir.is_some() || !self.train_files.is_empty() || !self.test_files.is_empty()
    }

    /// The by-name keys.
    pub fn named(&self) -> Named {
        Named {
            root: self.root.clone(),
            train_first: self.train_first,
            test_first: self.test_first,
        }
    }
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
            DataSpec::Cifar10(c) | DataSpec::Cifar100(c) => {
                p.require(
                    c.zca_eps.is_finite() && c.zca_eps > 0.0,
                    "zca_eps",
                    c.zca_eps,
                    "a positive regulariser (the reference's is 0.1)",
                );
                p.require(
                    c.train_files.is_empty() == c.test_files.is_empty(),
                    if c.train_files.is_empty() {
                        "train_files"
                    } else {
                        "test_files"
                    },
                    "(missing)",
                    "both `train_files` and `test_files`, or neither",
                );
                p.require(
                    c.dir.is_none() || c.train_files.is_empty(),
                    "dir",
                    c.dir.as_deref().unwrap_or(Path::new("")).display(),
                    "either `dir` or `train_files` and `test_files`, not both",
                );
                p.require(
                    !(c.root.is_some() && c.by_path()),
                    "root",
                    c.root.as_deref().unwrap_or(Path::new("")).display(),
                    "`root` (a torchvision folder) or binary files (`dir`, `train_files`), not both",
                );
                named_problems(&mut p, &c.named());
            }
            DataSpec::Mnist(n)
            | DataSpec::FashionMnist(n)
            | DataSpec::Kmnist(n)
            | DataSpec::Usps(n) => named_problems(&mut p, n),
            DataSpec::Idx { .. } | DataSpec::Digits { .. } => {}
        }
        p.into_vec()
    }

    /// The dataset's name as runs record it (`mnist`, `cifar10`, an IDX set's `name`, ...).
    pub fn name(&self) -> &str {
        match self {
            DataSpec::Digits { .. } => "digits",
            DataSpec::Mnist(_) => "mnist",
            DataSpec::FashionMnist(_) => "fashion_mnist",
            DataSpec::Kmnist(_) => "kmnist",
            DataSpec::Usps(_) => "usps",
            DataSpec::Idx { name, .. } => name,
            DataSpec::Cifar10(_) => "cifar10",
            DataSpec::Cifar100(_) => "cifar100",
            DataSpec::Synthetic { .. } => "synthetic",
        }
    }

    /// Loads the train/test split this names; relative paths go through `resolve` (the
    /// scenario's folder), procedural data draws from `seed`, and a dataset named but missing
    /// is fetched into the data folder of the environment ([`DataAccess::from_env`]).
    pub fn load(&self, resolve: &dyn Fn(&Path) -> PathBuf, seed: u64) -> Result<Split> {
        self.load_with(resolve, seed, &DataAccess::from_env())
    }

    /// [`DataSpec::load`] with named datasets found (and fetched) as `access` says.
    pub fn load_with(
        &self,
        resolve: &dyn Fn(&Path) -> PathBuf,
        seed: u64,
        access: &DataAccess,
    ) -> Result<Split> {
        let r = resolve;
        let split = match self {
            DataSpec::Mnist(n)
            | DataSpec::FashionMnist(n)
            | DataSpec::Kmnist(n)
            | DataSpec::Usps(n) => named::load(self.name(), n, resolve, access)?,
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
            DataSpec::Cifar10(c) => load_cifar(resolve, cifar::Variant::Cifar10, c, access)?,
            DataSpec::Cifar100(c) => load_cifar(resolve, cifar::Variant::Cifar100, c, access)?,
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
                .map_err(|m| Error::Setting(format!("{set} set: {m}")))?;
            if ds.is_empty() {
                return Err(Error::Setting(format!("the {set} set is empty")));
            }
        }
        Ok(split)
    }
}

fn named_problems(p: &mut Problems, n: &Named) {
    for (key, v) in [("train_first", n.train_first), ("test_first", n.test_first)] {
        if let Some(v) = v {
            p.positive(key, v);
        }
    }
}

/// CIFAR from binary files (`dir`, `train_files`) or by name, cut and whitened as asked.
fn load_cifar(
    resolve: &dyn Fn(&Path) -> PathBuf,
    variant: cifar::Variant,
    c: &CifarSource,
    access: &DataAccess,
) -> Result<Split> {
    let name = variant.name();
    let (train, test) = if !c.by_path() {
        let info = super::catalog::find(name)
            .ok_or_else(|| Error::Setting(format!("{name} is not in the catalog")))?;
        let root = c.root.as_deref().map(|r| named::expand_root(r, resolve));
        let found = named::locate(info, root.as_deref(), access)?;
        named::read(info, &found)?
    } else {
        let (train_f, test_f): (Vec<PathBuf>, Vec<PathBuf>) = match &c.dir {
            None => (
                c.train_files.iter().map(|p| resolve(p)).collect(),
                c.test_files.iter().map(|p| resolve(p)).collect(),
            ),
            Some(dir) => {
                let d = resolve(dir);
                match variant {
                    cifar::Variant::Cifar10 => (
                        (1..=5)
                            .map(|i| d.join(format!("data_batch_{i}.bin")))
                            .collect(),
                        vec![d.join("test_batch.bin")],
                    ),
                    cifar::Variant::Cifar100 => {
                        (vec![d.join("train.bin")], vec![d.join("test.bin")])
                    }
                }
            }
        };
        (
            cifar::load(&train_f, variant)?,
            cifar::load(&test_f, variant)?,
        )
    };
    let train = named::first(train, c.train_first, "train_first", "training")?;
    let test = named::first(test, c.test_first, "test_first", "test")?;
    let mut split = super::make_split(name, train, test, super::reference_normalization(name));
    if c.zca {
        split.whiten(c.zca_eps)?;
    }
    Ok(split)
}
