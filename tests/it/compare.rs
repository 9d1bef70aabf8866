//! `distillery compare`: the Student t tail against closed forms and tables, and the paired
//! comparison of hand-made run summaries against hand-computed differences and t.

use distillery::report::compare::{beta_regularized, compare, load, paired, student_t_two_sided};
use std::path::{Path, PathBuf};

/// Writes a run folder whose summary.json holds `seed` and, per method, the nets' accuracies.
fn run_dir(root: &Path, name: &str, seed: u64, methods: &[(&str, &[f64])]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = serde_json::Map::new();
    for (m, accs) in methods {
        results.insert(
            m.to_string(),
            serde_json::json!({ "convnet": { "test_acc": accs, "mean": 0.0, "std": 0.0 } }),
        );
    }
    let v = serde_json::json!({ "seed": seed, "name": name, "results": results });
    std::fs::write(dir.join("summary.json"), v.to_string()).unwrap();
    dir
}

#[test]
fn t_tail_matches_closed_forms_and_tables() {
    for &t in &[0.0, 0.3, 1.0, 2.5, 7.0, -3.0] {
        let t: f64 = t;
        // df 1 (Cauchy): 1 - 2 atan|t| / pi; df 2: 1 - |t| / sqrt(t^2 + 2).
        let c1 = 1.0 - 2.0 * t.abs().atan() / std::f64::consts::PI;
        let c2 = 1.0 - t.abs() / (t * t + 2.0).sqrt();
        assert!(
            (student_t_two_sided(t, 1.0) - c1).abs() < 1e-10,
            "df 1, t {t}"
        );
        assert!(
            (student_t_two_sided(t, 2.0) - c2).abs() < 1e-10,
            "df 2, t {t}"
        );
    }
    // Table values: t_{0.975} for df 4 and 9, and the normal limit.
    assert!((student_t_two_sided(2.776_445, 4.0) - 0.05).abs() < 1e-6);
    assert!((student_t_two_sided(2.262_157, 9.0) - 0.05).abs() < 1e-6);
    assert!((student_t_two_sided(1.959_964, 1e8) - 0.05).abs() < 1e-5);
    assert!(student_t_two_sided(f64::NAN, 3.0).is_nan());
}

/// The p-values of `compare`'s own continued fraction and Lanczos ln Γ (before statrs replaced
/// them), to the last digit: the crate must give the same figures to 1e-9.
#[test]
fn t_tail_unchanged_from_the_hand_written_version() {
    const OLD: [(f64, f64, f64); 11] = [
        (0.5, 1.0, 0.7048327646991335),
        (1.2, 2.0, 0.35300336077936845),
        (2.1, 3.0, 0.12656520254968465),
        (-2.9, 4.0, 0.044117949634201244),
        (0.05, 5.0, 0.9620582999708117),
        (3.7, 7.0, 0.007654991371211321),
        (1.0, 9.0, 0.34343639613791466),
        (6.5, 11.0, 4.427706135851857e-05),
        (0.8, 29.0, 0.4302156685503209),
        (12.0, 3.0, 0.0012450158007893362),
        (2.2, 1.5, 0.19959437808977845),
    ];
    for (t, df, p) in OLD {
        let got = student_t_two_sided(t, df);
        assert!((got - p).abs() < 1e-9, "t {t}, df {df}: {got} vs {p}");
    }
    assert!(student_t_two_sided(1.0, 0.0).is_nan());
    assert_eq!(student_t_two_sided(f64::INFINITY, 3.0), 0.0);
}

#[test]
fn incomplete_beta_identities() {
    for &x in &[0.05, 0.3, 0.5, 0.8, 0.99] {
        let x: f64 = x;
        assert!((beta_regularized(1.0, 1.0, x) - x).abs() < 1e-12);
        assert!((beta_regularized(3.0, 1.0, x) - x.powi(3)).abs() < 1e-12);
        let (a, b) = (2.5, 0.5);
        let s = beta_regularized(a, b, x) + beta_regularized(b, a, 1.0 - x);
        assert!((s - 1.0).abs() < 1e-12, "symmetry at {x}");
    }
}

#[test]
fn paired_by_seed_against_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    // Per-seed means: mtt .92, .91, .905; dm .90, .905, .90; random only at seed 0.
    let dirs = vec![
        run_dir(
            r,
            "mtt-s0",
            0,
            &[("mtt", &[0.93, 0.91]), ("random", &[0.70])],
        ),
        run_dir(r, "mtt-s1", 1, &[("mtt", &[0.91])]),
        run_dir(r, "mtt-s2", 2, &[("mtt", &[0.90, 0.91])]),
        run_dir(r, "dm-s0", 0, &[("dm", &[0.90])]),
        run_dir(r, "dm-s1", 1, &[("dm", &[0.905])]),
        run_dir(r, "dm-s2", 2, &[("dm", &[0.89, 0.91])]),
        run_dir(r, "dm-s7", 7, &[("dm", &[0.95])]),
    ];
    let scores = load(&dirs).unwrap();
    let key = |m: &str| (m.to_string(), "convnet".to_string());
    let p = paired(&scores[&key("mtt")], &scores[&key("dm")]).unwrap();
    // Seed 7 has no MTT run: left out of the pairing.
    assert_eq!(p.seeds, vec![0, 1, 2]);
    let want = [0.02, 0.005, 0.005];
    for (d, w) in p.diffs.iter().zip(want) {
        assert!((d - w).abs() < 1e-12);
    }
    // Mean 0.01; sd sqrt((1e-4 + 2.5e-5 + 2.5e-5) / 2); t = 0.01 / (sd / sqrt 3) = 2;
    // df 2: p = 1 - 2 / sqrt(6).
    assert!((p.mean - 0.01).abs() < 1e-12);
    assert!((p.sd - 7.5e-5f64.sqrt()).abs() < 1e-12);
    assert!((p.t - 2.0).abs() < 1e-9);
    assert!((p.p - (1.0 - 2.0 / 6f64.sqrt())).abs() < 1e-9);
    assert_eq!(p.wins, 3);
    // One seed in common: the difference, no t.
    let q = paired(&scores[&key("random")], &scores[&key("dm")]).unwrap();
    assert_eq!(q.seeds, vec![0]);
    assert!((q.diffs[0] + 0.2).abs() < 1e-12 && q.t.is_nan() && q.wins == 0);

    let text = compare(&dirs, "convnet", Some("dm")).unwrap();
    assert!(
        text.contains("mtt        91.17 ± 0.76 (sample std over seeds) over 3 seeds"),
        "{text}"
    );
    assert!(text.contains("+1.00 ahead on 3 of 3 seeds"), "{text}");
    assert!(
        text.contains("t = 2.00 (df 2), two-sided p = 0.184"),
        "{text}"
    );
    assert!(text.contains("s0 +2.00, s1 +0.50, s2 +0.50"), "{text}");
    assert!(text.contains("t needs 2 or more seeds"), "{text}");
    // Against the only method there is: nothing to pair, said so.
    let alone = compare(&dirs[3..], "convnet", Some("dm")).unwrap();
    assert!(alone.contains("no other method to pair"), "{alone}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let a = run_dir(r, "a", 0, &[("mtt", &[0.9])]);
    let b = run_dir(r, "b", 0, &[("mtt", &[0.8])]);
    let e = load(&[a.clone(), b.clone()]).unwrap_err().to_string();
    assert!(
        e.contains("seed 0") && e.contains("a") && e.contains("b"),
        "{e}"
    );

    let unfinished = r.join("unfinished");
    std::fs::create_dir_all(&unfinished).unwrap();
    let e = load(&[unfinished]).unwrap_err().to_string();
    assert!(
        e.contains("summary.json") && e.contains("not finished"),
        "{e}"
    );
    let e = load(&[r.join("missing")]).unwrap_err().to_string();
    assert!(
        e.contains("missing") && e.contains("no such run folder"),
        "{e}"
    );

    let broken = r.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("summary.json"), "{\"seed\": 0, \"results\": ").unwrap();
    let e = load(&[broken]).unwrap_err().to_string();
    assert!(e.contains("not valid JSON"), "{e}");

    let e = compare(std::slice::from_ref(&a), "convnet", Some("dm"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no dm results") && e.contains("mtt"), "{e}");
    let e = compare(&[a], "resnet18", None).unwrap_err().to_string();
    assert!(e.contains("resnet18") && e.contains("convnet"), "{e}");
}
