//! `distillery doctor`: the comparison arithmetic, the flagging of a disagreeing row, and the
//! probe's two-way pairs agreeing on the CPU.

use distillery::device::DeviceKind;
use distillery::diagnostics::doctor::{compare, doctor, DoctorConfig, Probe};
use distillery::distill::mtt::check::rel_err;

#[test]
fn rel_err_matches_hand_computation() {
    // ||(1,2,2) - (1,2,3)|| = 1, ||(1,2,3)|| = sqrt(14).
    let (e, n) = rel_err(&[1.0, 2.0, 2.0], &[1.0, 2.0, 3.0]);
    assert!((n - 14f64.sqrt()).abs() < 1e-12);
    assert!((e - 1.0 / 14f64.sqrt()).abs() < 1e-12);
    assert!(rel_err(&[1.0, f32::NAN], &[1.0, 1.0]).0.is_nan());
    assert!(rel_err(&[1.0], &[1.0, 1.0]).0.is_nan());
}

#[test]
fn compare_flags_only_the_row_that_differs() {
    let cpu: Probe = vec![
        (
            "conv weight grad, swapped-dims conv2d (b)".into(),
            vec![1.0, 2.0],
        ),
        ("conv weight grad, autodiff (b)".into(), vec![1.0, 2.0]),
        ("DSA crop forward".into(), vec![3.0, 4.0]),
    ];
    let mut dev = cpu.clone();
    dev[0].1 = vec![1.0, 2.5]; // the swapped-dims conv is off on the "device"
    let rows = compare(&dev, &cpu, "gpu");
    // Three device-vs-CPU rows plus one two-way pair on the device.
    assert_eq!(rows.len(), 4);
    let bad: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.against.as_str())
        .collect();
    assert_eq!(bad.len(), 2, "{rows:?}");
    assert_eq!(bad[0], "cpu");
    assert!(bad[1].starts_with("conv weight grad, autodiff (b)"));
    let e = rows[0].rel_err;
    assert!((e - 0.5 / 5f64.sqrt()).abs() < 1e-9, "{e}");
}

#[test]
fn cpu_probe_is_deterministic_and_its_two_way_pairs_agree() {
    let cfg = DoctorConfig {
        shape: [3, 8, 8],
        width: 8,
        batch: 6,
        syn_steps: 2,
        seed: 3,
    };
    let rows = doctor(DeviceKind::Cpu, &cfg).expect("the CPU runs");
    // 51 quantities against the CPU, 19 pairs computed two ways on the device.
    assert_eq!(rows.len(), 70);
    for r in &rows {
        assert!(r.norm > 0.0 && r.norm.is_finite(), "{r:?}");
        if r.against == "cpu" {
            // The same seed on the same backend gives the same numbers.
            assert_eq!(r.rel_err, 0.0, "{r:?}");
        } else {
            assert!(r.rel_err < 1e-4 && r.ok(), "{r:?}");
        }
    }
    let bad = DoctorConfig { batch: 0, ..cfg };
    let e = doctor(DeviceKind::Cpu, &bad).unwrap_err().to_string();
    assert!(e.contains("batch"), "{e}");
}
