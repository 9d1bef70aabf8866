//! Federated partitions: every sample once, label skew that follows alpha, exact class counts.

use distillery::data::partition::{class_counts, counts_csv, partition, Partitioning};

/// 10 classes x 100 samples, interleaved.
fn labels() -> Vec<usize> {
    (0..1000).map(|i| i % 10).collect()
}

fn assert_each_once(parts: &[Vec<usize>], n: usize) {
    let mut all: Vec<usize> = parts.concat();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every sample exactly once");
}

fn classes_per_client(parts: &[Vec<usize>]) -> Vec<usize> {
    class_counts(&labels(), 10, parts)
        .iter()
        .map(|c| c.iter().filter(|&&v| v > 0).count())
        .collect()
}

#[test]
fn iid_deals_every_sample_once_evenly() {
    let p = partition(&labels(), 10, 7, &Partitioning::Iid, 1).unwrap();
    assert_each_once(&p, 1000);
    let sizes: Vec<usize> = p.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
}

#[test]
fn dirichlet_skew_follows_alpha_and_keeps_every_sample() {
    let mean = |v: Vec<usize>| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let skewed = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: 0.05,
            min_size: 10,
        },
        2,
    )
    .unwrap();
    let even = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: 100.0,
            min_size: 10,
        },
        2,
    )
    .unwrap();
    assert_each_once(&skewed, 1000);
    assert_each_once(&even, 1000);
    assert!(skewed.iter().all(|p| p.len() >= 10));
    let (a, b) = (
        mean(classes_per_client(&skewed)),
        mean(classes_per_client(&even)),
    );
    assert!(a < 4.0, "alpha 0.05: {a} classes per client on average");
    assert!(b > 9.5, "alpha 100: {b} classes per client on average");
    // Seeded: same seed, same partition; another seed, another one.
    let again = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: 0.05,
            min_size: 10,
        },
        2,
    )
    .unwrap();
    assert_eq!(skewed, again);
    let other = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: 0.05,
            min_size: 10,
        },
        3,
    )
    .unwrap();
    assert_ne!(skewed, other);
}

#[test]
fn pathological_gives_exactly_k_classes_and_shards_at_most_s() {
    let p = partition(
        &labels(),
        10,
        10,
        &Partitioning::Pathological {
            classes_per_client: 2,
        },
        4,
    )
    .unwrap();
    assert_each_once(&p, 1000);
    assert!(
        classes_per_client(&p).iter().all(|&c| c == 2),
        "{:?}",
        classes_per_client(&p)
    );
    // 10 clients x 2 shards of 50: each shard is half a class, so a client has 1 or 2 classes.
    let s = partition(
        &labels(),
        10,
        10,
        &Partitioning::Shards {
            shards_per_client: 2,
        },
        4,
    )
    .unwrap();
    assert_each_once(&s, 1000);
    assert!(s.iter().all(|p| p.len() == 100));
    assert!(classes_per_client(&s).iter().all(|&c| (1..=2).contains(&c)));
}

#[test]
fn quantity_skew_varies_sizes_but_not_labels() {
    let p = partition(
        &labels(),
        10,
        8,
        &Partitioning::QuantitySkew { alpha: 0.5 },
        5,
    )
    .unwrap();
    assert_each_once(&p, 1000);
    let sizes: Vec<usize> = p.iter().map(Vec::len).collect();
    assert!(sizes.iter().all(|&s| s >= 1));
    assert!(
        sizes.iter().max().unwrap() > &(3 * sizes.iter().min().unwrap()),
        "{sizes:?}"
    );
    let csv = counts_csv(&class_counts(&labels(), 10, &p));
    assert!(csv.starts_with("client,size,class_0"));
    assert_eq!(csv.lines().count(), 9);
}

#[test]
fn impossible_partitions_are_clear_errors() {
    let e = partition(&labels(), 10, 2000, &Partitioning::Iid, 0).unwrap_err();
    assert!(e.contains("2000 clients for 1000 samples"), "{e}");
    let e = partition(
        &labels(),
        10,
        5,
        &Partitioning::Pathological {
            classes_per_client: 11,
        },
        0,
    )
    .unwrap_err();
    assert!(e.contains("classes_per_client = 11"), "{e}");
    let e = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: 0.1,
            min_size: 200,
        },
        0,
    )
    .unwrap_err();
    assert!(e.contains("min_size 200"), "{e}");
    let e = partition(
        &labels(),
        10,
        10,
        &Partitioning::Dirichlet {
            alpha: -1.0,
            min_size: 0,
        },
        0,
    )
    .unwrap_err();
    assert!(e.contains("alpha = -1"), "{e}");
    let e = partition(&[0, 12], 10, 1, &Partitioning::Iid, 0).unwrap_err();
    assert!(e.contains("label 12 of sample 1"), "{e}");
}
