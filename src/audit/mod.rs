//! The privacy audit of every synthetic set a run makes (issue 26): how close each image is to
//! its nearest training image (in pixel space and in the coverage network's feature space, with
//! near-copies counted against the real data's own nearest-neighbour distances), and how well a
//! membership-inference attack tells the training images the set was made from (members) from
//! images it never saw (non-members), on a network trained on the set, beside the same attack on
//! a network trained on the members themselves and on a random selection of the same size.
//!
//! [`split`] makes the member / non-member split and the scored samples, [`nearest`] the
//! distances, [`attack`] and [`roc`] the attacks and their figures, [`auditor`] puts them
//! together for any run kind; [`settings`] is the `[audit]` section.

pub mod attack;
pub mod auditor;
pub mod nearest;
pub mod records;
pub mod roc;
pub mod run;
pub mod settings;
pub mod split;

pub use auditor::{Audited, Auditor, Population, Protocol};
pub use settings::AuditSettings;
