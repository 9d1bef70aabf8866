//! The building blocks of the report pages: escaping, tables, figures, inline PNG images and the
//! page itself (a small stylesheet, no scripts, nothing fetched).

/// `s` with the characters HTML gives meaning to escaped.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table with a header row; cells are escaped.
pub fn table(head: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>\n<thead><tr>");
    for h in head {
        s += &format!("<th>{}</th>", esc(h));
    }
    s += "</tr></thead>\n<tbody>\n";
    for r in rows {
        s += "<tr>";
        for c in r {
            s += &format!("<td>{}</td>", esc(c));
        }
        s += "</tr>\n";
    }
    s + "</tbody>\n</table>\n"
}

/// A table of runs (text cells left-aligned) whose cells are already HTML (links).
pub fn table_html(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table class=\"runs\">\n<thead><tr>");
    for h in head {
        s += &format!("<th>{}</th>", esc(h));
    }
    s += "</tr></thead>\n<tbody>\n";
    for r in rows {
        s += &format!("<tr><td>{}</td></tr>\n", r.join("</td><td>"));
    }
    s + "</tbody>\n</table>\n"
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A figure holding a PNG inline (a data: URI), captioned.
pub fn png_figure(png: &[u8], caption: &str) -> String {
    format!(
        "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{}\"><figcaption>{c}</figcaption></figure>\n",
        base64(png),
        c = esc(caption)
    )
}

/// A figure holding an SVG document inline, captioned.
pub fn svg_figure(svg: &str, caption: &str) -> String {
    // An XML prolog or doctype has no place inside HTML; the <svg> element itself is kept whole.
    let body = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    format!(
        "<figure>{body}<figcaption>{}</figcaption></figure>\n",
        esc(caption)
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}\
th:first-child,td:first-child{text-align:left}table.runs td{text-align:left}th{background:#f0f4f8}\
figure{display:inline-block;margin:0.5em 1em 1em 0;vertical-align:top}\
figcaption{font-size:0.9em;color:#555}img{image-rendering:pixelated;max-width:100%}\
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}\
dl{display:grid;grid-template-columns:max-content auto;gap:0.2em 1.5em}dt{font-weight:bold}dd{margin:0}";

/// The whole page: `title` and `body` in a document with its stylesheet.
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n{body}</body>\n</html>\n",
        t = esc(title)
    )
}
