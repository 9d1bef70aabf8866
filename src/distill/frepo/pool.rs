//! FRePo's model pool: networks at different stages of training on the synthetic set. Member
//! `i` starts fresh with its step counter at `i · max_online_updates / size`, so the members
//! reach the reset at staggered times; each iteration the sampled member either takes one Adam
//! step on a minibatch of the synthetic set (squared error against the learned labels, DSA per
//! sample) or, past `max_online_updates` steps, is replaced by a fresh network. The pool goes
//! into a checkpoint as extra tensors, so a resumed run continues it exactly.

use super::optim::Moments;
use crate::data::augment::Dsa;
use crate::distill::set::{find_extra, row_pieces, Extras};
use crate::error::{Error, Result};
use crate::model::{forward, host, Mode, ModelSpec};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::index::sample;
use rand::Rng;

/// One network of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its parameters (host, in the spec's order).
    pub params: Vec<Vec<f32>>,
    /// Its Adam state.
    pub opt: Moments,
    /// Online updates since it was (re)initialised, plus its stagger offset.
    pub step: usize,
}

impl Member {
    fn fresh<R: Rng>(spec: &ModelSpec, step: usize, rng: &mut R) -> Self {
        let params = spec.init_host(rng);
        let lens: Vec<usize> = params.iter().map(Vec::len).collect();
        Member {
            params,
            opt: Moments::zeros(&lens),
            step,
        }
    }

    /// The parameters as tensors on `device`.
    pub fn tensors<B: Backend>(&self, device: &B::Device) -> Vec<Tensor<B, 1>> {
        self.params
            .iter()
            .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device))
            .collect()
    }
}

/// What one online update trains on.
pub struct OnlineBatch<'a> {
    /// All synthetic images, row-major `[n, C, H, W]`.
    pub images: &'a [f32],
    /// Image shape.
    pub shape: [usize; 3],
    /// The learned labels, `[n, k]`.
    pub labels: &'a [f32],
    /// Rows per update (all when fewer).
    pub batch: usize,
    /// Adam's rate.
    pub lr: f64,
    /// Per-sample augmentation, if any.
    pub dsa: Option<&'a Dsa>,
}

/// The pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Its members.
    pub members: Vec<Member>,
}

impl Pool {
    /// `size` fresh networks of `spec` with staggered step counters.
    pub fn new<R: Rng>(spec: &ModelSpec, size: usize, max_updates: usize, rng: &mut R) -> Self {
        let members = (0..size)
            .map(|i| Member::fresh(spec, max_updates / size.max(1) * i, rng))
            .collect();
        Pool { members }
    }

    /// Member `i`'s online update: reset past `max_updates`, else one Adam step on `b`.
    pub fn update<B: AutodiffBackend, R: Rng>(
        &mut self,
        (spec, i, max_updates): (&ModelSpec, usize, usize),
        b: &OnlineBatch<'_>,
        rng: &mut R,
        device: &B::Device,
    ) {
        if self.members[i].step > max_updates {
            self.members[i] = Member::fresh(spec, 0, rng);
            return;
        }
        let l = b.shape.iter().product::<usize>();
        let k = spec.num_classes();
        let n = b.images.len() / l;
        let bs = b.batch.min(n).max(1);
        let rows = sample(rng, n, bs).into_vec();
        let mut xs = Vec::with_capacity(bs * l);
        let mut ys = Vec::with_capacity(bs * k);
        for &r in &rows {
            xs.extend_from_slice(&b.images[r * l..(r + 1) * l]);
            ys.extend_from_slice(&b.labels[r * k..(r + 1) * k]);
        }
        let [c, h, w] = b.shape;
        let mut x =
            Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(xs, [bs, c, h, w]), device);
        if let Some(d) = b.dsa {
            x = d.draw(Some(bs), h, w, rng).apply(x);
        }
        let y = Tensor::<B, 2>::from_data(TensorData::new(ys, [bs, k]), device);
        let m = &mut self.members[i];
        let p: Vec<Tensor<B, 1>> = m
            .tensors::<B>(device)
            .into_iter()
            .map(|t| t.require_grad())
            .collect();
        let mut bufs = spec.buffer_tensors::<B>(device);
        let out = forward(spec, &p, &mut bufs, Tensor::from_inner(x), Mode::Train);
        let loss = (out - y).powf_scalar(2.0).sum() * (0.5 / bs as f64);
        let grads = loss.backward();
        let g: Vec<Vec<f32>> = p
            .iter()
            .zip(&m.params)
            .map(|(t, v)| {
                t.grad(&grads)
                    .map(host)
                    .unwrap_or_else(|| vec![0.0; v.len()])
            })
            .collect();
        m.opt.step(&mut m.params, &g, b.lr, false);
        m.step += 1;
    }

    /// The pool as checkpoint tensors (`frepo.pool.*`, one row per member).
    pub fn to_extras(&self) -> Extras {
        let p = self.members.len();
        let flat = |f: &dyn Fn(&Member) -> &Vec<Vec<f32>>| -> Vec<f32> {
            self.members
                .iter()
                .flat_map(|m| f(m).iter().flatten().copied())
                .collect()
        };
        let n = self
            .members
            .first()
            .map_or(0, |m| m.params.iter().map(Vec::len).sum());
        let counts: Vec<f32> = self
            .members
            .iter()
            .flat_map(|m| [m.step as f32, m.opt.t as f32])
            .collect();
        vec![
            ("frepo.pool.params".into(), vec![p, n], flat(&|m| &m.params)),
            ("frepo.pool.adam_m".into(), vec![p, n], flat(&|m| &m.opt.m)),
            ("frepo.pool.adam_v".into(), vec![p, n], flat(&|m| &m.opt.v)),
            ("frepo.pool.counts".into(), vec![p, 2], counts),
        ]
    }

    /// The pool a checkpoint's extras hold, for networks of `spec`.
    pub fn from_extras(extras: &Extras, spec: &ModelSpec) -> Result<Self> {
        let find = |name: &str| {
            find_extra(extras, name)
                .ok_or_else(|| Error::Checkpoint(format!("the FRePo checkpoint lacks `{name}`")))
        };
        let (shape, params) = find("frepo.pool.params")?;
        let (_, m) = find("frepo.pool.adam_m")?;
        let (_, v) = find("frepo.pool.adam_v")?;
        let (_, counts) = find("frepo.pool.counts")?;
        let lens = spec.param_lens();
        let n: usize = lens.iter().sum();
        let p = shape.first().copied().unwrap_or(0);
        if shape != [p, n] || m.len() != p * n || v.len() != p * n || counts.len() != 2 * p {
            return Err(Error::Checkpoint(format!(
                "the FRePo pool in the checkpoint has shape {shape:?}; this network needs [members, {n}]"
            )));
        }
        let members = (0..p)
            .map(|i| Member {
                params: row_pieces(params, i, &lens),
                opt: Moments {
                    m: row_pieces(m, i, &lens),
                    v: row_pieces(v, i, &lens),
                    t: counts[2 * i + 1] as u64,
                },
                step: counts[2 * i] as usize,
            })
            .collect();
        Ok(Pool { members })
    }
}
