//! The replay memory: budgets, documented shares, shrinking order, relabelling.

use distillery::cl::memory::{Budget, Memory};
use distillery::data::Dataset;
use distillery::data::{globalise, localise};

/// `per_class` images of each class in `classes`, image `i` of class `c` filled with `100c + i`.
fn labelled(classes: &[usize], per_class: usize, k: usize) -> Dataset {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for &c in classes {
        for i in 0..per_class {
            images.extend(std::iter::repeat_n((100 * c + i) as f32, 4));
            labels.push(c);
        }
    }
    Dataset {
        images,
        labels,
        shape: [1, 2, 2],
        classes: (0..k).map(|c| c.to_string()).collect(),
    }
}

#[test]
fn total_budget_shares_are_floor_plus_one_for_the_first() {
    assert_eq!(Budget::Total(10).shares(3), vec![4, 3, 3]);
    assert_eq!(Budget::Total(10).shares(4), vec![3, 3, 2, 2]);
    assert_eq!(Budget::Total(6).shares(6), vec![1; 6]);
    assert_eq!(Budget::Total(3).shares(5), vec![1, 1, 1, 0, 0]);
    assert_eq!(Budget::PerClass(7).shares(3), vec![7, 7, 7]);
    assert_eq!(Budget::Total(10).capacity(4), 10);
    assert_eq!(Budget::PerClass(7).capacity(3), 21);
}

#[test]
fn memory_never_exceeds_its_budget_and_older_classes_shrink_from_the_back() {
    let mut m = Memory::new(
        Budget::Total(20),
        [1, 2, 2],
        (0..10).map(|c| c.to_string()).collect(),
    );
    for t in 0..5 {
        let classes = [2 * t, 2 * t + 1];
        let shares = m.shares_with(2);
        let ipc = *shares.last().unwrap();
        // The filler hands over its images in priority order; the memory keeps the first `share`.
        m.add(
            t,
            &labelled(&classes, shares[shares.len() - 2].max(ipc), 10),
        )
        .unwrap();
        assert!(m.len() <= 20, "after task {t}: {} images", m.len());
        let want = Budget::Total(20).shares(2 * (t + 1));
        let got: Vec<usize> = m.counts().iter().map(|&(_, _, n)| n).collect();
        assert_eq!(got, want, "after task {t}");
    }
    // 10 classes, 20 images: 2 each, the first two of each class as first given.
    let d = m.dataset();
    assert_eq!(d.len(), 20);
    for c in 0..10 {
        let vals: Vec<f32> = (0..d.len())
            .filter(|&i| d.labels[i] == c)
            .map(|i| d.image(i)[0])
            .collect();
        assert_eq!(
            vals,
            vec![(100 * c) as f32, (100 * c + 1) as f32],
            "class {c}"
        );
    }
}

#[test]
fn per_class_budget_keeps_n_per_class_and_task() {
    let mut m = Memory::new(
        Budget::PerClass(3),
        [1, 2, 2],
        (0..4).map(|c| c.to_string()).collect(),
    );
    m.add(0, &labelled(&[0, 1, 2, 3], 5, 4)).unwrap();
    // A domain stream sees the same classes again as a new task: new slots.
    m.add(1, &labelled(&[0, 1, 2, 3], 5, 4)).unwrap();
    assert_eq!(m.len(), 24);
    assert!(m.counts().iter().all(|&(_, _, n)| n == 3));
    let err = m.add(1, &labelled(&[2], 5, 4)).unwrap_err();
    assert!(err.contains("class 2 of task 1"), "{err}");
}

#[test]
fn localise_and_globalise_are_inverse() {
    let d = labelled(&[3, 7, 1], 2, 10);
    let local = localise(&d, &[7, 3]);
    assert_eq!(local.labels, vec![1, 1, 0, 0]);
    assert_eq!(local.classes, vec!["7".to_string(), "3".to_string()]);
    assert_eq!(local.image(2)[0], 700.0);
    let back = globalise(&local, &[7, 3], &d.classes);
    assert_eq!(back.labels, vec![3, 3, 7, 7]);
    assert_eq!(back.classes.len(), 10);
}
