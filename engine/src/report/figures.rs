//! Report figures with plotters, each written as SVG (for the web and
//! diffs) and PNG (for LaTeX): learning curves per variant, per-label
//! bars per experiment (AU-LLM's per-AU F1), confusion matrices.
//!
//! Text is drawn with DejaVu Sans embedded through the `dejavu` crate and
//! plotters' `ab_glyph` backend, so figures look the same on a machine
//! with no system fonts (CI) as on a laptop.

use super::{confusion_axes, Loaded};
use crate::runner::{StoredMetric, VariantResult};
use crate::store::EpochRecord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// A written figure: `path` is relative to the report (`figures/x.svg`);
/// a `.png` of the same name sits beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureRef {
    pub experiment: String,
    pub path: String,
    pub caption: String,
}

const W: u32 = 720;
const H: u32 = 440;
const FONT: &str = "sans-serif";

fn fonts() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded DejaVu Sans font did not load".to_string())?;
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .map_err(|_| "the embedded DejaVu Sans Bold font did not load".to_string())
    })
    .clone()
}

fn e<E: std::fmt::Debug>(err: E) -> String {
    format!("drawing failed: {err:?}")
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A closure usable with both backends: plotters' backends are distinct
/// types, so each figure is a generic function called through this macro.
macro_rules! both {
    ($f:ident, $($arg:expr),*) => {
        Both(
            |a: &DrawingArea<SVGBackend, Shift>| $f(a, $($arg),*),
            |a: &DrawingArea<BitMapBackend, Shift>| $f(a, $($arg),*),
        )
    };
}

/// A pair of drawing closures, one per backend.
struct Both<A, B>(A, B);

/// Draws one figure into an SVG string and an RGB PNG, and writes both.
fn write_pair<A, B>(dir: &Path, name: &str, both: Both<A, B>) -> Result<(), String>
where
    A: Fn(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
    B: Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
{
    fonts()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        (both.0)(&root)?;
        root.present().map_err(e)?;
    }
    let mut rgb = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area();
        (both.1)(&root)?;
        root.present().map_err(e)?;
    }
    let img = image::RgbImage::from_raw(W, H, rgb).ok_or("PNG buffer size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|err| format!("{name}.png: {err}"))?;
    for (ext, bytes) in [("svg", svg.as_bytes()), ("png", png.as_slice())] {
        let p = dir.join(format!("{name}.{ext}"));
        crate::store::write_atomic(&p, bytes).map_err(|err| format!("{}: {err}", p.display()))?;
    }
    Ok(())
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (
        (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::MIN }),
        hi + pad,
    )
}

/// The series legend every figure uses: upper right, boxed.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)
}

/// Training loss per epoch: every fold thin and grey, the mean over folds
/// bold, and the inner-validation loss when there is one.
fn learning_curve<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    folds: &[(String, Vec<EpochRecord>)],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    let epochs = folds.iter().map(|(_, h)| h.len()).max().unwrap_or(0).max(1);
    let mean = |get: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        (0..epochs)
            .filter_map(|i| {
                let vs: Vec<f64> = folds
                    .iter()
                    .filter_map(|(_, h)| h.get(i).and_then(get))
                    .filter(|v| v.is_finite())
                    .collect();
                (!vs.is_empty()).then(|| ((i + 1) as f64, vs.iter().sum::<f64>() / vs.len() as f64))
            })
            .collect()
    };
    let train = mean(&|r| Some(r.train_loss));
    let val = mean(&|r| r.val_loss);
    let (lo, hi) = range(
        folds
            .iter()
            .flat_map(|(_, h)| h.iter().flat_map(|r| [Some(r.train_loss), r.val_loss]))
            .flatten(),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..(epochs as f64 + 0.5), lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(epochs.min(12) + 1)
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .x_desc("epoch")
        .y_desc("loss")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    let grey = RGBColor(190, 190, 190);
    for (_, h) in folds {
        chart
            .draw_series(LineSeries::new(
                h.iter()
                    .enumerate()
                    .filter(|(_, r)| r.train_loss.is_finite())
                    .map(|(i, r)| ((i + 1) as f64, r.train_loss)),
                grey.stroke_width(1),
            ))
            .map_err(e)?;
    }
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(train, blue.stroke_width(3)))
        .map_err(e)?
        .label(format!("training loss, mean of {} folds", folds.len()))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(3)));
    if !val.is_empty() {
        let orange = RGBColor(255, 127, 14);
        chart
            .draw_series(LineSeries::new(val, orange.stroke_width(3)))
            .map_err(e)?
            .label("inner-validation loss, mean")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], orange.stroke_width(3))
            });
    }
    legend(&mut chart)
}

/// Grouped bars: one group per label, one bar per variant (pooled ×100).
fn label_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    family: &str,
    labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    let n = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n, 0f64..100f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .x_desc("label")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc(format!("{family} ×100 (pooled)"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba();
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let x0 = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new(
                    [
                        (x0, 0.0),
                        (x0 + width * 0.92, (v * 100.0).clamp(0.0, 100.0)),
                    ],
                    color.filled(),
                ))
            }))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    // Category names under their groups (plotters labels numeric ticks only).
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, l) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(l.clone(), (px, py + 6), style.clone()))
            .map_err(e)?;
    }
    legend(&mut chart)
}

/// Pooled counts, shaded by the row's share (recall).
fn confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    truths: &[String],
    preds: &[String],
    counts: &[Vec<f64>],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    let (nr, nc) = (truths.len() as f64, preds.len() as f64);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..nc, 0f64..nr)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .x_desc("predicted")
        .y_desc("true")
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    for (i, row) in counts.iter().enumerate() {
        let total: f64 = row.iter().sum::<f64>().max(1.0);
        for (j, c) in row.iter().enumerate() {
            let share = c / total;
            let shade = (255.0 - 200.0 * share).round() as u8;
            let y = nr - 1.0 - i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(j as f64, y), (j as f64 + 1.0, y + 1.0)],
                    RGBColor(shade, shade, 255).filled(),
                )))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(j as f64 + 0.5, y + 0.5));
            let style =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(format!("{c:.0}"), (px, py), style))
                .map_err(e)?;
        }
    }
    let top = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (j, p) in preds.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(j as f64 + 0.5, 0.0));
        root.draw(&Text::new(p.clone(), (px, py + 6), top.clone()))
            .map_err(e)?;
    }
    let right = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, t) in truths.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, nr - 0.5 - i as f64));
        root.draw(&Text::new(t.clone(), (px - 6, py), right.clone()))
            .map_err(e)?;
    }
    Ok(())
}

fn epochs_of(dir: &Path) -> Vec<(String, Vec<EpochRecord>)> {
    let mut out = Vec::new();
    let Ok(es) = std::fs::read_dir(dir.join("folds")) else {
        return out;
    };
    for e in es.flatten() {
        if let Ok(Some(h)) =
            crate::store::read_json::<Vec<EpochRecord>>(&e.path().join("epochs.json"))
        {
            if !h.is_empty() {
                out.push((e.file_name().to_string_lossy().to_string(), h));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes every figure of `runs` into `dir`; `link` prefixes the paths the
/// report shows (e.g. `figures/`).
pub fn write_figures(runs: &[Loaded], dir: &Path, link: &str) -> Result<Vec<FigureRef>, String> {
    let mut refs = Vec::new();
    let mut push = |exp: &str, name: String, caption: String| {
        refs.push(FigureRef {
            experiment: exp.to_string(),
            path: format!("{link}{name}.svg"),
            caption,
        })
    };
    for l in runs {
        let r = &l.result;
        let folds = epochs_of(&l.dir);
        if !folds.is_empty() {
            let name = format!(
                "{}-{}-seed{}-loss",
                safe(&r.experiment),
                safe(&r.variant),
                r.seed
            );
            let title = format!(
                "{} / {} (seed {}): training loss",
                r.experiment, r.variant, r.seed
            );
            write_pair(dir, &name, both!(learning_curve, &title, &folds))?;
            push(
                &r.experiment,
                name,
                format!(
                    "Training loss per epoch of {} / {} (seed {}): each fold in grey, the mean over folds in blue.",
                    r.experiment, r.variant, r.seed
                ),
            );
        }
        let conf: Vec<&StoredMetric> = r
            .metrics
            .iter()
            .filter(|m| m.name.starts_with("confusion["))
            .collect();
        if let Some((truths, preds)) = confusion_axes(&conf) {
            let counts: Vec<Vec<f64>> = truths
                .iter()
                .map(|t| {
                    preds
                        .iter()
                        .map(|p| {
                            conf.iter()
                                .find(|m| m.name == format!("confusion[{t},{p}]"))
                                .and_then(|m| m.pooled)
                                .unwrap_or(0.0)
                        })
                        .collect()
                })
                .collect();
            let name = format!(
                "{}-{}-seed{}-confusion",
                safe(&r.experiment),
                safe(&r.variant),
                r.seed
            );
            let title = format!("{} / {} (seed {})", r.experiment, r.variant, r.seed);
            write_pair(
                dir,
                &name,
                both!(confusion, &title, &truths, &preds, &counts),
            )?;
            push(
                &r.experiment,
                name,
                format!(
                    "Confusion matrix of {} / {} (seed {}), pooled counts over folds; shading is the row's share (recall).",
                    r.experiment, r.variant, r.seed
                ),
            );
        }
    }
    // Per-label bars, one figure per experiment and label family.
    let mut exps: Vec<&String> = runs.iter().map(|l| &l.result.experiment).collect();
    exps.dedup();
    for exp in exps {
        let rs: Vec<&VariantResult> = runs
            .iter()
            .map(|l| &l.result)
            .filter(|r| &r.experiment == exp)
            .collect();
        for (fam, labels) in super::label_families(&rs) {
            let series: Vec<(String, Vec<Option<f64>>)> = rs
                .iter()
                .map(|r| {
                    let vals = labels
                        .iter()
                        .map(|lab| {
                            r.metrics
                                .iter()
                                .find(|m| m.name == format!("{fam}[{lab}]"))
                                .and_then(|m| m.pooled)
                        })
                        .collect();
                    (format!("{} (seed {})", r.variant, r.seed), vals)
                })
                .collect();
            let name = format!("{}-per-label-{}", safe(exp), safe(&fam));
            let title = format!("{exp}: {fam} per label");
            write_pair(
                dir,
                &name,
                both!(label_bars, &title, &fam, &labels, &series),
            )?;
            push(
                exp,
                name,
                format!("`{fam}` per label, pooled over folds, one bar per variant; a missing bar is undefined (no positives)."),
            );
        }
    }
    Ok(refs)
}
