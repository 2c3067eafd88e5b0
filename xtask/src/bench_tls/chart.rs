//! The SVG chart: per scenario, server CPU per request (top) and open-loop latency
//! percentiles on a log scale (bottom), memcached beside rampart; the floor server's CPU per
//! request is a black line across each scenario's CPU bars.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::Scenario;
use super::report::{Results, Row, median};
use super::server::Kind;

pub(super) const WIDTH_PX: u32 = 1100;
pub(super) const HEIGHT_PX: u32 = 820;
pub(super) const MEMCACHED: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
pub(super) const RAMPART: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const FLOOR: RGBColor = RGBColor(0x20, 0x20, 0x20);
/// Bar width as a fraction of a scenario's slot.
const BAR: f64 = 0.36;

/// The x axis's label at `x`: slot `i`'s name at its centre (`i + 0.5`), blank at every other
/// key point (both charts put a slot per scenario or point).
pub(super) fn slot_label(names: &[String], x: f64) -> String {
    let slot = x - 0.5;
    if (slot - slot.round()).abs() < 1e-6 && slot >= 0.0 {
        names
            .get(slot.round() as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

pub fn draw(results: &Results, path: &Path) -> Result<()> {
    draw_inner(results, path).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

fn color(kind: Kind) -> RGBColor {
    match kind {
        Kind::Memcached => MEMCACHED,
        Kind::Rampart => RAMPART,
        Kind::Floor => FLOOR,
    }
}

fn find<'a>(results: &'a Results, scenario: &str, metric: &str) -> Option<&'a Row> {
    results
        .summary
        .iter()
        .find(|r| r.scenario == scenario && r.metric.starts_with(metric))
}

fn value(row: Option<&Row>, kind: Kind) -> Option<f64> {
    row.and_then(|r| match kind {
        Kind::Memcached => r.memcached,
        Kind::Rampart => r.rampart,
        Kind::Floor => r.floor,
    })
}

fn draw_inner(results: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let scenarios: Vec<String> = Scenario::all().iter().map(Scenario::name).collect();
    let n = scenarios.len();
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    let label = |x: &f64| slot_label(&scenarios, *x);

    // CPU per request.
    let cpu: Vec<(usize, Kind, f64)> = (0..n)
        .flat_map(|i| Kind::BOTH.map(move |k| (i, k)))
        .filter_map(|(i, k)| {
            value(find(results, &scenarios[i], "server CPU"), k).map(|v| (i, k, v))
        })
        .collect();
    let cpu_max = cpu.iter().map(|c| c.2).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "server CPU-seconds per million requests (closed loop, median)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..cpu_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_desc("CPU s / M requests")
        .draw()?;
    for kind in Kind::BOTH {
        let offset = if kind == Kind::Memcached {
            0.5 - BAR
        } else {
            0.5
        };
        chart
            .draw_series(cpu.iter().filter(|c| c.1 == kind).map(|&(i, _, v)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.0), (x + BAR, v)], color(kind).filled())
            }))?
            .label(kind.name())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color(kind).filled())
            });
    }
    let floor: Vec<(usize, f64)> = (0..n)
        .filter_map(|i| {
            value(find(results, &scenarios[i], "server CPU"), Kind::Floor).map(|v| (i, v))
        })
        .collect();
    chart
        .draw_series(floor.iter().map(|&(i, v)| {
            let x = i as f64 + 0.5;
            PathElement::new(
                vec![(x - BAR - 0.04, v), (x + BAR + 0.04, v)],
                color(Kind::Floor).stroke_width(2),
            )
        }))?
        .label("floor: the least any server spends here")
        .legend(move |(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 12, y)],
                color(Kind::Floor).stroke_width(2),
            )
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;

    // Open-loop latency: p50 (thin), p99 (bar), p99.9 (outline) per server.
    let latency = |i: usize, kind: Kind, percentile: &str| -> Option<f64> {
        let name = &scenarios[i];
        let wanted: &dyn Fn(&super::report::Run) -> f64 = match percentile {
            "p50" => &|r| r.report.latency_us.p50,
            "p99" => &|r| r.report.latency_us.p99,
            _ => &|r| r.report.latency_us.p999,
        };
        median(
            results
                .runs
                .iter()
                .filter(|r| r.kind == kind && &r.scenario == name && r.rate.is_some())
                .map(wanted),
        )
    };
    let all: Vec<f64> = (0..n)
        .flat_map(|i| Kind::BOTH.map(move |k| (i, k)))
        .filter_map(|(i, k)| latency(i, k, "p999"))
        .collect();
    let lat_max = all.iter().copied().fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "open-loop latency at 50% of the lower throughput: p50 (dark), p99 (bar), p99.9 (outline)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, (1f64..lat_max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_desc("µs (log)")
        .draw()?;
    for kind in Kind::BOTH {
        let offset = if kind == Kind::Memcached {
            0.5 - BAR
        } else {
            0.5
        };
        let c = color(kind);
        for i in 0..n {
            let x = i as f64 + offset;
            if let Some(v) = latency(i, kind, "p999") {
                chart.draw_series([Rectangle::new([(x, 1.0), (x + BAR, v)], c.stroke_width(1))])?;
            }
            if let Some(v) = latency(i, kind, "p99") {
                chart.draw_series([Rectangle::new(
                    [(x, 1.0), (x + BAR, v)],
                    c.mix(0.6).filled(),
                )])?;
            }
            if let Some(v) = latency(i, kind, "p50") {
                chart.draw_series([Rectangle::new([(x, 1.0), (x + BAR, v)], c.filled())])?;
            }
        }
    }
    root.present()?;
    Ok(())
}
