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

use mer_registry::DataError;
use std::path::Path;

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
