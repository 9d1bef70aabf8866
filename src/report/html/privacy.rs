//! The privacy audit's part of a report: how it was set up, each set's figures (nearest-real
//! distances, the membership attacks), federated totals over clients, and the closest pairs
//! (`closest/<set>.png`: each set's closest images above their nearest real images).

use super::headline::percent;
use super::page::{esc, png_figure, table};
use crate::audit::records::PrivacyAudit;
use crate::error::{Error, Result};
use crate::files::files_ending;
use std::path::Path;

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".into(), f)
}

fn three(x: f64) -> String {
    format!("{x:.3}")
}

fn share(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The audit section of a run's report.
pub fn section(p: &PrivacyAudit, dir: &Path) -> Result<String> {
    let s = &p.setup;
    let mut out = format!(
        "<h2>Privacy audit</h2>\n<p>{} members; non-members from {} ({} available, {} scored); networks trained {} epochs; {} reference networks; distances in {}; {:.1} s.</p>\n",
        s.members,
        esc(&s.nonmembers_from),
        s.nonmembers,
        s.scored_nonmembers,
        s.epochs,
        s.reference_nets,
        esc(&s.distance),
        p.seconds
    );
    let head: Vec<String> = [
        "set",
        "images",
        "test acc (%)",
        "copies px",
        "median px",
        "copies ft",
        "median ft",
        "loss AUC",
        "TPR@1%",
        "advantage",
        "cal. AUC",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = p
        .sets
        .iter()
        .map(|(name, a)| {
            let n = a.nearest.as_ref();
            vec![
                name.clone(),
                a.images.to_string(),
                percent(a.test_acc, None),
                opt(n.map(|n| n.pixel.near_copy_share), share),
                opt(n.map(|n| n.pixel.median), three),
                opt(n.map(|n| n.feature.near_copy_share), share),
                opt(n.map(|n| n.feature.median), three),
                three(a.attack.loss.auc),
                share(a.attack.loss.tpr_at_1pct_fpr),
                three(a.attack.loss.advantage),
                opt(a.attack.calibrated.as_ref().map(|c| c.auc), three),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out += &table(&head, &rows);
    }
    out += &clients(p);
    out += &closest(dir)?;
    Ok(out)
}

fn clients(p: &PrivacyAudit) -> String {
    if p.clients.is_empty() {
        return String::new();
    }
    let head: Vec<String> = [
        "set (per client)",
        "clients",
        "images",
        "copies px",
        "median px",
        "test acc (%)",
        "loss AUC mean",
        "loss AUC max",
        "cal. AUC mean",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = p
        .clients
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                c.clients.to_string(),
                c.images.to_string(),
                opt(c.pixel_near_copy_share, share),
                opt(c.pixel_median, three),
                percent(c.test_acc_mean, None),
                three(c.loss_auc_mean),
                three(c.loss_auc_max),
                opt(c.calibrated_auc_mean, three),
            ]
        })
        .collect();
    table(&head, &rows)
}

fn closest(dir: &Path) -> Result<String> {
    let folder = dir.join("closest");
    if !folder.is_dir() {
        return Ok(String::new());
    }
    let pngs = files_ending(&folder, ".png")?;
    let mut out = String::from(
        "<h3>Closest pairs</h3>\n<p>Each set's images closest to a real image (top row) above their nearest real images.</p>\n",
    );
    for p in pngs {
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
        out += &png_figure(&bytes, &name.unwrap_or_default());
    }
    Ok(out)
}
