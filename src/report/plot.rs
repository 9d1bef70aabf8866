//! Small self-contained SVG plots for results folders: a heatmap with its values written in the
//! cells, and line charts. No fonts or libraries needed; any browser shows them.

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A white-to-blue colour for `v` in [0, 1].
fn shade(v: f64) -> String {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        lerp(247.0, 8.0),
        lerp(251.0, 48.0),
        lerp(255.0, 107.0)
    )
}

/// A heatmap of `cells` (rows of values in [0, 1]; a missing row entry is left blank), with row
/// and column labels and each cell's `texts` entry printed in it (its value when `None`).
pub fn heatmap_svg(
    title: &str,
    row_label: &str,
    col_label: &str,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<f64>],
    texts: Option<&[Vec<String>]>,
) -> String {
    let (cw, ch, left, top) = (64.0, 32.0, 110.0, 60.0);
    let w = left + cw * cols.len() as f64 + 20.0;
    let h = top + ch * rows.len() as f64 + 50.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    for (j, c) in cols.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            left + cw * (j as f64 + 0.5),
            top - 8.0,
            esc(c)
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + ch * i as f64;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            y + ch / 2.0 + 4.0,
            esc(r)
        ));
        for (j, v) in cells.get(i).into_iter().flatten().enumerate() {
            let x = left + cw * j as f64;
            let fg = if *v > 0.55 { "white" } else { "black" };
            let text = texts
                .and_then(|t| t.get(i).and_then(|r| r.get(j)).cloned())
                .unwrap_or_else(|| format!("{v:.3}"));
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cw}\" height=\"{ch}\" fill=\"{}\" stroke=\"white\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{fg}\">{}</text>\n",
                shade(*v),
                x + cw / 2.0,
                y + ch / 2.0 + 4.0,
                esc(&text)
            ));
        }
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>\n</svg>\n",
        left + cw * cols.len() as f64 / 2.0,
        h - 14.0,
        esc(col_label),
        top + ch * rows.len() as f64 / 2.0,
        top + ch * rows.len() as f64 / 2.0,
        esc(row_label)
    ));
    s
}

const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The x axis's ticks over `[x0, x1]`: every integer when the data are integers over a short
/// span, else six evenly spaced values with as many digits as the span needs.
fn x_ticks(series: &[(String, Vec<(f64, f64)>)], x0: f64, x1: f64) -> Vec<(f64, String)> {
    let integral = (series.iter())
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .all(|x| x.fract() == 0.0);
    if integral && x1 - x0 <= 20.0 {
        return (x0 as i64..=x1 as i64)
            .map(|k| (k as f64, k.to_string()))
            .collect();
    }
    let span = x1 - x0;
    let digits = if span >= 10.0 {
        0
    } else if span >= 1.0 {
        1
    } else {
        3
    };
    (0..=5)
        .map(|k| {
            let x = x0 + span * k as f64 / 5.0;
            (x, format!("{x:.digits$}"))
        })
        .collect()
}

/// A line chart of named series of (x, y) points, y in [0, 1], with a legend.
pub fn lines_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 150.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    // Non-negative data (steps, bytes) start at 0, so one-point series stay visible.
    let x0 = if x0 >= 0.0 { 0.0 } else { x0 };
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let px = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| top + (1.0 - y.clamp(0.0, 1.0)) * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        left + pw / 2.0,
        esc(title)
    );
    for k in 0..=5 {
        let y = k as f64 / 5.0;
        let (xr, yy, xl) = (left + pw, py(y), left - 6.0);
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{xr}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/>\n<text x=\"{xl}\" y=\"{}\" text-anchor=\"end\">{y:.1}</text>\n",
            yy + 4.0
        ));
    }
    let ticks = x_ticks(series, x0, x1);
    for (x, label) in ticks {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n",
            px(x),
            top + ph + 16.0
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>\n"
    ));
    for (i, (name, pts)) in series.iter().enumerate() {
        let col = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        s.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"/>\n",
            path.join(" ")
        ));
        for &(x, y) in pts {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{col}\"/>\n",
                px(x),
                py(y)
            ));
        }
        let ly = top + 14.0 + 18.0 * i as f64;
        s.push_str(&format!(
            "<line x1=\"{0}\" x2=\"{1}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{col}\" stroke-width=\"2\"/>\n<text x=\"{2}\" y=\"{3}\">{4}</text>\n",
            left + pw + 10.0,
            left + pw + 30.0,
            left + pw + 36.0,
            ly + 4.0,
            esc(name)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n</svg>\n",
        left + pw / 2.0,
        h - 12.0,
        esc(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    ));
    s
}
