//! `mer-data`: the dataset kinds. The synthetic generator (a drawn face
//! animated by FACS action units), loaders for the real corpora in their
//! distributed layouts, the one clip sampler, optical flow and video decoding.

#![warn(missing_docs)]

pub mod au;
pub mod au_layout;
pub mod dfer_layout;
pub mod face;
pub mod fer_layout;
pub mod ferplus;
pub mod flow;
pub mod me_layout;
pub mod npy;
mod ports;
pub mod sampler;
pub mod synth;
pub mod video;

use mer_registry::{BuildError, DataError, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Every dataset kind, each declared in the file that implements it.
pub fn kinds() -> Vec<mer_registry::Kind> {
    let mut v = synth::kinds();
    v.extend(me_layout::kinds());
    v.extend(fer_layout::kinds());
    v.extend(ferplus::kinds());
    v.extend(dfer_layout::kinds());
    v.extend(au_layout::kinds());
    v
}

// Parameter reads. Factories get their parameters after the schema's
// defaults (the schema is the one place defaults live), so a missing
// parameter is a caller's bug, named here, never filled in silently.

fn missing(k: &str, what: &str) -> BuildError {
    BuildError(format!("missing {what} parameter `{k}`"))
}

/// An integer parameter.
pub(crate) fn int(p: &BTreeMap<String, Value>, k: &str) -> Result<i64, BuildError> {
    match p.get(k) {
        Some(Value::Int(i)) => Ok(*i),
        _ => Err(missing(k, "an integer")),
    }
}

/// A count parameter (an integer of at least 1).
pub(crate) fn count(p: &BTreeMap<String, Value>, k: &str) -> Result<usize, BuildError> {
    let i = int(p, k)?;
    usize::try_from(i)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| BuildError(format!("`{k}` must be at least 1, not {i}")))
}

/// A real parameter (an integer is read as one).
pub(crate) fn float(p: &BTreeMap<String, Value>, k: &str) -> Result<f64, BuildError> {
    p.get(k)
        .and_then(Value::as_f64)
        .ok_or_else(|| missing(k, "a number"))
}

/// A string parameter.
pub(crate) fn text<'a>(p: &'a BTreeMap<String, Value>, k: &str) -> Result<&'a str, BuildError> {
    match p.get(k) {
        Some(Value::Str(s)) => Ok(s),
        _ => Err(missing(k, "a string")),
    }
}

/// A boolean parameter.
pub(crate) fn flag(p: &BTreeMap<String, Value>, k: &str) -> Result<bool, BuildError> {
    match p.get(k) {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(missing(k, "a boolean")),
    }
}

/// The integers of a list parameter.
pub(crate) fn ints(p: &BTreeMap<String, Value>, k: &str) -> Result<Vec<i64>, BuildError> {
    match p.get(k) {
        Some(Value::List(l)) => l
            .iter()
            .map(|v| match v {
                Value::Int(i) => Ok(*i),
                other => Err(BuildError(format!("`{k}` holds {other}, not an integer"))),
            })
            .collect(),
        _ => Err(missing(k, "a list")),
    }
}

/// The `size` parameter as `[H, W]` (`[S]` means square).
pub(crate) fn size(p: &BTreeMap<String, Value>) -> Result<[usize; 2], BuildError> {
    match ints(p, "size")?[..] {
        [h, w] if h > 0 && w > 0 => Ok([h as usize, w as usize]),
        [s] if s > 0 => Ok([s as usize, s as usize]),
        _ => Err(BuildError(
            "`size` must be [H, W] with positive sides".into(),
        )),
    }
}

/// `given` over the schema defaults of dataset kind `kind`
/// ([`mer_registry::Kind::with_defaults`]): what a factory receives from a
/// recipe, for callers that build a dataset without one (`mer data synth`,
/// tests). Unknown kinds get `given` alone.
pub fn with_defaults(kind: &str, given: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    kinds()
        .into_iter()
        .find(|k| k.schema.name == kind)
        .map_or_else(|| given.clone(), |k| k.with_defaults(given))
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

/// Where `mer data verify` keeps its decode markers: one empty file per
/// BLAKE3 of an image's bytes that decoded, beside the frame cache.
pub(crate) fn decode_cache() -> Option<std::path::PathBuf> {
    cache_root().map(|d| d.join("decodes"))
}

/// What [`check_decodes`] did: images checked, and how many of them a
/// marker from an earlier check vouched for (hashed, not decoded).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Decodes {
    pub checked: usize,
    pub cached: usize,
}

impl Decodes {
    /// The report line: how many were checked and how many came from the
    /// cache, so a researcher sees why a second verify is fast.
    pub fn line(&self, cache: Option<&Path>) -> String {
        format!(
            "images decoded: {} ({} unchanged since an earlier verify{})",
            self.checked,
            self.cached,
            cache.map_or_else(String::new, |c| format!(", markers in {}", c.display()))
        )
    }
}

/// Decodes every file in `files` as the loaders will, in parallel, and
/// returns the counts and, for each file that does not decode, its index
/// in `files` and why. A success leaves a marker in `cache` keyed by the
/// BLAKE3 of the bytes, so an unchanged file is only hashed next time;
/// failures leave none and are decoded (and reported) again.
pub(crate) fn check_decodes(
    files: &[&Path],
    cache: Option<&Path>,
) -> (Decodes, Vec<(usize, String)>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let results: Vec<Vec<(usize, Result<bool, String>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        out.push((i, decodes(f, cache)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker only panics on a bug; its files then count as unchecked.
            .filter_map(|h| h.join().ok())
            .collect()
    });
    let mut counts = Decodes::default();
    let mut failed = Vec::new();
    for (i, r) in results.into_iter().flatten() {
        counts.checked += 1;
        match r {
            Ok(hit) => counts.cached += hit as usize,
            Err(why) => failed.push((i, why)),
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    (counts, failed)
}

/// Whether `path` decodes: `Ok(true)` when a marker says its bytes did
/// before, `Ok(false)` when decoded now.
fn decodes(path: &Path, cache: Option<&Path>) -> Result<bool, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let mut k = blake3::Hasher::new();
    // The decoder is part of the key: a new decoder rechecks everything.
    k.update(b"mer-decodes-v1 image-0.25");
    k.update(&bytes);
    let key = k.finalize().to_hex().to_string();
    let marker = cache.map(|d| d.join(&key[..2]).join(&key));
    if marker.as_ref().is_some_and(|m| m.is_file()) {
        return Ok(true);
    }
    decode_image(&bytes)?;
    if let Some(m) = marker {
        if let Some(d) = m.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        // An empty marker needs no atomic write: it only ever exists after
        // a successful decode. One that cannot be written only costs time.
        let _ = std::fs::write(&m, b"");
    }
    Ok(false)
}

/// An image file as a vision tower's preprocessor prepares it: decoded as
/// every loader decodes it, the shorter side resized to `side` (bicubic),
/// centre-cropped to `side`×`side`, RGB in [0, 1], channel-major
/// `[3, side, side]` (transformers' `CLIPImageProcessor` before its
/// normalisation, which the towers apply).
pub fn tower_pixels(path: &Path, side: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let img = decode_image(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let (w, h) = (img.width().max(1) as f64, img.height().max(1) as f64);
    let scale = side as f64 / w.min(h);
    let (nw, nh) = (
        ((w * scale).round() as u32).max(side as u32),
        ((h * scale).round() as u32).max(side as u32),
    );
    let img = img
        .resize_exact(nw, nh, image::imageops::FilterType::CatmullRom)
        .crop_imm(
            (nw - side as u32) / 2,
            (nh - side as u32) / 2,
            side as u32,
            side as u32,
        )
        .to_rgb8();
    let mut out = vec![0f32; 3 * side * side];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * side * side + y as usize * side + x as usize] = p[c] as f32 / 255.0;
        }
    }
    Ok(out)
}

/// Decodes an image file's bytes as every loader does, refusing a JPEG
/// cut short (see [`jpeg_truncated`]) rather than returning made-up pixels.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode: {}", e.to_string().trim_end()))?;
    match jpeg_truncated(bytes) {
        Some(why) => Err(why),
        None => Ok(img),
    }
}

/// Why a JPEG that decodes is still cut short: the decoder fills a
/// truncated scan with grey instead of failing, so a file whose last scan
/// (SOS, `FF DA`) is not followed by an end-of-image marker (`FF D9`)
/// would train on made-up pixels. Neither marker can occur inside
/// entropy-coded data (an `FF` there is followed by `00` or a restart
/// marker), and an EXIF thumbnail's own `FF D9` comes before the main
/// scan, so the test holds for thumbnails and trailing padding alike.
fn jpeg_truncated(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let last = |m: u8| bytes.windows(2).rposition(|w| w == [0xFF, m]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) if eoi > sos => None,
        _ => Some(format!(
            "truncated JPEG: no end-of-image marker after the last scan ({} bytes)",
            bytes.len()
        )),
    }
}

/// A folder's entries, sorted by path; a folder that cannot be listed is
/// a problem naming it.
pub(crate) fn sorted_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>, DataError> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| problem_at(dir, None, format!("cannot list: {e}")))?;
    let mut v: Vec<std::path::PathBuf> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    Ok(v)
}

/// `[channel][h * w]` planes in [0, 1] as an 8-bit RGB image (one plane is
/// gray), for the layout writers.
pub fn to_image(planes: &[Vec<f32>], [h, w]: [usize; 2]) -> image::RgbImage {
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        let g = |c: usize| {
            (planes
                .get(c)
                .or(planes.first())
                .map(|p| p[i])
                .unwrap_or(0.0)
                * 255.0)
                .round() as u8
        };
        px.0 = [g(0), g(1), g(2)];
    }
    img
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
    let img = decode_image(&bytes).map_err(fail)?;
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
        let _ = mer_store::write_atomic(&p, &out);
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

/// Every file under `d`, for tests that count cache entries.
#[cfg(test)]
pub(crate) fn tests_walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(tests_walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
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

    /// A zero-byte and a truncated JPEG fail with their reason; a good
    /// one passes, leaves a marker, and a second check only hashes it.
    #[test]
    fn decode_check_catches_empty_and_truncated_jpegs_and_caches_good_ones() {
        let dir = std::env::temp_dir().join(format!("mer-decode-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jpg");
        let mut pic = image::RgbImage::new(160, 120);
        for (x, y, p) in pic.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]);
        }
        pic.save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let empty = dir.join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        // Cut in the header, early in the scan, and just before the end.
        let cuts = [20, bytes.len() / 2, bytes.len() - 2];
        let cut: Vec<std::path::PathBuf> = cuts
            .iter()
            .map(|n| {
                let p = dir.join(format!("cut{n}.jpg"));
                std::fs::write(&p, &bytes[..*n]).unwrap();
                p
            })
            .collect();
        let png = dir.join("good.png");
        pic.save(&png).unwrap();
        let cache = dir.join("cache");
        let mut files: Vec<&Path> = vec![&good, &empty, &png];
        files.extend(cut.iter().map(|p| p.as_path()));
        let (n, bad) = check_decodes(&files, Some(&cache));
        assert_eq!(
            n,
            Decodes {
                checked: 6,
                cached: 0
            }
        );
        let failed: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![1, 3, 4, 5], "{bad:?}");
        assert!(bad[0].1.contains("0 bytes"), "{bad:?}");
        // The decoder fills a scan cut short with grey and succeeds: only
        // the marker check catches the two later cuts.
        assert!(bad[1].1.starts_with("cannot decode"), "{bad:?}");
        assert!(
            bad[2..]
                .iter()
                .all(|(_, w)| w.starts_with("truncated JPEG")),
            "{bad:?}"
        );
        // The loaders share the check: a run refuses the frame too, by
        // file and label row, instead of training on grey.
        let mut planes = vec![vec![]];
        let e = push_frame_cached(&cut[1], Some(7), [4, 4], &mut planes, None, None).unwrap_err();
        assert!(
            e.message.starts_with("truncated JPEG") && e.row == Some(7),
            "{e}"
        );
        // Only the two good files leave markers.
        assert_eq!(walk(&cache).len(), 2);
        let (n, bad2) = check_decodes(&files, Some(&cache));
        assert_eq!(
            n,
            Decodes {
                checked: 6,
                cached: 2
            }
        );
        assert_eq!(bad, bad2);
        // Changed bytes are checked afresh.
        pic.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        pic.save(&good).unwrap();
        assert_eq!(check_decodes(&[&good], Some(&cache)).0.cached, 0);
        assert_eq!(check_decodes(&[], Some(&cache)).0, Decodes::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(d: &Path) -> Vec<std::path::PathBuf> {
        tests_walk(d)
    }
}
