//! TensorBoard event files: CRC-32C and TFRecord framing against known values, a DM run's
//! events decoded back (its loss and accuracy curves, its sets' pictures), damage detected, and
//! the file read by the `tensorboard` Python package (skipped, saying so, where Python lacks it).

use crate::common::run_text;
use crate::report_html::DM;
use distillery::report::rows::DistillRow;
use distillery::report::tensorboard::{crc32c, masked_crc, read_records, record, Event};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn crc32c_and_records_match_the_known_values() {
    // The CRC-32C check value (RFC 3720, B.4) and iSCSI's 32 zero bytes.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    assert_eq!(
        masked_crc(b""),
        0u32.rotate_right(15).wrapping_add(0xa282_ead8)
    );
    let r = record(b"abc");
    assert_eq!(r.len(), 8 + 4 + 3 + 4);
    assert_eq!(&r[..8], &3u64.to_le_bytes());
    assert_eq!(read_records(&r).unwrap(), vec![b"abc".to_vec()]);
    let mut bad = r.clone();
    bad[13] ^= 1;
    assert!(read_records(&bad).unwrap_err().contains("data CRC"));
    assert!(read_records(&r[..10]).unwrap_err().contains("cut short"));
}

fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("events.out.tfevents."))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// (tag, step, value) of every scalar in the file, and the tags of its images.
fn decode(path: &Path) -> (Vec<(String, i64, f32)>, Vec<String>) {
    let recs = read_records(&std::fs::read(path).unwrap()).unwrap();
    let first = Event::decode(recs[0].as_slice()).unwrap();
    assert_eq!(first.file_version.as_deref(), Some("brain.Event:2"));
    let (mut scalars, mut images) = (Vec::new(), Vec::new());
    for r in &recs[1..] {
        let e = Event::decode(r.as_slice()).unwrap();
        for v in e.summary.unwrap().value {
            match (v.simple_value, v.image) {
                (Some(x), _) => scalars.push((v.tag, e.step, x)),
                (None, Some(img)) => {
                    assert!(img.encoded_image_string.starts_with(b"\x89PNG"));
                    assert!(img.width > 0 && img.height > 0);
                    images.push(v.tag);
                }
                _ => panic!("an empty value under {}", v.tag),
            }
        }
    }
    (scalars, images)
}

#[test]
fn a_dm_run_writes_its_loss_and_accuracy_curves_and_sets() {
    let root = tempfile::tempdir().unwrap();
    let out = run_text(DM, root.path());
    let path = event_file(&out.dir);
    let (scalars, images) = decode(&path);
    let rows: Vec<DistillRow> = csv::Reader::from_path(out.dir.join("metrics.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    let loss: Vec<(i64, f32)> = rows
        .iter()
        .filter(|r| r.phase == "distill")
        .map(|r| (r.iteration.parse().unwrap(), r.loss.unwrap().0 as f32))
        .collect();
    let of = |tag: &str| -> Vec<(i64, f32)> {
        scalars
            .iter()
            .filter(|s| s.0 == tag)
            .map(|s| (s.1, s.2))
            .collect()
    };
    assert_eq!(of("dm/loss"), loss);
    assert_eq!(
        loss.iter().map(|l| l.0).collect::<Vec<_>>(),
        [5, 10, 15, 20]
    );
    // Accuracy at the mid-run evaluation and at the end, the mean over the networks.
    let acc = of("dm/test_acc/convnet");
    assert_eq!(acc.iter().map(|a| a.0).collect::<Vec<_>>(), [10, 20]);
    let end = &out.summary.distill().unwrap().results["dm"]["convnet"];
    assert!((f64::from(acc[1].1) - end.mean).abs() < 1e-6);
    assert!(images.contains(&"dm/images".to_string()));
    assert!(images.contains(&"closest/dm".to_string()));
    // `distillery report --tensorboard` replaces the file rather than adding a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    distillery::report::tensorboard::export::write_events(&out.dir).unwrap();
    assert_eq!(decode(&event_file(&out.dir)).0, scalars);
    python_reads(&out.dir, &loss);
}

/// Reads the run's events with tensorboard's own EventAccumulator (`TENSORBOARD_PYTHON`, else
/// `python3`), when that Python has it.
fn python_reads(dir: &Path, loss: &[(i64, f32)]) {
    let python = std::env::var("TENSORBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipped: {python} has no tensorboard package (set TENSORBOARD_PYTHON to one that has)"
        );
        return;
    }
    let script = "import sys\n\
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'images': 0})\n\
ea.Reload()\n\
for e in ea.Scalars('dm/loss'): print(e.step, repr(e.value))\n\
print('images', len(ea.Images('dm/images')))\n\
print('acc', len(ea.Scalars('dm/test_acc/convnet')))\n";
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("acc 2"));
    assert_eq!(lines.pop(), Some("images 1"));
    let read: Vec<(i64, f32)> = lines
        .iter()
        .map(|l| {
            let (s, v) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(read, loss);
}
