//! Progress for the person watching: a bar on a terminal, timed lines in a log, nothing when
//! quiet. Below every module that loops (data downloads, training, distillation, runs).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts training steps (or bytes) for a progress bar; shared by worker threads (hidden when
/// quiet). On a terminal it is an indicatif bar; when stderr is not one (a cluster job's log) it
/// logs a progress line every few seconds instead (`DISTILLERY_PROGRESS_SECONDS`, default 5),
/// and the lines said above the bar go to the log too (`tracing`, shown at `RUST_LOG=info`).
#[derive(Clone, Debug, Default)]
pub struct Progress {
    shown: Option<Arc<Shown>>,
}

#[derive(Debug)]
enum Shown {
    Bar(indicatif::ProgressBar),
    Lines(Lines),
}

/// The off-terminal form: counts, and a line when the interval has passed.
#[derive(Debug)]
struct Lines {
    total: u64,
    bytes: bool,
    pos: AtomicU64,
    message: Mutex<String>,
    start: Instant,
    every_ms: u64,
    /// Milliseconds after `start` at which the next line is due.
    next_ms: AtomicU64,
    finished: AtomicBool,
}

impl Lines {
    fn new(total: u64, bytes: bool, every: Duration) -> Lines {
        let every_ms = every.as_millis() as u64;
        Lines {
            total,
            bytes,
            pos: AtomicU64::new(0),
            message: Mutex::new(String::new()),
            start: Instant::now(),
            every_ms,
            next_ms: AtomicU64::new(every_ms),
            finished: AtomicBool::new(false),
        }
    }

    fn advance(&self, n: u64) {
        self.pos.fetch_add(n, Ordering::Relaxed);
        let now = self.start.elapsed().as_millis() as u64;
        let due = self.next_ms.load(Ordering::Relaxed);
        // One thread claims each due line; the others go on.
        if now >= due
            && self
                .next_ms
                .compare_exchange(
                    due,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::info!("{}", self.line(false));
        }
    }

    fn count(&self, n: u64) -> String {
        if self.bytes {
            format!("{:.1} MB", n as f64 / 1e6)
        } else {
            n.to_string()
        }
    }

    fn line(&self, done: bool) -> String {
        let pos = self.pos.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64();
        let unit = if self.bytes { "" } else { " steps" };
        let msg = self.message.lock().map(|m| m.clone()).unwrap_or_default();
        let msg = if msg.is_empty() {
            msg
        } else {
            format!(" {msg}")
        };
        if done {
            return format!("done: {}{unit} in {secs:.0} s{msg}", self.count(pos));
        }
        let pct = 100.0 * pos as f64 / self.total.max(1) as f64;
        let eta = match pos {
            0 => "?".to_string(),
            p => format!(
                "{:.0} s",
                secs * self.total.saturating_sub(p) as f64 / p as f64
            ),
        };
        format!(
            "{}/{}{unit} ({pct:.1}%), {secs:.0} s elapsed, about {eta} left{msg}",
            self.count(pos),
            self.count(self.total)
        )
    }
}

fn line_interval() -> Duration {
    let secs = std::env::var("DISTILLERY_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

impl Progress {
    /// No output at all.
    pub const HIDDEN: Progress = Progress { shown: None };

    /// No output at all.
    pub fn hidden() -> Self {
        Progress { shown: None }
    }

    /// A bar of `total` steps on the terminal (progress lines when stderr is not a terminal).
    pub fn bar(total: u64) -> Self {
        Self::styled(
            total,
            false,
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({eta} left) {msg}",
        )
    }

    /// A bar of `total` bytes (a download), or progress lines off a terminal.
    pub fn bytes(total: u64) -> Self {
        Self::styled(
            total,
            true,
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}",
        )
    }

    /// Progress lines every `every` (what [`Progress::bar`] gives off a terminal).
    pub fn lines(total: u64, every: Duration) -> Self {
        Progress {
            shown: Some(Arc::new(Shown::Lines(Lines::new(total, false, every)))),
        }
    }

    fn styled(total: u64, bytes: bool, template: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            let lines = Lines::new(total, bytes, line_interval());
            return Progress {
                shown: Some(Arc::new(Shown::Lines(lines))),
            };
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            shown: Some(Arc::new(Shown::Bar(bar))),
        }
    }

    /// One step done.
    pub fn tick(&self) {
        self.skip(1);
    }

    /// `n` steps done at once (work a resumed run does not repeat).
    pub fn skip(&self, n: u64) {
        match self.shown.as_deref() {
            Some(Shown::Bar(b)) => b.inc(n),
            Some(Shown::Lines(l)) => l.advance(n),
            None => {}
        }
    }

    /// The text beside the bar (or at the end of the next progress line).
    pub fn message(&self, text: String) {
        match self.shown.as_deref() {
            Some(Shown::Bar(b)) => b.set_message(text),
            Some(Shown::Lines(l)) => {
                if let Ok(mut m) = l.message.lock() {
                    *m = text;
                }
            }
            None => {}
        }
    }

    /// A line above the bar (a log line off a terminal; nothing when hidden).
    pub fn say(&self, line: &str) {
        match self.shown.as_deref() {
            Some(Shown::Bar(b)) => b.println(line),
            Some(Shown::Lines(_)) => tracing::info!("{line}"),
            None => {}
        }
    }

    /// True when nothing is shown.
    pub fn is_hidden(&self) -> bool {
        self.shown.is_none()
    }

    /// Removes the bar (off a terminal: one last line, once).
    pub fn finish(&self) {
        match self.shown.as_deref() {
            Some(Shown::Bar(b)) => b.finish_and_clear(),
            Some(Shown::Lines(l)) if !l.finished.swap(true, Ordering::Relaxed) => {
                tracing::info!("{}", l.line(true));
            }
            _ => {}
        }
    }
}
