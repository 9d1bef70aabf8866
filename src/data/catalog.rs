//! The datasets distillery knows by name: where each is downloaded from, its files with the
//! checksums pinned for them, its licence, and how its files are laid out and read.
//!
//! A checksum is pinned only where it could be verified (MNIST: the four files' MD5s equal the
//! ones torchvision pins, and their SHA-256s were computed from those files) or where the
//! dataset's own page publishes it (Fashion-MNIST's README, the CIFAR page). Files without a pin
//! are checked for their full length and their format, and their SHA-256 is recorded in the
//! dataset folder's `SHA256SUMS` so that `data verify` can tell later changes. `docs/datasets.md`
//! says how each value was verified.

use super::cifar::Variant;

/// One file of a dataset as its mirrors serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its name on the mirror and in the data folder.
    pub name: &'static str,
    /// Its pinned MD5 (lower-case hex), when there is one.
    pub md5: Option<&'static str>,
    /// Its pinned SHA-256 (lower-case hex), when there is one.
    pub sha256: Option<&'static str>,
}

/// How a dataset's files are laid out and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Four IDX files (training images and labels, test images and labels, in that order),
    /// gzipped or not; torchvision keeps them in `<torchvision>/raw/`.
    Idx {
        /// torchvision's folder name (`MNIST`, `FashionMNIST`, `KMNIST`).
        torchvision: &'static str,
    },
    /// One `.tar.gz` of CIFAR Python pickles, extracted to `folder` (torchvision's layout).
    CifarPython {
        /// CIFAR-10 or CIFAR-100.
        variant: Variant,
        /// The archive's folder (`cifar-10-batches-py`, `cifar-100-python`).
        folder: &'static str,
    },
    /// Two bzip2-compressed LIBSVM text files (training, test), as torchvision's USPS reads.
    Libsvm,
}

/// A dataset distillery can fetch and read by name.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    /// The name used in `[data] source` and on the command line.
    pub name: &'static str,
    /// What it is, in a few words.
    pub title: &'static str,
    /// Its licence or terms of use.
    pub license: &'static str,
    /// The dataset's own page.
    pub page: &'static str,
    /// The download's size (MB = 10^6 bytes; "about" where it was not measured).
    pub size: &'static str,
    /// Base URLs tried in turn, each ending in `/`; a file's URL is the base and its name.
    pub mirrors: &'static [&'static str],
    /// The files to download.
    pub files: &'static [RemoteFile],
    /// How they are read.
    pub format: Format,
}

impl DatasetInfo {
    /// The URLs of `file` from each mirror, in the order they are tried.
    pub fn urls(&self, file: &RemoteFile) -> Vec<String> {
        self.mirrors
            .iter()
            .map(|m| format!("{m}{}", file.name))
            .collect()
    }

    /// The names of the files a reader needs in the dataset's folder: the IDX or LIBSVM files
    /// themselves, or the extracted CIFAR folder's members.
    pub fn needed(&self) -> Vec<String> {
        match self.format {
            Format::CifarPython { variant, folder } => cifar_members(variant)
                .iter()
                .map(|m| format!("{folder}/{m}"))
                .collect(),
            Format::Idx { .. } | Format::Libsvm => {
                self.files.iter().map(|f| f.name.to_string()).collect()
            }
        }
    }
}

/// The members of a CIFAR Python archive's folder that are read (the training and test
/// batches) and kept (the class names), as torchvision expects them.
pub fn cifar_members(variant: Variant) -> &'static [&'static str] {
    match variant {
        Variant::Cifar10 => &[
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        ],
        Variant::Cifar100 => &["train", "test", "meta"],
    }
}

const fn pinned(name: &'static str, md5: &'static str) -> RemoteFile {
    RemoteFile {
        name,
        md5: Some(md5),
        sha256: None,
    }
}

const fn unpinned(name: &'static str) -> RemoteFile {
    RemoteFile {
        name,
        md5: None,
        sha256: None,
    }
}

const MNIST_FILES: &[RemoteFile] = &[
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        md5: Some("f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        sha256: Some("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        md5: Some("d53e105ee54ea40749a09fcbcd1e9432"),
        sha256: Some("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        md5: Some("9fb629c4189551a2d022fa330f9573f3"),
        sha256: Some("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        md5: Some("ec29112dd5afa0611ce80d1b7f02629c"),
        sha256: Some("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
];

const FASHION_FILES: &[RemoteFile] = &[
    pinned(
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    pinned(
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    pinned(
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    pinned(
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
];

const KMNIST_FILES: &[RemoteFile] = &[
    unpinned("train-images-idx3-ubyte.gz"),
    unpinned("train-labels-idx1-ubyte.gz"),
    unpinned("t10k-images-idx3-ubyte.gz"),
    unpinned("t10k-labels-idx1-ubyte.gz"),
];

const CATALOG: &[DatasetInfo] = &[
    DatasetInfo {
        name: "mnist",
        title: "MNIST handwritten digits, 60,000 + 10,000 28x28 grey images",
        license: "CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
        page: "http://yann.lecun.com/exdb/mnist/",
        size: "11.6 MB",
        mirrors: &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        files: MNIST_FILES,
        format: Format::Idx {
            torchvision: "MNIST",
        },
    },
    DatasetInfo {
        name: "fashion_mnist",
        title: "Fashion-MNIST (Zalando), 60,000 + 10,000 28x28 grey images of clothes",
        license: "MIT",
        page: "https://github.com/zalandoresearch/fashion-mnist",
        size: "30.9 MB",
        mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        files: FASHION_FILES,
        format: Format::Idx {
            torchvision: "FashionMNIST",
        },
    },
    DatasetInfo {
        name: "kmnist",
        title: "Kuzushiji-MNIST, 60,000 + 10,000 28x28 grey images of cursive Japanese",
        license: "CC BY-SA 4.0 (ROIS-DS CODH)",
        page: "https://github.com/rois-codh/kmnist",
        size: "about 21 MB",
        mirrors: &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        files: KMNIST_FILES,
        format: Format::Idx {
            torchvision: "KMNIST",
        },
    },
    DatasetInfo {
        name: "cifar10",
        title: "CIFAR-10, 50,000 + 10,000 32x32 colour images in 10 classes",
        license: "no licence stated; cite Krizhevsky (2009)",
        page: "https://www.cs.toronto.edu/~kriz/cifar.html",
        size: "170.5 MB",
        mirrors: &["https://www.cs.toronto.edu/~kriz/"],
        files: &[pinned(
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        )],
        format: Format::CifarPython {
            variant: Variant::Cifar10,
            folder: "cifar-10-batches-py",
        },
    },
    DatasetInfo {
        name: "cifar100",
        title: "CIFAR-100, 50,000 + 10,000 32x32 colour images in 100 classes",
        license: "no licence stated; cite Krizhevsky (2009)",
        page: "https://www.cs.toronto.edu/~kriz/cifar.html",
        size: "169.0 MB",
        mirrors: &["https://www.cs.toronto.edu/~kriz/"],
        files: &[pinned(
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        )],
        format: Format::CifarPython {
            variant: Variant::Cifar100,
            folder: "cifar-100-python",
        },
    },
    DatasetInfo {
        name: "usps",
        title: "USPS handwritten digits, 7,291 + 2,007 16x16 grey images",
        license: "no licence stated (J. J. Hull, 1994; LIBSVM's copy)",
        page: "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps",
        size: "about 8 MB",
        mirrors: &["https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"],
        files: &[unpinned("usps.bz2"), unpinned("usps.t.bz2")],
        format: Format::Libsvm,
    },
];

/// Every dataset known by name.
pub fn catalog() -> &'static [DatasetInfo] {
    CATALOG
}

/// The dataset called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static DatasetInfo> {
    CATALOG.iter().find(|d| d.name == name)
}

/// The names known, for messages.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|d| d.name).collect()
}
