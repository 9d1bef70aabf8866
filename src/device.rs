//! Backend choice at run time: the CPU backend always; CUDA when built with `--features cuda` and
//! a driver is present (probed first, since burn-cuda loads libcuda lazily and panics without it).

use crate::error::{Error, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// The CPU backend used by default.
pub type Cpu = burn::backend::Flex;

/// The CPU autodiff backend a device's results are checked against.
pub type Reference = Autodiff<Cpu>;

/// Which device a scenario runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// The CPU backend (always available).
    #[default]
    Cpu,
    /// An NVIDIA GPU through burn-cuda (needs `--features cuda` and a driver).
    Cuda,
    /// The same GPU backend without burn's kernel fusion: more, smaller kernel launches, but far
    /// fewer distinct kernels to compile when a graph is long and varied (MTT's unrolled steps).
    CudaUnfused,
}

impl DeviceKind {
    /// The name a scenario file uses (`cpu`, `cuda`, `cuda-unfused`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::CudaUnfused => "cuda-unfused",
        }
    }
}

/// Work that runs on whichever backend the scenario asks for.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on autodiff backend `B` with `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device, backend_name: &str) -> Self::Output;
}

/// A device kind that [`check`] found usable; [`dispatch`] takes only this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available(DeviceKind);

/// Checks that `kind` can be used in this build on this machine.
pub fn check(kind: DeviceKind) -> Result<Available> {
    match kind {
        DeviceKind::Cpu => Ok(Available(kind)),
        DeviceKind::Cuda | DeviceKind::CudaUnfused => cuda_probe().map(|_| Available(kind)),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_probe() -> Result<()> {
    Err(Error::Device(
        "device = \"cuda\" (or \"cuda-unfused\") needs a build with CUDA support: cargo build --release --features cuda"
            .into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda_probe() -> Result<()> {
    use burn::prelude::*;
    use std::sync::{Arc, Mutex};
    // burn-cuda loads libcuda lazily and panics, possibly on a worker thread, when it is missing:
    // silence panics during the probe and keep their messages to explain the failure.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    let record = seen.clone();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        if let Ok(mut v) = record.lock() {
            v.push(msg);
        }
    }));
    let r = std::panic::catch_unwind(|| {
        let dev = burn::backend::cuda::CudaDevice::default();
        let t = Tensor::<burn::backend::Cuda, 1>::from_floats([1.0, 2.0], &dev);
        t.sum().into_scalar()
    });
    std::panic::set_hook(hook);
    match r {
        Ok(_) => Ok(()),
        Err(_) => {
            let msgs = seen.lock().map(|v| v.join("; ")).unwrap_or_default();
            Err(Error::Device(format!(
                "no usable CUDA device (is an NVIDIA GPU with its driver present?): {msgs}"
            )))
        }
    }
}

/// burn's CUDA backend without the fusion layer (`device = "cuda-unfused"`).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// Runs `job` on the backend of a checked device.
pub fn dispatch<J: BackendJob>(device: Available, job: J) -> J::Output {
    match device.0 {
        DeviceKind::Cpu => job.run::<Autodiff<Cpu>>(Default::default(), "cpu (flex)"),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => job.run::<Autodiff<burn::backend::Cuda>>(
            burn::backend::cuda::CudaDevice::default(),
            "cuda",
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::CudaUnfused => job.run::<Autodiff<CudaUnfused>>(
            burn::backend::cuda::CudaDevice::default(),
            "cuda-unfused",
        ),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda | DeviceKind::CudaUnfused => {
            unreachable!("check() refuses cuda without the feature")
        }
    }
}

/// Worker threads for independent pieces of work (DM classes, evaluation networks): the
/// `DISTILLERY_THREADS` environment variable, else the number of cores. Results never depend on it.
pub fn worker_threads() -> usize {
    std::env::var("DISTILLERY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `f(0..n)` on up to [`worker_threads`] threads and returns the results in index order.
pub fn par_map<T: Send, F: Fn(usize) -> T + Sync>(n: usize, f: F) -> Vec<T> {
    let threads = worker_threads().min(n).max(1);
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            break mine;
                        }
                        mine.push((i, f(i)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}
