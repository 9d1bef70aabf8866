//! `report.html`: it parses as HTML5, holds every headline figure of the summary, every plot
//! file's SVG, every set's images and the audit's tables, fetches nothing; the page over many
//! runs links every run and pairs distill runs by seed; and a real headless browser renders it
//! (skipped, saying so, where none is installed).

use crate::common::run_text;
use distillery::experiment::RunOutput;
use distillery::report::html::headline::{fraction, megabytes, percent};
use distillery::report::html::page::base64;
use distillery::report::html::{self, IndexOptions};
use scraper::{Html, Selector};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A DM run on the digits with one baseline, a mid-run evaluation and the audit.
pub const DM: &str = r#"
name = "r-dm"
kind = "distill"
seed = 3
[data]
source = "digits"
[model]
width = 8
depth = 2
[distill]
method = "dm"
ipc = 2
iterations = 20
batch_real = 16
log_every = 5
eval_every = 10
baselines = ["random"]
[eval]
epochs = 10
repeats = 2
coverage_sample = 60
[audit]
member_share = 0.5
sample = 40
reference_nets = 0
[report]
tensorboard = true
"#;

const CONTINUAL: &str = r#"
name = "r-cl"
kind = "continual"
seed = 2
[data]
source = "synthetic"
train = 160
test = 60
size = 8
classes = 4
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 16
[distill]
method = "dm"
iterations = 2
batch_real = 8
[continual]
tasks = 2
strategies = ["finetune", "dm"]
memory_total = 8
memory_epochs = 2
[audit]
enabled = false
"#;

const FEDERATED: &str = r#"
name = "r-fed"
kind = "federated"
seed = 1
[data]
source = "synthetic"
train = 160
test = 60
size = 8
classes = 4
[model]
width = 8
depth = 2
[train]
epochs = 1
batch_size = 16
[eval]
epochs = 5
[distill]
method = "dm"
ipc = 1
iterations = 2
batch_real = 8
[federated]
clients = 2
strategies = ["distilled_oneshot", "fedavg"]
rounds = 2
[audit]
enabled = false
"#;

fn page(dir: &Path) -> (String, Html) {
    let text = std::fs::read_to_string(dir.join("report.html")).expect("report.html written");
    let doc = Html::parse_document(&text);
    (text, doc)
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// Every table cell of the page, as text.
fn cells(doc: &Html) -> Vec<String> {
    doc.select(&sel("td"))
        .map(|c| c.text().collect::<String>())
        .collect()
}

/// The page fetches nothing and runs nothing: no scripts, stylesheets or frames; every image
/// inline; and its SVG plots are those of the folder, byte for byte.
fn self_contained(text: &str, doc: &Html, dir: &Path) {
    for bad in ["script", "link", "iframe", "object", "embed"] {
        assert_eq!(doc.select(&sel(bad)).count(), 0, "a <{bad}> in the report");
    }
    for img in doc.select(&sel("img")) {
        let src = img.value().attr("src").unwrap();
        assert!(
            src.starts_with("data:image/png;base64,iVBORw0KGgo"),
            "{src:.40}"
        );
    }
    let mut svgs = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "svg") {
            let svg = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.contains(svg.trim()),
                "{} is not in the report",
                p.display()
            );
            svgs += 1;
        }
    }
    assert_eq!(doc.select(&sel("figure svg")).count(), svgs);
    assert!(
        doc.errors.is_empty(),
        "HTML5 parse errors: {:?}",
        doc.errors
    );
}

#[test]
fn report_html_of_a_distill_run_holds_its_figures_sets_and_audit() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(DM, root.path());
    let (text, doc) = page(&out.dir);
    self_contained(&text, &doc, &out.dir);
    let title: String = doc.select(&sel("title")).next().unwrap().text().collect();
    assert_eq!(title, "r-dm (distill)");
    // What ran: the scenario's exact text, seed and device.
    let pre: String = doc.select(&sel("pre")).next().unwrap().text().collect();
    assert_eq!(
        pre,
        std::fs::read_to_string(out.dir.join("scenario.toml")).unwrap()
    );
    let dd: Vec<String> = doc.select(&sel("dd")).map(|d| d.text().collect()).collect();
    assert!(
        dd.contains(&"3".to_string()) && dd.contains(&out.summary.device),
        "{dd:?}"
    );
    assert!(dd
        .iter()
        .any(|d| d.starts_with("2 images per class, 20 iterations")));
    // Every method's accuracy on every model, as the summary holds it, and the set's size.
    let td = cells(&doc);
    let d = out.summary.distill().unwrap();
    for models in d.results.values() {
        for a in models.values() {
            let shown = percent(a.mean, Some(a.std));
            assert!(td.contains(&shown), "{shown} not in {td:?}");
        }
    }
    assert!(td.contains(&megabytes((2 * 10 * 64 * 4) as f64)));
    let secs = format!(
        "{:.1}",
        d.distilled["dm"].seconds + d.distilled["dm"].preparation_seconds
    );
    assert!(td.contains(&secs));
    // Both sets' pictures (their PNG files, inline), and every audited set's row and closest pairs.
    let imgs: Vec<&str> = doc
        .select(&sel("img"))
        .map(|i| i.value().attr("src").unwrap())
        .collect();
    for set in ["dm", "random"] {
        let png = std::fs::read(out.dir.join(format!("{set}.png"))).unwrap();
        assert!(imgs.contains(&format!("data:image/png;base64,{}", base64(&png)).as_str()));
    }
    let p = out.summary.privacy.as_ref().unwrap();
    for (set, a) in &p.sets {
        assert!(td.contains(set), "{set}");
        assert!(td.contains(&format!("{:.3}", a.attack.loss.auc)), "{set}");
        if set != "real_data" {
            let png = std::fs::read(out.dir.join(format!("closest/{set}.png"))).unwrap();
            assert!(imgs.contains(&format!("data:image/png;base64,{}", base64(&png)).as_str()));
        }
    }
    // The two sets, and the closest pairs of dm and random (the audit's random selection is
    // the run's random baseline); the real-data baseline has none.
    assert_eq!(imgs.len(), 2 + 2);
    // Rewriting it gives the same page.
    html::write_run_report(&out.dir).unwrap();
    assert_eq!(page(&out.dir).0, text);
}

fn run_kind(text: &str, root: &Path) -> RunOutput {
    let out = run_text(text, root);
    let (html, doc) = page(&out.dir);
    self_contained(&html, &doc, &out.dir);
    out
}

#[test]
fn report_html_of_continual_and_federated_runs_holds_their_figures() {
    let root = tempfile::tempdir().unwrap();
    let cl = run_kind(CONTINUAL, root.path());
    let td = cells(&page(&cl.dir).1);
    for (name, s) in &cl.summary.continual().unwrap().strategies {
        let m = &s.metrics;
        for x in [m.average_accuracy, m.forgetting, m.backward_transfer] {
            assert!(
                td.contains(&fraction(x.unwrap())),
                "{name}: {x:?} not in {td:?}"
            );
        }
    }
    let fed = run_kind(FEDERATED, root.path());
    let td = cells(&page(&fed.dir).1);
    for (name, s) in &fed.summary.federated().unwrap().strategies {
        assert!(
            td.contains(&percent(s.final_accuracy.unwrap(), None)),
            "{name}"
        );
        assert!(td.contains(&megabytes(s.bytes_total as f64)), "{name}");
        assert!(
            td.contains(&format!("{:.1}", s.client_compute_seconds)),
            "{name}"
        );
    }
    assert!(fed.dir.join("partition.svg").is_file());
    // Off when the scenario says so; an unknown key of [report] is named.
    let off = run_text(&format!("{FEDERATED}[report]\nhtml = false\n"), root.path());
    assert!(!off.dir.join("report.html").exists());
    let bad = format!("{FEDERATED}[report]\ntensorbord = true\n");
    let err = distillery::scenario::parse(&bad, Path::new("bad.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tensorbord"), "{err}");
}

fn link_targets(doc: &Html) -> Vec<String> {
    doc.select(&sel("a"))
        .map(|a| a.value().attr("href").unwrap().to_string())
        .collect()
}

#[test]
fn report_over_many_runs_links_each_and_pairs_distill_runs_by_seed() {
    let root = tempfile::tempdir().unwrap();
    let quick = DM
        .replace("iterations = 20", "iterations = 4")
        .replace("[audit]\n", "[audit]\nenabled = false\n")
        .replace("tensorboard = true", "tensorboard = false");
    let a = run_text(&quick, root.path());
    let b = run_text(&quick.replace("seed = 3", "seed = 4"), root.path());
    let cl = run_text(CONTINUAL, root.path());
    // A run that has not finished, and a cache folder that is not a run.
    let unfinished = root.path().join("r-x-20000101-000000");
    std::fs::create_dir(&unfinished).unwrap();
    std::fs::copy(
        a.dir.join("scenario.toml"),
        unfinished.join("scenario.toml"),
    )
    .unwrap();
    std::fs::create_dir(root.path().join("experts")).unwrap();
    for d in [&a.dir, &b.dir, &cl.dir] {
        std::fs::remove_file(d.join("report.html")).unwrap();
    }
    let opts = IndexOptions {
        compare: true,
        against: Some("random".into()),
    };
    let w = html::report(root.path(), &opts).unwrap();
    assert_eq!((w.runs, w.unfinished), (3, 1));
    let (text, doc) = page(root.path());
    assert!(doc.errors.is_empty(), "{:?}", doc.errors);
    assert_eq!(
        doc.select(&sel("table"))
            .next()
            .unwrap()
            .select(&sel("tbody tr"))
            .count(),
        4
    );
    let links = link_targets(&doc);
    for run in [&a, &b, &cl] {
        let name = run.dir.file_name().unwrap().to_string_lossy().to_string();
        let href = format!("{name}/report.html");
        assert!(links.contains(&href), "{href} not in {links:?}");
        assert!(root.path().join(&href).is_file(), "{href} not written");
    }
    let td = cells(&doc);
    assert!(td.contains(&"continual".to_string()) && td.contains(&"distill".to_string()));
    assert!(td.iter().any(|c| c.contains("not finished")));
    let dm_a = &a.summary.distill().unwrap().results["dm"]["convnet"];
    let headline = format!("dm (convnet) {}%", percent(dm_a.mean, Some(dm_a.std)));
    assert!(td.iter().any(|c| c.contains(&headline)), "{headline}");
    // Paired by seed: a column per seed, each run's mean, and compare's text against random.
    let heads: Vec<String> = doc.select(&sel("th")).map(|h| h.text().collect()).collect();
    assert!(heads.contains(&"seed 3".to_string()) && heads.contains(&"seed 4".to_string()));
    assert!(td.contains(&format!("{:.2}", 100.0 * dm_a.mean)));
    assert!(text.contains("paired by seed against random"), "{text}");
    // What it refuses, by name.
    let none = tempfile::tempdir().unwrap();
    let err = html::report(none.path(), &IndexOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no results folders"), "{err}");
    let err = html::report(&none.path().join("absent"), &IndexOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no such folder"), "{err}");
    let err = html::report(&unfinished, &IndexOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not finished"), "{err}");
    let wrong = IndexOptions {
        compare: true,
        against: Some("mtt".into()),
    };
    let err = html::report(root.path(), &wrong).unwrap_err();
    assert!(err.to_string().contains("--against mtt"), "{err}");
    // The command: every run's events and report, the page over them; errors exit non-zero.
    let exe = env!("CARGO_BIN_EXE_distillery");
    let out = Command::new(exe)
        .args(["report", "--tensorboard"])
        .arg(root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(3 finished runs, 1 unfinished)"),
        "{stdout}"
    );
    for run in [&a, &b, &cl] {
        let events = std::fs::read_dir(&run.dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("events.out.tfevents.")
            })
            .count();
        assert_eq!(events, 1, "{}", run.dir.display());
    }
    let out = Command::new(exe)
        .args(["report"])
        .arg(none.path().join("absent"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such folder"));
}

/// The first of the usual names of Chromium or Chrome on PATH.
fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

/// Renders `page` in headless `browser` and returns the screenshot's RGB pixels.
pub fn screenshot(browser: &Path, page: &Path, png: &Path) -> (usize, usize, Vec<u8>) {
    let status = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks(ch)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, info.height as usize, rgb)
}

#[test]
fn report_html_renders_in_a_headless_browser() {
    let Some(browser) = browser() else {
        eprintln!("skipped: no chromium, chromium-browser or google-chrome on PATH (Debian: apt-get install chromium)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = run_text(CONTINUAL, root.path());
    let shot = root.path().join("shot.png");
    let (w, h, rgb) = screenshot(&browser, &out.dir.join("report.html"), &shot);
    assert_eq!((w, h), (1200, 1600));
    // Not blank: text, tables and heatmaps leave many non-white pixels in several colours.
    let px: Vec<&[u8]> = rgb.chunks(3).collect();
    let dark = px.iter().filter(|p| p.iter().all(|&c| c < 128)).count();
    let blue = px.iter().filter(|p| p[2] > 100 && p[0] < 100).count();
    let inked = px.iter().filter(|p| p.iter().any(|&c| c < 240)).count();
    assert!(dark > 1000, "only {dark} dark pixels: blank page?");
    assert!(blue > 100, "only {blue} blue pixels: no heatmap drawn?");
    assert!(
        inked * 50 > px.len(),
        "{inked} of {} pixels inked",
        px.len()
    );
}

#[test]
fn base64_matches_rfc_4648() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc);
    }
}
