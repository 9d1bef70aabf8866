//! Characterisation: a tiny seeded run of every scenario kind, its CSV files (time columns
//! dropped) and its summary (times, paths and folder names dropped) held against the files in
//! `tests/golden/<case>/`. A change to any figure, column or summary field shows up as a diff of
//! those files. `DISTILLERY_BLESS=1 cargo test --release characterise` rewrites them.

use distillery::experiment::{self as runner, RunOptions};
use distillery::scenario;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The golden files of `case` for this CPU. The CPU fast path's matrix products run gemm's
/// AVX-512 kernels where the CPU has them and its AVX2 kernels elsewhere; the two round some
/// sums differently in the last digit, so machines without AVX-512 hold their own copy of a
/// case (`tests/golden-avx2/<case>/`) where its files differ, and share `tests/golden/` for
/// the rest. `DISTILLERY_BLESS=1` writes the copy this CPU reads.
fn golden_dir(case: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let own = root.join("golden-avx2").join(case);
    let blessing = std::env::var_os("DISTILLERY_BLESS").is_some();
    if !has_avx512() && (own.exists() || blessing) {
        return own;
    }
    root.join("golden").join(case)
}

/// True where gemm picks its AVX-512 kernels.
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CSV text without the columns that hold wall-clock time.
fn without_time(csv: &str) -> String {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let keep: Vec<bool> = header
        .split(',')
        .map(|c| !(c.contains("elapsed") || c.contains("seconds")))
        .collect();
    let pick = |l: &str| -> String {
        l.split(',')
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| v)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = vec![pick(header)];
    out.extend(lines.map(pick));
    out.join("\n") + "\n"
}

/// The summary without what differs between identical runs (times, folders, file paths) and
/// without the report lines (which restate its figures), its numbers at seven significant
/// digits.
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    // The report lines restate the summary's figures, with some timings.
                    !(k.contains("seconds")
                        || k.as_str() == "report"
                        || k.contains("elapsed")
                        || k.as_str() == "dir"
                        || k.as_str() == "started")
                })
                .map(|(k, v)| (k.clone(), stable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        Value::String(s) if s.contains('/') => Value::String(
            s.split(' ')
                .map(|w| {
                    if w.len() > 1 && w.starts_with('/') {
                        "<path>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        // Seven significant digits: an f32 reads the same widened to f64 or printed as f32.
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            Value::String(format!("{x:.6e}"))
        }
        other => other.clone(),
    }
}

/// Compares `actual` with the golden file `name` of `case` (or writes it when blessing).
fn check(case: &str, name: &str, actual: &str, problems: &mut Vec<String>) {
    let path = golden_dir(case).join(name);
    if std::env::var_os("DISTILLERY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let first = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(expected.lines().count().min(actual.lines().count()));
            problems.push(format!(
                "{case}/{name} differs from line {}:\n  expected: {:?}\n  actual:   {:?}",
                first + 1,
                expected.lines().nth(first).unwrap_or("<end>"),
                actual.lines().nth(first).unwrap_or("<end>")
            ));
        }
        Err(_) => problems.push(format!("{case}/{name}: no golden file {}", path.display())),
    }
}

/// A synthetic set file as one line: its name, size, and a hash of its images' and labels' bits.
fn set_line(path: &Path) -> String {
    let set = distillery::distill::SyntheticSet::load(path).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u64| {
        h ^= b;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    set.images.iter().for_each(|v| feed(v.to_bits() as u64));
    set.labels.iter().for_each(|&y| feed(y as u64));
    format!(
        "{}: {} images, labels {:?}, syn_lr {:?}, fixed {:?}, hash {h:016x}",
        path.file_name().unwrap().to_string_lossy(),
        set.len(),
        set.labels,
        set.syn_lr,
        set.fixed
    )
}

/// Runs `text` in a fresh results root and checks every CSV of its folder and its summary.
fn characterise(case: &str, text: &str) {
    let root = tempfile::tempdir().unwrap();
    let l = scenario::parse(text, Path::new("characterise.toml")).unwrap();
    let out = runner::run(&l, &RunOptions::quiet(root.path())).unwrap();
    let mut problems = Vec::new();
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(&out.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    csvs.sort();
    let names: Vec<String> = csvs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    check(case, "files.txt", &(names.join("\n") + "\n"), &mut problems);
    for (p, n) in csvs.iter().zip(&names) {
        let text = std::fs::read_to_string(p).unwrap();
        check(case, n, &without_time(&text), &mut problems);
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&out.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".safetensors"))
        .collect();
    sets.sort();
    let lines: Vec<String> = sets.iter().map(|p| set_line(p)).collect();
    check(case, "sets.txt", &(lines.join("\n") + "\n"), &mut problems);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("summary.json")).unwrap())
            .unwrap();
    let pretty = serde_json::to_string_pretty(&stable(&summary)).unwrap() + "\n";
    check(case, "summary.json", &pretty, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn characterise_train() {
    characterise(
        "train",
        r#"
name = "c-train"
kind = "train"
seed = 7
[data]
source = "synthetic"
train = 120
test = 60
size = 8
classes = 4
[model]
width = 8
depth = 2
[train]
epochs = 3
batch_size = 16
lr = 0.05
repeats = 2
eval_every = 2
"#,
    );
}

const DIGITS_NET: &str = r#"
[data]
source = "digits"
[model]
width = 8
depth = 2
"#;

#[test]
fn characterise_distill_dm() {
    characterise(
        "distill-dm",
        &format!(
            r#"
name = "c-dm"
kind = "distill"
seed = 3
{DIGITS_NET}
[distill]
method = "dm"
ipc = 2
iterations = 4
batch_real = 16
log_every = 1
checkpoint_every = 2
eval_every = 2
baselines = ["random", "herding", "kcenter"]
[eval]
epochs = 10
repeats = 2
models = ["convnet", "mlp"]
coverage_sample = 100
"#
        ),
    );
}

const EXPERTS: &str = r#"
[experts]
count = 2
epochs = 3
batch_size = 64
lr = 0.02
"#;

#[test]
fn characterise_distill_mtt() {
    characterise(
        "distill-mtt",
        &format!(
            r#"
name = "c-mtt"
kind = "distill"
seed = 4
{DIGITS_NET}
[distill]
method = "mtt"
ipc = 2
iterations = 3
syn_steps = 3
expert_epochs = 1
max_start_epoch = 2
lr_img = 100
lr_lr = 1e-5
lr_teacher = 0.02
log_every = 1
baselines = ["random"]
[eval]
epochs = 3
repeats = 2
coverage_sample = 100
{EXPERTS}
"#
        ),
    );
}

#[test]
fn characterise_distill_selmatch() {
    characterise(
        "distill-selmatch",
        &format!(
            r#"
name = "c-selmatch"
kind = "distill"
seed = 5
{DIGITS_NET}
[distill]
method = "selmatch"
ipc = 4
iterations = 3
syn_steps = 3
expert_epochs = 1
max_start_epoch = 2
lr_img = 100
lr_teacher = 0.02
alpha = 0.5
beta_grid = [0.0, 1.0]
window_epochs = 2
difficulty = "el2n"
difficulty_epochs = 1
coverage_every = 2
log_every = 1
baselines = ["mtt", "random"]
[eval]
epochs = 3
repeats = 1
coverage_sample = 100
{EXPERTS}
"#
        ),
    );
}

#[test]
fn characterise_experts() {
    characterise(
        "experts",
        &format!(
            r#"
name = "c-experts"
kind = "experts"
seed = 6
{DIGITS_NET}
{EXPERTS}
"#
        ),
    );
}

#[test]
fn characterise_continual() {
    for (case, protocol) in [
        ("continual-streaming", "streaming"),
        ("continual-gdumb", "gdumb"),
    ] {
        characterise(
            case,
            &format!(
                r#"
name = "c-continual"
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
lr = 0.05
schedule = "constant"
[distill]
method = "dm"
iterations = 3
batch_real = 8
[continual]
tasks = 2
protocol = "{protocol}"
strategies = ["finetune", "random", "herding", "kcenter", "dm", "joint"]
memory_total = 12
memory_epochs = 3
"#
            ),
        );
    }
}

#[test]
fn characterise_federated() {
    characterise(
        "federated",
        r#"
name = "c-fed"
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
lr = 0.02
[eval]
epochs = 5
[distill]
method = "dm"
ipc = 2
iterations = 3
batch_real = 16
[federated]
clients = 4
partition = { kind = "dirichlet", alpha = 0.5, min_size = 20 }
strategies = ["distilled_oneshot", "fedavg", "distilled_iterative"]
rounds = 2
fedavg_until_oneshot = false
quantization = "f16"
"#,
    );
}
