//! PNG and SVG plots of an ablation: accuracy vs rollouts, effective ratio vs step.
//!
//! Text needs a TrueType font; plotters' `ab_glyph` backend is used so no fontconfig is
//! required. The font is read at run time from `AUGUR_PLOT_FONT` or common system paths
//! (DejaVu, Liberation, Noto); without one the plots are drawn without text.

use super::runner::RunResult;
use crate::error::{Result, SamplerError};
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

/// Mean curve over seeds of one method: (x, y) per step index.
fn mean_curve(runs: &[&RunResult], f: impl Fn(&RunResult, usize) -> (f64, f64)) -> Vec<(f64, f64)> {
    let n = runs.iter().map(|r| r.steps.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let (sx, sy) = runs.iter().fold((0.0, 0.0), |(a, b), r| {
                let (x, y) = f(r, i);
                (a + x, b + y)
            });
            (sx / runs.len() as f64, sy / runs.len() as f64)
        })
        .collect()
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
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
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
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
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(xlabel)
            .y_desc(ylabel)
            .x_label_formatter(&|x| format!("{x:.0}"));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
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

fn write_both(
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
    let err = |p: &Path, e: String| SamplerError::Plot(format!("{}: {e}", p.display()));
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

/// Writes `accuracy_vs_rollouts.{png,svg}` and `effective_ratio.{png,svg}` (means over seeds;
/// effective ratio smoothed over 5 steps).
pub fn write_plots(runs: &[RunResult], methods: &[String], out: &Path) -> Result<()> {
    let mut acc = Vec::new();
    let mut eff = Vec::new();
    for m in methods {
        let rs: Vec<&RunResult> = runs.iter().filter(|r| &r.method == m).collect();
        if rs.is_empty() {
            continue;
        }
        let mut a = vec![(
            0.0,
            rs.iter().map(|r| r.initial_accuracy).sum::<f64>() / rs.len() as f64,
        )];
        a.extend(mean_curve(&rs, |r, i| {
            (r.steps[i].rollouts_cumulative as f64, r.steps[i].accuracy)
        }));
        acc.push(Series {
            name: m.clone(),
            points: a,
        });
        let e = mean_curve(&rs, |r, i| {
            (r.steps[i].step as f64, r.steps[i].effective_ratio)
        });
        let smooth = (0..e.len())
            .map(|i| {
                let lo = i.saturating_sub(4);
                let w = &e[lo..=i];
                (e[i].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
            })
            .collect();
        eff.push(Series {
            name: m.clone(),
            points: smooth,
        });
    }
    write_both(
        out,
        "accuracy_vs_rollouts",
        "Accuracy vs rollouts",
        "rollouts",
        "accuracy",
        &acc,
    )?;
    write_both(
        out,
        "effective_ratio",
        "Effective-prompt ratio vs step",
        "step",
        "fraction with 0<s<k",
        &eff,
    )
}
