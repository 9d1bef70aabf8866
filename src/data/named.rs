//! Datasets by name (`[data] source = "mnist"`, ...): found in the data folder (fetched first
//! when missing) or under a torchvision `root`, read by the format's reader, cut to the first
//! `train_first` / `test_first` images when asked, and normalised as the IDX and CIFAR sources are.

use super::catalog::{self, DatasetInfo};
use super::cifar::Variant;
use super::store::{DataAccess, Found};
use super::{Dataset, Split};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The keys of a dataset named in `[data]` (besides `source`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    /// An existing folder to read instead of the data folder (torchvision's layout, e.g.
    /// `root/MNIST/raw/`, `root/cifar-10-batches-py/`); never downloaded into. `~/` is the
    /// home folder; a relative path is relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Only the first this many training images, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_first: Option<usize>,
    /// Only the first this many test images, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_first: Option<usize>,
}

/// `~/...` under the home folder, else `p` resolved against the scenario's folder.
pub fn expand_root(p: &Path, resolve: &dyn Fn(&Path) -> PathBuf) -> PathBuf {
    match (p.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => resolve(p),
    }
}

/// The files of `info`: under `root` when given, else in the data folder (fetched if missing).
pub fn locate(info: &DatasetInfo, root: Option<&Path>, access: &DataAccess) -> Result<Found> {
    match root {
        Some(r) => super::store::find_under_root(info, r),
        None => super::fetch::ensure(info, access),
    }
}

/// Reads the training and test sets from `found` (pixels in [0, 1], class names set).
pub fn read(info: &DatasetInfo, found: &Found) -> Result<(Dataset, Dataset)> {
    let name = info.name;
    Ok(match found {
        Found::Idx([tri, trl, tei, tel]) => {
            let mut train = super::idx::load(tri, trl, name)?;
            let mut test = super::idx::load(tei, tel, name)?;
            if train.shape != test.shape {
                return Err(Error::data(
                    tei,
                    format!(
                        "test images are {:?} but training images are {:?}",
                        test.shape, train.shape
                    ),
                ));
            }
            let k = train.num_classes().max(test.num_classes());
            train.classes = super::class_names(name, k);
            test.classes = train.classes.clone();
            (train, test)
        }
        Found::CifarPython(tr, te) => {
            let v = variant(info)?;
            (super::cifar_py::load(tr, v)?, super::cifar_py::load(te, v)?)
        }
        Found::CifarBinary(tr, te) => {
            let v = variant(info)?;
            (super::cifar::load(tr, v)?, super::cifar::load(te, v)?)
        }
        Found::Libsvm(tr, te) => (super::usps::load(tr)?, super::usps::load(te)?),
    })
}

fn variant(info: &DatasetInfo) -> Result<Variant> {
    match info.format {
        catalog::Format::CifarPython { variant, .. } => Ok(variant),
        _ => Err(Error::Usage(format!(
            "{} is not a CIFAR dataset",
            info.name
        ))),
    }
}

/// The first `n` images of `ds` (all of them when `None`); more than it holds is an error.
pub fn first(ds: Dataset, n: Option<usize>, key: &str, set: &str) -> Result<Dataset> {
    match n {
        None => Ok(ds),
        Some(n) if n <= ds.len() => Ok(ds.subset(&(0..n).collect::<Vec<_>>())),
        Some(n) => Err(Error::Usage(format!(
            "{key} = {n}, but the {set} set holds {} images",
            ds.len()
        ))),
    }
}

/// Loads the named dataset `name` as a normalised split.
pub fn load(
    name: &str,
    keys: &Named,
    resolve: &dyn Fn(&Path) -> PathBuf,
    access: &DataAccess,
) -> Result<Split> {
    let info = catalog::find(name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown dataset {name:?}; known: {}",
            catalog::names().join(", ")
        ))
    })?;
    let root = keys.root.as_deref().map(|r| expand_root(r, resolve));
    let found = locate(info, root.as_deref(), access)?;
    let (train, test) = read(info, &found)?;
    let train = first(train, keys.train_first, "train_first", "training")?;
    let test = first(test, keys.test_first, "test_first", "test")?;
    Ok(super::make_split(
        name,
        train,
        test,
        super::reference_normalization(name),
    ))
}
