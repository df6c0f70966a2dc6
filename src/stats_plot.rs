//! `ds01 stats --plot`: memory use against the limit and memory pressure over time,
//! one panel per user, as SVG (or PNG), with plotters.

use crate::stats::Sample;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const GIB: f64 = (1u64 << 30) as f64;
const PANEL_H: u32 = 260;
const WIDTH: u32 = 1000;
/// Where the plot's font comes from (`DS01_PLOT_FONT` overrides): plotters lays out
/// text with a real TrueType font, for SVG as well as PNG.
pub const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: no samples in the range for the selected users")]
    Empty,
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error(
        "plots need a TrueType font: {0} (Debian: apt-get install fonts-dejavu-core, or set DS01_PLOT_FONT)"
    )]
    Font(String),
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

fn time_label(secs: i64, span: i64) -> String {
    let Ok(t) = jiff::Timestamp::from_second(secs) else {
        return String::new();
    };
    let z = t.to_zoned_datetime(jiff::tz::TimeZone::system());
    if span > 86_400 {
        z.strftime("%m-%d %H:%M").to_string()
    } else {
        z.strftime("%H:%M").to_string()
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    user: &str,
    group: &str,
    v: &[&Sample],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let t0 = v.first().map_or(0, |s| s.ts.as_second());
    let t1 = v.last().map_or(1, |s| s.ts.as_second()).max(t0 + 1);
    let limit = v.iter().filter_map(|s| s.memory_max).max();
    let gpu_mem_max = v.iter().filter_map(|s| s.gpu_memory).max();
    let used_max = v
        .iter()
        .map(|s| s.memory_current)
        .max()
        .unwrap_or(0)
        .max(gpu_mem_max.unwrap_or(0));
    let y_max = (limit.unwrap_or(used_max).max(used_max) as f64 / GIB * 1.1).max(0.001);
    let limit_text = limit.map_or("no limit".to_string(), |l| {
        format!("limit {}", crate::units::format_human_bytes(l))
    });
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{user} ({group}) — memory vs {limit_text}; PSI memory{}",
                if gpu_mem_max.is_some() { "; GPU" } else { "" }
            ),
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .right_y_label_area_size(48)
        .build_cartesian_2d(t0..t1, 0f64..y_max)
        .map_err(draw_err)?
        .set_secondary_coord(t0..t1, 0f64..100f64);
    let span = t1 - t0;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|x| time_label(*x, span))
        .y_desc("memory (GiB)")
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(draw_err)?;
    chart
        .configure_secondary_axes()
        .y_desc("PSI some avg10 (%)")
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(
            v.iter()
                .map(|s| (s.ts.as_second(), s.memory_current as f64 / GIB)),
            BLUE.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label("memory used")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    if limit.is_some() {
        chart
            .draw_series(LineSeries::new(
                v.iter()
                    .filter_map(|s| s.memory_max.map(|m| (s.ts.as_second(), m as f64 / GIB))),
                RED.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("memory limit")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
    }
    chart
        .draw_secondary_series(LineSeries::new(
            v.iter()
                .filter_map(|s| s.psi_memory_some.map(|p| (s.ts.as_second(), p))),
            MAGENTA.stroke_width(1),
        ))
        .map_err(draw_err)?
        .label("PSI memory some (%)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MAGENTA));
    // GPU memory (GiB, left axis) and utilisation (%, right axis) where the lines
    // have them.
    if gpu_mem_max.is_some() {
        chart
            .draw_series(LineSeries::new(
                v.iter()
                    .filter_map(|s| s.gpu_memory.map(|m| (s.ts.as_second(), m as f64 / GIB))),
                GREEN.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("GPU memory")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN.stroke_width(2)));
    }
    if v.iter().any(|s| s.gpu_util_pct.is_some()) {
        chart
            .draw_secondary_series(LineSeries::new(
                v.iter()
                    .filter_map(|s| s.gpu_util_pct.map(|p| (s.ts.as_second(), p))),
                CYAN.stroke_width(1),
            ))
            .map_err(draw_err)?
            .label("GPU utilisation (%)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], CYAN));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn draw_all<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    users: &BTreeMap<&str, Vec<&Sample>>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let areas = root.split_evenly((users.len(), 1));
    for (area, (user, v)) in areas.iter().zip(users) {
        let group = v.last().map_or("", |s| s.group.as_str());
        panel(area, user, group, v)?;
    }
    root.present().map_err(draw_err)
}

fn by_user(samples: &[Sample]) -> BTreeMap<&str, Vec<&Sample>> {
    let mut m: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        m.entry(&s.user).or_default().push(s);
    }
    for v in m.values_mut() {
        v.sort_by_key(|s| s.ts);
    }
    m
}

/// Register the font once per process.
fn font() -> Result<(), PlotError> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("DS01_PLOT_FONT")
            .ok()
            .into_iter()
            .chain(FONTS.iter().map(|s| s.to_string()))
            .collect();
        let bytes = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| format!("none of {} is readable", candidates.join(", ")))?;
        let font: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, font)
            .map_err(|_| "the font file is not a usable TrueType font".to_string())
    })
    .clone()
    .map_err(PlotError::Font)
}

/// The SVG document.
pub fn svg(samples: &[Sample]) -> Result<String, PlotError> {
    let users = by_user(samples);
    if users.is_empty() {
        return Err(PlotError::Empty);
    }
    font()?;
    let mut out = String::new();
    {
        let h = PANEL_H * users.len() as u32;
        let root = SVGBackend::with_string(&mut out, (WIDTH, h)).into_drawing_area();
        draw_all(root, &users)?;
    }
    Ok(out)
}

/// A PNG file (needs a TrueType font for the text).
pub fn png(samples: &[Sample], path: &Path) -> Result<(), PlotError> {
    let users = by_user(samples);
    if users.is_empty() {
        return Err(PlotError::Empty);
    }
    font()?;
    let h = PANEL_H * users.len() as u32;
    let root = BitMapBackend::new(path, (WIDTH, h)).into_drawing_area();
    draw_all(root, &users)
}
