//! One MTT matching iteration (MNIST shape 1x28x28, 10 classes, IPC 10, ConvNet-3, DSA) at
//! syn_steps 10 / 20 / 30: median seconds per iteration and the process's peak resident memory
//! (each setting runs in a fresh process, so the peaks do not mix).
//!
//! cargo bench --bench mtt                      # width 128 (the reference), 2 iterations each
//! cargo bench --bench mtt -- --width 32 --iters 3 --steps 10,20,30
//! cargo bench --bench mtt -- --nested          # nested autodiff instead of the hand-written backward
//! cargo bench --bench mtt -- --matmul          # hand-written, conv_grads = "matmul"
//! cargo bench --bench mtt --features cuda -- --device cuda   # on an NVIDIA GPU (or cuda-unfused)
//! MTT_BENCH_EACH=1 also prints every iteration's time as it ends (the untimed first one included).
//! Worker threads: DISTILLERY_THREADS. Linux only for the memory figure (/proc/self/status); on
//! CUDA the figure is host memory, not the GPU's.

use burn::tensor::backend::AutodiffBackend;
use distillery::data::augment::{Dsa, STRATEGY_DIGITS};
use distillery::device::{self, BackendJob, DeviceKind};
use distillery::distill::mtt::experts::{Experts, Trajectory};
use distillery::distill::mtt::{Mtt, MttConfig, MttSettings};
use distillery::distill::{Ctx, Distiller, Event};
use distillery::model::backward::ConvGrads;
use distillery::model::{ConvNetSpec, ModelSpec};
use distillery::train::events::Flow;
use distillery::{data, Error};
use rand::{Rng, SeedableRng};
use std::time::Instant;

mod common;
use common::peak_rss_mib;

/// One benchmark setting.
struct Setting {
    width: usize,
    steps: usize,
    iters: usize,
    ipc: usize,
    manual: bool,
    conv_grads: ConvGrads,
}

/// Runs `iters` timed iterations (after one untimed warm-up) on backend `B`.
fn one<B: AutodiffBackend>(device: B::Device, label: &str, set: &Setting) {
    let Setting {
        width,
        steps,
        iters,
        ipc,
        manual,
        conv_grads,
    } = *set;
    let mut d = data::synthetic::generate(10 * ipc.max(20), [1, 28, 28], 10, 0.3, 0);
    let norm = d.channel_stats();
    d.normalize(&norm);
    let spec = ModelSpec::ConvNet(ConvNetSpec {
        width,
        ..ConvNetSpec::reference([1, 28, 28], 10)
    });
    // A synthetic two-epoch "expert": its initialisation and a nearby point.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let p0 = spec.init_host(&mut rng);
    let p1 = p0
        .iter()
        .map(|v| {
            v.iter()
                .map(|x| x + rng.random_range(-0.01..0.01))
                .collect()
        })
        .collect();
    let settings = MttSettings {
        iterations: iters + 1,
        syn_steps: steps,
        expert_epochs: 1,
        max_start_epoch: 1,
        hand_written_backward: manual,
        conv_grads,
        ..MttSettings::default()
    };
    let cfg = MttConfig::new(settings, spec, &Dsa::new(STRATEGY_DIGITS).unwrap());
    let mut times = Vec::new();
    let mut last = Instant::now();
    let verbose = std::env::var_os("MTT_BENCH_EACH").is_some();
    let mut on = |e: Event<'_>| -> Result<Flow, Error> {
        let Event::Iteration { iteration: it, .. } = e else {
            return Ok(Flow::Continue);
        };
        let secs = last.elapsed().as_secs_f64();
        if verbose {
            // One line per iteration as it ends: on a GPU the first one includes compiling kernels.
            eprintln!("{label} syn_steps {steps} iteration {it}: {secs:.3} s");
        }
        if it > 1 {
            times.push(secs);
        }
        last = Instant::now();
        Ok(Flow::Continue)
    };
    let mut ctx = Ctx::<B>::quiet(device, 0, "synthetic");
    ctx.observer = Some(&mut on);
    Mtt::new(
        cfg,
        Experts::Loaded(vec![Trajectory {
            params: vec![p0, p1],
        }]),
    )
    .distill(&d, ipc, &mut ctx)
    .expect("MTT runs");
    drop(ctx);
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label:<6} MTT iteration, 1x28x28, IPC {ipc}, ConvNet-3 w{width}, DSA, {}, syn_steps {steps:>2}: median {:.2} s (min {:.2}, {} runs), peak RSS {:.0} MiB",
        match (manual, conv_grads) {
            (false, _) => "nested autodiff",
            (true, ConvGrads::Conv) => "hand-written backward",
            (true, ConvGrads::Matmul) => "hand-written backward (matmul conv grads)",
        },
        times[times.len() / 2],
        times[0],
        times.len(),
        peak_rss_mib()
    );
}

/// One setting, run on the backend `--device` names.
struct Bench(Setting);

impl BackendJob for Bench {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device, backend_name: &str) {
        one::<B>(device, backend_name, &self.0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let width = get("--width").and_then(|v| v.parse().ok()).unwrap_or(128);
    let iters = get("--iters").and_then(|v| v.parse().ok()).unwrap_or(2);
    let ipc = get("--ipc").and_then(|v| v.parse().ok()).unwrap_or(10);
    let nested = args.iter().any(|a| a == "--nested");
    let matmul = args.iter().any(|a| a == "--matmul");
    let device = get("--device").unwrap_or_else(|| "cpu".into());
    if let Some(s) = get("--one") {
        let set = Setting {
            width,
            steps: s.parse().expect("--one N"),
            iters,
            ipc,
            manual: !nested,
            conv_grads: if matmul {
                ConvGrads::Matmul
            } else {
                ConvGrads::Conv
            },
        };
        let kind = <DeviceKind as clap::ValueEnum>::from_str(&device, true)
            .unwrap_or_else(|e| panic!("--device {device}: {e}"));
        let available = device::check(kind).unwrap_or_else(|e| panic!("{e}"));
        device::dispatch(available, Bench(set));
        return;
    }
    let steps = get("--steps").unwrap_or_else(|| "10,20,30".into());
    let exe = std::env::current_exe().expect("own path");
    for s in steps.split(',') {
        let st = std::process::Command::new(&exe)
            .args(["--one", s, "--width", &width.to_string()])
            .args(["--iters", &iters.to_string(), "--ipc", &ipc.to_string()])
            .args(["--device", &device])
            .args(if nested { &["--nested"][..] } else { &[][..] })
            .args(if matmul { &["--matmul"][..] } else { &[][..] })
            .status()
            .expect("runs itself");
        assert!(st.success());
    }
}
