//! The member / non-member split and the seeded samples the attacks score. Stratified by class
//! so every class keeps members (a distiller needs `ipc` of each) and non-members.

use crate::rng::step_seed;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// How many of a class of `n` images become members: a share, or a count per class; at least
/// one and, when the class has two or more, at most all but one (so each side is non-empty).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemberRule {
    /// This share of each class.
    Share(f64),
    /// This many images of each class.
    PerClass(usize),
}

impl MemberRule {
    fn count(self, n: usize) -> usize {
        let want = match self {
            MemberRule::Share(s) => (s * n as f64).round() as usize,
            MemberRule::PerClass(k) => k,
        };
        want.clamp(1.min(n), n.saturating_sub(1).max(1.min(n)))
    }
}

/// Splits the images with labels `labels` into members and non-members: within each class a
/// shuffle seeded by (`seed`, class) and the first [`MemberRule`] images are members. Returns
/// (members, non-members), each sorted; together they are every index exactly once.
pub fn membership(labels: &[usize], rule: MemberRule, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by = vec![Vec::new(); k];
    for (i, &y) in labels.iter().enumerate() {
        by[y].push(i);
    }
    let (mut members, mut rest) = (Vec::new(), Vec::new());
    for (c, mut idx) in by.into_iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(step_seed(seed ^ 0x3e3b, c as u64));
        idx.shuffle(&mut rng);
        let m = rule.count(idx.len());
        members.extend_from_slice(&idx[..m]);
        rest.extend_from_slice(&idx[m..]);
    }
    members.sort_unstable();
    rest.sort_unstable();
    (members, rest)
}

/// A seeded sample of at most `n` of `from` (all of them when fewer), sorted.
pub fn sample(from: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v: Vec<usize> = rand::seq::index::sample(&mut rng, from.len(), n.min(from.len()))
        .into_iter()
        .map(|i| from[i])
        .collect();
    v.sort_unstable();
    v
}
