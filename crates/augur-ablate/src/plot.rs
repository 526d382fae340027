//! Line plots (PNG and SVG) of ablations, shared by every mode (simulated, GRPO samplers, SFT
//! selection), so all draw their curves the same way.
//!
//! Text needs a TrueType font; plotters' `ab_glyph` backend is used so no fontconfig is
//! required. The font is read at run time from `AUGUR_PLOT_FONT` or common system paths
//! (DejaVu, Liberation, Noto); without one the plots are drawn without text.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a font once; returns whether text can be drawn.
fn font_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let env = std::env::var("AUGUR_PLOT_FONT").ok();
        let paths = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for p in paths {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Pointwise mean of several curves (one per seed), over the length of the shortest.
pub fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = curves.iter().map(Vec::len).min().unwrap_or(0);
    let k = curves.len() as f64;
    (0..n)
        .map(|i| {
            let (sx, sy) = curves
                .iter()
                .fold((0.0, 0.0), |(a, b), c| (a + c[i].0, b + c[i].1));
            (sx / k, sy / k)
        })
        .collect()
}

/// Each y replaced by the mean of the last `window` ys up to it, so noisy per-step series
/// (effective ratio) show their trend.
pub fn trailing_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    (0..points.len())
        .map(|i| {
            let w = &points[(i + 1).saturating_sub(window)..=i];
            (
                points[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

/// Pointwise (mean x, min y, max y) of several curves (one per seed), over the length of the
/// shortest: the band the seeds span around their mean.
pub fn seed_band(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64, f64)> {
    let n = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let x = curves.iter().map(|c| c[i].0).sum::<f64>() / curves.len() as f64;
            let lo = curves.iter().map(|c| c[i].1).fold(f64::INFINITY, f64::min);
            let hi = curves
                .iter()
                .map(|c| c[i].1)
                .fold(f64::NEG_INFINITY, f64::max);
            (x, lo, hi)
        })
        .collect()
}

/// Series with at most this many points get a marker on each.
const MARKERS_UP_TO: usize = 40;

/// One named line of a plot.
struct Series {
    /// Legend label.
    name: String,
    /// (x, y) points in drawing order.
    points: Vec<(f64, f64)>,
    /// (x, low y, high y): a shaded band drawn under the line (empty: none).
    band: Vec<(f64, f64, f64)>,
}

impl Series {
    fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            band: Vec::new(),
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
    text: bool,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let band_pts = series
        .iter()
        .flat_map(|s| s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
    let pts = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts.chain(band_pts) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if text {
        b.caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = b
        .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
        .map_err(|e| e.to_string())?;
    // Whole numbers for steps and rollouts, one decimal for rates.
    let digits = if x1 - x0 > 10.0 { 0 } else { 1 };
    let x_label = move |x: &f64| format!("{x:.digits$}");
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(xlabel)
            .y_desc(ylabel)
            .x_label_formatter(&x_label);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if !s.band.is_empty() {
            let outline: Vec<(f64, f64)> = s
                .band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(s.band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15))))
                .map_err(|e| e.to_string())?;
        }
        // Markers where points are few, so a one-point series (one calibration bin) shows.
        if s.points.len() <= MARKERS_UP_TO {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        let line = chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        if text {
            line.label(s.name.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Draws `series` into `<out>/<stem>.png` and `<out>/<stem>.svg`.
fn write_line_plot(
    out: &Path,
    stem: &str,
    title: &str,
    xl: &str,
    yl: &str,
    series: &[Series],
) -> Result<()> {
    let text = font_available();
    let png = out.join(format!("{stem}.png"));
    let svg = out.join(format!("{stem}.svg"));
    let err = |p: &Path, e: String| anyhow!("{}: {e}", p.display());
    draw(
        BitMapBackend::new(&png, (900, 600)).into_drawing_area(),
        title,
        xl,
        yl,
        series,
        text,
    )
    .map_err(|e| err(&png, e))?;
    draw(
        SVGBackend::new(&svg, (900, 600)).into_drawing_area(),
        title,
        xl,
        yl,
        series,
        text,
    )
    .map_err(|e| err(&svg, e))
}

/// One method's curves, one per seed.
pub struct SeedCurves {
    /// Legend label.
    pub name: String,
    /// (x, y) points of each seed's run.
    pub curves: Vec<Vec<(f64, f64)>>,
}

/// What a plot shows: its file stem, title and axis labels.
pub struct PlotLabels<'a> {
    pub stem: &'a str,
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Writes `<stem>.{png,svg}`: each method's mean over seeds, the seeds' range shaded (with more
/// than one seed). Methods without points are left out; nothing is drawn when none has any.
pub fn write_band_plot(out: &Path, labels: &PlotLabels, methods: &[SeedCurves]) -> Result<()> {
    let series: Vec<Series> = methods
        .iter()
        .filter(|m| m.curves.iter().any(|c| !c.is_empty()))
        .map(|m| Series {
            band: if m.curves.len() > 1 {
                seed_band(&m.curves)
            } else {
                Vec::new()
            },
            ..Series::line(m.name.clone(), mean_curve(&m.curves))
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    write_line_plot(out, labels.stem, labels.title, labels.x, labels.y, &series)
}

/// Writes `<stem>.{png,svg}`: each method's mean over seeds, smoothed by a trailing mean over
/// `window` points (for noisy per-step series). Nothing is drawn when no method has points.
pub fn write_smoothed_plot(
    out: &Path,
    labels: &PlotLabels,
    methods: &[SeedCurves],
    window: usize,
) -> Result<()> {
    let series: Vec<Series> = methods
        .iter()
        .filter(|m| m.curves.iter().any(|c| !c.is_empty()))
        .map(|m| {
            Series::line(
                m.name.clone(),
                trailing_mean(&mean_curve(&m.curves), window),
            )
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    write_line_plot(out, labels.stem, labels.title, labels.x, labels.y, &series)
}

/// One predictive sampler's view of its prompts, for the calibration and ρ plots.
pub struct PredictionCurves {
    /// Legend label.
    pub name: String,
    /// Binned (mean predicted, mean observed) success rate, pooled over seeds.
    pub calibration: Vec<(f64, f64)>,
    /// Spearman ρ of predicted vs observed success per step, one curve per seed.
    pub spearman: Vec<Vec<(f64, f64)>>,
}

/// Writes `calibration.{png,svg}` (binned predicted vs observed success rate, with the diagonal
/// a calibrated predictor follows) and `spearman.{png,svg}` (ρ vs step, mean over seeds,
/// smoothed over 5 steps). Nothing is drawn without a predictive sampler.
pub fn write_prediction_plots(out: &Path, samplers: &[PredictionCurves]) -> Result<()> {
    if samplers.is_empty() {
        return Ok(());
    }
    let mut calibration: Vec<Series> = samplers
        .iter()
        .map(|s| Series::line(s.name.clone(), s.calibration.clone()))
        .collect();
    calibration.push(Series::line("calibrated", vec![(0.0, 0.0), (1.0, 1.0)]));
    write_line_plot(
        out,
        "calibration",
        "Calibration: observed vs predicted success rate (binned, all seeds)",
        "predicted success rate",
        "observed success rate",
        &calibration,
    )?;
    let spearman: Vec<Series> = samplers
        .iter()
        .map(|s| Series::line(s.name.clone(), trailing_mean(&mean_curve(&s.spearman), 5)))
        .collect();
    write_line_plot(
        out,
        "spearman",
        "Spearman rho of predicted vs observed success per step (mean over seeds, 5-step mean)",
        "step",
        "rho",
        &spearman,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_curve_stops_at_the_shortest_and_trailing_mean_smooths() {
        let c = mean_curve(&[vec![(0.0, 1.0), (2.0, 3.0)], vec![(2.0, 3.0)]]);
        assert_eq!(c, vec![(1.0, 2.0)]);
        let t = trailing_mean(&[(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)], 2);
        assert_eq!(t, vec![(1.0, 1.0), (2.0, 2.0), (3.0, 4.0)]);
        assert_eq!(trailing_mean(&[(1.0, 1.0)], 0), vec![(1.0, 1.0)]);
    }

    #[test]
    fn seed_band_spans_the_seeds_over_the_shortest() {
        let b = seed_band(&[
            vec![(0.0, 0.2), (10.0, 0.5), (20.0, 0.9)],
            vec![(2.0, 0.4), (12.0, 0.3)],
        ]);
        assert_eq!(b, vec![(1.0, 0.2, 0.4), (11.0, 0.3, 0.5)]);
    }

    #[test]
    fn prediction_plots_are_written_only_for_predictive_samplers() {
        let dir = tempfile::tempdir().unwrap();
        write_prediction_plots(dir.path(), &[]).unwrap();
        assert!(!dir.path().join("calibration.svg").exists());
        let curves = PredictionCurves {
            name: "mopps".into(),
            calibration: vec![(0.1, 0.2), (0.6, 0.5)],
            spearman: vec![vec![(1.0, 0.1), (2.0, 0.4)]],
        };
        write_prediction_plots(dir.path(), &[curves]).unwrap();
        for f in [
            "calibration.svg",
            "calibration.png",
            "spearman.svg",
            "spearman.png",
        ] {
            assert!(
                std::fs::metadata(dir.path().join(f)).unwrap().len() > 0,
                "{f}"
            );
        }
    }
}
