//! Bar charts of base against tuned, one per task, as PNG files: plotters draws into a
//! pixel buffer (no system font library: the font file is read from disk and rasterised
//! in Rust), the png crate encodes it, and the file is written atomically.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::EvalError;
use super::stats::Estimate;

/// Chart size in pixels.
const SIZE: (u32, u32) = (640, 420);

/// Font files tried in turn (`MEDLLM_FONT` first); scripts/setup.sh installs DejaVu.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers a font with plotters once; the path it came from, or why none could be used.
fn font() -> Result<&'static PathBuf, String> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let from_env = std::env::var_os("MEDLLM_FONT").map(PathBuf::from);
        let candidates = from_env.into_iter().chain(FONT_PATHS.iter().map(PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(path);
                }
            }
        }
        Err("no TrueType font found (install fonts-dejavu-core or set MEDLLM_FONT to a .ttf file)".into())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One bar: its label and value with interval.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Label under the bar.
    pub label: String,
    /// Height and error bar.
    pub estimate: Estimate,
}

/// Draws `bars` with their 95% intervals into a PNG at `path`.
pub fn bar_chart(path: &Path, title: &str, metric: &str, bars: &[Bar]) -> Result<(), EvalError> {
    let fail = |reason: String| EvalError::Chart { path: path.to_path_buf(), reason };
    font().map_err(fail)?;
    let (w, h) = SIZE;
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        let top = bars.iter().map(|b| b.estimate.high.max(b.estimate.value)).fold(0.0f64, f64::max);
        let top = if top <= 0.0 || !top.is_finite() { 1.0 } else { top * 1.15 };
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..top)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(metric)
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .label_style(("sans-serif", 15))
                .draw()?;
            let colours = [RGBColor(96, 125, 139), RGBColor(0, 137, 123)];
            chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.estimate.value)],
                    colours[i % colours.len()].filled(),
                );
                bar.set_margin(0, 0, 40, 40);
                bar
            }))?;
            chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                ErrorBar::new_vertical(
                    SegmentValue::CenterOf(i),
                    b.estimate.low,
                    b.estimate.value,
                    b.estimate.high,
                    BLACK.stroke_width(2),
                    14,
                )
            }))?;
            chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    format!("{:.3}", b.estimate.value),
                    (SegmentValue::CenterOf(i), b.estimate.high),
                    ("sans-serif", 15),
                )
            }))?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| fail(e.to_string()))?;
    }
    write_png(path, &pixels)
}

/// One line of a line chart: its legend and points.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend.
    pub label: String,
    /// (x, y) points in order of x.
    pub points: Vec<(f64, f64)>,
}

/// Draws `lines` (such as training and validation loss by step) into a PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<(), EvalError> {
    let fail = |reason: String| EvalError::Chart { path: path.to_path_buf(), reason };
    font().map_err(fail)?;
    let (w, h) = SIZE;
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        let all = lines.iter().flat_map(|l| l.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x_max, mut y_max) = (1.0f64, 0.0f64);
        for (x, y) in all {
            x_max = x_max.max(*x);
            y_max = y_max.max(*y);
        }
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style(("sans-serif", 15)).draw()?;
            let colours = [RGBColor(96, 125, 139), RGBColor(230, 81, 0), RGBColor(0, 137, 123)];
            for (i, line) in lines.iter().enumerate() {
                let colour = colours[i % colours.len()];
                chart
                    .draw_series(LineSeries::new(line.points.iter().copied(), colour.stroke_width(2)))?
                    .label(line.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| fail(e.to_string()))?;
    }
    write_png(path, &pixels)
}

/// Encodes an RGB buffer of [`SIZE`] as PNG and writes it atomically.
fn write_png(path: &Path, pixels: &[u8]) -> Result<(), EvalError> {
    let fail = |reason: String| EvalError::Chart { path: path.to_path_buf(), reason };
    let (w, h) = SIZE;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(e.to_string()))?;
        writer.write_image_data(pixels).map_err(|e| fail(e.to_string()))?;
    }
    crate::atomic_file::write_atomically(path, |f| std::io::Write::write_all(f, &png_bytes))
        .map_err(|source| EvalError::Io { path: path.to_path_buf(), source })
}
