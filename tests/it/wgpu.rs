//! The wgpu backend (`--features wgpu`) on a Vulkan adapter: a GPU's, or Mesa's software driver
//! lavapipe (Debian: mesa-vulkan-drivers) in CI: the device is a clear error or runs, and the
//! doctor's every block agrees with the CPU (whole DM, MTT and SelMatch runs on the device are
//! compared with the CPU's in docs/results.md, by hand: too slow for CI). Where no adapter is
//! present, each test says "skipped: no Vulkan adapter" and passes: `.ci/run` installs the driver
//! when it can, and says which happened.

use distillery::device::{self, DeviceKind};
use distillery::diagnostics::doctor::{doctor, DoctorConfig};

/// True when a wgpu adapter is usable; otherwise says the test is skipped.
fn adapter(test: &str) -> bool {
    if device::wgpu_available() {
        return true;
    }
    eprintln!("{test}: skipped: no Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
    false
}

#[test]
fn wgpu_without_an_adapter_is_a_clear_error_or_runs() {
    match device::check(DeviceKind::Wgpu) {
        Ok(_) => assert!(device::wgpu_available()),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("no usable wgpu adapter"), "{e}");
            assert!(e.contains("mesa-vulkan-drivers"), "{e}");
        }
    }
}

#[test]
fn doctor_on_wgpu_every_block_agrees_with_the_cpu() {
    if !adapter("doctor_on_wgpu_every_block_agrees_with_the_cpu") {
        return;
    }
    let cfg = DoctorConfig {
        shape: [1, 8, 8],
        width: 8,
        batch: 8,
        syn_steps: 2,
        seed: 1,
    };
    let rows = doctor(DeviceKind::Wgpu, &cfg).expect("the wgpu device runs");
    assert_eq!(rows.len(), 70);
    for r in &rows {
        assert!(r.norm > 0.0 && r.norm.is_finite(), "{r:?}");
        assert!(r.ok(), "{r:?}");
    }
    // Every method's blocks are among them, each compared with the CPU.
    for block in [
        "DM embedding",
        "DM loss image grad",
        "MTT unrolled student, hand-written (conv)",
        "MTT step image grad, nested autodiff",
        "MTT step syn_lr grad",
        "SelMatch partial update: images",
        "evaluation training steps: parameters",
        "evaluation logits",
    ] {
        assert!(
            rows.iter()
                .any(|r| r.name.starts_with(block) && r.against == "cpu"),
            "{block} missing"
        );
    }
}
