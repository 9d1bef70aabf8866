//! Continual-learning metrics on hand-made matrices, every expected value computed by hand.

use distillery::cl::metrics::AccuracyMatrix;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn metrics_match_hand_computed_values() {
    let m = AccuracyMatrix::from_rows(
        vec![
            vec![0.9, 0.1, 0.2],
            vec![0.7, 0.8, 0.3],
            vec![0.6, 0.5, 0.9],
        ],
        Some(vec![0.1, 0.15, 0.05]),
    )
    .unwrap();
    // ACC = (0.6 + 0.5 + 0.9) / 3
    assert!(close(m.average_accuracy(), 2.0 / 3.0));
    // AIA = (0.9 + (0.7 + 0.8) / 2 + (0.6 + 0.5 + 0.9) / 3) / 3
    assert!(close(
        m.average_incremental_accuracy(),
        (0.9 + 0.75 + 2.0 / 3.0) / 3.0
    ));
    // Forgetting: task 0: max(0.9, 0.7) - 0.6 = 0.3; task 1: max(0.1, 0.8) - 0.5 = 0.3.
    assert!(close(m.forgetting(), 0.3));
    // BWT = ((0.6 - 0.9) + (0.5 - 0.8)) / 2
    assert!(close(m.backward_transfer(), -0.3));
    // FWT = ((0.1 - 0.15) + (0.3 - 0.05)) / 2
    assert!(close(m.forward_transfer(), 0.1));
    let s = m.summary();
    assert!(s.conventions["forgetting"].contains("Chaudhry"));
    assert!(m
        .to_csv()
        .starts_with("after_task,task_0,task_1,task_2\n0,0.900000,0.100000"));
}

#[test]
fn forgetting_takes_the_best_past_accuracy_not_the_first() {
    // Task 0 improves after task 1 (0.5 -> 0.8), then drops to 0.6: Chaudhry's forgetting is
    // 0.8 - 0.6 = 0.2 (Avalanche's first-minus-last would give 0.5 - 0.6 = -0.1). Task 1:
    // max(0.0, 0.7) - 0.7 = 0. Mean 0.1.
    let m = AccuracyMatrix::from_rows(
        vec![
            vec![0.5, 0.0, 0.0],
            vec![0.8, 0.7, 0.0],
            vec![0.6, 0.7, 0.9],
        ],
        None,
    )
    .unwrap();
    assert!(close(m.forgetting(), 0.1));
    // BWT = ((0.6 - 0.5) + (0.7 - 0.7)) / 2 = 0.05: positive backward transfer.
    assert!(close(m.backward_transfer(), 0.05));
    assert_eq!(m.forward_transfer(), None);
}

#[test]
fn partial_streams_and_bad_input() {
    // After one task only ACC and AIA exist.
    let m = AccuracyMatrix::from_rows(vec![vec![0.9, 0.2]], Some(vec![0.5, 0.5])).unwrap();
    assert!(close(m.average_accuracy(), 0.55));
    assert!(close(m.average_incremental_accuracy(), 0.9));
    assert_eq!(m.forgetting(), None);
    assert_eq!(m.backward_transfer(), None);
    assert_eq!(m.forward_transfer(), None);
    let e = AccuracyMatrix::from_rows(vec![vec![0.9, 0.2], vec![0.5]], None).unwrap_err();
    assert!(e.contains("row 1 has 1"), "{e}");
    let e = AccuracyMatrix::from_rows(vec![vec![0.9, f64::NAN]], None).unwrap_err();
    assert!(e.contains("outside [0, 1]"), "{e}");
    let e = AccuracyMatrix::from_rows(vec![vec![0.9]], Some(vec![0.1, 0.2])).unwrap_err();
    assert!(e.contains("2 baseline accuracies for 1 tasks"), "{e}");
}
