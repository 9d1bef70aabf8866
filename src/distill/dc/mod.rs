//! DC and DSA, dataset condensation by gradient matching (Zhao, Mopuri & Bilen, ICLR 2021; Zhao
//! & Bilen, ICML 2021), as the reference `main.py` runs it (REFERENCE.md §1.4). Each iteration
//! draws a fresh network; `outer_loop` times it matches, class by class, the network's parameter
//! gradient on `batch_real` real images against its gradient on the class's synthetic images
//! (the layer-wise distance of [`matching`]), under one shared DSA draw (Siamese), and moves the
//! images one SGD step (momentum 0.5) down the summed distance; between matching steps the
//! network trains `inner_loop` epochs on the synthetic set (SGD `lr_net`, per-sample DSA).

pub mod matching;
pub mod settings;

pub use settings::{loops, DcConfig, DcSettings};

use super::{
    finished, initial_checkpoint, starting_checkpoint, Checkpoint, Ctx, Distiller, Event,
    SyntheticSet,
};
use crate::data::augment::Draw;
use crate::data::Dataset;
use crate::device::par_map;
use crate::error::{Error, Result};
use crate::model::layers::one_hot;
use crate::model::{host, Model};
use crate::rng::step_seed;
use crate::train::events::Flow;
use crate::train::{batch_images, train_step, Sgd};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;

/// The DC/DSA distiller.
#[derive(Clone, Debug)]
pub struct Dc {
    /// Its settings, network and augmentation.
    pub cfg: DcConfig,
}

/// One matching step's draws: each class's real indices and its Siamese DSA draw.
struct MatchDraw {
    real: Vec<Vec<usize>>,
    draws: Vec<Option<Draw>>,
}

fn draw_match(
    cfg: &DcConfig,
    classes: &[Vec<usize>],
    hw: (usize, usize),
    rng: &mut StdRng,
) -> MatchDraw {
    let batch = cfg.settings.batch_real;
    let mut real = Vec::with_capacity(classes.len());
    let mut draws = Vec::with_capacity(classes.len());
    for cls in classes {
        let mut idx: Vec<usize> = cls
            .choose_multiple(rng, batch.min(cls.len()))
            .copied()
            .collect();
        idx.shuffle(rng);
        real.push(idx);
        draws.push(cfg.dsa.as_ref().map(|d| d.draw(None, hw.0, hw.1, rng)));
    }
    MatchDraw { real, draws }
}

/// The images of class `c` (the set is grouped by class, `ipc` each) as `[ipc, C, H, W]`.
fn class_rows<B: Backend>(syn: &Tensor<B, 4>, c: usize, ipc: usize) -> Tensor<B, 4> {
    syn.clone().narrow(0, c * ipc, ipc)
}

/// One matching step: the summed distance over classes and its gradient with respect to the
/// whole set (classes in parallel; they share nothing but the network).
fn match_step<B: AutodiffBackend>(
    cfg: &DcConfig,
    data: &Dataset,
    params: &[Tensor<B::InnerBackend, 1>],
    syn: &Tensor<B::InnerBackend, 4>,
    (ipc, d): (usize, &MatchDraw),
) -> (f64, Tensor<B::InnerBackend, 4>) {
    let device = syn.device();
    let hand = cfg.settings.hand_written_backward;
    let per: Vec<(f64, Tensor<B::InnerBackend, 4>)> = par_map(d.real.len(), |c| {
        let real = batch_images::<B::InnerBackend>(data, &d.real[c], &device);
        let rows = class_rows(syn, c, ipc);
        let pair = (real, rows);
        matching::class_loss::<B>(&cfg.spec, params, pair, c, d.draws[c].as_ref(), hand)
    });
    let value = per.iter().map(|(v, _)| v).sum();
    let grad = Tensor::cat(per.into_iter().map(|(_, g)| g).collect(), 0);
    (value, grad)
}

/// `epochs` epochs of SGD (`lr_net`, no momentum) on the synthetic set, per-sample DSA.
fn train_net<B: AutodiffBackend>(
    cfg: &DcConfig,
    model: &mut Model<B::InnerBackend>,
    syn: &Tensor<B::InnerBackend, 4>,
    labels: &[usize],
    epochs: usize,
    rng: &mut StdRng,
) {
    let st = &cfg.settings;
    let device = syn.device();
    let [n, _, h, w] = syn.dims();
    let k = cfg.spec.num_classes();
    let mut opt = Sgd::new(0.0, 0.0);
    for _ in 0..epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        for rows in order.chunks(st.batch_train) {
            let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            let idx = Tensor::<B::InnerBackend, 1, Int>::from_data(
                TensorData::new(idx, [rows.len()]),
                &device,
            );
            let mut x = syn.clone().select(0, idx);
            if let Some(dsa) = &cfg.dsa {
                x = dsa.draw(Some(rows.len()), h, w, rng).apply(x);
            }
            let ys: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
            let y = one_hot::<B>(&ys, k, &device);
            train_step::<B>(model, &mut opt, Tensor::from_inner(x), y, st.lr_net);
        }
    }
}

/// One iteration from the images `syn` with momentum `mom`: a fresh network, `outer` matching
/// steps with `inner` training epochs between them. Returns the mean distance per class and step.
#[allow(clippy::too_many_arguments)]
fn iteration<B: AutodiffBackend>(
    cfg: &DcConfig,
    data: &Dataset,
    classes: &[Vec<usize>],
    (ipc, labels): (usize, &[usize]),
    (syn, mom): (
        &mut Tensor<B::InnerBackend, 4>,
        &mut Tensor<B::InnerBackend, 4>,
    ),
    (outer, inner): (usize, usize),
    seed: u64,
    it: usize,
) -> f64 {
    let st = &cfg.settings;
    let device = syn.device();
    let mut rng = StdRng::seed_from_u64(step_seed(seed ^ 0xdc, it as u64));
    let mut model = cfg.spec.init::<B::InnerBackend, _>(&mut rng, &device);
    let [_, h, w] = data.shape;
    let mut total = 0.0;
    for ol in 0..outer {
        let d = draw_match(cfg, classes, (h, w), &mut rng);
        let (value, g) = match_step::<B>(cfg, data, &model.params, syn, (ipc, &d));
        total += value;
        *mom = mom.clone() * st.momentum + g;
        *syn = syn.clone() - mom.clone() * st.lr_img;
        if ol + 1 == outer {
            break;
        }
        train_net::<B>(cfg, &mut model, syn, labels, inner, &mut rng);
    }
    total / (outer * classes.len()) as f64
}

impl<B: AutodiffBackend> Distiller<B> for Dc {
    fn name(&self) -> &'static str {
        "dc"
    }

    fn distill(
        &mut self,
        data: &Dataset,
        ipc: usize,
        ctx: &mut Ctx<'_, B>,
    ) -> Result<SyntheticSet> {
        let st = self.cfg.settings.clone();
        let start = starting_checkpoint(data, ipc, ctx, |ctx| {
            initial_checkpoint(data, ipc, st.init, &self.cfg.spec, st.pool, "dc", ctx)
        })?;
        let classes = data.class_indices();
        let done = start.set.provenance.iterations;
        let device = ctx.device.clone();
        let [c, h, w] = data.shape;
        let shape = [start.set.len(), c, h, w];
        let tensor = |v: &[f32]| {
            Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(v.to_vec(), shape), &device)
        };
        let mut syn = tensor(&start.set.images);
        let mut mom = tensor(&start.momentum);
        let labels = start.set.labels.clone();
        let loops = st.loops_at(ipc);
        let mut reached = st.iterations.max(done);
        for it in done..st.iterations {
            let state = (&mut syn, &mut mom);
            let value = iteration::<B>(
                &self.cfg,
                data,
                &classes,
                (ipc, &labels),
                state,
                loops,
                ctx.seed,
                it,
            );
            if !value.is_finite() {
                return Err(Error::Numerics(format!(
                    "the DC matching loss became {value} at iteration {}: lower lr_img",
                    it + 1
                )));
            }
            let snapshot = || {
                let mut set = start.set.clone();
                set.images = host(syn.clone());
                set.provenance.iterations = it + 1;
                Checkpoint {
                    set,
                    momentum: host(mom.clone()),
                    lr_momentum: 0.0,
                    extras: Vec::new(),
                }
            };
            let event = Event::Iteration {
                iteration: it + 1,
                loss: value,
                snapshot: &snapshot,
            };
            if ctx.report(event)? == Flow::Stop {
                reached = it + 1;
                break;
            }
        }
        let mut set = start.set;
        set.images = host(syn);
        finished(set, reached)
    }
}
