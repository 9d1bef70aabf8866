//! What runs leave behind for people: typed records (summaries and CSV rows, the same field names
//! in every run kind), SVG plots, `compare` (methods across runs, paired by seed), the HTML
//! report and TensorBoard event files.

pub mod audit;
pub mod compare;
pub mod continual;
pub mod federated;
pub mod fidelity;
pub mod html;
pub mod plot;
pub mod records;
pub mod rows;
pub mod tensorboard;

/// What a finished run writes for people (`[report]`): `report.html` and TensorBoard events. A
/// failure is logged, not returned: the run's results are already safe, and
/// `distillery report DIR` writes them again.
pub fn at_end(dir: &std::path::Path, settings: &crate::scenario::ReportSettings) {
    // The events first, so the report lists their file.
    if settings.tensorboard {
        if let Err(e) = tensorboard::export::write_events(dir) {
            tracing::warn!("could not write the TensorBoard events: {e}");
        }
    }
    if settings.html {
        if let Err(e) = html::write_run_report(dir) {
            tracing::warn!(
                "could not write report.html: {e} (try `distillery report {}`)",
                dir.display()
            );
        }
    }
}

/// Mean and (population) standard deviation (NaN for no values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    (m, v.sqrt())
}
