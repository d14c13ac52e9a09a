//! Data: the synthetic generator (a drawn face animated by FACS action
//! units) and, later, loaders for the real corpora in their distributed
//! layouts.

pub mod au;
pub mod dfer_layout;
pub mod face;
pub mod fer_layout;
pub mod flow;
pub mod me_layout;
pub mod synth;

use mer_registry::{BuildError, DataError, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// An integer parameter, or `default` (the schema has already checked
/// types, so anything else means "absent").
pub(crate) fn int(p: &BTreeMap<String, Value>, k: &str, default: i64) -> i64 {
    match p.get(k) {
        Some(Value::Int(i)) => *i,
        _ => default,
    }
}

/// A real parameter, or `default`.
pub(crate) fn float(p: &BTreeMap<String, Value>, k: &str, default: f64) -> f64 {
    p.get(k).and_then(Value::as_f64).unwrap_or(default)
}

/// A string parameter, or `default`.
pub(crate) fn text<'a>(p: &'a BTreeMap<String, Value>, k: &str, default: &'a str) -> &'a str {
    match p.get(k) {
        Some(Value::Str(s)) => s,
        _ => default,
    }
}

/// The integers of a list parameter (empty when absent).
pub(crate) fn ints(p: &BTreeMap<String, Value>, k: &str) -> Vec<i64> {
    match p.get(k) {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// The `size` parameter as `[H, W]` (`[S]` means square), or `default`.
pub(crate) fn size(
    p: &BTreeMap<String, Value>,
    default: [usize; 2],
) -> Result<[usize; 2], BuildError> {
    if !p.contains_key("size") {
        return Ok(default);
    }
    match ints(p, "size")[..] {
        [h, w] if h > 0 && w > 0 => Ok([h as usize, w as usize]),
        [s] if s > 0 => Ok([s as usize, s as usize]),
        _ => Err(BuildError(
            "`size` must be [H, W] with positive sides".into(),
        )),
    }
}

/// Decodes one frame, resizes it to `[h, w]` and appends its pixels in
/// [0, 1] to `planes` (RGB, or BT.601 luma when `planes` has one entry).
/// Returns the frame's original `(width, height)`. A decode failure names
/// the file and the label row that pointed at it.
pub(crate) fn push_frame(
    path: &Path,
    row: Option<usize>,
    [h, w]: [usize; 2],
    planes: &mut [Vec<f32>],
) -> Result<(u32, u32), DataError> {
    let img = image::open(path).map_err(|e| DataError {
        file: path.display().to_string(),
        row,
        message: format!("cannot decode: {e}"),
    })?;
    let dims = (img.width().max(1), img.height().max(1));
    let rgb = image::imageops::resize(
        &img.to_rgb8(),
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    for px in rgb.pixels() {
        let [r, g, b] = px.0.map(|v| v as f32 / 255.0);
        match planes {
            [gray] => gray.push(0.299 * r + 0.587 * g + 0.114 * b),
            [pr, pg, pb, ..] => {
                pr.push(r);
                pg.push(g);
                pb.push(b);
            }
            _ => {}
        }
    }
    Ok(dims)
}
