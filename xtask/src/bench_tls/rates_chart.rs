//! The issue-13 chart: per point of the reference workload, server CPU per request (top, log) and
//! latency, p50 inside p99, on a log scale (bottom), memcached, rampart and the floor side by
//! side; `rampart-load`'s figures as bars, memtier's CPU per request as a ring on each bar.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::chart::{HEIGHT_PX, MEMCACHED, RAMPART, WIDTH_PX, slot_label};
use super::reference::{Generator, Point};
use super::scorecard::{CPU, Figure};
use super::server::Kind;

/// The floor as a grey bar here (the matrix chart draws it as a black line).
const FLOOR: RGBColor = RGBColor(0x80, 0x80, 0x80);
/// Bar width as a fraction of a point's slot (three bars and a gap).
const BAR: f64 = 0.27;
const RING_PX: i32 = 4;
/// The CPU axis is logarithmic (1,000/s costs several times what saturation does per
/// request) and starts here, below depth 16's figures.
const CPU_LOW_US: f64 = 0.5;

fn color(kind: Kind) -> RGBColor {
    match kind {
        Kind::Memcached => MEMCACHED,
        Kind::Rampart => RAMPART,
        Kind::Floor => FLOOR,
    }
}

/// Where `kind`'s bar starts within slot `i`.
fn left(i: usize, kind: Kind) -> f64 {
    let nth = Kind::WITH_FLOOR
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(0) as f64;
    i as f64 + (1.0 - 3.0 * BAR) / 2.0 + nth * BAR
}

fn value(
    figures: &[Figure],
    point: &Point,
    generator: Generator,
    metric: &str,
    kind: Kind,
) -> Option<f64> {
    let f = figures.iter().find(|f| {
        f.scenario == point.name()
            && f.generator == generator.name()
            && f.metric.starts_with(metric)
    })?;
    match kind {
        Kind::Memcached => f.memcached,
        Kind::Rampart => f.rampart,
        Kind::Floor => f.floor,
    }
}

/// `plain 1k`, `tls sat`, `plain d16`: short enough for the axis.
fn short(point: &Point) -> String {
    let transport = if point.tls { "tls" } else { "plain" };
    match (point.depth, point.rate) {
        (1, Some(rate)) => format!("{transport} {}k/s", rate / 1000),
        (1, None) => format!("{transport} sat."),
        (depth, _) => format!("{transport} d{depth} sat."),
    }
}

pub fn draw(figures: &[Figure], path: &Path) -> Result<()> {
    draw_inner(figures, path).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

fn draw_inner(figures: &[Figure], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let points: Vec<Point> = Point::all(false)
        .into_iter()
        .filter(|p| p.generator == Generator::RampartLoad)
        .filter(|p| figures.iter().any(|f| f.scenario == p.name()))
        .collect();
    let n = points.len().max(1);
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    let labels: Vec<String> = points.iter().map(short).collect();
    let label = |x: &f64| slot_label(&labels, *x);

    let cpu = |p: &Point, g, k| value(figures, p, g, CPU, k);
    let cpu_max = points
        .iter()
        .flat_map(|p| {
            Kind::WITH_FLOOR.into_iter().flat_map(move |k| {
                [
                    cpu(p, Generator::RampartLoad, k),
                    cpu(p, Generator::Memtier, k),
                ]
            })
        })
        .flatten()
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "reference workload: server CPU µs per request (bars: rampart-load; rings: memtier)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, (CPU_LOW_US..cpu_max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&label)
        .y_desc("CPU µs / request (log)")
        .draw()?;
    for kind in Kind::WITH_FLOOR {
        let bars = points.iter().enumerate().filter_map(|(i, p)| {
            cpu(p, Generator::RampartLoad, kind).map(|v| {
                let x = left(i, kind);
                Rectangle::new([(x, CPU_LOW_US), (x + BAR, v)], color(kind).filled())
            })
        });
        chart
            .draw_series(bars)?
            .label(kind.name())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color(kind).filled())
            });
        let rings = points.iter().enumerate().filter_map(|(i, p)| {
            cpu(p, Generator::Memtier, kind).map(|v| {
                Circle::new(
                    (left(i, kind) + BAR / 2.0, v),
                    RING_PX,
                    BLACK.stroke_width(2),
                )
            })
        });
        chart.draw_series(rings)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;

    let latency = |p: &Point, metric: &str, k| value(figures, p, Generator::RampartLoad, metric, k);
    let lat_max = points
        .iter()
        .flat_map(|p| Kind::WITH_FLOOR.map(|k| latency(p, "p99", k)))
        .flatten()
        .fold(10.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "reference workload, rampart-load: p50 (dark) inside p99 (light), µs",
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
    for kind in Kind::WITH_FLOOR {
        let c = color(kind);
        for (i, p) in points.iter().enumerate() {
            let x = left(i, kind);
            if let Some(v) = latency(p, "p99", kind) {
                chart.draw_series([Rectangle::new(
                    [(x, 1.0), (x + BAR, v)],
                    c.mix(0.5).filled(),
                )])?;
            }
            if let Some(v) = latency(p, "p50", kind) {
                chart.draw_series([Rectangle::new([(x, 1.0), (x + BAR, v)], c.filled())])?;
            }
        }
    }
    root.present()?;
    Ok(())
}
