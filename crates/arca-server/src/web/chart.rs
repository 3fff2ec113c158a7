//! Bar charts over a range of days, drawn as inline SVG on the server (no script): one slot
//! per day of the range whether or not it has data (a single day does not fill the width), a
//! y axis with round gridlines labelled in bytes, dates under the x axis, optional limit lines
//! (quotas), and every bar's value in its tooltip and in a table beside the chart for screen
//! readers and for reading exact figures.

use chrono::NaiveDate;

use super::human;

/// One series of bars: a value per day of the range.
pub(super) struct Series<'a> {
    /// CSS class (`in`, `out`): its colour.
    pub class: &'static str,
    /// Its name in tooltips and the table.
    pub label: &'static str,
    /// One value per day, in the range's order.
    pub values: &'a [i64],
}

/// A horizontal limit line (a quota).
pub(super) struct Limit {
    pub class: &'static str,
    pub label: &'static str,
    pub value: i64,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
/// Room for the y labels on the left and the dates below.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// A round top for the y axis and its step: 1, 2 or 5 × 10^n, so gridlines fall on numbers
/// people read at a glance.
fn nice_scale(max: i64) -> (f64, f64) {
    let max = max.max(1) as f64;
    let raw_step = max / 4.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw_step).unwrap_or(magnitude * 10.0);
    // Whole bytes: a chart of a few bytes would otherwise label "0 B" more than once.
    let step = step.max(1.0);
    ((max / step).ceil() * step, step)
}

fn escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

/// The chart for `days` (oldest first) with `series` and `limits`; `aria` describes it.
pub(super) fn bar_chart(days: &[NaiveDate], series: &[Series<'_>], limits: &[Limit], aria: &str) -> String {
    let n = days.len().max(1);
    let data_max = series.iter().flat_map(|s| s.values.iter().copied()).chain(limits.iter().map(|l| l.value)).max();
    let (top, step) = nice_scale(data_max.unwrap_or(0));
    let plot_w = W - LEFT;
    let plot_h = H - BOTTOM - TOP;
    let y_of = |v: f64| TOP + plot_h - v / top * plot_h;
    let slot = plot_w / n as f64;
    let groups = series.len().max(1) as f64;
    let bar = ((slot - 2.0) / groups).max(1.0);
    let mut svg = format!("<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">", escape(aria));
    // Gridlines and y labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let y = y_of(v);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"></line>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            if v == 0.0 { "0".to_string() } else { human(v as i64) }
        ));
        v += step;
    }
    // Bars.
    for (k, day) in days.iter().enumerate() {
        let x0 = LEFT + k as f64 * slot + 1.0;
        for (j, s) in series.iter().enumerate() {
            let value = s.values.get(k).copied().unwrap_or(0);
            let bh = if value > 0 { (value as f64 / top * plot_h).max(1.0) } else { 0.0 };
            svg.push_str(&format!(
                "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\"><title>{day} {}: {}</title></rect>",
                s.class,
                x0 + j as f64 * bar,
                TOP + plot_h - bh,
                escape(s.label),
                human(value)
            ));
        }
    }
    // Dates: the first, the last and about every week between.
    let every = (n / 5).max(1);
    for (k, day) in days.iter().enumerate() {
        if k % every == 0 || k + 1 == n {
            if k + 1 != n && n - 1 - k < every / 2 {
                continue; // too close to the last label
            }
            let x = LEFT + (k as f64 + 0.5) * slot;
            let anchor = if k == 0 && n > 1 {
                "start"
            } else if k + 1 == n && n > 1 {
                "end"
            } else {
                "middle"
            };
            let x = match anchor {
                "start" => LEFT,
                "end" => W,
                _ => x,
            };
            svg.push_str(&format!(
                "<text class=\"axis\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                H - 6.0,
                day.format("%d %b")
            ));
        }
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{:.1}\" y2=\"{:.1}\"></line>",
        TOP + plot_h,
        TOP + plot_h
    ));
    for l in limits.iter().filter(|l| l.value > 0) {
        let y = y_of(l.value as f64);
        svg.push_str(&format!(
            "<line class=\"{}\" x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>{}: {}</title></line>",
            l.class,
            escape(l.label),
            human(l.value)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The chart's figures as a table (inside a `<details>`, so it takes no room until opened).
pub(super) fn data_table(days: &[NaiveDate], series: &[Series<'_>]) -> String {
    let mut t = String::from("<details class=\"chart-data\"><summary>Figures</summary><table><thead><tr><th>Day</th>");
    for s in series {
        t.push_str(&format!("<th class=\"num\">{}</th>", escape(s.label)));
    }
    t.push_str("</tr></thead><tbody>");
    for (k, day) in days.iter().enumerate().rev() {
        t.push_str(&format!("<tr><td>{day}</td>"));
        for s in series {
            t.push_str(&format!("<td class=\"num\">{}</td>", human(s.values.get(k).copied().unwrap_or(0))));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table></details>");
    t
}

/// The `count` days ending with `last`, oldest first.
pub(super) fn last_days(last: NaiveDate, count: u64) -> Vec<NaiveDate> {
    (0..count).rev().filter_map(|k| last.checked_sub_days(chrono::Days::new(k))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_scale(7_300_000_000), (8e9, 2e9));
        assert_eq!(nice_scale(100), (100.0, 50.0));
        assert_eq!(nice_scale(0), (1.0, 1.0));
    }

    #[test]
    fn one_day_of_data_takes_one_slot_of_thirty() {
        let days = last_days(day("2026-12-06"), 30);
        assert_eq!(days.len(), 30);
        assert_eq!(days[0], day("2026-11-07"));
        let mut ingress = vec![0; 30];
        ingress[29] = 5_000_000;
        let svg = bar_chart(&days, &[Series { class: "in", label: "in", values: &ingress }], &[], "traffic");
        assert_eq!(svg.matches("<rect").count(), 30, "a slot for every day");
        let widths: Vec<f64> =
            svg.split("width=\"").skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect();
        assert!(widths.iter().all(|w| *w < 640.0 / 29.0), "a bar fills the width: {widths:?}");
        assert!(svg.contains("07 Nov") && svg.contains("06 Dec"), "dates under the axis: {svg}");
        assert!(svg.contains(">5.0 MB<") || svg.contains(">6.0 MB<"), "a labelled y axis: {svg}");
        assert!(svg.contains("2026-12-06 in: 5.0 MB"), "values in tooltips");
    }

    /// (Carrying stored bytes over quiet days is the metering rule's, tested in
    /// `db::usage_totals`; the chart draws what it is given.)
    #[test]
    fn stored_bytes_and_limits_draw() {
        let days = last_days(day("2026-12-03"), 3);
        let stored = [150, 150, 10];
        let svg = bar_chart(
            &days,
            &[Series { class: "in", label: "stored", values: &stored }],
            &[
                Limit { class: "hard", label: "hard quota", value: 200 },
                Limit { class: "soft", label: "soft", value: 0 },
            ],
            "stored <x>",
        );
        assert!(svg.contains("class=\"hard\"") && !svg.contains("class=\"soft\""));
        assert!(svg.contains("stored &lt;x&gt;"), "escaped");
        let table = data_table(&days, &[Series { class: "in", label: "stored", values: &stored }]);
        assert!(table.contains("<td>2026-12-02</td><td class=\"num\">150 B</td>"), "{table}");
    }
}
