//! Datasets by name against a loopback server ([`super::loopback`]): downloads checked against
//! their pins and cached, a wrong checksum or a cut transfer never leaving a file that passes as
//! complete, CIFAR archives extracted, `data list` / `data verify`, and the missing-dataset error.

use super::loopback::Server;
use distillery::data::catalog::{self, DatasetInfo, Format, RemoteFile};
use distillery::data::cifar::Variant;
use distillery::data::spec::DataSpec;
use distillery::data::store::{self, DataAccess, Found};
use distillery::data::{cifar_py, commands, fetch, idx, named};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn md5_hex(b: &[u8]) -> &'static str {
    Box::leak(format!("{:x}", md5::compute(b)).into_boxed_str())
}

fn leak(info: DatasetInfo) -> &'static DatasetInfo {
    Box::leak(Box::new(info))
}

/// Four small gzipped IDX files (train 6 images, test 4, 28x28) in the catalog's file order.
pub fn tiny_idx(seed: u8) -> Vec<(&'static str, Vec<u8>)> {
    let make = |n: usize, off: u8| {
        let px: Vec<u8> = (0..n * 784)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(off))
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| ((i + off as usize) % 10) as u8).collect();
        idx::encode(n, 28, 28, &px, &labels)
    };
    let (tri, trl) = make(6, seed);
    let (tei, tel) = make(4, seed.wrapping_add(3));
    vec![
        ("train-images-idx3-ubyte.gz", gz(&tri)),
        ("train-labels-idx1-ubyte.gz", gz(&trl)),
        ("t10k-images-idx3-ubyte.gz", gz(&tei)),
        ("t10k-labels-idx1-ubyte.gz", gz(&tel)),
    ]
}

fn served(dataset: &str, files: &[(&'static str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(n, b)| (format!("/{dataset}/{n}"), b.clone()))
        .collect()
}

fn start(files: &[(String, Vec<u8>)]) -> Server {
    let v: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    Server::start(&v)
}

fn access(dir: &Path, server: &Server) -> DataAccess {
    DataAccess {
        dir: Some(dir.to_path_buf()),
        offline: false,
        mirror: Some(server.url.clone()),
        progress: false,
    }
}

/// A dataset like MNIST whose pins are the fixture files' MD5s.
fn pinned_idx_info(files: &[(&'static str, Vec<u8>)]) -> &'static DatasetInfo {
    let remote: Vec<RemoteFile> = files
        .iter()
        .map(|(n, b)| RemoteFile {
            name: n,
            md5: Some(md5_hex(b)),
            sha256: None,
        })
        .collect();
    leak(DatasetInfo {
        name: "tiny",
        title: "test",
        license: "test",
        page: "test",
        size: "1 kB",
        mirrors: &[],
        files: Box::leak(remote.into_boxed_slice()),
        format: Format::Idx {
            torchvision: "TINY",
        },
    })
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn fetch_downloads_verifies_and_a_second_fetch_downloads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tiny_idx(1);
    let server = start(&served("tiny", &files));
    let info = pinned_idx_info(&files);
    let acc = access(tmp.path(), &server);
    let got = fetch::fetch(info, &acc).unwrap();
    assert_eq!(got.downloaded.len(), 4);
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(got.bytes, total as u64);
    let dir = tmp.path().join("tiny");
    for (n, b) in &files {
        assert_eq!(&std::fs::read(dir.join(n)).unwrap(), b, "{n}");
    }
    // No partial files left, and no SHA256SUMS: every file was pinned.
    assert_eq!(listing(&dir), {
        let mut v: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        v.sort();
        v
    });
    // The files read as the IDX reader reads them.
    let Some(found @ Found::Idx(_)) = store::find_in(info, &dir) else {
        panic!("not found after the fetch");
    };
    let (train, test) = named::read(info, &found).unwrap();
    let direct = idx::load(&dir.join(files[0].0), &dir.join(files[1].0), "tiny").unwrap();
    assert_eq!(train.images, direct.images);
    assert_eq!(train.labels, direct.labels);
    assert_eq!((train.len(), test.len()), (6, 4));
    let before = server.request_count();
    assert_eq!(before, 4);
    let again = fetch::fetch(info, &acc).unwrap();
    assert!(again.downloaded.is_empty());
    assert_eq!(again.bytes, 0);
    assert_eq!(
        server.request_count(),
        before,
        "a second fetch asked the server"
    );
    // `ensure` (what a run calls) finds it without a request too.
    fetch::ensure(info, &acc).unwrap();
    assert_eq!(server.request_count(), before);
}

#[test]
fn a_wrong_checksum_is_an_error_that_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Not MNIST: the catalog's pins (torchvision's MD5s) cannot match these files.
    let server = start(&served("mnist", &tiny_idx(2)));
    let acc = access(tmp.path(), &server);
    let mnist = catalog::find("mnist").unwrap();
    let e = fetch::fetch(mnist, &acc).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(e.contains("f68b3c2dcbeaaa9fbdd348bbdeb94873"), "{e}");
    let dir = tmp.path().join("mnist");
    assert_eq!(listing(&dir), Vec::<String>::new(), "files left behind");
    assert_eq!(commands::presence(mnist, &acc).unwrap(), "no");
    // A run loading it fails the same way, and still leaves nothing.
    let e = DataSpec::Mnist(Default::default())
        .load_with(&|p| p.to_path_buf(), 0, &acc)
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(listing(&dir).is_empty());
}

#[test]
fn an_interrupted_transfer_leaves_no_complete_file_and_is_continued() {
    let tmp = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let files = vec![("blob.bin", body.clone())];
    let server = start(&served("tiny", &files));
    let info = leak(DatasetInfo {
        format: Format::Libsvm,
        files: Box::leak(
            vec![
                RemoteFile {
                    name: "blob.bin",
                    md5: Some(md5_hex(&body)),
                    sha256: None,
                },
                RemoteFile {
                    name: "blob.bin",
                    md5: Some(md5_hex(&body)),
                    sha256: None,
                },
            ]
            .into_boxed_slice(),
        ),
        ..pinned_idx_info(&files).clone()
    });
    let acc = access(tmp.path(), &server);
    server.cut_next(10_000);
    let e = fetch::fetch(info, &acc).unwrap_err().to_string();
    assert!(e.contains("10000") && e.contains("70000"), "{e}");
    let dir = tmp.path().join("tiny");
    assert!(
        !dir.join("blob.bin").exists(),
        "a cut file under its own name"
    );
    assert!(store::find_in(info, &dir).is_none());
    assert_eq!(commands::presence(info, &acc).unwrap(), "partly");
    let part = std::fs::read(dir.join("blob.bin.part")).unwrap();
    assert_eq!(part.len(), 10_000);
    // The next fetch continues from byte 10000 and ends with the whole, checked file.
    let got = fetch::fetch(info, &acc).unwrap();
    assert_eq!(got.bytes, 60_000);
    assert_eq!(server.state.lock().unwrap().ranges, vec![10_000]);
    assert_eq!(std::fs::read(dir.join("blob.bin")).unwrap(), body);
    assert!(!dir.join("blob.bin.part").exists());
}

#[test]
fn unpinned_files_are_recorded_and_verify_notices_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tiny_idx(3);
    let server = start(&served("kmnist", &files));
    let acc = access(tmp.path(), &server);
    let kmnist = catalog::find("kmnist").unwrap();
    assert!(kmnist.files.iter().all(|f| f.md5.is_none()));
    // A run with the dataset missing fetches it first.
    let split = DataSpec::Kmnist(Default::default())
        .load_with(&|p| p.to_path_buf(), 0, &acc)
        .unwrap();
    assert_eq!((split.train.len(), split.test.len()), (6, 4));
    assert_eq!(split.train.classes[1], "ki");
    let dir = tmp.path().join("kmnist");
    let sums = store::read_sums(&dir);
    assert_eq!(sums.len(), 4);
    for (n, b) in &files {
        let want = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(b))
        };
        assert!(sums.contains(&(want, n.to_string())), "{n} not recorded");
    }
    let names = vec!["kmnist".to_string()];
    let (text, ok) = commands::verify(&names, &acc).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("4 file(s) match"), "{text}");
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), b"changed").unwrap();
    let (text, ok) = commands::verify(&names, &acc).unwrap();
    assert!(!ok);
    assert!(
        text.contains("MISMATCH") && text.contains("t10k-labels-idx1-ubyte.gz"),
        "{text}"
    );
}

/// A CIFAR-10 python batch of `n` images whose pixels start at `off`, and its binary twin.
pub fn cifar_batch(n: usize, off: u8) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * 3072)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(off))
        .collect();
    let labels: Vec<u8> = (0..n)
        .map(|i| ((i * 3 + off as usize) % 10) as u8)
        .collect();
    let py = cifar_py::encode_batch(&pixels, &labels, Variant::Cifar10);
    let mut bin = Vec::new();
    for i in 0..n {
        bin.push(labels[i]);
        bin.extend_from_slice(&pixels[i * 3072..(i + 1) * 3072]);
    }
    (py, bin)
}

fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_cifar_archive_is_checked_extracted_and_read() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = "cifar-10-batches-py";
    let mut entries = Vec::new();
    let mut bins = Vec::new();
    for (i, m) in catalog::cifar_members(Variant::Cifar10).iter().enumerate() {
        let (py, bin) = cifar_batch(2, i as u8 * 40);
        entries.push((format!("{folder}/{m}"), py));
        bins.push(bin);
    }
    entries.push((
        "cifar-10-batches-py/readme.html".into(),
        b"<html/>".to_vec(),
    ));
    let archive = tar_gz(&entries);
    let server = Server::start(&[("/tinycifar/cifar-10-python.tar.gz", archive.clone())]);
    let info = leak(DatasetInfo {
        name: "tinycifar",
        files: Box::leak(
            vec![RemoteFile {
                name: "cifar-10-python.tar.gz",
                md5: Some(md5_hex(&archive)),
                sha256: None,
            }]
            .into_boxed_slice(),
        ),
        format: Format::CifarPython {
            variant: Variant::Cifar10,
            folder,
        },
        ..catalog::find("cifar10").unwrap().clone()
    });
    let acc = access(tmp.path(), &server);
    fetch::fetch(info, &acc).unwrap();
    let dir = tmp.path().join("tinycifar");
    assert_eq!(listing(&dir), vec!["SHA256SUMS", folder]);
    assert_eq!(listing(&dir.join(folder)).len(), 7, "only the members kept");
    assert_eq!(store::read_sums(&dir).len(), 7);
    let found = store::find_in(info, &dir).unwrap();
    let (train, test) = named::read(info, &found).unwrap();
    // Equal to the binary reader on the same images (batches 1-5, then the test batch).
    let bin_paths: Vec<PathBuf> = bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = tmp.path().join(format!("b{i}.bin"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let want_train = distillery::data::cifar::load(&bin_paths[..5], Variant::Cifar10).unwrap();
    let want_test = distillery::data::cifar::load(&bin_paths[5..6], Variant::Cifar10).unwrap();
    assert_eq!(train, want_train);
    assert_eq!(test, want_test);
    assert_eq!(server.request_count(), 1);
    fetch::fetch(info, &acc).unwrap();
    assert_eq!(server.request_count(), 1, "refetched an extracted archive");
}

#[test]
fn the_missing_dataset_error_and_data_list_name_the_folder_and_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let acc = DataAccess::offline_in(tmp.path());
    let e = DataSpec::Mnist(Default::default())
        .load_with(&|p| p.to_path_buf(), 0, &acc)
        .unwrap_err()
        .to_string();
    let folder = tmp.path().join("mnist").display().to_string();
    for want in [
        folder.as_str(),
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "distillery data fetch mnist",
        "--offline",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    // No network: nothing listens on the mirror's port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let acc_net = DataAccess {
        dir: Some(tmp.path().to_path_buf()),
        offline: false,
        mirror: Some(format!("http://127.0.0.1:{port}")),
        progress: false,
    };
    let e = DataSpec::FashionMnist(Default::default())
        .load_with(&|p| p.to_path_buf(), 0, &acc_net)
        .unwrap_err()
        .to_string();
    let folder_f = tmp.path().join("fashion_mnist").display().to_string();
    for want in [
        folder_f.as_str(),
        &format!("http://127.0.0.1:{port}/fashion_mnist/train-images-idx3-ubyte.gz"),
        "the download failed",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    assert!(listing(&tmp.path().join("fashion_mnist")).is_empty());
    // `data list`: the data folder, each dataset's folder and URL, and what is present.
    let text = commands::list(&acc).unwrap();
    assert!(text.contains(&tmp.path().display().to_string()), "{text}");
    assert!(text.contains(&folder), "{text}");
    for info in catalog::catalog() {
        assert!(
            text.contains(info.mirrors[0]),
            "{} URL missing: {text}",
            info.name
        );
    }
    let dir = tmp.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, b) in tiny_idx(4) {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let text = commands::list(&acc).unwrap();
    let mnist_line = text.lines().find(|l| l.starts_with("mnist ")).unwrap();
    assert!(mnist_line.contains("yes"), "{mnist_line}");
    let cifar_line = text.lines().find(|l| l.starts_with("cifar10 ")).unwrap();
    assert!(cifar_line.contains(" no "), "{cifar_line}");
}
