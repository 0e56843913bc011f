//! The HTML report: the runs' timelines as charts (SVG inline, drawn with
//! plotters), so a person can see the cliff and its absence.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::scenario::traffic::SPIKE_WINDOW;
use crate::scenario::{Mode, Run, Settings};

/// Writes the report for `runs` to `path`, creating its directory.
pub fn write(
    path: &Path,
    settings: &Settings,
    runs: &[Run],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut html = String::new();
    html.push_str(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>surgeguard: the outage, reproduced</title>\
         <style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\
         table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child{text-align:left}.note{color:#555}</style></head><body>",
    );
    writeln!(
        html,
        "<h1>The outage, reproduced and prevented</h1>\
         <p class=\"note\">{:.0} s of open-loop traffic on loopback: {:.0} requests/s, then a sales event at {:.0}x \
         ({:.0} requests/s, shaded) from {:.0} s to {:.0} s; a request not answered {:.1} s after it was due counts \
         as timed out. The same plan was replayed against each shop.</p>",
        settings.duration.as_secs_f64(),
        settings.baseline_rps,
        settings.spike,
        settings.peak_rps(),
        SPIKE_WINDOW.0 * settings.duration.as_secs_f64(),
        SPIKE_WINDOW.1 * settings.duration.as_secs_f64(),
        settings.client_timeout.as_secs_f64(),
    )?;
    html.push_str(&summary_table(runs));

    let end = settings.duration.as_secs_f64();
    let series = |pick: &dyn Fn(&crate::scenario::results::Second) -> Option<f64>| {
        runs.iter()
            .map(|run| {
                let points: Vec<(f64, f64)> = run
                    .timeline
                    .iter()
                    .filter_map(|s| pick(s).map(|v| (f64::from(s.second) + 0.5, v)))
                    .collect();
                (run.mode, points)
            })
            .collect::<Vec<_>>()
    };

    let experienced = series(&|s| s.experienced_p99_ms.map(|v| v.max(0.1)));
    html.push_str(&chart(
        "p99 latency as users saw it, by the second requests were due (ms, log scale; a timeout counts as the timeout)",
        end,
        &experienced,
        true,
    )?);
    let saturation = series(&|s| Some(s.saturation));
    html.push_str(&chart(
        "surgeguard_saturation, the autoscaling signal (max per second; the unprotected shop's comes from a shadow-mode shedder)",
        end,
        &saturation,
        false,
    )?);
    let p99 = series(&|s| s.p99_ms.map(|v| v.max(0.1)));
    html.push_str(&chart(
        "p99 latency of successful requests only (ms, log scale): an overloaded shop still serves its cheapest pages fast",
        end,
        &p99,
        true,
    )?);
    let answered = series(&|s| Some(f64::from(s.succeeded)));
    html.push_str(&chart(
        "Successful responses per second",
        end,
        &answered,
        false,
    )?);
    let failed = series(&|s| Some(f64::from(s.failed)));
    html.push_str(&chart(
        "Requests timed out or failed, per second",
        end,
        &failed,
        false,
    )?);
    let refused = series(&|s| Some(f64::from(s.refused)));
    html.push_str(&chart(
        "Requests refused quickly (503 or 429), per second",
        end,
        &refused,
        false,
    )?);
    let waiting = series(&|s| Some(f64::from(s.db_waiting)));
    html.push_str(&chart(
        "Queries waiting for a database connection (peak of 50 ms samples)",
        end,
        &waiting,
        false,
    )?);
    let queries = series(&|s| Some(f64::from(s.db_queries)));
    html.push_str(&chart(
        "Database queries finished per second",
        end,
        &queries,
        false,
    )?);
    let limit = series(&|s| s.shed_limit.map(f64::from));
    if limit.iter().any(|(_, points)| !points.is_empty()) {
        html.push_str(&chart(
            "The shedder's adaptive concurrency limit (protected shop)",
            end,
            &limit,
            false,
        )?);
    }
    html.push_str("</body></html>\n");

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, html)?;
    Ok(())
}

fn summary_table(runs: &[Run]) -> String {
    let mut html = String::from("<table><tr><th></th>");
    for run in runs {
        let _ = write!(html, "<th>{}</th>", run.mode);
    }
    html.push_str("</tr>");
    for (label, cells) in crate::table_rows(runs) {
        let _ = write!(html, "<tr><td>{label}</td>");
        for cell in cells {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

fn colour(mode: Mode) -> RGBColor {
    match mode {
        Mode::Unprotected => RGBColor(200, 40, 40),
        Mode::Protected => RGBColor(30, 110, 200),
    }
}

fn chart(
    title: &str,
    end: f64,
    series: &[(Mode, Vec<(f64, f64)>)],
    log: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let top = if top <= 1.1 { 1.05 } else { top };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 300)).into_drawing_area();
        root.fill(&WHITE)?;
        let builder = |root| {
            let mut b = ChartBuilder::on(root);
            b.caption(title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(60);
            b
        };
        if log {
            let mut chart =
                builder(&root).build_cartesian_2d(0f64..end, (0.1f64..top).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("seconds into the run")
                .draw()?;
            shade_spike(&mut chart, end, 0.1, top)?;
            for (mode, points) in series {
                draw_line(&mut chart, *mode, points)?;
            }
            legend(&mut chart)?;
        } else {
            let mut chart = builder(&root).build_cartesian_2d(0f64..end, 0f64..top)?;
            chart
                .configure_mesh()
                .x_desc("seconds into the run")
                .draw()?;
            shade_spike(&mut chart, end, 0.0, top)?;
            for (mode, points) in series {
                draw_line(&mut chart, *mode, points)?;
            }
            legend(&mut chart)?;
        }
        root.present()?;
    }
    Ok(format!("<figure>{svg}</figure>\n"))
}

// plotters types a log-scale chart differently from a linear one, so the
// helpers below are generic over both axes.

fn shade_spike<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    end: f64,
    low: f64,
    high: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let area = Rectangle::new(
        [(SPIKE_WINDOW.0 * end, low), (SPIKE_WINDOW.1 * end, high)],
        RGBColor(255, 190, 0).mix(0.12).filled(),
    );
    chart.draw_series(std::iter::once(area))?;
    Ok(())
}

fn draw_line<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    mode: Mode,
    points: &[(f64, f64)],
) -> Result<(), Box<dyn std::error::Error>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let c = colour(mode);
    chart
        .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
        .label(mode.name())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}
