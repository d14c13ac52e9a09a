//! Data: the synthetic generator (a drawn face animated by FACS action
//! units) and, later, loaders for the real corpora in their distributed
//! layouts.

pub mod au;
pub mod au_layout;
pub mod dfer_layout;
pub mod face;
pub mod fer_layout;
pub mod flow;
pub mod me_layout;
pub mod synth;
pub mod video;

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

/// A data problem at `file` (and its 1-based `row`, where there is one).
pub(crate) fn problem_at(file: &Path, row: Option<usize>, message: String) -> DataError {
    DataError {
        file: file.display().to_string(),
        row,
        message,
    }
}

/// The error a loader refuses to build with when its scan found problems:
/// the first one, and how to list them all.
pub(crate) fn refusal(problems: &[DataError], root: &Path, kind: &str) -> Option<BuildError> {
    let first = problems.first()?;
    Some(BuildError(format!(
        "{first}{}",
        match problems.len() - 1 {
            0 => String::new(),
            n => format!(
                " (and {n} more problems: `mer data verify {} --dataset {kind}` lists them)",
                root.display()
            ),
        }
    )))
}

/// The end of every `mer data verify` report: notes, then problems, each
/// counted and listed.
pub(crate) fn verify_tail(o: &mut String, notes: &[String], problems: &[DataError]) {
    use std::fmt::Write;
    let _ = writeln!(o, "notes: {}", notes.len());
    for n in notes {
        let _ = writeln!(o, "  {n}");
    }
    let _ = writeln!(o, "problems: {}", problems.len());
    for p in problems {
        let _ = writeln!(o, "  {p}");
    }
}

/// mer's disk cache: `MER_CACHE_DIR`, else `~/.cache/mer`.
pub fn cache_root() -> Option<std::path::PathBuf> {
    std::env::var_os("MER_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/mer")))
}

/// Decodes one frame, resizes it to `[h, w]` and appends its pixels in
/// [0, 1] to `planes` (RGB, or BT.601 luma when `planes` has one entry).
/// Returns the frame's original `(width, height)`. A decode failure names
/// the file and the label row that pointed at it. The resized pixels are
/// cached on disk (`<cache>/frames/`) by the BLAKE3 of the file's bytes
/// and the size, so later epochs, folds and runs skip the decode.
pub(crate) fn push_frame(
    path: &Path,
    row: Option<usize>,
    hw: [usize; 2],
    planes: &mut [Vec<f32>],
) -> Result<(u32, u32), DataError> {
    push_frame_crop(path, row, hw, planes, None)
}

/// [`push_frame`] of the region `crop` (`[x, y, w, h]` in pixels, clipped
/// to the frame) instead of the whole frame.
pub(crate) fn push_frame_crop(
    path: &Path,
    row: Option<usize>,
    hw: [usize; 2],
    planes: &mut [Vec<f32>],
    crop: Option<[u32; 4]>,
) -> Result<(u32, u32), DataError> {
    let cache = cache_root().map(|d| d.join("frames"));
    push_frame_cached(path, row, hw, planes, crop, cache.as_deref())
}

/// The resized RGB bytes and original size of `path`, from `cache` when
/// an intact entry exists. The entry holds exactly what decoding gives,
/// so a hit changes the time, never the pixels.
fn resized_rgb(
    path: &Path,
    row: Option<usize>,
    [h, w]: [usize; 2],
    crop: Option<[u32; 4]>,
    cache: Option<&Path>,
) -> Result<(Vec<u8>, (u32, u32)), DataError> {
    let fail = |message: String| DataError {
        file: path.display().to_string(),
        row,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut k = blake3::Hasher::new();
    k.update(b"mer-frame-v1");
    k.update(&(h as u64).to_le_bytes());
    k.update(&(w as u64).to_le_bytes());
    for c in crop.unwrap_or([u32::MAX; 4]) {
        k.update(&c.to_le_bytes());
    }
    k.update(&bytes);
    let key = k.finalize().to_hex().to_string();
    let entry = cache.map(|d| d.join(&key[..2]).join(format!("{key}.rgb")));
    let n = h * w * 3;
    if let Some(hit) = entry.as_ref().and_then(|p| std::fs::read(p).ok()) {
        if hit.len() == n + 8 {
            let dim = |i: usize| u32::from_le_bytes([hit[i], hit[i + 1], hit[i + 2], hit[i + 3]]);
            return Ok((hit[8..].to_vec(), (dim(0), dim(4))));
        }
    }
    let img = image::load_from_memory(&bytes).map_err(|e| fail(format!("cannot decode: {e}")))?;
    let dims = (img.width().max(1), img.height().max(1));
    let mut full = img.to_rgb8();
    if let Some([x, y, cw, ch]) = crop {
        let (x, y) = (x.min(dims.0 - 1), y.min(dims.1 - 1));
        let (cw, ch) = (cw.min(dims.0 - x).max(1), ch.min(dims.1 - y).max(1));
        full = image::imageops::crop_imm(&full, x, y, cw, ch).to_image();
    }
    let rgb = image::imageops::resize(
        &full,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    )
    .into_raw();
    if let Some(p) = entry {
        let mut out = Vec::with_capacity(n + 8);
        out.extend_from_slice(&dims.0.to_le_bytes());
        out.extend_from_slice(&dims.1.to_le_bytes());
        out.extend_from_slice(&rgb);
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        // A cache that cannot be written only costs time.
        let _ = crate::store::write_atomic(&p, &out);
    }
    Ok((rgb, dims))
}

fn push_frame_cached(
    path: &Path,
    row: Option<usize>,
    hw: [usize; 2],
    planes: &mut [Vec<f32>],
    crop: Option<[u32; 4]>,
    cache: Option<&Path>,
) -> Result<(u32, u32), DataError> {
    let (rgb, dims) = resized_rgb(path, row, hw, crop, cache)?;
    for px in rgb.chunks_exact(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(|v| v as f32 / 255.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached frame gives the decoder's exact pixels; changed content is
    /// a new entry; a damaged entry is recomputed.
    #[test]
    fn the_frame_cache_changes_the_time_not_the_pixels() {
        let dir = std::env::temp_dir().join(format!("mer-frame-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("f.png");
        let mut pic = image::RgbImage::new(20, 10);
        for (x, y, p) in pic.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 12) as u8, (y * 25) as u8, 77]);
        }
        pic.save(&img).unwrap();
        let cache = dir.join("cache");
        let run = |cache: Option<&Path>| {
            let mut planes = vec![vec![], vec![], vec![]];
            let dims = push_frame_cached(&img, None, [6, 8], &mut planes, None, cache).unwrap();
            (dims, planes)
        };
        let plain = run(None);
        assert_eq!(plain.0, (20, 10));
        let first = run(Some(&cache));
        let entries = || walk(&cache);
        assert_eq!(entries().len(), 1);
        let hit = run(Some(&cache));
        assert_eq!(plain, first);
        assert_eq!(plain, hit);
        // Damage the entry: it is recomputed, with the same pixels.
        std::fs::write(&entries()[0], b"short").unwrap();
        assert_eq!(run(Some(&cache)), plain);
        // New content, new entry.
        pic.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        pic.save(&img).unwrap();
        let changed = run(Some(&cache));
        assert_ne!(changed, plain);
        assert_eq!(entries().len(), 2);
        // A crop is part of the key: the red corner alone.
        let mut planes = vec![vec![], vec![], vec![]];
        push_frame_cached(
            &img,
            None,
            [2, 2],
            &mut planes,
            Some([0, 0, 1, 1]),
            Some(&cache),
        )
        .unwrap();
        assert_eq!((planes[0][0], planes[1][0]), (1.0, 0.0));
        assert_eq!(entries().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(d: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
