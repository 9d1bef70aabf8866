//! Fixtures shared by several areas: a tiny ConvNet, experts trained on synthetic 8x8 data, and
//! running scenario text in a results folder.
#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use distillery::data::{self, Dataset};
use distillery::distill::mtt::experts::{
    expert_path, train_experts, ExpertPlan, Manifest, Trajectory,
};
use distillery::distill::{Checkpoint, Ctx, DistillObserver, Event};
use distillery::experiment::{self, RunOptions, RunOutput};
use distillery::model::{ConvNetSpec, ModelSpec, Norm, Pooling};
use distillery::scenario;
use distillery::train::events::Flow;
use distillery::train::{LrSchedule, TrainConfig};
use std::path::Path;

/// The CPU autodiff backend the tests run on.
pub type AD = Autodiff<Flex>;

/// Runs scenario `text` with results under `root`, quietly.
pub fn run_text(text: &str, root: &Path) -> RunOutput {
    let l = scenario::parse(text, Path::new("test.toml")).unwrap();
    experiment::run(&l, &RunOptions::quiet(root)).unwrap()
}

/// A context nobody listens to (yet), seeded `seed`.
pub fn quiet_ctx<'a>(seed: u64) -> Ctx<'a, AD> {
    Ctx::quiet(Default::default(), seed, "synthetic")
}

/// ConvNet of width 8 and depth 2 on 1x8x8 images, 3 classes.
pub fn spec() -> ModelSpec {
    ModelSpec::ConvNet(ConvNetSpec {
        input: [1, 8, 8],
        num_classes: 3,
        width: 8,
        depth: 2,
        norm: Norm::Instance,
        pooling: Pooling::Avg,
    })
}

/// `train` normalised synthetic images (3 classes) and `count` experts of `epochs` epochs
/// trained on them (SGD lr 0.05, batch 32, no DSA, seed 1).
pub fn experts(train: usize, epochs: usize, count: usize) -> (Dataset, Vec<Trajectory>) {
    let mut d = data::synthetic::generate(train, [1, 8, 8], 3, 0.4, 3);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let dir = tempfile::tempdir().unwrap();
    let plan = ExpertPlan {
        dir: dir.path().to_path_buf(),
        manifest: Manifest {
            spec: spec(),
            dataset: "synthetic".into(),
            fingerprint: format!("{:016x}", d.fingerprint()),
            train_images: d.len(),
            train: TrainConfig {
                epochs,
                batch_size: 32,
                lr: 0.05,
                momentum: 0.0,
                weight_decay: 0.0,
                schedule: LrSchedule::Constant,
            },
            dsa: None,
            seed: 1,
        },
        count,
        dsa: None,
    };
    train_experts::<AD>(&d, &plan, &mut quiet_ctx(0)).unwrap();
    let experts = (0..count)
        .map(|i| {
            Trajectory::load(&plan.manifest.spec, epochs, &expert_path(dir.path(), i)).unwrap()
        })
        .collect();
    (d, experts)
}

/// The experts of `plan` trained on `d` where missing; the indices of those trained, in the
/// order their events came.
pub fn train_counting(d: &Dataset, plan: &ExpertPlan) -> distillery::Result<Vec<usize>> {
    let mut made = Vec::new();
    let mut obs = |e: distillery::distill::Event<'_>| {
        if let distillery::distill::Event::ExpertTrained { index, .. } = e {
            made.push(index);
        }
        Ok(distillery::train::events::Flow::Continue)
    };
    let mut ctx = quiet_ctx(0);
    ctx.observer = Some(&mut obs);
    train_experts::<AD>(d, plan, &mut ctx)?;
    drop(ctx);
    Ok(made)
}

/// An observer that hands each iteration to its closure and lets every other event pass.
pub struct Iterations<F>(pub F);

impl<'e, F> distillery::train::events::Observer<Event<'e>> for Iterations<F>
where
    F: FnMut(usize, f64, &dyn Fn() -> Checkpoint) -> distillery::Result<Flow>,
{
    fn notify(&mut self, e: Event<'e>) -> distillery::Result<Flow> {
        match e {
            Event::Iteration {
                iteration,
                loss,
                snapshot,
            } => (self.0)(iteration, loss, snapshot),
            _ => Ok(Flow::Continue),
        }
    }
}

/// [`Iterations`] of `f`.
pub fn iterations<F>(f: F) -> Iterations<F>
where
    F: FnMut(usize, f64, &dyn Fn() -> Checkpoint) -> distillery::Result<Flow>,
{
    Iterations(f)
}

/// A context seeded `seed` whose events go to `obs`, resuming from `resume`.
pub fn ctx<'a>(
    seed: u64,
    obs: &'a mut DistillObserver<'a>,
    resume: Option<Checkpoint>,
) -> Ctx<'a, AD> {
    let mut c = quiet_ctx(seed);
    c.observer = Some(obs);
    c.resume = resume;
    c
}

/// What an SVG plot of `report::plot` holds, read back with an XML parser: its line series
/// (polylines) and heatmap cells (rects other than the background and the frame).
pub fn svg_shapes(path: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not SVG: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let count = |tag: &str, pred: &dyn Fn(roxmltree::Node) -> bool| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == tag && pred(*n))
            .count()
    };
    let lines = count("polyline", &|_| true);
    let cells = count("rect", &|n| {
        n.attribute("width") != Some("100%") && n.attribute("fill") != Some("none")
    });
    (lines, cells)
}
