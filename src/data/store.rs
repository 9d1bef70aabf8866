//! The data folder (`DISTILLERY_DATA`, else the platform cache folder's `distillery/`), one
//! sub-folder per dataset; finding a dataset's files there or in a torchvision folder (`root`);
//! checksums, and the `SHA256SUMS` file where the values of files without a pin are recorded.

use super::catalog::{DatasetInfo, Format, RemoteFile};
use super::cifar::Variant;
use crate::error::{Error, Result};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The file in a dataset's folder recording the SHA-256 of files no pin covers (the format of
/// `sha256sum`, so `sha256sum -c SHA256SUMS` checks it too).
pub const SUMS: &str = "SHA256SUMS";

static OFFLINE: AtomicBool = AtomicBool::new(false);

/// Forbids downloads for the rest of the process (`--offline`).
pub fn forbid_downloads() {
    OFFLINE.store(true, Ordering::Relaxed);
}

/// How named datasets are found and fetched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataAccess {
    /// The data folder (`None` when neither `DISTILLERY_DATA` nor a cache folder exists).
    pub dir: Option<PathBuf>,
    /// Never download: a missing dataset is an error saying where to put its files.
    pub offline: bool,
    /// A base URL serving `<dataset>/<file>` instead of the datasets' own mirrors.
    pub mirror: Option<String>,
    /// Show a progress bar (or, off a terminal, progress lines) while downloading.
    pub progress: bool,
}

impl DataAccess {
    /// From the environment: `DISTILLERY_DATA`, `DISTILLERY_OFFLINE` (or `--offline`),
    /// `DISTILLERY_MIRROR`.
    pub fn from_env() -> DataAccess {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        DataAccess {
            dir: var("DISTILLERY_DATA")
                .map(PathBuf::from)
                .or_else(|| dirs::cache_dir().map(|c| c.join("distillery"))),
            offline: OFFLINE.load(Ordering::Relaxed)
                || var("DISTILLERY_OFFLINE").is_some_and(|v| v != "0"),
            mirror: var("DISTILLERY_MIRROR"),
            progress: true,
        }
    }

    /// A data folder `dir` that is never downloaded into (tests, tools).
    pub fn offline_in(dir: impl Into<PathBuf>) -> DataAccess {
        DataAccess {
            dir: Some(dir.into()),
            offline: true,
            mirror: None,
            progress: false,
        }
    }

    /// The data folder, or an error saying how to name one.
    pub fn data_dir(&self) -> Result<&Path> {
        self.dir.as_deref().ok_or_else(|| {
            Error::Usage(
                "no data folder: this platform has no cache folder; set DISTILLERY_DATA".into(),
            )
        })
    }

    /// The folder of dataset `info` in the data folder.
    pub fn dataset_dir(&self, info: &DatasetInfo) -> Result<PathBuf> {
        Ok(self.data_dir()?.join(info.name))
    }

    /// The URLs of `file` of `info`: the mirror's when one is set, else the dataset's own.
    pub fn urls(&self, info: &DatasetInfo, file: &RemoteFile) -> Vec<String> {
        match &self.mirror {
            Some(m) => vec![format!(
                "{}/{}/{}",
                m.trim_end_matches('/'),
                info.name,
                file.name
            )],
            None => info.urls(file),
        }
    }
}

/// A dataset's files as found on disk, ready for its reader.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// Training images and labels, test images and labels (IDX, gzipped or not).
    Idx([PathBuf; 4]),
    /// CIFAR python batches: training files, test files.
    CifarPython(Vec<PathBuf>, Vec<PathBuf>),
    /// CIFAR binary files: training files, test files.
    CifarBinary(Vec<PathBuf>, Vec<PathBuf>),
    /// LIBSVM files: training, test.
    Libsvm(PathBuf, PathBuf),
}

/// `dir/name`, or `dir/name` without its `.gz` / `.bz2` (torchvision keeps both).
fn either(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        return Some(p);
    }
    let plain = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".bz2"))?;
    Some(dir.join(plain)).filter(|p| p.is_file())
}

fn all(paths: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
    paths.iter().all(|p| p.is_file()).then_some(paths)
}

/// The dataset's files in one folder, in distillery's layout or torchvision's.
pub fn find_in(info: &DatasetInfo, dir: &Path) -> Option<Found> {
    match info.format {
        Format::Idx { .. } => {
            let f: Vec<PathBuf> = info
                .files
                .iter()
                .map(|f| either(dir, f.name))
                .collect::<Option<_>>()?;
            Some(Found::Idx(f.try_into().ok()?))
        }
        Format::Libsvm => Some(Found::Libsvm(
            either(dir, info.files[0].name)?,
            either(dir, info.files[1].name)?,
        )),
        Format::CifarPython { variant, folder } => {
            let py = dir.join(folder);
            let (train, test) = match variant {
                Variant::Cifar10 => (
                    (1..=5)
                        .map(|i| py.join(format!("data_batch_{i}")))
                        .collect(),
                    vec![py.join("test_batch")],
                ),
                Variant::Cifar100 => (vec![py.join("train")], vec![py.join("test")]),
            };
            if let (Some(tr), Some(te)) = (all(train), all(test)) {
                return Some(Found::CifarPython(tr, te));
            }
            let (train, test) = match variant {
                Variant::Cifar10 => {
                    let b = dir.join("cifar-10-batches-bin");
                    let tr = (1..=5)
                        .map(|i| b.join(format!("data_batch_{i}.bin")))
                        .collect();
                    (tr, vec![b.join("test_batch.bin")])
                }
                Variant::Cifar100 => {
                    let b = dir.join("cifar-100-binary");
                    (vec![b.join("train.bin")], vec![b.join("test.bin")])
                }
            };
            Some(Found::CifarBinary(all(train)?, all(test)?))
        }
    }
}

/// The dataset's files in the data folder: its own sub-folder (`<data>/mnist/`), else
/// torchvision's layout at the data folder's top (`<data>/MNIST/raw/`,
/// `<data>/cifar-10-batches-py/`, `<data>/usps.bz2`), whose folder and file names say which
/// dataset they are (loose IDX files at the top are not taken: MNIST and Fashion-MNIST share
/// their names).
pub fn find_in_data(info: &DatasetInfo, access: &DataAccess) -> Result<Option<Found>> {
    let data = access.data_dir()?;
    let mut places = vec![data.join(info.name)];
    match info.format {
        Format::Idx { torchvision } => places.push(data.join(torchvision).join("raw")),
        Format::CifarPython { .. } | Format::Libsvm => places.push(data.to_path_buf()),
    }
    Ok(places.iter().find_map(|d| find_in(info, d)))
}

/// The folders under a torchvision `root` where `info`'s files may be, in the order looked at:
/// torchvision's (`MNIST/raw`, or `root` itself for CIFAR and USPS), then `root/<name>`, then
/// `root`.
pub fn root_candidates(info: &DatasetInfo, root: &Path) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Format::Idx { torchvision } = info.format {
        c.push(root.join(torchvision).join("raw"));
    }
    c.push(root.join(info.name));
    c.push(root.to_path_buf());
    c
}

/// The dataset's files under a torchvision `root` (never downloaded into), or an error naming
/// the places looked at and the files expected.
pub fn find_under_root(info: &DatasetInfo, root: &Path) -> Result<Found> {
    let places = root_candidates(info, root);
    places.iter().find_map(|d| find_in(info, d)).ok_or_else(|| {
        let looked: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        Error::Usage(format!(
            "{}: not found under root = {}: looked in {} for {}",
            info.name,
            root.display(),
            looked.join(", "),
            info.needed().join(", ")
        ))
    })
}

/// The lower-case hex MD5 and SHA-256 of a file, read in 1 MiB pieces.
pub fn hash_file(path: &Path) -> Result<(String, String)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut md5 = md5::Context::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        md5.consume(&buf[..n]);
        sha.update(&buf[..n]);
    }
    Ok((
        format!("{:x}", md5.finalize()),
        format!("{:x}", sha.finalize()),
    ))
}

/// What is wrong with `path` against `file`'s pins (`None`: it matches, or nothing is pinned).
pub fn check_pins(path: &Path, file: &RemoteFile) -> Result<Option<String>> {
    if file.md5.is_none() && file.sha256.is_none() {
        return Ok(None);
    }
    let (md5, sha) = hash_file(path)?;
    for (kind, want, got) in [("MD5", file.md5, md5), ("SHA-256", file.sha256, sha)] {
        if let Some(want) = want.filter(|w| *w != got) {
            return Ok(Some(format!("{kind} is {got}, expected {want}")));
        }
    }
    Ok(None)
}

/// The `(sha256, relative path)` lines of a dataset folder's [`SUMS`] file (none if absent).
pub fn read_sums(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join(SUMS)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (h, n) = l.split_once("  ")?;
            Some((h.trim().to_string(), n.trim().to_string()))
        })
        .collect()
}

/// Records `sha256` for `name` (relative to `dir`) in [`SUMS`], replacing an older line.
pub fn record_sum(dir: &Path, name: &str, sha256: &str) -> Result<()> {
    let mut lines: Vec<(String, String)> = read_sums(dir)
        .into_iter()
        .filter(|(_, n)| n != name)
        .collect();
    lines.push((sha256.to_string(), name.to_string()));
    let text: String = lines.iter().map(|(h, n)| format!("{h}  {n}\n")).collect();
    crate::files::write_atomic(&dir.join(SUMS), text.as_bytes())
}
