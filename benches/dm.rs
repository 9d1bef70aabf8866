//! One DM iteration at the reference setting (MNIST shape 1x28x28, 10 classes, IPC 10,
//! batch_real 256 per class, ConvNet-3 width 128, DSA): median seconds per iteration.
//!
//! cargo bench --bench dm                         # CPU (flex)
//! cargo bench --bench dm --features cuda -- --cuda
//! Options after `--`: `--iters N` (default 3), `--ipc N`, `--batch-real N`, `--width N`.
//! Worker threads: DISTILLERY_THREADS (default: all cores).

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use distillery::data;
use distillery::data::augment::{Dsa, STRATEGY_DIGITS};
use distillery::distill::{Ctx, Distiller, Dm, DmConfig, DmSettings, Event};
use distillery::model::{ConvNetSpec, ModelSpec};
use distillery::train::events::Flow;
use std::time::Instant;

mod common;
use common::peak_rss_mib;

fn bench<B: AutodiffBackend>(
    name: &str,
    device: B::Device,
    iters: usize,
    ipc: usize,
    br: usize,
    width: usize,
) {
    let mut d = data::synthetic::generate(10 * br.max(ipc), [1, 28, 28], 10, 0.3, 0);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let spec = ModelSpec::ConvNet(ConvNetSpec {
        width,
        ..ConvNetSpec::reference([1, 28, 28], 10)
    });
    let settings = DmSettings {
        iterations: iters + 1,
        batch_real: br,
        ..DmSettings::default()
    };
    let cfg = DmConfig::new(settings, spec, &Dsa::new(STRATEGY_DIGITS).unwrap());
    let mut times = Vec::new();
    let mut last = Instant::now();
    let mut on = |e: Event<'_>| {
        // The first iteration includes warm-up (allocations, kernel compilation on CUDA).
        if let Event::Iteration { iteration, .. } = e {
            if iteration > 1 {
                times.push(last.elapsed().as_secs_f64());
            }
            last = Instant::now();
        }
        Ok(Flow::Continue)
    };
    let mut ctx = Ctx::<B>::quiet(device, 0, "synthetic");
    ctx.observer = Some(&mut on);
    Dm { cfg }.distill(&d, ipc, &mut ctx).expect("DM runs");
    drop(ctx);
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<6} DM iteration, 1x28x28, 10 classes, IPC {ipc}, batch_real {br}, ConvNet-3 w{width}, DSA, {} threads: median {:.2} s (min {:.2}, max {:.2}, {} runs), peak RSS {:.0} MiB",
        distillery::device::worker_threads(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len(),
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (iters, ipc, br, width) = (
        get("--iters", 3),
        get("--ipc", 10),
        get("--batch-real", 256),
        get("--width", 128),
    );
    if args.iter().any(|a| a == "--cuda") {
        #[cfg(feature = "cuda")]
        bench::<Autodiff<burn::backend::Cuda>>("cuda", Default::default(), iters, ipc, br, width);
        #[cfg(not(feature = "cuda"))]
        eprintln!("--cuda needs a build with --features cuda");
        return;
    }
    bench::<Autodiff<burn::backend::Flex>>("flex", Default::default(), iters, ipc, br, width);
}
