//! Sample difficulty and coverage (groundwork for SelMatch, Lee et al. ICML 2024): forgetting
//! counts (Toneva et al.), EL2N scores, SelMatch's sliding-window selection over samples ranked
//! by difficulty, and the coverage diagnostic of a synthetic set.

/// Forgetting events of one sample from its per-epoch correctness (`true`: classified right):
/// the number of times it goes from right to wrong. A sample never learned counts as forgotten
/// at every epoch (Toneva et al. rank such samples hardest); `None` marks that case.
pub fn forgetting_count(correct: &[bool]) -> Option<usize> {
    if !correct.iter().any(|&c| c) {
        return None;
    }
    Some(correct.windows(2).filter(|w| w[0] && !w[1]).count())
}

/// Difficulty scores from per-epoch correctness of every sample (rows: samples): the forgetting
/// count, with never-learned samples scored `epochs` (harder than any learned one).
pub fn forgetting_scores(per_sample: &[Vec<bool>]) -> Vec<f64> {
    per_sample
        .iter()
        .map(|c| forgetting_count(c).map_or(c.len() as f64, |n| n as f64))
        .collect()
}

/// EL2N: the L2 norm of softmax(logits) minus the one-hot label (Paul et al. 2021).
pub fn el2n(logits: &[f32], label: usize) -> f64 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&v| ((v - m) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter()
        .enumerate()
        .map(|(i, p)| {
            let d = p / z - if i == label { 1.0 } else { 0.0 };
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// SelMatch's window: within each class, rank samples from hardest to easiest (higher score is
/// harder; ties by index), skip the hardest `floor(ipc * beta)` and take the next `ipc`. Returns
/// sample indices grouped by class in rank order. Errors when a class has too few samples.
pub fn window_select(
    labels: &[usize],
    scores: &[f64],
    num_classes: usize,
    ipc: usize,
    beta: f64,
) -> Result<Vec<usize>, String> {
    if labels.len() != scores.len() {
        return Err(format!(
            "{} scores for {} samples",
            scores.len(),
            labels.len()
        ));
    }
    if !(0.0..=1.0e6).contains(&beta) {
        return Err(format!("beta = {beta}: a non-negative window start"));
    }
    let skip = (ipc as f64 * beta).floor() as usize;
    let mut out = Vec::with_capacity(num_classes * ipc);
    for c in 0..num_classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        if idx.len() < skip + ipc {
            return Err(format!(
                "class {c} has {} samples; the window needs {} (skip {skip}, take {ipc})",
                idx.len(),
                skip + ipc
            ));
        }
        out.extend_from_slice(&idx[skip..skip + ipc]);
    }
    Ok(out)
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The mean distance from each point to its nearest other point (SelMatch's radius r).
pub fn mean_nn_distance(points: &[Vec<f32>]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let total: f64 = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            points
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| dist(p, q))
                .fold(f64::INFINITY, f64::min)
        })
        .sum();
    total / points.len() as f64
}

/// Coverage: the fraction of `queries` within distance `r` of at least one of `centres`.
pub fn coverage(queries: &[Vec<f32>], centres: &[Vec<f32>], r: f64) -> f64 {
    if queries.is_empty() {
        return 0.0;
    }
    let hit = queries
        .iter()
        .filter(|q| centres.iter().any(|c| dist(q, c) <= r))
        .count();
    hit as f64 / queries.len() as f64
}
