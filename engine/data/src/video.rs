//! Video files as frame folders, through an `ffmpeg` executable when one
//! is there.
//!
//! mer reads frames. Corpora that ship videos (RAVDESS, CREMA-D, MEAD)
//! are usually extracted once by the researcher; when they are not, and
//! an `ffmpeg` is available (`MER_FFMPEG`, else `ffmpeg` on `PATH`), each
//! video is decoded once into `<cache>/videos/<key>/00001.png …` and read
//! from there, exactly as an extracted folder. Without a decoder the scan
//! reports the video with the command that extracts it.
//!
//! Why a subprocess and not a crate: the maintained Rust video crates bind
//! the system's libav* (ffmpeg-next, video-rs) and would make every build
//! need FFmpeg's development headers; a subprocess needs nothing at build
//! time, and PyPI's `imageio-ffmpeg` wheel ships a static `ffmpeg`.
//!
//! The cache key is the video's canonical path, size and modification
//! time, not its bytes: hashing a corpus of several GB of video at every
//! scan would cost more than the scan. The decoded frames themselves go
//! through the frame cache, which is keyed by content.

use mer_registry::DataError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The decoder mer would use: `MER_FFMPEG`, else `ffmpeg` on `PATH`.
pub fn decoder() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MER_FFMPEG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
}

fn problem(file: &Path, message: String) -> DataError {
    super::problem_at(file, None, message)
}

/// Where `video`'s frames are (or will be) kept.
fn cache_dir(video: &Path) -> Result<PathBuf, DataError> {
    let meta = std::fs::metadata(video).map_err(|e| problem(video, format!("cannot read: {e}")))?;
    let canon = video
        .canonicalize()
        .map_err(|e| problem(video, format!("cannot resolve: {e}")))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(canon.to_string_lossy().as_bytes());
    h.update(&meta.len().to_le_bytes());
    h.update(&mtime.to_le_bytes());
    let root = super::cache_root().ok_or_else(|| {
        problem(
            video,
            "no cache folder for decoded frames: set MER_CACHE_DIR (or HOME)".into(),
        )
    })?;
    Ok(root.join("videos").join(&h.finalize().to_hex()[..32]))
}

/// How a video was turned into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Decoded now.
    Fresh,
    /// Decoded by an earlier scan.
    Cached,
}

/// The folder holding `video`'s frames as `00001.png …`, decoding it with
/// `ffmpeg` unless an earlier scan did. A partial decode never lands: the
/// frames are written to a scratch folder and renamed into place.
pub fn frames(video: &Path, ffmpeg: &Path) -> Result<(PathBuf, Decoded), DataError> {
    let dest = cache_dir(video)?;
    if dest.is_dir() {
        return Ok((dest, Decoded::Cached));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| problem(parent, format!("cannot create the video cache: {e}")))?;
    let part = dest.with_extension(format!("part-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(&part).map_err(|e| problem(&part, format!("cannot create: {e}")))?;
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(video)
        .args(["-fps_mode", "passthrough", "-start_number", "1"])
        .arg(part.join("%05d.png"))
        .output();
    let fail = |message: String| {
        let _ = std::fs::remove_dir_all(&part);
        problem(video, message)
    };
    let out = out.map_err(|e| {
        fail(format!(
            "cannot run the decoder `{}`: {e}",
            ffmpeg.display()
        ))
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(fail(format!(
            "`{}` could not decode it ({}): {last}",
            ffmpeg.display(),
            out.status
        )));
    }
    let n = std::fs::read_dir(&part).map(|d| d.count()).unwrap_or(0);
    if n == 0 {
        return Err(fail("the video holds no frames".into()));
    }
    match std::fs::rename(&part, &dest) {
        Ok(()) => Ok((dest, Decoded::Fresh)),
        // Another process decoded the same video meanwhile: use its copy.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&part);
            Ok((dest, Decoded::Cached))
        }
        Err(e) => Err(fail(format!("cannot move the frames into the cache: {e}"))),
    }
}

/// `ffmpeg` for the tests: `MER_TEST_FFMPEG`, else the decoder mer would
/// use. `MER_REQUIRE_FFMPEG=1` (set by `.ci/run`) turns its absence into a
/// failure instead of a skip.
#[cfg(test)]
pub(crate) fn test_ffmpeg() -> Option<PathBuf> {
    let found = std::env::var_os("MER_TEST_FFMPEG")
        .map(PathBuf::from)
        .or_else(decoder);
    if found.is_none() {
        assert!(
            std::env::var_os("MER_REQUIRE_FFMPEG").is_none(),
            "MER_REQUIRE_FFMPEG is set but no ffmpeg was found (MER_TEST_FFMPEG, MER_FFMPEG, PATH)"
        );
        eprintln!("skipped: no ffmpeg (set MER_TEST_FFMPEG or put ffmpeg on PATH)");
    }
    found
}
