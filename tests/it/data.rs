//! Data loaders on files the tests write, including truncated and corrupt ones.

use distillery::data::{self, cifar, embedded, idx, synthetic};
use std::io::Write;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sample_idx() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (n, r, c) = (5, 3, 4);
    let pixels: Vec<u8> = (0..n * r * c).map(|i| (i * 7 % 256) as u8).collect();
    let labels = vec![3u8, 0, 9, 3, 1];
    let (im, lb) = idx::encode(n, r, c, &pixels, &labels);
    (im, lb, pixels, labels)
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let (im, lb, pixels, labels) = sample_idx();
    for compress in [false, true] {
        let (ip, lp) = (
            dir.path().join(format!("i{compress}")),
            dir.path().join(format!("l{compress}")),
        );
        std::fs::write(&ip, if compress { gz(&im) } else { im.clone() }).unwrap();
        std::fs::write(&lp, if compress { gz(&lb) } else { lb.clone() }).unwrap();
        let ds = idx::load(&ip, &lp, "mnist").unwrap();
        assert_eq!(ds.shape, [1, 3, 4]);
        assert_eq!(ds.len(), 5);
        assert_eq!(
            ds.labels,
            labels.iter().map(|&y| y as usize).collect::<Vec<_>>()
        );
        assert_eq!(ds.num_classes(), 10);
        for (a, &b) in ds.images.iter().zip(&pixels) {
            assert_eq!(*a, b as f32 / 255.0);
        }
        assert_eq!(ds.image(2)[0], pixels[24] as f32 / 255.0);
    }
}

fn load_err(images: &[u8], labels: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("imgs.idx"), dir.path().join("labs.idx"));
    std::fs::write(&ip, images).unwrap();
    std::fs::write(&lp, labels).unwrap();
    idx::load(&ip, &lp, "mnist").unwrap_err().to_string()
}

#[test]
fn idx_truncated_images_named() {
    let (im, lb, ..) = sample_idx();
    let e = load_err(&im[..im.len() - 3], &lb);
    assert!(e.contains("imgs.idx") && e.contains("truncated"), "{e}");
    let e = load_err(&im[..10], &lb); // magic intact, dims cut
    assert!(e.contains("imgs.idx") && e.contains("header"), "{e}");
}

#[test]
fn idx_wrong_magic_named() {
    let (im, lb, ..) = sample_idx();
    // Labels given where images are expected.
    let e = load_err(&lb, &lb);
    assert!(
        e.contains("imgs.idx") && e.contains("magic") && e.contains("0x00000801"),
        "{e}"
    );
    let e = load_err(&im, &im);
    assert!(e.contains("labs.idx") && e.contains("magic"), "{e}");
}

#[test]
fn idx_corrupt_gzip_and_count_mismatch() {
    let (im, lb, ..) = sample_idx();
    let mut bad = gz(&im);
    let mid = bad.len() / 2;
    bad.truncate(mid);
    let e = load_err(&bad, &lb);
    assert!(e.contains("imgs.idx") && e.contains("gzip"), "{e}");
    let (_, lb4) = idx::encode(4, 3, 4, &[0; 48], &[1, 2, 3, 4]);
    let e = load_err(&im, &lb4);
    assert!(
        e.contains("labs.idx") && e.contains("4 labels for 5 images"),
        "{e}"
    );
}

#[test]
fn idx_missing_file_named() {
    let e = idx::load(
        "/nonexistent/x.gz".as_ref(),
        "/nonexistent/y.gz".as_ref(),
        "mnist",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/x.gz"), "{e}");
}

fn cifar_record(label: &[u8], fill: u8) -> Vec<u8> {
    let mut r = label.to_vec();
    r.extend((0..3072).map(|i| fill.wrapping_add((i % 251) as u8)));
    r
}

#[test]
fn cifar10_and_100_parse() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bin");
    let mut bytes = cifar_record(&[7], 0);
    bytes.extend(cifar_record(&[2], 10));
    std::fs::write(&p, &bytes).unwrap();
    let ds = cifar::load(&[&p], cifar::Variant::Cifar10).unwrap();
    assert_eq!(ds.labels, vec![7, 2]);
    assert_eq!(ds.shape, [3, 32, 32]);
    assert_eq!(ds.classes[7], "horse");
    // Channel-major planes: red plane first, pixel (c=1, y=0, x=5) is byte 1024 + 5.
    assert_eq!(
        ds.image(1)[1024 + 5],
        (10 + ((1024 + 5) % 251) as u8) as f32 / 255.0
    );
    let p100 = dir.path().join("c.bin");
    std::fs::write(&p100, cifar_record(&[4, 88], 0)).unwrap();
    let ds = cifar::load(&[&p100], cifar::Variant::Cifar100).unwrap();
    assert_eq!(ds.labels, vec![88]);
    assert_eq!(ds.num_classes(), 100);
}

#[test]
fn cifar_truncated_and_bad_labels_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.bin");
    let mut bytes = cifar_record(&[1], 0);
    bytes.extend_from_slice(&cifar_record(&[1], 0)[..100]);
    std::fs::write(&p, &bytes).unwrap();
    let e = cifar::load(&[&p], cifar::Variant::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("trunc.bin") && e.contains("3073-byte"), "{e}");
    let q = dir.path().join("label.bin");
    std::fs::write(&q, cifar_record(&[12], 0)).unwrap();
    let e = cifar::load(&[&q], cifar::Variant::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("label.bin") && e.contains("label 12 out of range"),
        "{e}"
    );
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let e = cifar::load(&[&empty], cifar::Variant::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.bin") && e.contains("empty"), "{e}");
}

#[test]
fn embedded_digits_match_the_shipped_counts() {
    let d = embedded::digits();
    assert_eq!(d.len(), 1797);
    assert_eq!(d.shape, [1, 8, 8]);
    assert_eq!(
        d.class_counts(),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let mean = d.images.iter().sum::<f32>() / d.images.len() as f32;
    assert!(
        (mean * 16.0 - 4.884).abs() < 1e-3,
        "pixel mean {}",
        mean * 16.0
    );
    let s = embedded::digits_split(0);
    assert_eq!(s.train.len() + s.test.len(), 1797);
    assert!(
        (355..=365).contains(&s.test.len()),
        "test size {}",
        s.test.len()
    );
    // Stratified: every class has about 20% in the test set.
    for (tr, te) in s.train.class_counts().iter().zip(s.test.class_counts()) {
        let f = te as f64 / (tr + te) as f64;
        assert!((0.18..0.22).contains(&f), "class test fraction {f}");
    }
    // Normalised by training statistics.
    let st = s.train.channel_stats();
    assert!(
        st.mean[0].abs() < 1e-4 && (st.std[0] - 1.0).abs() < 1e-3,
        "{st:?}"
    );
    // The split seed changes the split, the same seed does not.
    assert_eq!(embedded::digits_split(0).test.labels, s.test.labels);
    assert_ne!(embedded::digits_split(1).test.images, s.test.images);
}

#[test]
fn per_class_selection_and_reference_constants() {
    use rand::SeedableRng;
    let d = synthetic::generate(100, [1, 8, 8], 5, 0.1, 3);
    assert_eq!(d, synthetic::generate(100, [1, 8, 8], 5, 0.1, 3));
    assert_ne!(
        d.images,
        synthetic::generate(100, [1, 8, 8], 5, 0.1, 4).images
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let s = d.random_per_class(3, &mut rng);
    assert_eq!(s.class_counts(), vec![3; 5]);
    let idx = d.class_indices();
    assert!(idx
        .iter()
        .enumerate()
        .all(|(c, v)| v.iter().all(|&i| d.labels[i] == c)));
    let n = data::reference_normalization("cifar10").unwrap();
    assert_eq!(n.mean, vec![0.4914, 0.4822, 0.4465]);
    assert_eq!(
        data::reference_normalization("mnist").unwrap().std,
        vec![0.3081]
    );
}

#[test]
fn cifar_zca_whitens_both_sets_with_the_training_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = Vec::new();
    for i in 0..12u8 {
        train.extend(cifar_record(&[i % 3], i.wrapping_mul(37)));
    }
    let mut test = cifar_record(&[1], 5);
    test.extend(cifar_record(&[2], 200));
    std::fs::write(dir.path().join("train.bin"), &train).unwrap();
    std::fs::write(dir.path().join("test.bin"), &test).unwrap();
    let scenario = |extra: &str| {
        format!(
            "name = \"z\"\nkind = \"train\"\n[data]\nsource = \"cifar10\"\ntrain_files = [\"train.bin\"]\ntest_files = [\"test.bin\"]\n{extra}\n[train]\nepochs = 1\n"
        )
    };
    let path = dir.path().join("s.toml");
    let load = |extra: &str| {
        let l = distillery::scenario::parse(&scenario(extra), &path).unwrap();
        distillery::experiment::load_data(&l).unwrap()
    };
    let plain = load("");
    assert_eq!(plain.zca, None);
    assert_eq!(plain.cache_name(), "cifar10");
    assert!(plain.pixel_normalization().is_some());
    let white = load("zca = true");
    assert_eq!(white.zca, Some(0.1));
    assert_eq!(white.cache_name(), "cifar10-zca0.1");
    assert!(white.pixel_normalization().is_none());
    // The same as fitting by hand on the normalised training set and applying to both.
    let z = data::zca::Zca::fit(&plain.train, 0.1).unwrap();
    let (mut tr, mut te) = (plain.train.clone(), plain.test.clone());
    z.apply(&mut tr).unwrap();
    z.apply(&mut te).unwrap();
    assert_eq!(white.train.images, tr.images);
    assert_eq!(white.test.images, te.images);
    assert_ne!(white.test.images, plain.test.images);
    // Whitening centres the training set: every pixel's mean is ~0.
    let d = 3072;
    for j in (0..d).step_by(97) {
        let m: f64 = (0..12)
            .map(|i| white.train.images[i * d + j] as f64)
            .sum::<f64>()
            / 12.0;
        assert!(m.abs() < 1e-4, "pixel {j}: mean {m}");
    }
    let e = distillery::scenario::parse(&scenario("zca = true\nzca_eps = 0.0"), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zca_eps"), "{e}");
}
