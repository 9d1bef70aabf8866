//! The client half of the distilled strategies: a client distils its partition with the
//! scenario's method (built by the registry for that partition), `ipc` images for each class it
//! holds at least that many of, and sends the real images of the classes it holds fewer of
//! (unless its DM is private, `dp`: then those classes are left out).

use super::{ClientApp, ClientState, Settings};
use crate::data::{globalise, localise, Dataset};
use crate::distill::dm::Around;
use crate::distill::registry;
use crate::distill::soft::{globalise_soft, one_hot_rows};
use crate::distill::{Checkpoint, Ctx, Provenance, SyntheticSet};
use crate::error::{Error, Result};
use crate::fed::message::{Payload, SentSet, Task, Update};
use crate::rng::step_seed;
use burn::tensor::backend::AutodiffBackend;
use std::sync::Arc;

/// Distils on the client; `around`: FedDM (DM around the task's global model).
pub struct Distilling {
    /// The run's settings.
    pub s: Arc<Settings>,
    /// Distil around the global model the task carries (FedDM).
    pub around: bool,
}

/// The images of the classes with at least `ipc` samples ("rich"), relabelled 0..k, their global
/// labels, and the real images of the classes with fewer ("poor"), which are sent as they are.
fn rich_and_poor(data: &Dataset, ipc: usize) -> (Dataset, Vec<usize>, Dataset) {
    let by = data.class_indices();
    let rich: Vec<usize> = (0..by.len()).filter(|&c| by[c].len() >= ipc).collect();
    let poor_idx: Vec<usize> = by
        .iter()
        .filter(|v| !v.is_empty() && v.len() < ipc)
        .flatten()
        .copied()
        .collect();
    (localise(data, &rich), rich, data.subset(&poor_idx))
}

impl Distilling {
    /// FedDM continues from the set sent last round (its rich classes, in order).
    fn previous(&self, state: &ClientState, rich: &[usize], seed: u64) -> Option<Checkpoint> {
        let s = &self.s;
        let prev = state.syn.as_ref().filter(|_| self.around)?;
        let local = localise(prev, rich);
        (local.len() == rich.len() * s.distil.ipc).then(|| Checkpoint {
            momentum: vec![0.0; local.images.len()],
            set: SyntheticSet::from_dataset(
                &local,
                Provenance {
                    method: s.distil.method.name().into(),
                    ipc: s.distil.ipc,
                    dataset: s.dataset.clone(),
                    seed,
                    iterations: 0,
                    classes: local.classes.clone(),
                    normalization: None,
                    expand: 1,
                },
            ),
            lr_momentum: 0.0,
            extras: Vec::new(),
        })
    }

    /// The client's set for `task`'s round (labels global).
    fn distil<B: AutodiffBackend>(
        &self,
        task: &Task,
        state: &mut ClientState,
        around: Option<Around>,
        device: &B::Device,
    ) -> Result<SentSet> {
        let s = &self.s;
        state.enter(task.task);
        let (local, rich, poor) = rich_and_poor(&state.data, s.distil.ipc);
        let seed = step_seed(
            s.seed,
            (state.id as u64) << 20 | (task.task as u64) << 40 | task.round as u64,
        );
        // A private client sends no real images: its poor classes are left out.
        let private = s.distil.method.privacy().is_some();
        let mut out = if private { poor.subset(&[]) } else { poor };
        let mut soft = None;
        if !rich.is_empty() {
            // FedDM embeds with the global model (all classes' logits); fresh nets need only
            // the local classes.
            let spec = match around {
                Some(_) => s.spec.clone(),
                None => s.spec.with_classes(rich.len()),
            };
            let mut env = s.distil.env(spec);
            env.around = around;
            let mut ctx = Ctx::<B>::quiet(device.clone(), seed, &s.dataset);
            ctx.resume = self.previous(state, &rich, seed);
            let set = registry::distil(&s.distil.method, &local, s.distil.ipc, &env, &mut ctx)?;
            let mut d = globalise(&set.to_dataset(), &rich, &s.classes);
            // Soft labels over the rich classes, widened to all classes; the poor classes'
            // real images get one-hot rows.
            soft = set.soft_labels.as_ref().map(|p| {
                let mut g = globalise_soft(p, &rich, s.classes.len());
                g.extend(one_hot_rows(&out.labels, s.classes.len()));
                g
            });
            d.images.extend_from_slice(&out.images);
            d.labels.extend_from_slice(&out.labels);
            out = d;
        }
        state.syn = Some(out.clone());
        Ok(SentSet {
            data: out,
            soft_labels: soft,
        })
    }
}

impl<B: AutodiffBackend> ClientApp<B> for Distilling {
    fn work(&self, task: &Task, state: &mut ClientState, device: &B::Device) -> Result<Update> {
        let around = match (self.around, &task.global) {
            (false, _) => None,
            (true, Some(w)) => Some(Around {
                params: w.params.clone(),
                rho: self.s.distil.rho,
            }),
            (true, None) => {
                return Err(Error::Transport(
                    "the round task carries no global model".into(),
                ))
            }
        };
        let set = self.distil::<B>(task, state, around, device)?;
        Ok(Update {
            client: state.id,
            round: task.round,
            num_samples: state.data.len() as u64,
            compute_seconds: 0.0,
            payload: Payload::Set(set),
        })
    }
}
