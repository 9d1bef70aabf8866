//! Backend choice at run time: the CPU backend always; CUDA when built with `--features cuda` and
//! a driver is present; wgpu (Vulkan, or Mesa's software lavapipe) when built with `--features
//! wgpu` and an adapter is present. Both GPU backends are probed first, since burn-cuda loads
//! libcuda lazily and cubecl-wgpu asks for an adapter lazily, and both panic when there is none.

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
    /// burn's wgpu backend on a Vulkan adapter, a GPU's or lavapipe's (needs `--features wgpu`).
    Wgpu,
    /// The wgpu backend without burn's kernel fusion (as `cuda-unfused` is to `cuda`).
    WgpuUnfused,
}

impl DeviceKind {
    /// The name a scenario file uses (`cpu`, `cuda`, `cuda-unfused`, `wgpu`, `wgpu-unfused`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::CudaUnfused => "cuda-unfused",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::WgpuUnfused => "wgpu-unfused",
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
        DeviceKind::Wgpu | DeviceKind::WgpuUnfused => wgpu_probe().map(|_| Available(kind)),
    }
}

/// Runs `f`, turning a panic (possibly on a worker thread the backend spawns) into the messages
/// it printed, which are silenced meanwhile.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::result::Result<T, String> {
    use std::sync::{Arc, Mutex};
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
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    r.map_err(|_| seen.lock().map(|v| v.join("; ")).unwrap_or_default())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_probe() -> Result<()> {
    Err(Error::Device(
        "device = \"wgpu\" (or \"wgpu-unfused\") needs a build with wgpu support: cargo build --release --features wgpu"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu_probe() -> Result<()> {
    use burn::prelude::*;
    // Once an adapter was found it stays: later probes (every run and every test asks) are free.
    static FOUND: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        quietly(|| {
            let dev = burn::backend::wgpu::WgpuDevice::default();
            let t = Tensor::<burn::backend::Wgpu, 1>::from_floats([1.0, 2.0], &dev);
            t.sum().into_scalar()
        })
        .map(|_| ())
    });
    found.clone().map_err(|msgs| {
        Error::Device(format!(
            "no usable wgpu adapter (a Vulkan driver: a GPU's, or Mesa's lavapipe from the \
             mesa-vulkan-drivers package): {msgs}"
        ))
    })
}

/// Whether a wgpu adapter is usable here (for tests that run only where Vulkan is).
pub fn wgpu_available() -> bool {
    wgpu_probe().is_ok()
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
    quietly(|| {
        let dev = burn::backend::cuda::CudaDevice::default();
        let t = Tensor::<burn::backend::Cuda, 1>::from_floats([1.0, 2.0], &dev);
        t.sum().into_scalar()
    })
    .map(|_| ())
    .map_err(|msgs| {
        Error::Device(format!(
            "no usable CUDA device (is an NVIDIA GPU with its driver present?): {msgs}"
        ))
    })
}

/// burn's CUDA backend without the fusion layer (`device = "cuda-unfused"`).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// burn's wgpu backend without the fusion layer (`device = "wgpu-unfused"`).
#[cfg(feature = "wgpu")]
pub type WgpuUnfused = burn_cubecl::CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;

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
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => job.run::<Autodiff<burn::backend::Wgpu>>(
            burn::backend::wgpu::WgpuDevice::default(),
            "wgpu",
        ),
        #[cfg(feature = "wgpu")]
        DeviceKind::WgpuUnfused => job.run::<Autodiff<WgpuUnfused>>(
            burn::backend::wgpu::WgpuDevice::default(),
            "wgpu-unfused",
        ),
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Wgpu | DeviceKind::WgpuUnfused => {
            unreachable!("check() refuses wgpu without the feature")
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
