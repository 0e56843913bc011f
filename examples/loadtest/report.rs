//! What the load test prints: a summary (steps, knee, warnings, the
//! settings as Rust), the same as one JSON object, and an HTML report with
//! charts (SVG inline, drawn with plotters) like the outage example's.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde_json::{json, Value};
use surgeguard::loadtest::{Knee, StepStats};

use crate::Outcome;

/// Milliseconds, or seconds from 1 s up.
pub fn ms(d: Duration) -> String {
    let value = d.as_secs_f64() * 1e3;
    if value >= 1_000.0 {
        format!("{:.2} s", value / 1e3)
    } else if value >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.2} ms")
    }
}

fn steps_table(steps: &[StepStats], knee: Option<&Knee>) -> Vec<[String; 9]> {
    let mut rows = vec![[
        "step",
        "target/s",
        "sent/s",
        "answered/s",
        "errors",
        "p50",
        "p99",
        "max",
        "send lag p99",
    ]
    .map(str::to_owned)];
    for s in steps {
        let mark = match knee {
            Some(k) if k.step == s.step => " <- knee",
            Some(k) if k.first_failure.map(|f| f.0) == Some(s.step) => " <- past it",
            _ => "",
        };
        rows.push([
            format!("{}{mark}", s.step),
            format!("{:.0}", s.target_rate),
            format!("{:.1}", s.send_rate),
            format!("{:.1}", s.answered_rate),
            s.errors.to_string(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.send_lag_p99),
        ]);
    }
    rows
}

fn knee_lines(outcome: &Outcome) -> Vec<String> {
    let mut lines = Vec::new();
    match &outcome.knee {
        Ok(knee) => {
            lines.push(format!(
                "knee: {:.0} requests/s answered (step {}, {:.0}/s asked), p99 {} within the bound {} \
                 (baseline p99 {}), {:.1} in flight by Little's law{}",
                knee.rate,
                knee.step,
                knee.target_rate,
                ms(knee.p99),
                ms(knee.bound),
                ms(knee.baseline_p99),
                knee.in_flight,
                outcome
                    .gauge_at_knee
                    .map_or(String::new(), |g| format!(
                        ", {g:.1} by the service's surgeguard_shed_inflight"
                    )),
            ));
            if let Some((step, why)) = knee.first_failure {
                lines.push(format!("past the knee at step {step}: {why}"));
            }
        }
        Err(why) => lines.push(format!("no knee: {why}")),
    }
    if let Some(capacity) = outcome.client_capacity {
        lines.push(format!(
            "this client's own capacity here: about {capacity:.0} requests/s (against a server that answers at once)"
        ));
    }
    lines
}

/// The text summary.
pub fn summary(outcome: &Outcome) -> String {
    let rows = steps_table(&outcome.run.steps, outcome.knee.as_ref().ok());
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(text, "{cell:>w$}  ", w = widths[c]);
        }
        text.push('\n');
    }
    if !outcome.run.errors.is_empty() {
        text.push_str("errors:");
        for (kind, count) in &outcome.run.errors {
            let _ = write!(text, " {kind}: {count};");
        }
        text.push('\n');
    }
    for line in knee_lines(outcome) {
        let _ = writeln!(text, "{line}");
    }
    for warning in &outcome.warnings {
        let _ = writeln!(text, "warning: {warning}");
    }
    if let Some(advice) = &outcome.advice {
        let _ = write!(
            text,
            "\nthe settings that follow (paste into a function returning Result<_, Box<dyn std::error::Error>>):\n\n{}",
            advice.rust_snippet()
        );
    }
    text
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every figure as one JSON object.
pub fn json(outcome: &Outcome) -> Value {
    let steps: Vec<Value> = outcome
        .run
        .steps
        .iter()
        .map(|s| {
            json!({
                "step": s.step, "target_rps": s.target_rate, "start_s": s.start.as_secs_f64(),
                "duration_s": s.duration.as_secs_f64(), "sent": s.sent, "send_rps": s.send_rate,
                "answered_rps": s.answered_rate, "errors": s.errors, "p50_ms": millis(s.p50),
                "p99_ms": millis(s.p99), "max_ms": millis(s.max), "mean_ms": millis(s.mean),
                "send_lag_p99_ms": millis(s.send_lag_p99),
                "inflight_gauge": outcome.run.gauge_mean(s.step),
            })
        })
        .collect();
    let seconds: Vec<Value> = outcome
        .run
        .seconds
        .iter()
        .map(|s| {
            json!({
                "second": s.second, "sent": s.sent, "answered": s.answered, "errors": s.errors,
                "p50_ms": s.p50.map(millis), "p99_ms": s.p99.map(millis),
            })
        })
        .collect();
    let knee = match &outcome.knee {
        Ok(k) => json!({
            "step": k.step, "target_rps": k.target_rate, "rps": k.rate, "p99_ms": millis(k.p99),
            "mean_ms": millis(k.mean), "in_flight": k.in_flight, "baseline_p99_ms": millis(k.baseline_p99),
            "bound_ms": millis(k.bound), "beyond_tested": k.beyond_tested,
            "inflight_gauge": outcome.gauge_at_knee,
        }),
        Err(why) => json!({ "none": why.to_string() }),
    };
    let settings = outcome.advice.map(|a| {
        json!({
            "max_concurrency": a.max_concurrency, "gradient_min": a.gradient_min,
            "gradient_max": a.gradient_max, "global_rps": a.global_rate, "global_burst": a.global_burst,
            "queue_capacity": a.queue_capacity, "queue_max_wait_ms": millis(a.queue_max_wait),
            "rust": a.rust_snippet(),
        })
    });
    let schedule = outcome.test.schedule();
    json!({
        "urls": outcome.urls,
        "schedule": {
            "steps": schedule.steps().iter().map(|s| s.rate).collect::<Vec<_>>(),
            "step_duration_s": schedule.steps()[0].duration.as_secs_f64(),
            "requests": schedule.requests(),
        },
        "connections": outcome.client.connections(),
        "timeout_s": outcome.client.timeout().as_secs_f64(),
        "client_capacity_rps": outcome.client_capacity,
        "sent": outcome.run.played.outcomes.len(),
        "errors": outcome.run.errors,
        "steps": steps,
        "seconds": seconds,
        "knee": knee,
        "settings": settings,
        "warnings": outcome.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the HTML report to `path`, creating its directory.
pub fn write_html(path: &Path, outcome: &Outcome) -> Result<(), Box<dyn std::error::Error>> {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>surgeguard load test</title>\
         <style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\
         table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child{text-align:left}.note{color:#555}.warn{color:#a40}\
         pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>",
    );
    let schedule = outcome.test.schedule();
    writeln!(
        html,
        "<h1>Load test: the knee and the settings that follow</h1>\
         <p class=\"note\">Open loop: {} requests due on schedule to {}, {} step(s) of {:?} up to {:.0} requests/s; \
         latency counts from when each request was due; a request not finished {:?} after it was due \
         counts as timed out; at most {} open at once.</p>",
        schedule.requests(),
        escape(&outcome.urls.join(", ")),
        schedule.steps().len(),
        schedule.steps()[0].duration,
        schedule.peak_rate(),
        outcome.client.timeout(),
        outcome.client.connections(),
    )?;
    html.push_str("<h2>The knee</h2><ul>");
    for line in knee_lines(outcome) {
        let _ = write!(html, "<li>{}</li>", escape(&line));
    }
    html.push_str("</ul>");
    for warning in &outcome.warnings {
        let _ = write!(
            html,
            "<p class=\"warn\">warning: {}</p>",
            escape(&warning.to_string())
        );
    }

    html.push_str("<h2>Steps</h2><table>");
    for (i, row) in steps_table(&outcome.run.steps, outcome.knee.as_ref().ok())
        .iter()
        .enumerate()
    {
        let cell = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for value in row {
            let _ = write!(html, "<{cell}>{}</{cell}>", escape(value));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");

    let seconds = &outcome.run.seconds;
    let end = seconds.len().max(1) as f64;
    let at = |s: u32| f64::from(s) + 0.5;
    let p50: Vec<(f64, f64)> = seconds
        .iter()
        .filter_map(|s| s.p50.map(|v| (at(s.second), millis(v).max(0.01))))
        .collect();
    let p99: Vec<(f64, f64)> = seconds
        .iter()
        .filter_map(|s| s.p99.map(|v| (at(s.second), millis(v).max(0.01))))
        .collect();
    html.push_str(&chart(
        "Latency by the second requests were due (ms, log scale; a timeout counts as the timeout)",
        end,
        &[("p50", &p50), ("p99", &p99)],
        true,
    )?);
    let sent: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| (at(s.second), f64::from(s.sent)))
        .collect();
    let answered: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| (at(s.second), f64::from(s.answered)))
        .collect();
    html.push_str(&chart(
        "Requests sent and 2xx answers, per second",
        end,
        &[("sent", &sent), ("answered 2xx", &answered)],
        false,
    )?);
    let errors: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| (at(s.second), f64::from(s.errors)))
        .collect();
    html.push_str(&chart(
        "Requests that did not end in 2xx, by the second they were due",
        end,
        &[("errors", &errors)],
        false,
    )?);
    if !outcome.run.gauge.is_empty() {
        let gauge: Vec<(f64, f64)> = outcome
            .run
            .gauge
            .iter()
            .map(|(t, v)| (t.as_secs_f64(), *v))
            .collect();
        html.push_str(&chart(
            "The service's surgeguard_shed_inflight",
            end,
            &[("in flight", &gauge)],
            false,
        )?);
    }
    html.push_str("<h2>Errors by kind</h2>");
    if outcome.run.errors.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<table><tr><th>kind</th><th>requests</th></tr>");
        for (kind, count) in &outcome.run.errors {
            let _ = write!(html, "<tr><td>{}</td><td>{count}</td></tr>", escape(kind));
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>The settings that follow</h2>");
    match &outcome.advice {
        Some(advice) => {
            let _ = write!(
                html,
                "<p class=\"note\">Rust to paste into a function that returns \
                 <code>Result&lt;_, Box&lt;dyn std::error::Error&gt;&gt;</code>; \
                 docs/operations.md explains each figure.</p><pre>{}</pre>",
                escape(&advice.rust_snippet())
            );
        }
        None => html.push_str(
            "<p class=\"warn\">None: the measurement cannot support one (see the warnings).</p>",
        ),
    }
    html.push_str("</body></html>\n");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, html)?;
    Ok(())
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(30, 110, 200),
    RGBColor(200, 40, 40),
    RGBColor(40, 150, 60),
];

fn chart(
    title: &str,
    end: f64,
    series: &[(&str, &[(f64, f64)])],
    log: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(60);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("seconds into the run")
                    .draw()?;
                for (i, (name, points)) in series.iter().enumerate() {
                    let c = COLOURS[i % COLOURS.len()];
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                        .label(*name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .draw()?;
            }};
        }
        if log {
            draw!(builder.build_cartesian_2d(0f64..end, (0.01f64..top).log_scale())?);
        } else {
            draw!(builder.build_cartesian_2d(0f64..end, 0f64..top)?);
        }
        root.present()?;
    }
    Ok(format!("<figure>{svg}</figure>\n"))
}
