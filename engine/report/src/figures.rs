//! Report figures with plotters, each written as SVG (for the web and
//! diffs) and PNG (for LaTeX): learning curves per variant, per-label
//! bars per experiment (AU-LLM's per-AU F1), confusion matrices.
//!
//! Text is drawn with DejaVu Sans embedded through the `dejavu` crate and
//! plotters' `ab_glyph` backend, so figures look the same on a machine
//! with no system fonts (CI) as on a laptop.

use super::{confusion_axes, store_key, Loaded};
use mer_store::EpochRecord;
use mer_store::{StoredMetric, VariantResult};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// A written figure: `path` is relative to the report (`figures/x.svg`);
/// a `.png` of the same name sits beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureRef {
    /// The experiment the figure belongs to.
    pub experiment: String,
    /// The run-store folder (experiment hash) the figure belongs to, so a
    /// report split by hash places it in the right section; empty for any.
    pub store: String,
    /// The SVG file, relative to the report (`figures/x.svg`).
    pub path: String,
    /// The text shown under the figure.
    pub caption: String,
}

const W: u32 = 720;
/// Curves of at most this many epochs carry a marker on every point.
const MARKED_EPOCHS: usize = 30;
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
        mer_store::write_atomic(&p, bytes).map_err(|err| format!("{}: {err}", p.display()))?;
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
    // A line through one point draws nothing: with few epochs every point
    // also gets a marker, so a 1-epoch run still shows its loss.
    let marked = epochs <= MARKED_EPOCHS;
    for (_, h) in folds {
        let points: Vec<(f64, f64)> = h
            .iter()
            .enumerate()
            .filter(|(_, r)| r.train_loss.is_finite())
            .map(|(i, r)| ((i + 1) as f64, r.train_loss))
            .collect();
        if marked {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, grey.filled())))
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(points, grey.stroke_width(1)))
            .map_err(e)?;
    }
    let blue = RGBColor(31, 119, 180);
    let marks = |pts: &[(f64, f64)], c: RGBColor| {
        let pts: Vec<(f64, f64)> = if marked { pts.to_vec() } else { vec![] };
        pts.into_iter().map(move |p| Circle::new(p, 5, c.filled()))
    };
    chart.draw_series(marks(&train, blue)).map_err(e)?;
    chart
        .draw_series(LineSeries::new(train, blue.stroke_width(3)))
        .map_err(e)?
        .label(format!("training loss, mean of {} folds", folds.len()))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(3)));
    if !val.is_empty() {
        let orange = RGBColor(255, 127, 14);
        chart.draw_series(marks(&val, orange)).map_err(e)?;
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
    let small = |v: VPos| TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, v));
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
        // A zero bar has no height and would read as "missing": it gets a
        // dark line on the axis and a `0`; an undefined value gets `n/a`.
        for (i, v) in values.iter().enumerate() {
            let x0 = i as f64 + 0.1 + j as f64 * width;
            let mid = x0 + width * 0.46;
            let (px, py) = chart.backend_coord(&(mid, 0.0));
            match v {
                Some(v) if v * 100.0 < 0.5 => {
                    let (l, _) = chart.backend_coord(&(x0, 0.0));
                    let (r, _) = chart.backend_coord(&(x0 + width * 0.92, 0.0));
                    root.draw(&Rectangle::new([(l, py - 3), (r, py)], BLACK.filled()))
                        .map_err(e)?;
                    root.draw(&Text::new("0", (px, py - 5), small(VPos::Bottom)))
                        .map_err(e)?;
                }
                Some(_) => {}
                None => {
                    root.draw(&Text::new(
                        "n/a",
                        (px, py - 5),
                        small(VPos::Bottom).color(&RGBColor(120, 120, 120)),
                    ))
                    .map_err(e)?;
                }
            }
        }
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

/// A cell's colour for its share of the row: white (0) to blue (1).
fn shade(share: f64) -> RGBColor {
    let v = (255.0 - 200.0 * share.clamp(0.0, 1.0)).round() as u8;
    RGBColor(v, v, 255)
}

/// Pooled counts with their row percentages, shaded by the row's share
/// (recall on the diagonal), and a colour bar for the shading.
fn confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    truths: &[String],
    preds: &[String],
    counts: &[Vec<f64>],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(e)?;
    let (nr, nc) = (truths.len() as f64, preds.len() as f64);
    let area = root.titled(title, (FONT, 18)).map_err(e)?;
    let (w, h) = area.dim_in_pixel();
    let (plot, side) = area.split_horizontally(w.saturating_sub(100));
    colour_bar(&side, h)?;
    let mut chart = ChartBuilder::on(&plot)
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
        let total: f64 = row.iter().sum();
        for (j, c) in row.iter().enumerate() {
            let share = if total > 0.0 { c / total } else { 0.0 };
            let y = nr - 1.0 - i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(j as f64, y), (j as f64 + 1.0, y + 1.0)],
                    shade(share).filled(),
                )))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(j as f64 + 0.5, y + 0.5));
            let at = |v: VPos, size: u32| {
                TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, v))
            };
            root.draw(&Text::new(
                format!("{c:.0}"),
                (px, py - 1),
                at(VPos::Bottom, 14),
            ))
            .map_err(e)?;
            // The row's share: an empty row (a class with no test samples)
            // has none.
            let pct = if total > 0.0 {
                format!("{:.0}%", 100.0 * share)
            } else {
                "–".into()
            };
            root.draw(&Text::new(pct, (px, py + 1), at(VPos::Top, 11)))
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

/// The shading's key: white (0 % of the row) to blue (100 %).
fn colour_bar<DB: DrawingBackend>(side: &DrawingArea<DB, Shift>, h: u32) -> Result<(), String> {
    let (top, bottom) = (40i32, h as i32 - 60);
    let (x0, x1) = (18i32, 38i32);
    let steps = 50;
    for k in 0..steps {
        let y0 = top + (bottom - top) * k / steps;
        let y1 = top + (bottom - top) * (k + 1) / steps;
        let share = 1.0 - (k as f64 + 0.5) / steps as f64;
        side.draw(&Rectangle::new([(x0, y0), (x1, y1)], shade(share).filled()))
            .map_err(e)?;
    }
    side.draw(&Rectangle::new(
        [(x0, top), (x1, bottom)],
        BLACK.stroke_width(1),
    ))
    .map_err(e)?;
    let label = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (share, text) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
        let y = bottom - ((bottom - top) as f64 * share).round() as i32;
        side.draw(&PathElement::new(vec![(x1, y), (x1 + 4, y)], BLACK))
            .map_err(e)?;
        side.draw(&Text::new(text, (x1 + 6, y), label.clone()))
            .map_err(e)?;
    }
    let head = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
    side.draw(&Text::new("of the row", (4, top - 6), head))
        .map_err(e)?;
    Ok(())
}

fn epochs_of(dir: &Path) -> Vec<(String, Vec<EpochRecord>)> {
    let mut out = Vec::new();
    let Ok(es) = std::fs::read_dir(dir.join("folds")) else {
        return out;
    };
    for e in es.flatten() {
        if let Ok(Some(h)) = mer_store::read_json::<Vec<EpochRecord>>(&e.path().join("epochs.json"))
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
    let mut push = |r: &VariantResult, name: String, caption: String| {
        refs.push(FigureRef {
            experiment: r.experiment.clone(),
            store: store_key(r).to_string(),
            path: format!("{link}{name}.svg"),
            caption,
        })
    };
    // An experiment with runs of several hashes: names and titles carry
    // the hash, so the figures of one recipe never overwrite another's.
    let tag = |r: &VariantResult| {
        let several = runs
            .iter()
            .any(|l| l.result.experiment == r.experiment && store_key(&l.result) != store_key(r));
        let h = store_key(r);
        several.then(|| h.get(..8).unwrap_or(h).to_string())
    };
    let stem = |r: &VariantResult| match tag(r) {
        Some(h) => format!("{}-{h}", safe(&r.experiment)),
        None => safe(&r.experiment),
    };
    let who = |r: &VariantResult| match tag(r) {
        Some(h) => format!("{} `{h}`", r.experiment),
        None => r.experiment.clone(),
    };
    for l in runs {
        let r = &l.result;
        let folds = epochs_of(&l.dir);
        if !folds.is_empty() {
            let name = format!("{}-{}-seed{}-loss", stem(r), safe(&r.variant), r.seed);
            let title = format!(
                "{} / {} (seed {}): training loss",
                who(r).replace('`', ""),
                r.variant,
                r.seed
            );
            write_pair(dir, &name, both!(learning_curve, &title, &folds))?;
            let epochs = folds.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
            push(
                r,
                name,
                format!(
                    "Training loss per epoch of {} / {} (seed {}): each fold in grey, the mean over folds in blue{}.",
                    who(r),
                    r.variant,
                    r.seed,
                    if epochs <= MARKED_EPOCHS { "; a dot marks each epoch" } else { "" }
                ),
            );
        }
        let conf: Vec<&StoredMetric> = r
            .metrics
            .iter()
            .filter(|m| m.name.starts_with("confusion[") && m.name.ends_with(']'))
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
            let name = format!("{}-{}-seed{}-confusion", stem(r), safe(&r.variant), r.seed);
            let n = r.folds.len();
            let pooled = format!("pooled over {n} fold{}", if n == 1 { "" } else { "s" });
            let title = format!(
                "{} / {} (seed {}), {pooled}",
                who(r).replace('`', ""),
                r.variant,
                r.seed
            );
            write_pair(
                dir,
                &name,
                both!(confusion, &title, &truths, &preds, &counts),
            )?;
            push(
                r,
                name,
                format!(
                    "Confusion matrix of {} / {} (seed {}), counts {pooled}, each with its share of the row; shading is that share (recall on the diagonal), keyed by the colour bar.",
                    who(r),
                    r.variant,
                    r.seed
                ),
            );
        }
    }
    // Per-label bars, one figure per experiment (and hash) and label family.
    let groups: Vec<(&String, &str)> = super::unique(
        runs.iter()
            .map(|l| (&l.result.experiment, store_key(&l.result))),
    );
    for (exp, store) in groups {
        let rs: Vec<&VariantResult> = runs
            .iter()
            .map(|l| &l.result)
            .filter(|r| &r.experiment == exp && store_key(r) == store)
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
                                .find(|m| m.name == super::label_metric(&fam, lab))
                                .and_then(|m| m.pooled)
                        })
                        .collect();
                    (format!("{} (seed {})", r.variant, r.seed), vals)
                })
                .collect();
            let name = format!("{}-per-label-{}", stem(rs[0]), safe(&fam));
            let title = format!("{}: {fam} per label", who(rs[0]).replace('`', ""));
            write_pair(
                dir,
                &name,
                both!(label_bars, &title, &fam, &labels, &series),
            )?;
            push(
                rs[0],
                name,
                format!("`{fam}` per label, pooled over folds, one bar per variant; a value of 0 is a dark line on the axis marked `0`, an undefined one (no positives) is marked `n/a`."),
            );
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_store::VariantResult;

    fn metric(kind: &str, name: &str, v: Option<f64>) -> StoredMetric {
        StoredMetric {
            node: "metrics[0]".into(),
            kind: kind.into(),
            name: name.into(),
            pooled: v,
            per_fold_mean: v,
            folds_counted: 1,
            per_fold: vec![],
            how: String::new(),
            test_tuned: false,
            lower_is_better: false,
            own_units: false,
        }
    }

    /// A 1-epoch run with a confusion matrix and per-AU F1 of 0 and
    /// undefined: every new mark is in the SVG text.
    #[test]
    fn figures_mark_single_epochs_zero_bars_and_pooled_confusions() {
        let root = std::env::temp_dir().join(format!("mer-figures-{}", std::process::id()));
        let run = root.join("run");
        for f in ["f1", "f2"] {
            let d = mer_store::RunStore::fold_dir(&run, f);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("epochs.json"),
                r#"[{"epoch":1,"train_loss":0.7,"terms":[],"grad_norm":1.0,"lr_factor":1.0}]"#,
            )
            .unwrap();
        }
        let mut metrics = vec![
            metric("metric.f1", "f1[AU1]", Some(0.0)),
            metric("metric.f1", "f1[AU2]", None),
            metric("metric.f1", "f1[AU4]", Some(0.5)),
        ];
        for (t, p, n) in [
            ("a", "a", 3.0),
            ("a", "b", 1.0),
            ("b", "a", 2.0),
            ("b", "b", 0.0),
        ] {
            metrics.push(metric(
                "metric.confusion",
                &format!("confusion[{t},{p}]"),
                Some(n),
            ));
        }
        let result = VariantResult {
            experiment: "e".into(),
            variant: "base".into(),
            recipe_hash: "11".into(),
            seed: 1,
            protocol: "protocol.loso".into(),
            cross_dataset: false,
            folds: vec!["f1".into(), "f2".into()],
            failed: vec![],
            complete: true,
            select: "last".into(),
            data_notes: vec![],
            samples: 6,
            datasets: vec![],
            metrics,
            reported: vec![],
            store_hash: String::new(),
            recipe_keys: vec![],
            answers: Default::default(),
        };
        let out = root.join("figures");
        std::fs::create_dir_all(&out).unwrap();
        let refs = write_figures(
            &[Loaded {
                result,
                dir: run.clone(),
            }],
            &out,
            "figures/",
        )
        .unwrap();
        let svg = |n: &str| std::fs::read_to_string(out.join(format!("{n}.svg"))).unwrap();
        let (loss, conf, bars) = (
            svg("e-base-seed1-loss"),
            svg("e-base-seed1-confusion"),
            svg("e-per-label-f1"),
        );
        let _ = std::fs::remove_dir_all(&root);
        assert!(loss.contains("<circle"), "1-epoch curve has markers");
        assert!(conf.contains("pooled over 2 folds"), "title");
        for pct in ["75%", "25%", "100%", "50%", "0%", "of the row"] {
            assert!(
                conf.contains(&format!(">\n{pct}\n</text>")),
                "{pct} in the matrix"
            );
        }
        assert!(bars.contains(">\n0\n</text>"), "a zero bar is marked 0");
        assert!(
            bars.contains(">\nn/a\n</text>"),
            "an undefined bar is marked n/a"
        );
        let captions: Vec<&str> = refs.iter().map(|r| r.caption.as_str()).collect();
        assert!(
            captions[0].contains("a dot marks each epoch"),
            "{captions:?}"
        );
        assert!(
            captions[1].contains("counts pooled over 2 folds"),
            "{captions:?}"
        );
        assert!(captions[2].contains("marked `n/a`"), "{captions:?}");
    }
}
