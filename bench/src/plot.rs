//! The latency-percentile plot as a hand-written SVG: percentiles on a log scale of
//! 1/(1-p) (0, 90, 99, 99.9, 99.99, 99.999 evenly spaced) so the tail gets as much room as
//! the median, latency linear in ms. One line per target; the floor as a dashed line.

use std::fmt::Write as _;

use crate::stats::PercentilePoint;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Decades of 1/(1-p) shown: up to 99.999%.
const DECADES: f64 = 5.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// x position (0..=DECADES) of percentile `pct` (0..=100).
pub fn x_of_percentile(pct: f64) -> f64 {
    let q = (pct / 100.0).clamp(0.0, 1.0);
    if q >= 1.0 {
        return DECADES;
    }
    (1.0 / (1.0 - q)).log10().clamp(0.0, DECADES)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Render the plot. `series` are (label, distribution); `floor_us` draws the floor line.
pub fn svg(
    title: &str,
    series: &[(String, Vec<PercentilePoint>)],
    floor_us: Option<f64>,
) -> String {
    let max_us = series
        .iter()
        .flat_map(|(_, d)| d.iter().map(|p| p.value_us as f64))
        .chain(floor_us)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let y_max_ms = nice_ceiling(max_us / 1000.0 * 1.05);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / DECADES * pw;
    let py = |ms: f64| TOP + ph - (ms / y_max_ms).min(1.0) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // grid and axes
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
    }
    for i in 0..=5 {
        let ms = y_max_ms * f64::from(i) / 5.0;
        let y = py(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(ms)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency (ms)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    if let Some(f) = floor_us {
        let y = py(f / 1000.0);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">floor {}</text>"##,
            LEFT + pw,
            LEFT + pw - 4.0,
            y - 4.0,
            fmt_ms(f / 1000.0)
        );
    }
    for (i, (label, dist)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = dist
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    px(x_of_percentile(p.percentile)),
                    py(p.value_us as f64 / 1000.0)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = TOP + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            ly - 4.0,
            LEFT + 30.0,
            ly,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Round up to 1, 2 or 5 × a power of ten, for tidy axis labels.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * e {
            return m * e;
        }
    }
    10.0 * e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_is_log_of_the_tail() {
        assert_eq!(x_of_percentile(0.0), 0.0);
        assert!((x_of_percentile(90.0) - 1.0).abs() < 1e-9);
        assert!((x_of_percentile(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(x_of_percentile(100.0), DECADES);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
    }

    #[test]
    fn svg_has_one_line_per_series_and_escapes_labels() {
        let d = vec![
            PercentilePoint {
                percentile: 0.0,
                value_us: 100,
                total_count: 1,
            },
            PercentilePoint {
                percentile: 99.0,
                value_us: 900,
                total_count: 99,
            },
        ];
        let out = svg(
            "a<b",
            &[("x&y".into(), d.clone()), ("z".into(), d)],
            Some(500.0),
        );
        assert!(out.starts_with("<svg"));
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("a&lt;b") && out.contains("x&amp;y"));
        assert!(out.contains("floor"));
    }
}
