//! Continual-learning streams: class groups partition the classes exactly, domain transforms are
//! fixed per task and seeded, rotation is exact where it can be.

use distillery::data::embedded::digits_split;
use distillery::data::stream::{class_incremental, permutation, permuted, rotate, rotated};

#[test]
fn class_incremental_tasks_partition_the_classes_exactly() {
    let split = digits_split(0);
    for shuffle in [false, true] {
        let tasks = class_incremental(&split, 5, shuffle, 7).unwrap();
        assert_eq!(tasks.len(), 5);
        let mut all: Vec<usize> = tasks.iter().flat_map(|t| t.classes.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let mut n_train = 0;
        for t in &tasks {
            assert_eq!(t.classes.len(), 2);
            assert!(t.train.labels.iter().all(|y| t.classes.contains(y)));
            assert!(t.test.labels.iter().all(|y| t.classes.contains(y)));
            n_train += t.train.len();
        }
        assert_eq!(n_train, split.train.len());
    }
    let unshuffled = class_incremental(&split, 5, false, 7).unwrap();
    assert_eq!(unshuffled[0].classes, vec![0, 1]);
    let a = class_incremental(&split, 5, true, 7).unwrap();
    let b = class_incremental(&split, 5, true, 7).unwrap();
    assert_eq!(a, b);
    let e = class_incremental(&split, 3, false, 0).unwrap_err();
    assert!(e.contains("tasks = 3"), "{e}");
}

#[test]
fn permutations_are_fixed_per_task_and_seeded() {
    let split = digits_split(0);
    let tasks = permuted(&split, 3, 11);
    assert_eq!(tasks[0].train, split.train, "task 0 is the original");
    let p = permutation(8, 8, 1, 11);
    assert_ne!(p, (0..64).collect::<Vec<_>>());
    assert_ne!(p, permutation(8, 8, 2, 11));
    assert_eq!(p, permutation(8, 8, 1, 11));
    assert_ne!(p, permutation(8, 8, 1, 12));
    // Every image of task 1, train and test, is permuted by the same p.
    for (orig, perm) in [
        (&split.train, &tasks[1].train),
        (&split.test, &tasks[1].test),
    ] {
        for i in [0, 5, orig.len() - 1] {
            let (a, b) = (orig.image(i), perm.image(i));
            for (q, &src) in p.iter().enumerate() {
                assert_eq!(b[q], a[src]);
            }
        }
        assert_eq!(orig.labels, perm.labels);
    }
}

#[test]
fn rotation_is_exact_for_quarter_turns_and_identity_at_zero() {
    let img: Vec<f32> = (0..9).map(|v| v as f32).collect();
    // 90 degrees on a 3x3 image: out(y, x) = in(2 - x, y).
    let r = rotate(&img, [1, 3, 3], 90.0);
    for y in 0..3 {
        for x in 0..3 {
            let want = img[(2 - x) * 3 + y];
            assert!(
                (r[y * 3 + x] - want).abs() < 1e-5,
                "({y},{x}): {} vs {want}",
                r[y * 3 + x]
            );
        }
    }
    assert_eq!(rotate(&img, [1, 3, 3], 0.0), img);
    let split = digits_split(0);
    let tasks = rotated(&split, 3, 90.0);
    assert_eq!(tasks[0].test, split.test);
    let quarter = rotate(split.test.image(0), split.test.shape, 90.0);
    assert_eq!(tasks[2].test.image(0), quarter.as_slice());
}

#[test]
fn explicit_class_groups_make_one_task_each_and_bad_groups_are_named() {
    let split = distillery::data::embedded::digits_split(0);
    let tasks =
        distillery::data::stream::class_groups(&split, &[vec![3, 0, 1], vec![2], vec![9, 4]])
            .unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0].classes, vec![0, 1, 3]);
    assert!(tasks[0].train.labels.iter().all(|y| [0, 1, 3].contains(y)));
    let n: usize = split.train.labels.iter().filter(|&&y| y == 2).count();
    assert_eq!(tasks[1].train.len(), n);
    let err = distillery::data::stream::class_groups(&split, &[vec![1, 2], vec![2]]).unwrap_err();
    assert!(err.contains("class 2 is in two groups"), "{err}");
    let err = distillery::data::stream::class_groups(&split, &[vec![10]]).unwrap_err();
    assert!(err.contains("class 10"), "{err}");
}
