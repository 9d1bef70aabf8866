//! The audit engine, the same for every run kind: a population of real images (members, the
//! non-members, the test set), one or more scopes (groups of members audited together: a run's
//! training set, or each federated client's partition), the coverage network's feature space, and
//! the reference networks of the calibrated attack, all made once; then any number of sets
//! audited against a scope, each by a network trained on it.

use super::attack::{calibrated_attack, loss_attack, reference_mean, seen, AttackFigures, Seen};
use super::nearest::{nearest, own_nearest, quantile, Distances, Rows};
use super::settings::AuditSettings;
use super::split::sample;
use crate::audit::records::{NearestReal, SetAudit};
use crate::data::{Dataset, Normalization};
use crate::distill::coverage::{embed, feature_net};
use crate::distill::eval::{train_net, EvalConfig};
use crate::distill::{Provenance, SyntheticSet};
use crate::error::{Error, Result};
use crate::model::{Model, ModelSpec};
use crate::rng::step_seed;
use crate::train::events::Progress;
use crate::train::{evaluate, TrainConfig};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use std::path::Path;

mod baselines;

/// The real images of an audit.
#[derive(Clone, Copy, Debug)]
pub struct Population<'a> {
    /// Every member: the training images the run saw.
    pub members: &'a Dataset,
    /// The non-members: held-out training images, or the test set.
    pub nonmembers: &'a Dataset,
    /// Where the attacked networks' accuracy is measured.
    pub test: &'a Dataset,
}

/// How the audit's networks train.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// The network.
    pub spec: ModelSpec,
    /// Networks trained on a set (attacked, random selection, reference): the run's protocol.
    pub sets: EvalConfig,
    /// The real-data baseline's training (augmented as `sets` is).
    pub baseline: TrainConfig,
    /// Epochs of the coverage network when none is handed over.
    pub feature_epochs: usize,
}

/// A set's audit, with each image's nearest-real distances (for totals over several sets).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Audited {
    /// The figures.
    pub record: SetAudit,
    /// Each image's pixel distance to its nearest real image.
    pub pixel: Vec<f64>,
    /// Each image's feature distance.
    pub feature: Vec<f64>,
}

/// A group of members audited together.
struct Scope {
    /// Indices into the population's members.
    members: Vec<usize>,
    /// Its members' pixels (None: all the population's members, in order).
    pixels: Option<Dataset>,
    /// Its members' embeddings (None: all of them).
    feats: Option<Vec<f32>>,
    /// The members the attacks score (indices into the population's members, and their images).
    scored: (Vec<usize>, Dataset),
    /// Their mean confidence under the reference networks.
    scored_ref: Vec<f64>,
    /// The non-members scored against it: positions in the auditor's scored non-members.
    non: Vec<usize>,
    /// Near-copy thresholds: pixel, feature.
    thresholds: (f64, f64),
}

/// The audit of one run: its population, scopes, feature space and reference networks.
pub struct Auditor<'a, AD: AutodiffBackend> {
    settings: AuditSettings,
    pop: Population<'a>,
    proto: Protocol,
    seed: u64,
    device: AD::Device,
    features: Model<AD::InnerBackend>,
    member_feats: Vec<f32>,
    dim: usize,
    nonmembers: Dataset,
    nonmembers_ref: Vec<f64>,
    scopes: Vec<Scope>,
    ref_per_class: usize,
}

/// `d`'s embeddings under `net`, flat.
fn embed_flat<B: burn::prelude::Backend>(
    net: &mut Model<B>,
    d: &Dataset,
    device: &B::Device,
) -> Vec<f32> {
    embed(net, d, device).into_iter().flatten().collect()
}

impl<'a, AD: AutodiffBackend> Auditor<'a, AD> {
    /// Prepares the audit of `pop`'s members grouped into `scopes` (indices into the members;
    /// empty: one scope of every member): the feature network (`features`, else trained on the
    /// members as the coverage probe trains it), the scored samples, the thresholds, and the
    /// reference networks, each trained on `ref_per_class` random images per class.
    pub fn new(
        settings: &AuditSettings,
        pop: Population<'a>,
        proto: Protocol,
        scopes: Vec<Vec<usize>>,
        (ref_per_class, features): (usize, Option<Model<AD::InnerBackend>>),
        seed: u64,
        device: &AD::Device,
    ) -> Result<Self> {
        if pop.members.len() < 2 || pop.nonmembers.is_empty() {
            return Err(Error::Setting(format!(
                "the privacy audit needs at least 2 members and a non-member (has {} and {}); turn it off with [audit] enabled = false",
                pop.members.len(),
                pop.nonmembers.len()
            )));
        }
        let mut features = match features {
            Some(f) => f,
            None => {
                feature_net::<AD>(&proto.spec, pop.members, proto.feature_epochs, seed, device)?.0
            }
        };
        let member_feats = embed_flat(&mut features, pop.members, device);
        let dim = member_feats.len() / pop.members.len();
        let mut a = Auditor {
            settings: settings.clone(),
            pop,
            proto,
            seed,
            device: device.clone(),
            features,
            member_feats,
            dim,
            nonmembers: Dataset::empty(pop.nonmembers.shape),
            nonmembers_ref: Vec::new(),
            scopes: Vec::new(),
            ref_per_class,
        };
        let scopes = match scopes.is_empty() {
            true => vec![(0..pop.members.len()).collect()],
            false => scopes,
        };
        let single = scopes.len() == 1 && scopes[0].len() == pop.members.len();
        for (i, m) in scopes.into_iter().enumerate() {
            let s = a.scope(i, m, single);
            a.scopes.push(s);
        }
        let scored_n = a.scored_nonmembers_of_scopes(single);
        a.nonmembers = pop.nonmembers.subset(&scored_n);
        a.references(&scored_n)?;
        Ok(a)
    }

    /// The non-members to score (indices into the population's, sorted), each scope's positions
    /// among them set. One scope of every member: a uniform sample (the member split is
    /// stratified, so the classes match in expectation). Scopes that are parts (federated
    /// clients, often of skewed classes): per scope, as many non-members of each class as it has
    /// scored members of that class (fewer where the class has fewer), so the attack cannot tell
    /// members by their class alone.
    fn scored_nonmembers_of_scopes(&mut self, single: bool) -> Vec<usize> {
        let non = self.pop.nonmembers;
        if single {
            let all: Vec<usize> = (0..non.len()).collect();
            let n = sample(&all, self.settings.sample, step_seed(self.seed ^ 0xa0d1, 0));
            self.scopes[0].non = (0..n.len()).collect();
            return n;
        }
        let k = non.num_classes().max(self.pop.members.num_classes());
        let mut by = vec![Vec::new(); k];
        for (i, &y) in non.labels.iter().enumerate() {
            by[y].push(i);
        }
        let picks: Vec<Vec<usize>> = self
            .scopes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut want = vec![0usize; k];
                s.scored.1.labels.iter().for_each(|&y| want[y] += 1);
                let mut v: Vec<usize> = (0..k)
                    .flat_map(|c| {
                        let seed = step_seed(self.seed ^ 0xa0d2, (i as u64) << 16 | c as u64);
                        sample(&by[c], want[c], seed)
                    })
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        let mut union: Vec<usize> = picks.iter().flatten().copied().collect();
        union.sort_unstable();
        union.dedup();
        for (s, p) in self.scopes.iter_mut().zip(picks) {
            s.non = p
                .iter()
                .filter_map(|j| union.binary_search(j).ok())
                .collect();
        }
        union
    }

    /// Scope `i` over members `m` (`all`: every member, in order).
    fn scope(&self, i: usize, m: Vec<usize>, all: bool) -> Scope {
        let s = &self.settings;
        let scored = sample(&m, s.sample, step_seed(self.seed ^ 0x5c0e, i as u64));
        let (pixels, feats) = match all {
            true => (None, None),
            false => (
                Some(self.pop.members.subset(&m)),
                Some(
                    m.iter()
                        .flat_map(|&j| &self.member_feats[j * self.dim..(j + 1) * self.dim])
                        .copied()
                        .collect(),
                ),
            ),
        };
        let local: Vec<usize> = (0..m.len()).collect();
        let th = sample(
            &local,
            s.threshold_sample,
            step_seed(self.seed ^ 0x7e5d, i as u64),
        );
        let px = pixels.as_ref().unwrap_or(self.pop.members);
        let l = px.image_len();
        let fv = feats.as_deref().unwrap_or(&self.member_feats[..]);
        let threshold = |rows: Rows<'_>| match rows.len() {
            0 | 1 => 0.0,
            _ => quantile(&own_nearest(rows, &th), s.near_copy_quantile),
        };
        let thresholds = (
            threshold(Rows::new(&px.images, l)),
            threshold(Rows::new(fv, self.dim)),
        );
        Scope {
            scored: (scored.clone(), self.pop.members.subset(&scored)),
            members: m,
            pixels,
            feats,
            scored_ref: Vec::new(),
            non: Vec::new(),
            thresholds,
        }
    }

    /// Trains the reference networks on random images that no scope scores, and keeps every
    /// scored example's mean confidence under them.
    fn references(&mut self, scored_n: &[usize]) -> Result<()> {
        let n = self.settings.reference_nets;
        if n == 0 {
            return Ok(());
        }
        let mut member_free = vec![true; self.pop.members.len()];
        for s in &self.scopes {
            for &j in &s.scored.0 {
                member_free[j] = false;
            }
        }
        let mut nonmember_free = vec![true; self.pop.nonmembers.len()];
        for &j in scored_n {
            nonmember_free[j] = false;
        }
        let free = |f: &[bool]| -> Vec<usize> { (0..f.len()).filter(|&i| f[i]).collect() };
        let mut pool = self.pop.members.subset(&free(&member_free));
        let rest = self.pop.nonmembers.subset(&free(&nonmember_free));
        pool.images.extend_from_slice(&rest.images);
        pool.labels.extend_from_slice(&rest.labels);
        let mut nonmember_views = Vec::with_capacity(n);
        let mut member_views: Vec<Vec<Seen>> = vec![Vec::with_capacity(n); self.scopes.len()];
        for r in 0..n {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(step_seed(self.seed ^ 0x4ef5, r as u64));
            let data = pool.random_per_class(self.ref_per_class.max(1), &mut rng);
            let mut net = train_net::<AD>(
                &data,
                &self.proto.spec,
                &self.proto.sets,
                step_seed(self.seed ^ 0x4ef6, r as u64),
                &self.device,
                &Progress::hidden(),
            )?;
            nonmember_views.push(seen(&mut net, &self.nonmembers, &self.device));
            for (s, views) in self.scopes.iter().zip(&mut member_views) {
                views.push(seen(&mut net, &s.scored.1, &self.device));
            }
        }
        self.nonmembers_ref = reference_mean(&nonmember_views);
        for (s, views) in self.scopes.iter_mut().zip(&member_views) {
            s.scored_ref = reference_mean(views);
        }
        Ok(())
    }

    /// The protocol networks trained on sets follow.
    pub fn protocol(&self) -> &Protocol {
        &self.proto
    }

    /// Distinct non-members the attacks score (over every scope).
    pub fn scored_nonmembers(&self) -> usize {
        self.nonmembers.len()
    }

    /// The seed every attacked network starts from (the run's first evaluation network's).
    fn net_seed(&self) -> u64 {
        step_seed(self.seed ^ 0xe7a1, 0)
    }

    /// Both attacks on `net` against scope `scope`.
    fn attack(&self, scope: usize, net: &mut Model<AD::InnerBackend>) -> AttackFigures {
        let s = &self.scopes[scope];
        let m = seen(net, &s.scored.1, &self.device);
        let n = pick(&seen(net, &self.nonmembers, &self.device), &s.non);
        let n_ref: Vec<f64> = match self.nonmembers_ref.is_empty() {
            true => Vec::new(),
            false => s.non.iter().map(|&i| self.nonmembers_ref[i]).collect(),
        };
        AttackFigures {
            loss: loss_attack(&m, &n),
            calibrated: (self.settings.reference_nets > 0)
                .then(|| calibrated_attack(&m, &n, &s.scored_ref, &n_ref)),
        }
    }

    /// Audits `set` (a synthetic set, a selection or a memory) against scope `scope`: a network
    /// trained on it by `cfg` is attacked, and each image's nearest real image of the scope is
    /// found in both spaces; `picture` (with the normalisation to render in) receives the
    /// closest pairs.
    pub fn set(
        &mut self,
        scope: usize,
        set: &Dataset,
        cfg: &EvalConfig,
        picture: Option<(&Path, Option<Normalization>)>,
    ) -> Result<Audited> {
        let mut net = train_net::<AD>(
            set,
            &self.proto.spec,
            cfg,
            self.net_seed(),
            &self.device,
            &Progress::hidden(),
        )?;
        let test_acc = evaluate(&mut net, self.pop.test, 500, &self.device).0;
        let attack = self.attack(scope, &mut net);
        let s = &self.scopes[scope];
        let px = s.pixels.as_ref().unwrap_or(self.pop.members);
        let pixel = nearest(
            Rows::new(&set.images, set.image_len()),
            Rows::new(&px.images, px.image_len()),
        );
        let set_feats = embed_flat(&mut self.features, set, &self.device);
        let fv = s.feats.as_deref().unwrap_or(&self.member_feats[..]);
        let feature = nearest(Rows::new(&set_feats, self.dim), Rows::new(fv, self.dim));
        if let (Some((path, norm)), true) = (picture, self.settings.pairs > 0) {
            closest_pairs(set, px, &pixel, self.settings.pairs, norm).save_png(path)?;
        }
        let (pd, fd): (Vec<f64>, Vec<f64>) = (
            pixel.iter().map(|p| p.0).collect(),
            feature.iter().map(|p| p.0).collect(),
        );
        Ok(Audited {
            record: SetAudit {
                images: set.len(),
                test_acc,
                nearest: Some(NearestReal {
                    pixel: Distances::of(&pd, s.thresholds.0),
                    feature: Distances::of(&fd, s.thresholds.1),
                }),
                scored_members: s.scored.0.len(),
                scored_nonmembers: s.non.len(),
                attack,
            },
            pixel: pd,
            feature: fd,
        })
    }
}

/// The examples of `s` at `pos`.
fn pick(s: &Seen, pos: &[usize]) -> Seen {
    Seen {
        loss: pos.iter().map(|&i| s.loss[i]).collect(),
        confidence: pos.iter().map(|&i| s.confidence[i]).collect(),
    }
}

/// The `n` images of `set` closest to a real image of `reals` (by `pixel`), each above the real
/// image nearest to it: a two-row picture, synthetic on top.
fn closest_pairs(
    set: &Dataset,
    reals: &Dataset,
    pixel: &[(f64, usize)],
    n: usize,
    norm: Option<Normalization>,
) -> SyntheticSet {
    let mut order: Vec<usize> = (0..pixel.len()).collect();
    order.sort_by(|&a, &b| pixel[a].0.total_cmp(&pixel[b].0).then(a.cmp(&b)));
    order.truncate(n);
    let mut images = Vec::new();
    for &i in &order {
        images.extend_from_slice(set.image(i));
    }
    for &i in &order {
        images.extend_from_slice(reals.image(pixel[i].1));
    }
    let k = order.len();
    SyntheticSet {
        images,
        shape: set.shape,
        labels: (0..2 * k).map(|i| usize::from(i >= k)).collect(),
        soft_labels: None,
        syn_lr: None,
        fixed: None,
        provenance: Provenance {
            method: "closest pairs".into(),
            ipc: k,
            dataset: String::new(),
            seed: 0,
            iterations: 0,
            classes: vec!["synthetic".into(), "nearest real".into()],
            normalization: norm,
            expand: 1,
        },
    }
}
