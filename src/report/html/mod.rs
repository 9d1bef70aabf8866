//! `report.html`: one self-contained page per results folder ([`run`]: what ran, the headline
//! table, every plot inline as SVG, each set's images and the audit's closest pairs inline as
//! PNG, the audit's tables) and one page over many runs ([`index`]). No scripts, nothing fetched.

pub mod headline;
pub mod index;
pub mod page;
mod privacy;
pub mod run;

pub use index::{report, IndexOptions, Written};
pub use run::{run_page, write_run_report, REPORT};
