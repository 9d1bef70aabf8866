//! Federated partitions of a labelled dataset over `n` clients, the set Flower Datasets offers
//! (REFERENCE.md §3.3), all seeded: IID, Dirichlet(alpha) label skew with a minimum size,
//! pathological (k classes per client), shards (McMahan et al.), quantity skew.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

/// How samples are spread over clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Partitioning {
    /// Shuffled and dealt out evenly.
    Iid,
    /// For each class, client shares drawn from Dirichlet(alpha); redrawn until every client has
    /// at least `min_size` samples (small alpha: few classes per client).
    Dirichlet {
        /// Concentration: small values give strong label skew.
        alpha: f64,
        /// Smallest partition accepted.
        #[serde(default)]
        min_size: usize,
    },
    /// Each client holds `classes_per_client` classes (client i's first is class i mod K, the
    /// rest random); a class's samples are split evenly among the clients holding it (with fewer
    /// clients than classes, classes no client holds are left out).
    Pathological {
        /// Classes per client.
        classes_per_client: usize,
    },
    /// Samples sorted by label and cut into `clients * shards_per_client` equal shards, dealt at
    /// random.
    Shards {
        /// Shards per client.
        shards_per_client: usize,
    },
    /// Client sizes drawn from Dirichlet(alpha), samples otherwise IID.
    QuantitySkew {
        /// Concentration of the sizes.
        alpha: f64,
    },
}

/// Checks a partitioning's own numbers (alpha positive, counts at least one).
pub fn check(how: &Partitioning) -> Result<(), String> {
    match how {
        Partitioning::Dirichlet { alpha, .. } | Partitioning::QuantitySkew { alpha }
            if !(*alpha > 0.0 && alpha.is_finite()) =>
        {
            Err(format!("alpha = {alpha}: a positive concentration"))
        }
        Partitioning::Pathological {
            classes_per_client: 0,
        } => Err("classes_per_client = 0: at least one class per client".into()),
        Partitioning::Shards {
            shards_per_client: 0,
        } => Err("shards_per_client = 0: at least one shard per client".into()),
        _ => Ok(()),
    }
}

/// Client shares drawn from a symmetric Dirichlet(alpha), via normalised Gamma(alpha, 1) draws.
fn dirichlet<R: Rng>(alpha: f64, n: usize, rng: &mut R) -> Result<Vec<f64>, String> {
    let g = Gamma::new(alpha, 1.0).map_err(|e| format!("alpha = {alpha}: {e}"))?;
    let mut v: Vec<f64> = (0..n).map(|_| g.sample(rng)).collect();
    let s: f64 = v.iter().sum();
    if s <= 0.0 || !s.is_finite() {
        // Every draw underflowed (tiny alpha): put the whole share on one client.
        v.iter_mut().for_each(|x| *x = 0.0);
        v[rng.random_range(0..n)] = 1.0;
    } else {
        v.iter_mut().for_each(|x| *x /= s);
    }
    Ok(v)
}

/// Cuts `idx` into pieces proportional to `shares` (cumulative rounding, so nothing is lost).
fn split_by(idx: &[usize], shares: &[f64]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(shares.len());
    let mut acc = 0.0;
    let mut start = 0;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        let end = if i + 1 == shares.len() {
            idx.len()
        } else {
            ((acc * idx.len() as f64).round() as usize).clamp(start, idx.len())
        };
        out.push(idx[start..end].to_vec());
        start = end;
    }
    out
}

/// Sample indices of each of `clients` clients (each list sorted). Errors name the problem.
pub fn partition(
    labels: &[usize],
    num_classes: usize,
    clients: usize,
    how: &Partitioning,
    seed: u64,
) -> Result<Vec<Vec<usize>>, String> {
    if clients == 0 {
        return Err("at least one client is needed".into());
    }
    if clients > labels.len() {
        return Err(format!(
            "{clients} clients for {} samples: every client needs at least one",
            labels.len()
        ));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &y) in labels.iter().enumerate() {
        if y >= num_classes {
            return Err(format!("label {y} of sample {i} outside 0..{num_classes}"));
        }
        by_class[y].push(i);
    }
    let mut parts: Vec<Vec<usize>> = match how {
        Partitioning::Iid => {
            let mut all: Vec<usize> = (0..labels.len()).collect();
            all.shuffle(&mut rng);
            split_by(&all, &vec![1.0 / clients as f64; clients])
        }
        Partitioning::Dirichlet { alpha, min_size } => dirichlet_parts(
            &by_class,
            labels.len(),
            clients,
            *alpha,
            *min_size,
            &mut rng,
        )?,
        Partitioning::Pathological { classes_per_client } => {
            pathological_parts(&by_class, clients, *classes_per_client, &mut rng)?
        }
        Partitioning::Shards { shards_per_client } => {
            let s = *shards_per_client;
            let total = clients * s;
            if s == 0 || total > labels.len() {
                return Err(format!(
                    "shards_per_client = {s}: {clients} clients x {s} shards must be between 1 and the {} samples",
                    labels.len()
                ));
            }
            let sorted: Vec<usize> = by_class.concat();
            let shards = split_by(&sorted, &vec![1.0 / total as f64; total]);
            let mut order: Vec<usize> = (0..total).collect();
            order.shuffle(&mut rng);
            order
                .chunks(s)
                .map(|ch| ch.iter().flat_map(|&k| shards[k].iter().copied()).collect())
                .collect()
        }
        Partitioning::QuantitySkew { alpha } => {
            let mut all: Vec<usize> = (0..labels.len()).collect();
            all.shuffle(&mut rng);
            // One sample each first, the rest by the drawn shares.
            let (first, rest) = all.split_at(clients);
            let shares = dirichlet(*alpha, clients, &mut rng)?;
            split_by(rest, &shares)
                .into_iter()
                .zip(first)
                .map(|(mut p, &f)| {
                    p.push(f);
                    p
                })
                .collect()
        }
    };
    for p in &mut parts {
        p.sort_unstable();
    }
    Ok(parts)
}

/// Per class, client shares drawn from Dirichlet(`alpha`), redrawn until every client has
/// `min_size` samples.
fn dirichlet_parts<R: Rng>(
    by_class: &[Vec<usize>],
    n: usize,
    clients: usize,
    alpha: f64,
    min_size: usize,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>, String> {
    if min_size * clients > n {
        return Err(format!(
            "min_size {min_size} x {clients} clients exceeds the {n} samples"
        ));
    }
    for _ in 0..1000 {
        let mut parts = vec![Vec::new(); clients];
        for cls in by_class {
            let mut c = cls.clone();
            c.shuffle(rng);
            for (p, piece) in parts
                .iter_mut()
                .zip(split_by(&c, &dirichlet(alpha, clients, rng)?))
            {
                p.extend(piece);
            }
        }
        if parts.iter().all(|p| p.len() >= min_size) {
            return Ok(parts);
        }
    }
    Err(format!(
        "no Dirichlet(alpha = {alpha}) draw in 1000 gave every client {min_size} samples: lower min_size or raise alpha"
    ))
}

/// Each client holds `k` classes (client i's first is class i mod K, the rest drawn); each
/// class is split evenly among its holders.
fn pathological_parts<R: Rng>(
    by_class: &[Vec<usize>],
    clients: usize,
    k: usize,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>, String> {
    let num_classes = by_class.len();
    if k == 0 || k > num_classes {
        return Err(format!(
            "classes_per_client = {k}: expected 1 to {num_classes}"
        ));
    }
    let mut holders = vec![Vec::new(); num_classes];
    for i in 0..clients {
        let first = i % num_classes;
        let mut others: Vec<usize> = (0..num_classes).filter(|&c| c != first).collect();
        others.shuffle(rng);
        for c in std::iter::once(first).chain(others.into_iter().take(k - 1)) {
            holders[c].push(i);
        }
    }
    let mut parts = vec![Vec::new(); clients];
    for (cls, h) in by_class.iter().zip(&holders) {
        if h.is_empty() {
            continue;
        }
        let mut c = cls.clone();
        c.shuffle(rng);
        for (&client, piece) in h
            .iter()
            .zip(split_by(&c, &vec![1.0 / h.len() as f64; h.len()]))
        {
            parts[client].extend(piece);
        }
    }
    Ok(parts)
}

/// Per-client class counts (`counts[client][class]`).
pub fn class_counts(labels: &[usize], num_classes: usize, parts: &[Vec<usize>]) -> Vec<Vec<usize>> {
    parts
        .iter()
        .map(|p| {
            let mut c = vec![0; num_classes];
            for &i in p {
                c[labels[i]] += 1;
            }
            c
        })
        .collect()
}

/// The partition summary as CSV: `client,size,class_0,...`.
pub fn counts_csv(counts: &[Vec<usize>]) -> String {
    let k = counts.first().map_or(0, Vec::len);
    let mut out = String::from("client,size");
    for c in 0..k {
        out.push_str(&format!(",class_{c}"));
    }
    out.push('\n');
    for (i, row) in counts.iter().enumerate() {
        out.push_str(&format!("{i},{}", row.iter().sum::<usize>()));
        for v in row {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    out
}
