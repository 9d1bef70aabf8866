//! Which clients a `distillery client` process hosts (`--ids 0-99`, `--shard K/N`), and what it
//! says of them at the end.

/// Slice `k` of `n` equal slices of a scenario's clients (`K/N` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which slice (0-based).
    pub k: usize,
    /// How many slices.
    pub n: usize,
}

impl Shard {
    /// Reads `K/N` (0 <= K < N).
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("{s:?}: expected K/N with 0 <= K < N, such as 2/4");
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let (k, n) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        match k < n {
            true => Ok(Shard { k, n }),
            false => Err(bad()),
        }
    }

    /// The ids of this slice of `clients` clients: `k*clients/n .. (k+1)*clients/n`, so the
    /// slices cover every id once and differ in size by at most one.
    pub fn ids(&self, clients: usize) -> Vec<usize> {
        (self.k * clients / self.n..(self.k + 1) * clients / self.n).collect()
    }
}

/// Client ids from `3`, `0-99` or `3,5,7-9` (ranges inclusive), sorted, without repeats.
pub fn parse_ids(s: &str) -> std::result::Result<Vec<usize>, String> {
    let mut ids = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| {
            t.trim().parse::<usize>().map_err(|_| {
                format!("{s:?}: {t:?} is not a client id (expected ids such as 0-99 or 3,5,7-9)")
            })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{s:?}: range {a}-{b} runs backwards"));
                }
                if b - a >= 1_000_000 {
                    return Err(format!("{s:?}: range {a}-{b} is over a million clients"));
                }
                ids.extend(a..=b);
            }
            None => ids.push(num(part)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// What a client process says at the end: a line per client when it hosts a few, else a line
/// per number of tasks done, naming its clients as ranges (thousands of lines would bury it).
pub fn done_lines(done: &[(usize, usize)]) -> Vec<String> {
    const END: &str = "the server ended the run";
    if done.len() <= 10 {
        return done
            .iter()
            .map(|(id, n)| format!("client {id}: {n} tasks done; {END}"))
            .collect();
    }
    let mut by_count: std::collections::BTreeMap<usize, Vec<u32>> = Default::default();
    for &(id, n) in done {
        by_count.entry(n).or_default().push(id as u32);
    }
    by_count
        .into_iter()
        .map(|(n, ids)| {
            let k = ids.len();
            let ids = super::wait::id_ranges(ids);
            format!("{k} clients ({ids}): {n} tasks done each; {END}")
        })
        .collect()
}
