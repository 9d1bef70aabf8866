//! Comparing methods across finished runs, paired by seed: each run's `summary.json` gives its
//! seed and every method's per-net test accuracies; runs at the same seed start from the same
//! real images and evaluate with the same network seeds, so per-seed differences are paired.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One method's mean test accuracy on one model in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedScore {
    /// The run's seed.
    pub seed: u64,
    /// Mean test accuracy over the run's evaluation nets.
    pub mean: f64,
    /// The run folder it came from.
    pub dir: PathBuf,
}

/// Per (method, model): the scores of every run, keyed by seed.
pub type Scores = BTreeMap<(String, String), BTreeMap<u64, SeedScore>>;

/// Reads the `summary.json` of every run folder in `dirs`. Two runs with the same seed for the
/// same method and model are an error (the pairing would be ambiguous), as is a folder without a
/// finished summary.
pub fn load(dirs: &[PathBuf]) -> Result<Scores> {
    let mut out = Scores::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{}: no such run folder",
                dir.display()
            )));
        }
        let path = dir.join("summary.json");
        let bad = |msg: String| Error::Data {
            path: path.clone(),
            msg,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad("no summary: the run has not finished (resume it with `distillery run --resume`)".into())
            } else {
                Error::io(&path, e)
            }
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let seed = v["seed"]
            .as_u64()
            .ok_or_else(|| bad("no integer \"seed\"".into()))?;
        let results = v["results"]
            .as_object()
            .ok_or_else(|| bad("no \"results\" object (not a distillation run?)".into()))?;
        for (method, models) in results {
            let models = models
                .as_object()
                .ok_or_else(|| bad(format!("results.{method} is not an object")))?;
            for (model, r) in models {
                let accs: Vec<f64> = r["test_acc"]
                    .as_array()
                    .ok_or_else(|| bad(format!("results.{method}.{model} has no test_acc list")))?
                    .iter()
                    .map(|a| a.as_f64())
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        bad(format!("results.{method}.{model}.test_acc: not numbers"))
                    })?;
                if accs.is_empty() {
                    continue;
                }
                let score = SeedScore {
                    seed,
                    mean: mean_sd(&accs).0,
                    dir: dir.clone(),
                };
                let by_seed = out.entry((method.clone(), model.clone())).or_default();
                if let Some(prev) = by_seed.get(&seed) {
                    return Err(Error::Usage(format!(
                        "{method} on {model} at seed {seed} is in both {} and {}: give one run per seed",
                        prev.dir.display(),
                        dir.display()
                    )));
                }
                by_seed.insert(seed, score);
            }
        }
    }
    Ok(out)
}

/// A paired comparison of two methods over the seeds both were run at.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// The seeds in common, ascending.
    pub seeds: Vec<u64>,
    /// Per seed: the method's mean minus the baseline's.
    pub diffs: Vec<f64>,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences (NaN below 2 seeds).
    pub sd: f64,
    /// Paired t statistic, mean / (sd / sqrt(n)) (NaN below 2 seeds).
    pub t: f64,
    /// Two-sided p-value of t under Student's t with n - 1 degrees of freedom.
    pub p: f64,
    /// Seeds where the method is ahead.
    pub wins: usize,
}

/// Pairs `a` against `b` on their common seeds; `None` when they share none.
pub fn paired(a: &BTreeMap<u64, SeedScore>, b: &BTreeMap<u64, SeedScore>) -> Option<Paired> {
    let seeds: Vec<u64> = a.keys().filter(|s| b.contains_key(s)).copied().collect();
    if seeds.is_empty() {
        return None;
    }
    let diffs: Vec<f64> = seeds.iter().map(|s| a[s].mean - b[s].mean).collect();
    let n = diffs.len() as f64;
    let (mean, sd) = mean_sd(&diffs);
    let t = mean / (sd / n.sqrt());
    let p = student_t_two_sided(t, n - 1.0);
    let wins = diffs.iter().filter(|&&d| d > 0.0).count();
    Some(Paired {
        seeds,
        diffs,
        mean,
        sd,
        t,
        p,
        wins,
    })
}

/// Mean and sample standard deviation (n - 1; NaN below 2 values).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() < 2 {
        f64::NAN
    } else {
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (m, sd)
}

/// Two-sided tail probability P(|T| >= |t|) of Student's t with `df` degrees of freedom:
/// I_{df/(df+t²)}(df/2, 1/2), through statrs's regularised incomplete beta (not 2 (1 - CDF),
/// which loses the small p-values to cancellation).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    beta_regularized(df / 2.0, 0.5, df / (df + t * t))
}

/// The regularised incomplete beta function I_x(a, b) (statrs), x clamped to [0, 1]; NaN
/// where a or b is not positive.
pub fn beta_regularized(a: f64, b: f64, x: f64) -> f64 {
    statrs::function::beta::checked_beta_reg(a, b, x.clamp(0.0, 1.0)).unwrap_or(f64::NAN)
}

/// The comparison as text: every method's per-seed accuracy and mean over seeds on `model`,
/// then each method paired against `against` (when given).
pub fn report(scores: &Scores, model: &str, against: Option<&str>) -> Result<String> {
    let rows: Vec<(&String, &BTreeMap<u64, SeedScore>)> = scores
        .iter()
        .filter(|((_, m), _)| m == model)
        .map(|((method, _), s)| (method, s))
        .collect();
    if rows.is_empty() {
        let models: std::collections::BTreeSet<&str> =
            scores.keys().map(|(_, m)| m.as_str()).collect();
        let models: Vec<&str> = models.into_iter().collect();
        return Err(Error::Usage(format!(
            "no results on model {model:?} in these runs (they have: {})",
            models.join(", ")
        )));
    }
    let mut out = format!("{model}: test accuracy (%) per seed, mean over each run's nets\n");
    for (method, s) in &rows {
        let means: Vec<f64> = s.values().map(|x| 100.0 * x.mean).collect();
        let (mu, sd) = mean_sd(&means);
        let spread = if means.len() > 1 {
            format!(" ± {sd:.2} (sample std over seeds)")
        } else {
            String::new()
        };
        let per: Vec<String> = s
            .values()
            .map(|x| format!("s{} {:.2}", x.seed, 100.0 * x.mean))
            .collect();
        out += &format!(
            "  {method:<10} {mu:.2}{spread} over {} seeds: {}\n",
            means.len(),
            per.join(", ")
        );
    }
    let Some(base) = against else {
        return Ok(out);
    };
    let b = scores
        .get(&(base.to_string(), model.to_string()))
        .ok_or_else(|| {
            let names: Vec<&str> = rows.iter().map(|(m, _)| m.as_str()).collect();
            Error::Usage(format!(
                "no {base} results on {model} in these runs (methods: {})",
                names.join(", ")
            ))
        })?;
    out += &format!("paired by seed against {base} (method minus {base}, points):\n");
    if rows.len() == 1 {
        out += "  no other method to pair\n";
    }
    for (method, a) in rows.iter().filter(|(m, _)| m.as_str() != base) {
        match paired(a, b) {
            None => out += &format!("  {method:<10} no seed in common with {base}\n"),
            Some(p) => {
                let diffs: Vec<String> = p
                    .seeds
                    .iter()
                    .zip(&p.diffs)
                    .map(|(s, d)| format!("s{s} {:+.2}", 100.0 * d))
                    .collect();
                let stats = if p.seeds.len() < 2 {
                    "t needs 2 or more seeds".to_string()
                } else {
                    format!(
                        "sd {:.2}, t = {:.2} (df {}), two-sided p = {:.3}",
                        100.0 * p.sd,
                        p.t,
                        p.seeds.len() - 1,
                        p.p
                    )
                };
                out += &format!(
                    "  {method:<10} {:+.2} ahead on {} of {} seeds; {stats}; {}\n",
                    100.0 * p.mean,
                    p.wins,
                    p.seeds.len(),
                    diffs.join(", ")
                );
            }
        }
    }
    Ok(out)
}

/// Loads `dirs` and writes the [`report`].
pub fn compare(dirs: &[PathBuf], model: &str, against: Option<&str>) -> Result<String> {
    report(&load(dirs)?, model, against)
}
