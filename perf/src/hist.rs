//! Latency histograms shared by `gen` and `sink`: one HdrHistogram shape
//! (microseconds, 1 µs … 1 h, 3 significant digits), the percentile table
//! printed at exit, the text format HdrHistogram's plotters read
//! (`--hist-out`), a small SVG plot by percentile (`--plot`) and the
//! percentiles of the `--json` summaries.

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::path::Path;

/// Latencies in microseconds.
pub type Hist = Histogram<u64>;

/// The percentiles every report lists.
pub const PERCENTILES: [f64; 7] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// A histogram from 1 µs to one hour, 3 significant digits.
pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// `p50 … max` as a human table, values in milliseconds.
pub fn table(h: &Hist, title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title} ({} samples, ms):", h.len());
    if h.is_empty() {
        let _ = writeln!(out, "  (none)");
        return out;
    }
    for p in PERCENTILES {
        let v = if p >= 100.0 {
            h.max()
        } else {
            h.value_at_percentile(p)
        };
        let label = if p >= 100.0 {
            "max".to_string()
        } else {
            format!("p{p}")
        };
        let _ = writeln!(out, "  {label:>8}  {:>12.3}", v as f64 / 1000.0);
    }
    let _ = writeln!(out, "  {:>8}  {:>12.3}", "mean", h.mean() / 1000.0);
    out
}

/// The percentiles as a JSON object, values in microseconds.
pub fn json(h: &Hist) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), h.len().into());
    for p in PERCENTILES {
        let (k, v) = if p >= 100.0 {
            ("max".to_string(), h.max())
        } else {
            (
                format!("p{p}"),
                if h.is_empty() {
                    0
                } else {
                    h.value_at_percentile(p)
                },
            )
        };
        m.insert(k, v.into());
    }
    m.insert(
        "mean".into(),
        (if h.is_empty() { 0.0 } else { h.mean() }).into(),
    );
    m.insert("unit".into(), "us".into());
    serde_json::Value::Object(m)
}

/// HdrHistogram's percentile distribution text ("Value Percentile TotalCount
/// 1/(1-Percentile)"), values in milliseconds, as `outputPercentileDistribution`
/// writes it and the HdrHistogram plotter reads it.
pub fn percentile_distribution(h: &Hist) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {:10} {:14.2}",
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {:10}", total);
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    let _ = writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// A latency-by-percentile SVG: x is the percentile on a log scale of
/// 1/(1-p) (so the tail gets room), y is the latency in ms.
pub fn svg(h: &Hist, title: &str) -> String {
    let (w, ht, ml, mb, mt, mr) = (800.0, 480.0, 70.0, 50.0, 40.0, 20.0);
    let pw = w - ml - mr;
    let ph = ht - mt - mb;
    let xmax = 6.0f64; // up to 99.9999 %
    let ymax_us = if h.is_empty() { 1 } else { h.max().max(1) };
    let ymax = nice_ceiling(ymax_us as f64 / 1000.0);
    let xpos = |q: f64| {
        let inv = 1.0 / (1.0 - q.min(0.999_999));
        ml + (inv.log10() / xmax).min(1.0) * pw
    };
    let ypos = |ms: f64| mt + ph - (ms / ymax).min(1.0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" font-family=\"sans-serif\" font-size=\"12\">\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        w / 2.0,
        xml_escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = ml + i as f64 / xmax * pw;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{mt}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            mt + ph
        );
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            mt + ph + 18.0
        );
    }
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = ypos(v);
        let _ = write!(
            s,
            "<line x1=\"{ml}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            ml + pw
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.3}</text>",
            ml - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        ml + pw / 2.0,
        ht - 8.0
    );
    let _ = write!(s, "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">latency (ms)</text>", mt + ph / 2.0, mt + ph / 2.0);
    if !h.is_empty() {
        let mut pts = String::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let _ = write!(
                pts,
                "{:.1},{:.1} ",
                xpos(q),
                ypos(v.value_iterated_to() as f64 / 1000.0)
            );
        }
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
            pts.trim_end()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `--hist-out` and `--plot` files when asked for; errors name the file.
/// Checks up front that the `--hist-out` / `--plot` files can be created,
/// so that a bad path is refused before a run rather than after it.
/// Returns the flag and why.
pub fn check_outputs(
    hist_out: Option<&Path>,
    plot: Option<&Path>,
) -> Result<(), (&'static str, String)> {
    for (flag, path) in [("hist-out", hist_out), ("plot", plot)] {
        if let Some(p) = path {
            std::fs::File::create(p)
                .map_err(|e| (flag, format!("cannot create {}: {e}", p.display())))?;
        }
    }
    Ok(())
}

pub fn write_outputs(
    h: &Hist,
    hist_out: Option<&Path>,
    plot: Option<&Path>,
    title: &str,
) -> Result<(), String> {
    if let Some(p) = hist_out {
        std::fs::write(p, percentile_distribution(h))
            .map_err(|e| format!("cannot write --hist-out {}: {e}", p.display()))?;
    }
    if let Some(p) = plot {
        std::fs::write(p, svg(h, title))
            .map_err(|e| format!("cannot write --plot {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_lists_quantiles_and_totals() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = percentile_distribution(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("Total count    =         1000]"), "{text}");
        // the first row is the smallest value (1 ms), the last reaches 100 %
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .collect();
        assert!(
            rows[0].trim_start().starts_with("1.000 0.000"),
            "{}",
            rows[0]
        );
        assert!(
            rows.last().unwrap().contains("1.000000000000"),
            "{}",
            rows.last().unwrap()
        );
        let j = json(&h);
        assert_eq!(j["count"], 1000);
        assert_eq!(j["max"].as_u64().unwrap() / 1000, 1000);
        assert_eq!(j["p50"].as_u64().unwrap() / 1000, 500);
    }

    #[test]
    fn svg_has_one_polyline_and_scales_to_max() {
        let mut h = new_hist();
        h.record(2_500).unwrap();
        h.record(40_000).unwrap();
        let s = svg(&h, "a<b");
        assert_eq!(s.matches("<polyline").count(), 1);
        assert!(s.contains("a&lt;b"));
        assert!(
            s.contains(">50.000</text>"),
            "y axis goes to the next nice value above 40 ms"
        );
    }
}
