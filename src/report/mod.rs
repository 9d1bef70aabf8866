//! What runs leave behind for people: typed records (summaries and CSV rows, the same field names
//! in every run kind), SVG plots, and `compare` (methods across runs, paired by seed).

pub mod compare;
pub mod plot;
/// The privacy audit's records, kept with the audit that makes them.
pub use crate::audit::records as privacy;
pub mod records;
pub mod rows;

/// Mean and (population) standard deviation (NaN for no values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    (m, v.sqrt())
}
