//! What a gRPC server says while it waits: a progress line every few seconds (clients joined of
//! those expected, updates received of those selected) and, when the wait ends short, which
//! client ids it is still missing, written as ranges (`7500-9999, 10012`) so that ten thousand
//! missing ids stay one readable line.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often a waiting server prints its progress line.
pub const EVERY: Duration = Duration::from_secs(10);

/// At most this many ranges are written out; the rest are counted.
const MAX_RANGES: usize = 8;

/// `ids` (any order, duplicates ignored) as sorted ranges: `0-3, 7, 9-10`, the tail after
/// eight ranges summarised as `... (N more ids)`.
pub fn id_ranges(ids: impl IntoIterator<Item = u32>) -> String {
    let mut v: Vec<u32> = ids.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for id in v {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == id => *hi = id,
            _ => ranges.push((id, id)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(MAX_RANGES)
        .map(|&(lo, hi)| match lo == hi {
            true => lo.to_string(),
            false => format!("{lo}-{hi}"),
        })
        .collect();
    let rest: u64 = ranges
        .iter()
        .skip(MAX_RANGES)
        .map(|&(lo, hi)| u64::from(hi - lo) + 1)
        .sum();
    match rest {
        0 => shown.join(", "),
        n => format!("{}, ... ({n} more ids)", shown.join(", ")),
    }
}

/// The ids in `0..expected` that are not in `have`.
pub fn missing_of(expected: usize, have: &HashSet<u32>) -> impl Iterator<Item = u32> + '_ {
    (0..expected as u32).filter(move |c| !have.contains(c))
}

/// The ids in `want` that are not in `have`.
pub fn missing_from<'a, T>(
    want: &'a HashSet<u32>,
    have: &'a std::collections::HashMap<u32, T>,
) -> impl Iterator<Item = u32> + 'a {
    want.iter().copied().filter(move |c| !have.contains_key(c))
}

/// Waits until `done()` holds (true) or `wait` passes (false), re-checking whenever `notify`
/// fires and calling `say(seconds waited)` every [`EVERY`] meanwhile.
pub async fn until(
    notify: &tokio::sync::Notify,
    wait: Duration,
    mut done: impl FnMut() -> bool,
    mut say: impl FnMut(f64),
) -> bool {
    let now = tokio::time::Instant::now();
    // No limit (Duration::MAX): a century stands for forever.
    let end = now
        .checked_add(wait)
        .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
    let mut tick = Ticker::new();
    loop {
        let notified = notify.notified();
        if done() {
            return true;
        }
        if tick.due() {
            say(tick.seconds());
        }
        let step = (tokio::time::Instant::now() + EVERY).min(end);
        if tokio::time::timeout_at(step, notified).await.is_err()
            && tokio::time::Instant::now() >= end
        {
            return done();
        }
    }
}

/// A rate-limited progress line: [`Ticker::due`] is true once every [`EVERY`].
pub struct Ticker {
    started: Instant,
    last: Instant,
}

impl Ticker {
    /// A ticker that starts now.
    pub fn new() -> Self {
        let now = Instant::now();
        Ticker {
            started: now,
            last: now,
        }
    }

    /// Seconds since the wait began.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// True when a progress line is due (and counts it as said).
    pub fn due(&mut self) -> bool {
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            return true;
        }
        false
    }
}

impl Default for Ticker {
    fn default() -> Self {
        Ticker::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_ranges() {
        assert_eq!(id_ranges([]), "");
        assert_eq!(id_ranges([5]), "5");
        assert_eq!(id_ranges([3, 1, 2, 2, 0, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(id_ranges(7500..10000), "7500-9999");
        // Nine ranges: the ninth (two ids) and the tenth (one id) are counted, not listed.
        let ids = (0..8).map(|k| k * 10).chain([100, 101, 200]);
        assert_eq!(
            id_ranges(ids),
            "0, 10, 20, 30, 40, 50, 60, 70, ... (3 more ids)"
        );
    }

    #[test]
    fn missing_ids_are_those_not_had() {
        let have: HashSet<u32> = [0, 2, 3].into_iter().collect();
        assert_eq!(missing_of(6, &have).collect::<Vec<_>>(), [1, 4, 5]);
        let got: std::collections::HashMap<u32, ()> = [(2, ())].into_iter().collect();
        let mut m: Vec<u32> = missing_from(&have, &got).collect();
        m.sort_unstable();
        assert_eq!(m, [0, 3]);
    }
}
