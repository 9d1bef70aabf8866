//! Bounded exponential backoff for clients that cannot reach their server: waits double from a
//! quarter second up to ten seconds, and the client gives up once a failure streak would outlast
//! the configured total. Retries are logged, at most one line a second per process (a process may
//! host hundreds of clients that lose the server together).

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long and how often a client retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    /// The longest one failure streak may last before the client gives up (zero: no retries).
    pub max_wait: Duration,
    /// The first wait.
    pub first: Duration,
    /// The longest single wait.
    pub cap: Duration,
}

impl Default for Retry {
    /// Five minutes of retries, waits from 0.25 s doubling to 10 s.
    fn default() -> Self {
        Retry::for_seconds(300.0)
    }
}

impl Retry {
    /// Retries for up to `seconds` (waits from 0.25 s doubling to 10 s).
    pub fn for_seconds(seconds: f64) -> Self {
        Retry {
            max_wait: Duration::from_secs_f64(seconds.max(0.0)),
            first: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }

    /// The wait before attempt `n` (0-based) of a streak: `first * 2^n`, at most `cap`.
    pub fn delay(&self, n: u32) -> Duration {
        self.first
            .checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

/// Rate-limits retry lines across the clients of one process.
#[derive(Clone, Default)]
pub struct RetryLog(Arc<Mutex<Option<Instant>>>);

impl RetryLog {
    /// Prints `line` on stderr unless a line was printed less than a second ago.
    pub fn say(&self, line: &str) {
        if let Ok(mut last) = self.0.lock() {
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                eprintln!("{line}");
                *last = Some(Instant::now());
            }
        }
    }
}

/// One failure streak: counts attempts and the time since the first failure.
pub struct Streak<'a> {
    retry: &'a Retry,
    log: &'a RetryLog,
    started: Instant,
    attempts: u32,
}

impl<'a> Streak<'a> {
    /// A streak that starts now.
    pub fn new(retry: &'a Retry, log: &'a RetryLog) -> Self {
        Streak {
            retry,
            log,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// Attempts waited for so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Waits before the next attempt after failure `why` of `who`, or fails (naming `why` and
    /// how long it tried) when the wait would take the streak past `max_wait`.
    pub async fn wait(&mut self, who: &str, why: &str) -> Result<()> {
        let d = self.retry.delay(self.attempts);
        let spent = self.started.elapsed();
        if spent + d > self.retry.max_wait {
            return Err(Error::Transport(format!(
                "{who}: {why} (gave up after {} attempts over {:.1} s; --retry-for sets how long)",
                self.attempts + 1,
                spent.as_secs_f64()
            )));
        }
        self.log.say(&format!(
            "{who}: {why}; retrying in {:.2} s (attempt {}, {:.0} of {:.0} s)",
            d.as_secs_f64(),
            self.attempts + 1,
            spent.as_secs_f64(),
            self.retry.max_wait.as_secs_f64()
        ));
        tokio::time::sleep(d).await;
        self.attempts += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let r = Retry::for_seconds(60.0);
        let ms: Vec<u128> = (0..8).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(r.delay(40), Duration::from_secs(10));
    }

    #[test]
    fn a_streak_gives_up_past_its_budget() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // 0.25 + 0.5 fit in one second; the third wait (1 s) would not.
        let r = Retry::for_seconds(1.0);
        let log = RetryLog::default();
        let mut s = Streak::new(&r, &log);
        rt.block_on(async {
            s.wait("client 0", "down").await.unwrap();
            s.wait("client 0", "down").await.unwrap();
            let e = s.wait("client 0", "down").await.unwrap_err().to_string();
            assert!(e.contains("gave up after 3 attempts"), "{e}");
        });
        assert_eq!(s.attempts(), 2);
    }
}
