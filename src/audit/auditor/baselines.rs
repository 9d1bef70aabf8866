//! The audit's two baselines beside every set: a network trained on the real members, and a
//! random selection of them of the set's size.

use super::{Audited, Auditor};
use crate::audit::records::SetAudit;
use crate::audit::split::sample;
use crate::data::{Dataset, Normalization};
use crate::distill::eval::{train_net, EvalConfig};
use crate::error::Result;
use crate::rng::step_seed;
use crate::train::evaluate;
use crate::train::events::Progress;
use burn::tensor::backend::AutodiffBackend;
use std::path::Path;

impl<AD: AutodiffBackend> Auditor<'_, AD> {
    /// The real-data baseline of scope `scope`: a network trained on its members (at most
    /// `baseline_images` of them, every scored member among them), attacked the same way.
    pub fn real_data(&mut self, scope: usize) -> Result<Audited> {
        let s = &self.scopes[scope];
        let cap = self.settings.baseline_images;
        let scored = &s.scored.0;
        let others: Vec<usize> = s
            .members
            .iter()
            .copied()
            .filter(|j| scored.binary_search(j).is_err())
            .collect();
        let extra = sample(
            &others,
            cap.saturating_sub(scored.len()),
            step_seed(self.seed ^ 0xba5e, scope as u64),
        );
        let mut idx: Vec<usize> = scored.iter().chain(&extra).copied().collect();
        idx.sort_unstable();
        let data = self.pop.members.subset(&idx);
        let cfg = EvalConfig {
            train: self.proto.baseline.clone(),
            combined: None,
            ..self.proto.sets.clone()
        };
        let mut net = train_net::<AD>(
            &data,
            &self.proto.spec,
            &cfg,
            self.net_seed(),
            &self.device,
            &Progress::hidden(),
        )?;
        let test_acc = evaluate(&mut net, self.pop.test, 500, &self.device).0;
        Ok(Audited {
            record: SetAudit {
                images: data.len(),
                test_acc,
                nearest: None,
                scored_members: scored.len(),
                scored_nonmembers: s.non.len(),
                attack: self.attack(scope, &mut net),
            },
            pixel: Vec::new(),
            feature: Vec::new(),
        })
    }

    /// A random selection of scope `scope`'s members with as many images of each class as
    /// `like` has, audited as a set (trained by the protocol).
    pub fn random(
        &mut self,
        scope: usize,
        like: &Dataset,
        picture: Option<(&Path, Option<Normalization>)>,
    ) -> Result<Audited> {
        let want = like.class_counts();
        let s = &self.scopes[scope];
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); want.len()];
        for &j in &s.members {
            if let Some(v) = by.get_mut(self.pop.members.labels[j]) {
                v.push(j);
            }
        }
        let mut idx = Vec::new();
        for (c, pool) in by.iter().enumerate() {
            idx.extend(sample(
                pool,
                want[c],
                step_seed(self.seed ^ 0x7a4d, (scope as u64) << 16 | c as u64),
            ));
        }
        let data = self.pop.members.subset(&idx);
        let cfg = self.proto.sets.clone();
        self.set(scope, &data, &cfg, picture)
    }
}
