//! A scenario resolved once, before its run starts: each kind's plan holds its sections with
//! their defaults applied, names turned into types, and the settings that cannot work refused,
//! so that the runners in [`crate::experiment`] read plans instead of re-reading sections.
//! [`distill`], [`federated`] (both federated kinds) and [`continual`] are the per-kind plans;
//! this module holds what they share (the DSA strategy, the registry's environment, the audit's
//! member split).

pub mod continual;
pub mod distill;
pub mod federated;

use crate::audit::split::membership;
use crate::data::augment::Dsa;
use crate::data::{Dataset, Split};
use crate::distill::mtt::experts::ExpertSettings;
use crate::distill::registry::Env;
use crate::error::{Error, Result};
use crate::scenario::{Loaded, Scenario};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;

/// The DSA strategy of a run on `split`, with its name: `[distill] dsa_strategy` when given,
/// else the dataset's reference preset.
pub fn dsa(s: &Scenario, split: &Split) -> Result<(String, Dsa)> {
    let name = (s.distill.as_ref())
        .and_then(|d| d.run.dsa_strategy.clone())
        .unwrap_or_else(|| split.dsa_preset().strategy().to_string());
    let dsa = Dsa::new(&name).map_err(Error::Setting)?;
    Ok((name, dsa))
}

/// The registry's environment of a run: its network, DSA, experts (their folder resolved
/// against the scenario's) and the caches under `cache`.
pub fn env<'a>(loaded: &Loaded, split: &Split, cache: PathBuf) -> Result<Env<'a>> {
    let s = &loaded.scenario;
    Ok(Env::new(
        s.model_spec(split),
        dsa(s, split)?.1,
        experts(loaded),
        cache,
    ))
}

/// The `[experts]` section with defaults, its folder resolved against the scenario's.
pub fn experts(loaded: &Loaded) -> ExpertSettings {
    let mut x = loaded.scenario.experts_section();
    x.dir = x.dir.map(|p| loaded.resolve(&p));
    x
}

/// `split` with `[eval] validation`'s fraction of each class's training images (rounded, at
/// least one, and at least one left to train on) as its test set and the rest as its
/// training set, drawn by the run's seed; `split` as it is without it.
pub fn validation(mut split: Split, s: &Scenario) -> Split {
    let Some(frac) = s.eval_section().validation else {
        return split;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(crate::rng::step_seed(s.seed, 0x7a11d));
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for mut idx in split.train.class_indices() {
        idx.shuffle(&mut rng);
        let n = idx.len();
        // A class of one image keeps it for training.
        let v = match n {
            0 | 1 => 0,
            _ => ((frac * n as f64).round() as usize).clamp(1, n - 1),
        };
        held.extend_from_slice(&idx[..v]);
        train.extend_from_slice(&idx[v..]);
    }
    train.sort_unstable();
    held.sort_unstable();
    split.test = split.train.subset(&held);
    split.train = split.train.subset(&train);
    split
}

/// `split` with its training set cut to the audit's members when `[audit]` asks for a member
/// split (seeded by the run's seed), and the held-out rest; `split` as it is otherwise.
pub fn hold_out(mut split: Split, s: &Scenario) -> (Split, Option<Dataset>) {
    let Some(rule) = s.audit_if_on().and_then(|a| a.member_rule()) else {
        return (split, None);
    };
    let (members, rest) = membership(&split.train.labels, rule, s.seed);
    let held = split.train.subset(&rest);
    split.train = split.train.subset(&members);
    (split, Some(held))
}
