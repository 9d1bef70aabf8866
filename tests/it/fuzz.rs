//! Fuzzing every decoder (proptest): random bytes and mutations of valid inputs fed to client
//! updates and round tasks (protobuf), synthetic sets, checkpoints and expert trajectories
//! (safetensors), IDX and CIFAR files and scenario text ([`crate::fuzz_state`]: run checkpoints
//! and remote clients' state files). Each must return, never panic, never make one allocation
//! beyond a bound set by its input (a counting allocator checks), and name the problem when it
//! refuses. The default 256 cases a property keep the module within seconds;
//! `PROPTEST_CASES=100000 cargo test --release --test it fuzz` runs a long sitting.

use crate::common::spec;
use distillery::data::{cifar, idx, Dataset};
use distillery::distill::mtt::experts::Trajectory;
use distillery::distill::{Checkpoint, SyntheticSet};
use distillery::fed::message::Weights;
use distillery::fed::pb;
use distillery::fed::protocol::{
    decode_tensor, decode_update, encode_set, encode_weights, task_from, Expect, Quantization,
};
use distillery::model::ModelSpec;
use proptest::prelude::*;
use prost::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, noting the largest single allocation of each thread.
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping touches
// only a const-initialised thread-local cell (no allocation, no destructor).
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new)));
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// Runs `f` and returns its result and the largest single allocation it made on this thread.
pub fn largest<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let v = f();
    (v, LARGEST.with(Cell::get))
}

/// Decoders may allocate a few times their input (f32 values from u8 bytes, parsed headers),
/// never what a header merely claims.
pub fn bound(input: usize) -> usize {
    16 * input + (1 << 20)
}

/// Flips, overwrites, inserts and deletes bytes of `base` (indices taken modulo its length).
pub fn mutate(mut base: Vec<u8>, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, byte) in edits {
        let i = if base.is_empty() { 0 } else { at % base.len() };
        match kind % 5 {
            0 if !base.is_empty() => base[i] ^= 1 << (byte % 8),
            1 if !base.is_empty() => base[i] = byte,
            2 => base.insert(i.min(base.len()), byte),
            3 if !base.is_empty() => {
                base.remove(i);
            }
            // Large values where lengths and dimensions live.
            _ if base.len() >= i + 4 => base[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]),
            _ => {}
        }
    }
    base
}

pub fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec(any::<(u8, usize, u8)>(), 1..8)
}

fn expect() -> Expect {
    Expect {
        weights: Weights {
            params: vec![vec![0.0; 12], vec![0.0; 3]],
            buffers: vec![vec![0.0; 2]],
        },
        shape: [1, 2, 2],
        classes: vec!["a".into(), "b".into(), "c".into()],
    }
}

fn valid_updates() -> Vec<Vec<u8>> {
    let w = Weights {
        params: vec![
            (0..12).map(|i| i as f32 * 0.1).collect(),
            vec![1.0, 2.0, 3.0],
        ],
        buffers: vec![vec![0.5, 0.25]],
    };
    let set = Dataset {
        images: (0..12).map(|i| i as f32 / 12.0).collect(),
        labels: vec![0, 2, 1],
        shape: [1, 2, 2],
        classes: expect().classes,
    };
    let mut out = Vec::new();
    for q in [Quantization::F32, Quantization::F16, Quantization::U8] {
        for payload in [
            pb::client_update::Payload::Weights(encode_weights(&w, q)),
            pb::client_update::Payload::Synthetic(encode_set(&set, Some(0.01), q)),
        ] {
            let u = pb::ClientUpdate {
                client_id: 1,
                round: 2,
                num_samples: 40,
                payload: Some(payload),
                compute_seconds: 0.5,
            };
            out.push(u.encode_to_vec());
        }
    }
    out
}

/// Checks one decoded update (or its refusal): the largest allocation within bounds, and an
/// accepted one consistent with what was expected.
fn check_update(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (r, big) = largest(|| decode_update(bytes, 1, 2, 1 << 20, &expect()));
    prop_assert!(
        big <= bound(bytes.len()),
        "{big} bytes for {} input",
        bytes.len()
    );
    match r {
        Ok(u) => match u.payload {
            distillery::fed::message::Payload::Weights(w) => {
                prop_assert_eq!(w.params.iter().map(Vec::len).collect::<Vec<_>>(), [12, 3]);
                prop_assert!(w.params.iter().flatten().all(|v| v.is_finite()));
            }
            distillery::fed::message::Payload::Set(s) => {
                let d = s.data;
                prop_assert_eq!(d.images.len(), d.labels.len() * 4);
                prop_assert!(d.labels.iter().all(|&y| y < 3));
            }
            distillery::fed::message::Payload::Failed(_) => prop_assert!(false, "a failure"),
        },
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

fn set_bytes(extras: bool) -> Vec<u8> {
    let set = SyntheticSet {
        images: (0..3 * 4).map(|i| (i as f32 * 0.37).sin()).collect(),
        shape: [1, 2, 2],
        labels: vec![2, 0, 1],
        soft_labels: Some((0..9).map(|i| i as f32 / 9.0).collect()),
        syn_lr: Some(0.0123),
        fixed: Some(vec![true, false, true]),
        provenance: distillery::distill::Provenance {
            method: "dm".into(),
            ipc: 1,
            dataset: "synthetic".into(),
            seed: 5,
            iterations: 7,
            classes: vec!["a".into(), "b".into(), "c".into()],
            normalization: None,
            expand: 1,
        },
    };
    let extra = if extras {
        vec![
            ("momentum".to_string(), vec![3, 1, 2, 2], vec![0.5; 12]),
            ("lr_momentum".to_string(), vec![1], vec![0.25]),
        ]
    } else {
        Vec::new()
    };
    set.encode(&extra).unwrap()
}

fn trajectory_bytes(spec: &ModelSpec) -> Vec<u8> {
    let sizes: Vec<usize> = spec
        .params()
        .iter()
        .map(|p| p.shape.iter().product())
        .collect();
    let params = (0..2)
        .map(|e| sizes.iter().map(|&n| vec![e as f32 * 0.5; n]).collect())
        .collect();
    Trajectory { params }.encode(spec).unwrap()
}

/// Writes `bytes` to a fresh file and runs `f` on its path.
fn on_file<T>(bytes: &[u8], f: impl FnOnce(&std::path::Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fuzz.bin");
    std::fs::write(&p, bytes).unwrap();
    f(&p)
}

fn scenario_texts() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Replaces the `k`th number of `text` with `with` (the numbers that size things are where
/// overflow and huge allocations hide).
fn replace_number(text: &str, k: usize, with: &str) -> String {
    let spans: Vec<(usize, usize)> = {
        let b = text.as_bytes();
        let mut v = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                let s = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                v.push((s, i));
            } else {
                i += 1;
            }
        }
        v
    };
    if spans.is_empty() {
        return text.to_string();
    }
    let (s, e) = spans[k % spans.len()];
    format!("{}{with}{}", &text[..s], &text[e..])
}

proptest! {
    #[test]
    fn random_bytes_are_refused_as_updates(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_update(&bytes)?;
    }

    #[test]
    fn mutated_updates_decode_or_are_refused(which in 0usize..6, e in edits()) {
        let bytes = mutate(valid_updates()[which].clone(), &e);
        check_update(&bytes)?;
    }

    #[test]
    fn mutated_tasks_decode_or_are_refused(e in edits()) {
        let x = expect();
        let t = pb::RoundTask {
            round: 1,
            strategy: "fedavg".into(),
            global: Some(encode_weights(&x.weights, Quantization::F16)),
            done: false,
            seq: 3,
            task: 0,
        };
        let bytes = mutate(t.encode_to_vec(), &e);
        let (r, big) = largest(|| pb::RoundTask::decode(bytes.as_slice()).map(|m| task_from(&m, &x)));
        prop_assert!(big <= bound(bytes.len()));
        if let Ok(Ok(task)) = r {
            let g = task.global.unwrap_or_else(|| x.weights.clone());
            prop_assert_eq!(g.params.iter().map(Vec::len).collect::<Vec<_>>(), [12, 3]);
        }
    }

    #[test]
    fn tensors_claiming_any_shape_are_checked_before_allocating(
        shape in prop::collection::vec(any::<u32>(), 0..6),
        enc in 0i32..4,
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let t = pb::Tensor { shape, encoding: enc, scale: 1.0, offset: 0.0, data };
        let (r, big) = largest(|| decode_tensor(&t));
        prop_assert!(big <= bound(t.data.len() + 4 * t.shape.len()));
        if let Ok((v, s)) = r {
            prop_assert_eq!(v.len(), s.iter().product::<usize>());
        }
    }

    #[test]
    fn mutated_synthetic_sets_and_checkpoints_load_or_are_refused(
        extras in any::<bool>(),
        e in edits(),
    ) {
        let bytes = mutate(set_bytes(extras), &e);
        let (r, big) = largest(|| SyntheticSet::decode(&bytes));
        prop_assert!(big <= bound(bytes.len()));
        match r {
            Ok((s, _)) => {
                let [c, h, w] = s.shape;
                prop_assert_eq!(s.images.len(), s.labels.len() * c * h * w);
                prop_assert!(s.labels.iter().all(|&y| y < s.provenance.classes.len()));
            }
            Err(m) => prop_assert!(!m.is_empty()),
        }
        let (r, big) = largest(|| on_file(&bytes, Checkpoint::load));
        prop_assert!(big <= bound(bytes.len()));
        if let Ok(c) = r {
            prop_assert_eq!(c.momentum.len(), c.set.images.len());
        }
    }

    #[test]
    fn random_bytes_are_refused_as_synthetic_sets(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (r, big) = largest(|| SyntheticSet::decode(&bytes));
        prop_assert!(big <= bound(bytes.len()));
        prop_assert!(r.is_err());
    }

    #[test]
    fn mutated_trajectories_load_or_are_refused(e in edits()) {
        let s = spec();
        let bytes = mutate(trajectory_bytes(&s), &e);
        let (r, big) = largest(|| on_file(&bytes, |p| Trajectory::load(&s, 1, p)));
        prop_assert!(big <= bound(bytes.len()));
        match r {
            Ok(t) => prop_assert_eq!(t.params.len(), 2),
            Err(err) => prop_assert!(err.to_string().contains("fuzz.bin"), "{}", err),
        }
    }

    #[test]
    fn idx_headers_and_bodies_are_checked(
        dims in prop::collection::vec(any::<u32>(), 3),
        n_labels in any::<u32>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        e in edits(),
    ) {
        let (im, lb) = idx::encode(dims[0] as usize, dims[1] as usize, dims[2] as usize, &body, &body[..body.len().min(8)]);
        let mut lb = lb;
        lb[4..8].copy_from_slice(&n_labels.to_be_bytes());
        let im = mutate(im, &e);
        let (r, big) = largest(|| idx::dataset_from_bytes(&im, &lb, 255.0, "mnist"));
        prop_assert!(big <= bound(im.len() + lb.len()));
        match r {
            Ok(d) => {
                let [c, h, w] = d.shape;
                prop_assert_eq!(d.images.len(), d.labels.len() * c * h * w);
            }
            Err((_, m)) => prop_assert!(!m.is_empty()),
        }
    }

    #[test]
    fn cifar_records_are_checked(bytes in prop::collection::vec(any::<u8>(), 0..8000), hundred in any::<bool>()) {
        let v = if hundred { cifar::Variant::Cifar100 } else { cifar::Variant::Cifar10 };
        let mut d = Dataset { images: vec![], labels: vec![], shape: [3, 32, 32], classes: vec![] };
        let (r, big) = largest(|| cifar::parse_into(&bytes, v, &mut d));
        prop_assert!(big <= bound(bytes.len()));
        if r.is_ok() {
            prop_assert_eq!(d.images.len(), d.labels.len() * 3072);
            prop_assert!(d.labels.iter().all(|&y| y < v.num_classes()));
        }
    }

    #[test]
    fn scenario_numbers_replaced_parse_or_are_refused(
        which in any::<usize>(),
        k in any::<usize>(),
        with in prop_oneof![
            Just("0".to_string()), Just("-1".to_string()), Just("1e308".to_string()),
            Just("18446744073709551615".to_string()), Just("9223372036854775807".to_string()),
            Just("4294967296".to_string()), Just("nan".to_string()), Just("\"x\"".to_string()),
            any::<u64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|f| format!("{f:?}")),
        ],
    ) {
        let texts = scenario_texts();
        let text = replace_number(&texts[which % texts.len()], k, &with);
        let (r, big) = largest(|| distillery::scenario::parse(&text, std::path::Path::new("fuzz.toml")));
        prop_assert!(big <= bound(text.len()));
        if let Err(e) = r {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{}", e);
        }
    }

    #[test]
    fn scenario_text_mutated_parses_or_is_refused(which in any::<usize>(), e in edits()) {
        let texts = scenario_texts();
        let bytes = mutate(texts[which % texts.len()].clone().into_bytes(), &e);
        let text = String::from_utf8_lossy(&bytes);
        let (r, big) = largest(|| distillery::scenario::parse(&text, std::path::Path::new("fuzz.toml")));
        prop_assert!(big <= bound(text.len()));
        if let Err(e) = r {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{}", e);
        }
    }
}

#[test]
fn headers_claiming_2_pow_40_elements_are_refused_before_allocating() {
    // A wire tensor of 2^40 f32 values and no data.
    let t = pb::Tensor {
        shape: vec![1 << 20, 1 << 20],
        encoding: 0,
        scale: 0.0,
        offset: 0.0,
        data: vec![],
    };
    let (r, big) = largest(|| decode_tensor(&t));
    assert!(r.unwrap_err().contains("needs 4398046511104 bytes"));
    assert!(big < 1 << 20, "{big}");
    // An IDX header saying 2^40 pixels.
    let (im, lb) = idx::encode(1 << 20, 1 << 10, 1 << 10, &[0; 16], &[0]);
    let (r, big) = largest(|| idx::dataset_from_bytes(&im, &lb, 255.0, "mnist"));
    let (_, m) = r.unwrap_err();
    assert!(m.contains("1099511627776 data bytes"), "{m}");
    assert!(big < 1 << 20, "{big}");
    // Dimensions whose product overflows 64 bits.
    let (im, lb) = idx::encode(
        u32::MAX as usize,
        u32::MAX as usize,
        u32::MAX as usize,
        &[],
        &[],
    );
    let (_, m) = idx::dataset_from_bytes(&im, &lb, 255.0, "mnist").unwrap_err();
    assert!(m.contains("overflow"), "{m}");
    // A tensor whose byte count overflows (2^62 values of 4 bytes).
    let t = pb::Tensor {
        shape: vec![1 << 31, 1 << 31],
        encoding: 0,
        scale: 0.0,
        offset: 0.0,
        data: vec![],
    };
    assert!(decode_tensor(&t).unwrap_err().contains("overflows"));
}
