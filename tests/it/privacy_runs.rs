//! The privacy audit in runs: a distill run's `privacy.csv`, pictures and summary (a random
//! selection of members is all exact copies; the same seed gives the same figures), a federated
//! run's row per client, a continual run's memories, `kind = "audit"` on a set made elsewhere,
//! and the inputs it refuses.

use crate::common::run_text;
use distillery::audit::records::PrivacyRow;
use distillery::experiment::{self as runner, RunOptions};
use distillery::scenario;
use distillery::scenario::shortcut::audit::{audit_scenario, AuditArgs};
use std::path::{Path, PathBuf};

fn rows(path: &Path) -> Vec<PrivacyRow> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

const DISTILL: &str = r#"
name = "p-dm"
kind = "distill"
seed = 3
[data]
source = "digits"
[model]
width = 8
depth = 2
[distill]
method = "dm"
ipc = 3
iterations = 20
batch_real = 16
baselines = ["herding"]
[eval]
epochs = 20
repeats = 1
coverage_sample = 100
[audit]
member_share = 0.5
sample = 100
reference_nets = 1
"#;

#[test]
fn a_distill_run_audits_every_set_beside_the_baselines() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(DISTILL, root.path());
    let p = out.summary.privacy.as_ref().expect("audited");
    assert_eq!(p.setup.nonmembers_from, "held_out");
    // Half of each class of the digits' training images are members (the run's training set);
    // the rest are held out.
    assert_eq!(p.setup.members, out.summary.dataset.train);
    assert_eq!(
        p.setup.members + p.setup.nonmembers + out.summary.dataset.test,
        1797
    );
    assert!((p.setup.members as i64 - p.setup.nonmembers as i64).abs() <= 10);
    let names: Vec<&str> = p.sets.keys().map(String::as_str).collect();
    assert_eq!(names, ["dm", "herding", "random", "real_data"]);
    let csv = rows(&out.dir.join("privacy.csv"));
    assert_eq!(csv.len(), 4);
    for r in &csv {
        assert_eq!((r.scored_members, r.scored_nonmembers), (100, 100));
        assert!((0.0..=1.0).contains(&r.loss_auc.0), "{r:?}");
        assert!(r.calibrated_auc.is_some());
    }
    // Selections are made of members: every image is an exact copy.
    for sel in ["random", "herding"] {
        let n = p.sets[sel].nearest.as_ref().unwrap();
        assert_eq!((n.pixel.median, n.pixel.min), (0.0, 0.0), "{sel}");
        assert_eq!(n.pixel.near_copies, 30);
        assert_eq!(n.feature.near_copy_share, 1.0);
        assert!(out.dir.join(format!("closest/{sel}.png")).is_file());
    }
    let dm = p.sets["dm"].nearest.as_ref().unwrap();
    assert!(dm.pixel.threshold > 0.0 && dm.pixel.min > 0.0, "{dm:?}");
    let real = &p.sets["real_data"];
    assert!(real.nearest.is_none());
    assert_eq!(real.images, p.setup.members.min(1000));
    assert!(out.summary.report.iter().any(|l| l.starts_with("privacy")));
    // The same seed gives the same audit; the audit's budget leaves the run's own figures alone;
    // with the audit off there is no member split and no privacy.csv.
    let root2 = tempfile::tempdir().unwrap();
    let again = run_text(DISTILL, root2.path());
    assert_eq!(again.summary.privacy.as_ref().unwrap().sets, p.sets);
    let json = |o: &runner::RunOutput| {
        let mut v = serde_json::to_value(&o.summary.outcome).unwrap();
        for k in [
            "distilled",
            "eval_during_distill_seconds",
            "seconds_per_iteration",
        ] {
            v[k] = serde_json::Value::Null;
        }
        v
    };
    let cheaper = DISTILL.replace(
        "sample = 100\nreference_nets = 1",
        "sample = 20\nreference_nets = 0",
    );
    let other = run_text(&cheaper, root2.path());
    assert_eq!(json(&other), json(&out));
    assert_ne!(other.summary.privacy.unwrap().sets, p.sets);
    let off = run_text(
        &DISTILL.replace("[audit]\n", "[audit]\nenabled = false\n"),
        root2.path(),
    );
    assert!(off.summary.privacy.is_none());
    assert!(!off.dir.join("privacy.csv").exists());
    assert!(off.summary.dataset.train > out.summary.dataset.train);
}

#[test]
fn a_federated_run_writes_one_row_per_client() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(
        r#"
name = "p-fed"
kind = "federated"
seed = 1
[data]
source = "digits"
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 32
[eval]
epochs = 10
[distill]
method = "dm"
ipc = 2
iterations = 5
batch_real = 16
[federated]
clients = 3
partition = { kind = "dirichlet", alpha = 0.5, min_size = 20 }
strategies = ["distilled_oneshot", "fedavg"]
rounds = 2
[audit]
member_share = 0.6
sample = 50
reference_nets = 1
"#,
        root.path(),
    );
    let csv = rows(&out.dir.join("privacy.csv"));
    let of = |set: &str| -> Vec<usize> {
        csv.iter()
            .filter(|r| r.set == set)
            .map(|r| r.client.unwrap())
            .collect()
    };
    // FedAvg sends weights, not sets: only the distilled strategy and the baselines per client.
    assert_eq!(of("distilled_oneshot"), [0, 1, 2]);
    assert_eq!(of("real_data"), [0, 1, 2]);
    assert_eq!(of("random"), [0, 1, 2]);
    assert!(of("fedavg").is_empty());
    let parts: Vec<usize> = match &out.summary.outcome {
        distillery::report::records::Outcome::Federated(f) => f.client_sizes.clone(),
        _ => unreachable!(),
    };
    for r in csv.iter().filter(|r| r.set == "distilled_oneshot") {
        let c = r.client.unwrap();
        // Each client's members are scored from its own partition, against as many held-out
        // images of the same classes.
        assert_eq!(r.scored_members, parts[c].min(50));
        assert_eq!(r.scored_nonmembers, r.scored_members);
        assert_eq!(r.round, Some(0));
        assert!(r.pixel_median.is_some());
    }
    for r in csv.iter().filter(|r| r.set == "random") {
        assert_eq!(r.pixel_median.map(|f| f.0), Some(0.0));
    }
    let p = out.summary.privacy.unwrap();
    let t = &p.clients["distilled_oneshot"];
    assert_eq!(t.clients, 3);
    assert_eq!(
        t.images,
        csv.iter()
            .filter(|r| r.set == "distilled_oneshot")
            .map(|r| r.images)
            .sum::<usize>()
    );
    assert_eq!(p.clients["random"].pixel_near_copy_share, Some(1.0));
    assert!(out
        .dir
        .join("closest/distilled_oneshot-client2.png")
        .is_file());
}

#[test]
fn a_continual_run_audits_its_memories() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(
        r#"
name = "p-cl"
kind = "continual"
seed = 2
[data]
source = "synthetic"
train = 240
test = 80
size = 8
classes = 4
[model]
width = 8
depth = 2
[train]
epochs = 2
batch_size = 16
[distill]
method = "dm"
iterations = 3
batch_real = 8
[continual]
tasks = 2
strategies = ["finetune", "herding", "dm"]
memory_total = 12
memory_epochs = 3
[audit]
member_share = 0.5
sample = 40
reference_nets = 0
"#,
        root.path(),
    );
    let p = out.summary.privacy.unwrap();
    let names: Vec<&str> = p.sets.keys().map(String::as_str).collect();
    assert_eq!(names, ["dm", "herding", "random", "real_data"]);
    assert_eq!(p.sets["herding"].images, 12);
    assert_eq!(p.sets["herding"].nearest.as_ref().unwrap().pixel.min, 0.0);
    assert!(p.sets["dm"].attack.calibrated.is_none());
    assert_eq!(rows(&out.dir.join("privacy.csv")).len(), 4);
}

#[test]
fn audit_runs_a_set_made_elsewhere_and_refuses_bad_ones() {
    let root = tempfile::tempdir().unwrap();
    let made = run_text(
        &DISTILL.replace("[audit]\n", "[audit]\nenabled = false\n"),
        root.path(),
    );
    let args = |set: PathBuf, data: &str| AuditArgs {
        set,
        data: data.into(),
        width: 8,
        depth: 2,
        epochs: 20,
        sample: 60,
        reference_nets: 1,
        seed: 0,
        device: distillery::device::DeviceKind::Cpu,
    };
    let text = audit_scenario(&args(made.dir.join("dm.safetensors"), "digits")).unwrap();
    let l = scenario::parse(&text, Path::new("audit.toml")).unwrap();
    let out = runner::run(&l, &RunOptions::quiet(root.path())).unwrap();
    let p = out.summary.privacy.unwrap();
    assert_eq!(p.setup.nonmembers_from, "test");
    let names: Vec<&str> = p.sets.keys().map(String::as_str).collect();
    assert_eq!(names, ["dm", "random", "real_data"]);
    assert_eq!(p.sets["dm"].images, 30);
    assert_eq!(rows(&out.dir.join("privacy.csv")).len(), 3);
    // A missing file, and a set of other images, are named.
    let err = audit_scenario(&args(root.path().join("none.safetensors"), "digits")).unwrap_err();
    assert!(err.to_string().contains("no such set file"), "{err}");
    let other = text.replace(
        "source = \"digits\"",
        "source = \"synthetic\"\ntrain = 60\ntest = 30\nsize = 4\nclasses = 10",
    );
    let l = scenario::parse(&other, Path::new("audit.toml")).unwrap();
    let err = runner::run(&l, &RunOptions::quiet(root.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("classes of") && err.contains("dm.safetensors"),
        "{err}"
    );
    // An audit scenario without a set, and a member split where nothing is distilled.
    let bad = text.replace("set = ", "# set = ");
    let err = scenario::parse(&bad, Path::new("a.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("set"), "{err}");
    let bad = format!("{text}member_share = 0.5\n");
    let err = scenario::parse(&bad, Path::new("a.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("member_share"), "{err}");
}
