//! Difficulty scores, SelMatch's window selection and coverage, on hand-made data.

use distillery::distill::selmatch::difficulty::{
    coverage, el2n, forgetting_count, forgetting_scores, mean_nn_distance, window_select,
};

#[test]
fn forgetting_counts_right_to_wrong_transitions() {
    // right, wrong, right, right, wrong, wrong, right: forgotten at epochs 2 and 5.
    let seq = [true, false, true, true, false, false, true];
    assert_eq!(forgetting_count(&seq), Some(2));
    assert_eq!(forgetting_count(&[false, true, true]), Some(0));
    assert_eq!(forgetting_count(&[false, false, false]), None);
    // Never learned scores as many as there are epochs: harder than any learned sample.
    let s = forgetting_scores(&[seq.to_vec(), vec![false; 7], vec![true; 7]]);
    assert_eq!(s, vec![2.0, 7.0, 0.0]);
}

#[test]
fn el2n_by_hand() {
    // softmax(0, 0) = (0.5, 0.5); minus one-hot (1, 0) = (-0.5, 0.5): norm sqrt(0.5).
    assert!((el2n(&[0.0, 0.0], 0) - 0.5f64.sqrt()).abs() < 1e-12);
    // A confident right answer scores near 0, a confident wrong one near sqrt(2).
    assert!(el2n(&[20.0, 0.0], 0) < 1e-8);
    assert!((el2n(&[20.0, 0.0], 1) - 2f64.sqrt()).abs() < 1e-8);
}

#[test]
fn window_takes_equal_counts_from_the_right_rank_range() {
    // Two classes of 10; class c's sample k has score 10 - k (sample 0 hardest).
    let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
    let scores: Vec<f64> = (0..20).map(|i| 10.0 - (i / 2) as f64).collect();
    // ipc 4, beta 0.5: skip the 2 hardest of each class, take ranks 2..6.
    let sel = window_select(&labels, &scores, 2, 4, 0.5).unwrap();
    assert_eq!(sel, vec![4, 6, 8, 10, 5, 7, 9, 11]);
    // beta 0: the hardest ipc.
    assert_eq!(
        window_select(&labels, &scores, 2, 3, 0.0).unwrap(),
        vec![0, 2, 4, 1, 3, 5]
    );
    let err = window_select(&labels, &scores, 2, 4, 2.0).unwrap_err();
    assert!(err.contains("class 0 has 10 samples"), "{err}");
}

#[test]
fn coverage_of_hand_placed_points_in_2d() {
    // Training points on a unit grid: every nearest neighbour is at distance 1.
    let grid: Vec<Vec<f32>> = (0..3)
        .flat_map(|x| (0..3).map(move |y| vec![x as f32, y as f32]))
        .collect();
    assert!((mean_nn_distance(&grid) - 1.0).abs() < 1e-12);
    // One centre at the middle of the grid covers itself and its 4 neighbours within r = 1.
    let cov = coverage(&grid, &[vec![1.0, 1.0]], 1.0);
    assert!((cov - 5.0 / 9.0).abs() < 1e-12, "{cov}");
    // Adding a corner centre covers (0,0), (0,1), (1,0), already counted except (0,0).
    let cov = coverage(&grid, &[vec![1.0, 1.0], vec![0.0, 0.0]], 1.0);
    assert!((cov - 6.0 / 9.0).abs() < 1e-12, "{cov}");
}
