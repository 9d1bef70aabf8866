//! Reading the folders PyTorch users already have (`MNIST/raw/`, `FashionMNIST/raw/`,
//! `cifar-10-batches-py/`) in place, equal to the IDX and binary readers on the same images; the
//! pickle guard; USPS's LIBSVM text; and every scenario of `scenarios/` by name against a data
//! folder the test fills.

use super::fetch::{cifar_batch, tiny_idx};
use distillery::data::cifar::Variant;
use distillery::data::named::{self, Named};
use distillery::data::spec::{CifarSource, DataSpec};
use distillery::data::store::DataAccess;
use distillery::data::{cifar_py, pickle_guard, usps, Split};
use distillery::scenario;
use std::io::Write;
use std::path::{Path, PathBuf};

fn same(a: &Split, b: &Split) {
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    assert_eq!(a.norm, b.norm);
    assert_eq!(a.name, b.name);
}

fn by_root(root: &Path) -> Named {
    Named {
        root: Some(root.to_path_buf()),
        ..Named::default()
    }
}

#[test]
fn torchvision_mnist_raw_folders_read_as_the_idx_reader() {
    let tmp = tempfile::tempdir().unwrap();
    // The data folder stays empty: `root` is read in place, never downloaded into.
    let acc = DataAccess::offline_in(tmp.path().join("data"));
    let root = tmp.path().join("torch");
    for (folder, gzipped) in [("MNIST", false), ("FashionMNIST", true)] {
        let raw = root.join(folder).join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let mut paths = Vec::new();
        for (name, bytes) in tiny_idx(folder.len() as u8) {
            // torchvision keeps the .gz and the extracted file; here one or the other.
            let (p, b) = if gzipped {
                (raw.join(name), bytes)
            } else {
                let mut plain = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&bytes[..]),
                    &mut plain,
                )
                .unwrap();
                (raw.join(name.trim_end_matches(".gz")), plain)
            };
            std::fs::write(&p, b).unwrap();
            paths.push(p);
        }
        let (spec, name) = if gzipped {
            (DataSpec::FashionMnist(by_root(&root)), "fashion_mnist")
        } else {
            (DataSpec::Mnist(by_root(&root)), "mnist")
        };
        let got = spec.load_with(&|p| p.to_path_buf(), 0, &acc).unwrap();
        let want = DataSpec::Idx {
            name: name.into(),
            train_images: paths[0].clone(),
            train_labels: paths[1].clone(),
            test_images: paths[2].clone(),
            test_labels: paths[3].clone(),
        }
        .load(&|p| p.to_path_buf(), 0)
        .unwrap();
        same(&got, &want);
        assert_eq!((got.train.len(), got.test.len()), (6, 4));
        // A data folder that is a torchvision folder is read in place as well.
        let in_data = match &spec {
            DataSpec::Mnist(_) => DataSpec::Mnist(Named::default()),
            _ => DataSpec::FashionMnist(Named::default()),
        };
        let got = in_data
            .load_with(&|p| p.to_path_buf(), 0, &DataAccess::offline_in(&root))
            .unwrap();
        same(&got, &want);
    }
    assert!(
        !tmp.path().join("data").exists(),
        "the data folder was written"
    );
    // `~/` is the home folder; other relative roots are the scenario's.
    let home = dirs::home_dir().unwrap();
    let resolve = |p: &Path| PathBuf::from("/scenarios").join(p);
    assert_eq!(
        named::expand_root(Path::new("~/data"), &resolve),
        home.join("data")
    );
    assert_eq!(
        named::expand_root(Path::new("data"), &resolve),
        PathBuf::from("/scenarios/data")
    );
    // A root without the files names where it looked and what it wanted.
    let e = DataSpec::Kmnist(by_root(&root))
        .load_with(&|p| p.to_path_buf(), 0, &acc)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("KMNIST/raw") && e.contains("train-images-idx3-ubyte.gz"),
        "{e}"
    );
}

#[test]
fn torchvision_cifar10_python_batches_read_as_the_binary_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let acc = DataAccess::offline_in(tmp.path().join("data"));
    let py = tmp.path().join("torch/cifar-10-batches-py");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let names = [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ];
    for (i, n) in names.iter().enumerate() {
        let (p, b) = cifar_batch(3 + i % 2, i as u8 * 17);
        std::fs::write(py.join(n), p).unwrap();
        std::fs::write(bin.join(format!("{n}.bin")), b).unwrap();
    }
    let source = |root: Option<PathBuf>, dir: Option<PathBuf>, first: Option<usize>| CifarSource {
        dir,
        train_files: vec![],
        test_files: vec![],
        root,
        train_first: first,
        test_first: None,
        zca: false,
        zca_eps: 0.1,
    };
    let load = |s: CifarSource| {
        DataSpec::Cifar10(s)
            .load_with(&|p| p.to_path_buf(), 0, &acc)
            .unwrap()
    };
    let got = load(source(Some(tmp.path().join("torch")), None, None));
    let want = load(source(None, Some(bin.clone()), None));
    same(&got, &want);
    assert_eq!((got.train.len(), got.test.len()), (17, 4));
    assert_eq!(got.train.classes[9], "truck");
    // train_first cuts both the same way (file order).
    let got = load(source(Some(tmp.path().join("torch")), None, Some(5)));
    let want = load(source(None, Some(bin), Some(5)));
    same(&got, &want);
    assert_eq!(got.train.len(), 5);
    // Asking for more than there is is an error naming the key.
    let e = DataSpec::Cifar10(source(Some(tmp.path().join("torch")), None, Some(99)))
        .load_with(&|p| p.to_path_buf(), 0, &acc)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train_first = 99") && e.contains("17"), "{e}");
}

#[test]
fn cifar100_batches_and_hostile_pickles() {
    let pixels: Vec<u8> = (0..2 * 3072).map(|i| (i % 256) as u8).collect();
    let bytes = cifar_py::encode_batch(&pixels, &[7, 99], Variant::Cifar100);
    let (px, labels) = cifar_py::parse_batch(&bytes, Variant::Cifar100).unwrap();
    assert_eq!((px, labels), (pixels.clone(), vec![7, 99]));
    // CIFAR-10's reader refuses a CIFAR-100 batch by its missing key.
    let e = cifar_py::parse_batch(&bytes, Variant::Cifar10).unwrap_err();
    assert!(e.contains("labels"), "{e}");
    // Truncated: an error, not a panic.
    let e = cifar_py::parse_batch(&bytes[..bytes.len() / 2], Variant::Cifar100).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    // Deep nesting (a stack overflow in a recursive reader) is refused by the guard.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'.');
    let e = pickle_guard::check(&deep).unwrap_err();
    assert!(e.contains("containers"), "{e}");
    // A list holding its predecessor twice, memoised: exponential if copied; refused.
    let mut bomb = vec![0x80, 2, b']', b'q', 0];
    for i in 0..40u8 {
        bomb.extend([b']', b'h', i, b'h', i, b'e', b'q', i + 1]);
    }
    bomb.push(b'.');
    let e = pickle_guard::check(&bomb).unwrap_err();
    assert!(e.contains("refers back"), "{e}");
    assert!(pickle_guard::check(&bytes).is_ok());
}

/// Batches pickled by Python 3 and numpy 2 (tests/fixtures/cifar-py/README.md): protocol 2
/// (bytes as `_codecs.encode` calls), protocol 5 (numpy's `_frombuffer`), str keys.
#[test]
fn batches_pickled_by_numpy_read_as_written() {
    let want: Vec<u8> = (0..2 * 3072usize).map(|i| (i * 7 % 256) as u8).collect();
    let dir = Path::new("tests/fixtures/cifar-py");
    for (file, variant, labels) in [
        ("cifar10-protocol2.pkl", Variant::Cifar10, vec![3, 8]),
        ("cifar10-protocol5.pkl", Variant::Cifar10, vec![3, 8]),
        (
            "cifar10-strkeys-protocol4.pkl",
            Variant::Cifar10,
            vec![3, 8],
        ),
        ("cifar100-protocol2.pkl", Variant::Cifar100, vec![99, 0]),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let (px, y) =
            cifar_py::parse_batch(&bytes, variant).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(px, want, "{file}");
        assert_eq!(y, labels, "{file}");
    }
}

#[test]
fn usps_libsvm_text_reads_as_torchvision_does() {
    let tmp = tempfile::tempdir().unwrap();
    // Two images: label 1 (digit 0) all -1 but pixel 3 = 1; label 10 (digit 9) all 0.
    let line = |label: u32, f: &dyn Fn(usize) -> f32| {
        let mut s = label.to_string();
        for k in 0..256 {
            s += &format!(" {}:{}", k + 1, f(k));
        }
        s + "\n"
    };
    let text = line(1, &|k| if k == 2 { 1.0 } else { -1.0 }) + &line(10, &|_| 0.0);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(text.as_bytes()).unwrap();
    let p = tmp.path().join("usps.bz2");
    std::fs::write(&p, bz.finish().unwrap()).unwrap();
    let ds = usps::load(&p).unwrap();
    assert_eq!(ds.shape, [1, 16, 16]);
    assert_eq!(ds.labels, vec![0, 9]);
    assert_eq!(ds.image(0)[2], 1.0);
    assert_eq!(ds.image(0)[0], 0.0);
    // (0 + 1) / 2 * 255 = 127.5, truncated to 127 as numpy's astype(uint8) does.
    assert_eq!(ds.image(1)[100], 127.0 / 255.0);
    let e = usps::parse("11 1:0\n").unwrap_err();
    assert!(e.contains("line 1") && e.contains("1 to 10"), "{e}");
    let e = usps::parse("3 1:0 2:0\n").unwrap_err();
    assert!(e.contains("254 of the 256"), "{e}");
}

/// The `[data]` of every scenario in `scenarios/`: by name or embedded, never a path; each
/// loads against a data folder holding small stand-ins of its files.
#[test]
fn every_scenario_names_its_dataset_and_loads_from_a_filled_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mnist = data.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (n, b) in tiny_idx(9) {
        std::fs::write(mnist.join(n), b).unwrap();
    }
    // CIFAR-10 with the 4,000 + 1,000 images the subset scenarios cut.
    let py = data.join("cifar10/cifar-10-batches-py");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::write(py.join("data_batch_1"), cifar_batch(4000, 1).0).unwrap();
    for i in 2..=5 {
        std::fs::write(py.join(format!("data_batch_{i}")), cifar_batch(1, i).0).unwrap();
    }
    std::fs::write(py.join("test_batch"), cifar_batch(1000, 7).0).unwrap();
    let acc = DataAccess::offline_in(data);
    let mut seen = std::collections::BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir("scenarios")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    for f in &files {
        let l = scenario::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut spec = l.scenario.data.clone();
        match &mut spec {
            DataSpec::Digits { .. } | DataSpec::Mnist(_) => {}
            DataSpec::Cifar10(c) => {
                assert!(!c.by_path(), "{} names CIFAR files", f.display());
                // Whitening 4,000 images is the run's work, not this test's.
                c.zca = false;
            }
            other => panic!("{}: unexpected source {}", f.display(), other.name()),
        }
        let split = spec
            .load_with(&|p| l.resolve(p), l.scenario.seed, &acc)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let DataSpec::Cifar10(_) = spec {
            assert_eq!((split.train.len(), split.test.len()), (4000, 1000));
        }
        seen.insert(spec.name().to_string());
    }
    let seen: Vec<String> = seen.into_iter().collect();
    assert_eq!(seen, ["cifar10", "digits", "mnist"]);
}
