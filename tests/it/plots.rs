//! The SVG plots: parsed back as XML, each line chart has one polyline per series and each
//! heatmap one cell per value (the run kinds' tests check their own files the same way).

use super::common::svg_shapes;
use distillery::report::plot::{heatmap_svg, lines_svg};

#[test]
fn line_charts_and_heatmaps_parse_with_their_series_and_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..3)
        .map(|k| {
            let pts = (0..4).map(|i| (i as f64, 0.2 * k as f64 + 0.1)).collect();
            (format!("a<{k}>&"), pts)
        })
        .collect();
    let p = tmp.path().join("l.svg");
    std::fs::write(&p, lines_svg("t & u", "x", "y", &series)).unwrap();
    assert_eq!(svg_shapes(&p), (3, 0));
    let names: Vec<String> = vec!["r0".into(), "r1".into()];
    let cols: Vec<String> = vec!["c0".into(), "c1".into(), "c2".into()];
    let cells = vec![vec![0.1, 0.5, 0.9], vec![0.2, f64::NAN]];
    let p = tmp.path().join("h.svg");
    std::fs::write(&p, heatmap_svg("h", "r", "c", &names, &cols, &cells, None)).unwrap();
    assert_eq!(svg_shapes(&p), (0, 5));
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(">0.900<") && text.contains(">NaN<"), "{text}");
}
