//! Dynamic facial-expression corpora as distributed, with each video
//! extracted to a frame folder of the same name:
//!
//! * RAVDESS: `Actor_XX/MM-VV-EE-II-SS-RR-AA/` (modality, vocal channel,
//!   emotion 01–08, intensity, statement, repetition, actor). Every clip
//!   ships twice, audio-video (01) and video-only (02) with the same
//!   frames: one copy is kept. Song clips are left out (the DFER
//!   convention is speech only). Both are counted in the notes.
//! * CREMA-D: `VideoFlash/<actor>_<sentence>_<EMO>_<level>/`, actors
//!   1001–1091; the official folds are MAE-DFER's five actor blocks.
//! * MEAD: `<actor>/video/front/<emotion>/level_<n>/<nnn>/`.
//!
//! Face boxes and landmarks come from OpenFace 2 `FeatureExtraction` CSVs
//! beside each frame folder (`<clip>.csv`: `frame, …, success, …, x_0 …
//! x_67, y_0 … y_67` in pixels), which is what RAVDESS's landmark release
//! ships and what OpenFace writes for the others. Frames OpenFace did not
//! track take the nearest tracked frame's landmarks.
//!
//! A video without its frame folder is decoded into mer's cache when an
//! `ffmpeg` is available ([`super::video`]), only if the scan keeps its
//! clip; otherwise it is reported with the command that extracts it. Its
//! sample id and landmark CSV are those of the folder it would have.

use super::face;
use super::sampler::{self, ClipFrames, Sampling};
use super::sorted_dir;
use super::synth::Synth;
use crate::ports::dfer;
use mer_registry::candle::{Device, Tensor};
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use mer_registry::{Kind, LayoutRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One clip found on disk.
#[derive(Debug, Clone)]
pub struct ClipRecord {
    /// Path of the frame folder relative to the root (the sample id).
    pub id: String,
    /// The actor the clip shows (the group for subject-exclusive splits); for
    /// DFEW and FERV39k, which have no subject ids, the clip's own name.
    pub subject: String,
    /// Index into the loader's class list.
    pub class: usize,
    /// The clip's frame images, sorted by the number in their names; from the
    /// extracted folder or the decoded-video cache.
    pub frames: Vec<PathBuf>,
    /// The OpenFace CSV beside the frame folder (`<clip>.csv`); `None` when the
    /// loader runs with `landmarks = "none"`.
    pub landmarks: Option<PathBuf>,
    /// Official fold number, where the corpus has one.
    pub fold: Option<i64>,
    /// Official split (`train`/`test`), where the corpus has one.
    pub split: Option<&'static str>,
}

/// A clip folder a corpus scan found, before its frames are checked.
struct Found {
    dir: PathBuf,
    subject: String,
    class: &'static str,
    fold: Option<i64>,
    split: Option<&'static str>,
}

impl Found {
    fn new(dir: PathBuf, subject: String, class: &'static str, fold: Option<i64>) -> Found {
        Found {
            dir,
            subject,
            class,
            fold,
            split: None,
        }
    }
}

/// What reading a corpus folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Clips kept, sorted by id.
    pub records: Vec<ClipRecord>,
    /// Counted exclusions and conventions applied (shown in reports).
    pub notes: Vec<String>,
    /// Defects found, each naming its file; any one of them makes the loader
    /// refuse the corpus.
    pub problems: Vec<DataError>,
}

/// Which corpus, and its label set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corpus {
    /// RAVDESS (kind `dfer.ravdess`): speech clips of 24 actors, 8 emotions.
    Ravdess,
    /// CREMA-D (kind `dfer.crema_d`): 91 actors, 6 emotions, MAE-DFER's five
    /// actor folds.
    CremaD,
    /// MEAD (kind `dfer.mead`): frontal-camera clips, 8 emotions at several
    /// intensity levels.
    Mead,
    /// DFEW (kind `dfer.dfew`): in-the-wild clips, 7 classes, five official
    /// folds, no subject ids.
    Dfew,
    /// FERV39k (kind `dfer.ferv39k`): in-the-wild clips by scene, 7 classes,
    /// official train/test split, no subject ids.
    Ferv39k,
}

const RAVDESS_8: &[&str] = &[
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
];
const CREMA_CODES: &[&str] = &["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"];
const CREMA_NAMES: &[&str] = &["angry", "disgust", "fear", "happy", "neutral", "sad"];
const CREMA_SENTENCES: &[&str] = &[
    "IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI",
];
const CREMA_LEVELS: &[&str] = &["LO", "MD", "HI", "XX"];
/// MAE-DFER's CREMA-D folds: the last actor of each block.
const CREMA_FOLD_ENDS: &[u32] = &[1018, 1036, 1054, 1072, 1091];
const MEAD_8: &[&str] = &[
    "angry",
    "contempt",
    "disgusted",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprised",
];

/// DFEW's label codes 1–7 in order; FERV39k has the same seven classes.
const DFEW_7: &[&str] = &[
    "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear",
];
const DFEW_SPLITS: &str = "EmoLabel_DataSplit";
const DFEW_FRAMES: &str = "Clip/jpg_256";
const FERV_CLIPS: &str = "2_ClipsforFaceCrop";
const FERV_LISTS: &str = "4_setups/All_scenes";

impl Corpus {
    /// The label set a verify run and a writer use.
    pub fn default_set(self) -> &'static str {
        match self {
            Corpus::Ravdess | Corpus::Mead => "8class",
            Corpus::CremaD => "6class",
            Corpus::Dfew | Corpus::Ferv39k => "7class",
        }
    }

    /// The dataset kind name recipes use for this corpus (in messages and
    /// the schema defaults of loaders built without a recipe).
    pub fn kind(self) -> &'static str {
        match self {
            Corpus::Ravdess => "dfer.ravdess",
            Corpus::CremaD => "dfer.crema_d",
            Corpus::Mead => "dfer.mead",
            Corpus::Dfew => "dfer.dfew",
            Corpus::Ferv39k => "dfer.ferv39k",
        }
    }

    /// Class names in label order for a label set.
    pub fn classes(self, set: &str) -> Vec<&'static str> {
        match (self, set) {
            (Corpus::Ravdess, "7class") => {
                RAVDESS_8.iter().copied().filter(|c| *c != "calm").collect()
            }
            (Corpus::Ravdess, _) => RAVDESS_8.to_vec(),
            (Corpus::CremaD, _) => CREMA_NAMES.to_vec(),
            (Corpus::Mead, _) => MEAD_8.to_vec(),
            (Corpus::Dfew | Corpus::Ferv39k, _) => DFEW_7.to_vec(),
        }
    }

    /// The generator's name for a class (RAVDESS says `fearful`, the
    /// generator `fear`).
    fn synth_name(class: &str) -> &str {
        match class {
            "fearful" => "fear",
            "surprised" => "surprise",
            "disgusted" => "disgust",
            c => c,
        }
    }
}

fn problem(file: &Path, message: String) -> DataError {
    super::problem_at(file, None, message)
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg" | "bmp"
        )
    })
}

fn is_video(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "mp4" | "flv" | "avi" | "mov"
        )
    })
}

/// Frame files sorted by the number in their name (`img2` before `img10`).
fn frames_of(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut frames: Vec<PathBuf> = sorted_dir(dir)?
        .into_iter()
        .filter(|p| is_image(p))
        .collect();
    let key = |p: &PathBuf| -> (u64, String) {
        let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let digits: String = name.chars().filter(|c| c.is_ascii_digit()).collect();
        (digits.parse().unwrap_or(u64::MAX), name.to_string())
    };
    frames.sort_by_key(key);
    if frames.is_empty() {
        return Err(problem(
            dir,
            "frame folder holds no images (png, jpg, bmp)".into(),
        ));
    }
    Ok(frames)
}

/// Videos whose clips have no extracted folder, and what decoding them did.
#[derive(Default)]
struct Videos {
    ffmpeg: Option<PathBuf>,
    /// Clip folder (as if extracted) → its video, decoded when kept.
    pending: HashMap<PathBuf, PathBuf>,
    fresh: usize,
    cached: usize,
}

impl Videos {
    /// The clip folders among `entries`: the extracted ones, and one for
    /// each video without its folder. Whether such a video can be decoded
    /// is asked in [`Videos::frames_dir`], only of clips the scan keeps, so
    /// an unextracted video of a left-out class or a song clip does not
    /// stop a run that never reads it.
    fn clips(&mut self, entries: &[PathBuf]) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
        for v in entries.iter().filter(|p| p.is_file() && is_video(p)) {
            let clip = v.with_extension("");
            if dirs.contains(&clip) {
                continue;
            }
            self.pending.insert(clip.clone(), v.clone());
            dirs.insert(clip);
        }
        dirs
    }

    /// Where `clip`'s frames are: the folder itself, or its decoded video;
    /// a video with no decoder is a problem naming it.
    fn frames_dir(&mut self, clip: &Path) -> Result<PathBuf, DataError> {
        match (self.pending.get(clip), &self.ffmpeg) {
            (Some(v), Some(f)) => {
                let (dir, how) = super::video::frames(v, f)?;
                match how {
                    super::video::Decoded::Fresh => self.fresh += 1,
                    super::video::Decoded::Cached => self.cached += 1,
                }
                Ok(dir)
            }
            (Some(v), None) => Err(unextracted(v)),
            _ => Ok(clip.to_path_buf()),
        }
    }
}

/// A video without its frame folder and no decoder: say how to extract it.
fn unextracted(video: &Path) -> DataError {
    let dir = video.with_extension("");
    problem(
        video,
        format!(
            "video not extracted to frames, and no ffmpeg to decode it (set MER_FFMPEG or put ffmpeg on PATH; PyPI's imageio-ffmpeg ships one): or run `mkdir -p {d} && ffmpeg -i {v} {d}/%05d.png` (and OpenFace `FeatureExtraction -fdir {d} -2Dfp -out_dir {p}` for landmarks)",
            d = dir.display(),
            v = video.display(),
            p = dir.parent().unwrap_or(Path::new(".")).display()
        ),
    )
}

/// Reads the corpus folder: every clip, or a problem naming its file.
pub fn scan(corpus: Corpus, root: &Path, set: &str, landmarks: bool) -> Scan {
    scan_with(corpus, root, set, landmarks, super::video::decoder())
}

/// [`scan`] with an explicit video decoder (`None`: videos are reported).
fn scan_with(
    corpus: Corpus,
    root: &Path,
    set: &str,
    landmarks: bool,
    ffmpeg: Option<PathBuf>,
) -> Scan {
    let mut videos = Videos {
        ffmpeg,
        ..Videos::default()
    };
    let mut out = Scan::default();
    if !root.is_dir() {
        out.problems
            .push(problem(root, "dataset folder does not exist".into()));
        return out;
    }
    let classes = corpus.classes(set);
    // (folder, subject, class name, fold) before frame checks.
    let mut found: Vec<Found> = Vec::new();
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    match corpus {
        Corpus::Ravdess => scan_ravdess(
            root,
            &mut found,
            &mut left_out,
            &mut videos,
            &mut out.problems,
        ),
        Corpus::CremaD => scan_crema(root, &mut found, &mut videos, &mut out.problems),
        Corpus::Mead => scan_mead(root, &mut found, &mut videos, &mut out.problems),
        Corpus::Dfew => scan_dfew(root, &mut found, &mut out.problems),
        Corpus::Ferv39k => scan_ferv39k(root, &mut found, &mut out.problems),
    }
    for Found {
        dir,
        subject,
        class,
        fold,
        split,
    } in found
    {
        let Some(ci) = classes.iter().position(|c| *c == class) else {
            *left_out
                .entry(format!("{class} (not in {set})"))
                .or_default() += 1;
            continue;
        };
        let frames = match videos.frames_dir(&dir).and_then(|d| frames_of(&d)) {
            Ok(f) => f,
            Err(e) => {
                out.problems.push(e);
                continue;
            }
        };
        let csv = dir.with_extension("csv");
        let lm = if landmarks {
            if !csv.is_file() {
                out.problems.push(problem(
                    &csv,
                    format!(
                        "no landmarks for this clip (landmarks = \"openface\"): run OpenFace `FeatureExtraction -fdir {} -2Dfp`, or set landmarks = \"none\"",
                        dir.display()
                    ),
                ));
                continue;
            }
            Some(csv)
        } else {
            None
        };
        let id = dir
            .strip_prefix(root)
            .unwrap_or(&dir)
            .to_string_lossy()
            .replace('\\', "/");
        out.records.push(ClipRecord {
            id,
            subject,
            class: ci,
            frames,
            landmarks: lm,
            fold,
            split,
        });
    }
    out.records.sort_by(|a, b| a.id.cmp(&b.id));
    if matches!(corpus, Corpus::Dfew | Corpus::Ferv39k) {
        out.notes.push(format!(
            "{} has no subject ids: each clip is its own group; use its official {}",
            corpus.kind(),
            if corpus == Corpus::Dfew {
                "folds (protocol.kfold reads the `fold` label)"
            } else {
                "split (protocol.official reads the `split` label)"
            }
        ));
    }
    for (what, n) in left_out {
        out.notes.push(format!("left out: {n} {what}"));
    }
    if let (Some(f), true) = (&videos.ffmpeg, videos.fresh + videos.cached > 0) {
        out.notes.push(format!(
            "{} clips read from their videos (no frame folder): {} decoded now with `{}`, {} from the cache ({})",
            videos.fresh + videos.cached,
            videos.fresh,
            f.display(),
            videos.cached,
            super::cache_root().map_or_else(String::new, |c| c.join("videos").display().to_string())
        ));
    }
    out
}

fn row_error(file: &Path, row: usize, message: String) -> DataError {
    super::problem_at(file, Some(row), message)
}

/// DFEW: the five official sets, each a test and a train list of
/// `video_name,label` (codes 1–7); a clip's fold is the set whose test list
/// holds it. Each clip's frames are `Clip/jpg_256/<00001>/`.
fn scan_dfew(root: &Path, found: &mut Vec<Found>, problems: &mut Vec<DataError>) {
    let frames = root.join(DFEW_FRAMES);
    if !frames.is_dir() {
        return problems.push(problem(
            &frames,
            "missing: DFEW keeps each clip's frames in Clip/jpg_256/<5-digit clip>/".into(),
        ));
    }
    // clip → (class, where it was first labelled)
    let mut label_of: BTreeMap<u32, (usize, String)> = BTreeMap::new();
    // clip → (test fold, where)
    let mut test_of: BTreeMap<u32, (i64, String)> = BTreeMap::new();
    for k in 1..=5i64 {
        let mut in_test = BTreeSet::new();
        for (part, is_test) in [
            ("test(single-labeled)", true),
            ("train(single-labeled)", false),
        ] {
            let file = root
                .join(DFEW_SPLITS)
                .join(part)
                .join(format!("set_{k}.csv"));
            let mut rdr = match csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_path(&file)
            {
                Ok(r) => r,
                Err(e) => {
                    problems.push(problem(
                        &file,
                        format!("cannot read the official split: {e}"),
                    ));
                    continue;
                }
            };
            let header: Vec<String> = match rdr.headers() {
                Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
                Err(e) => {
                    problems.push(row_error(&file, 1, format!("no header: {e}")));
                    continue;
                }
            };
            let (Some(cv), Some(cl)) = (
                header.iter().position(|c| c == "video_name"),
                header.iter().position(|c| c == "label"),
            ) else {
                problems.push(row_error(
                    &file,
                    1,
                    format!("header `{}` lacks video_name and label", header.join(",")),
                ));
                continue;
            };
            for (i, rec) in rdr.records().enumerate() {
                let row = i + 2;
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(row_error(&file, row, e.to_string()));
                        continue;
                    }
                };
                let (name, label) = (rec.get(cv).unwrap_or(""), rec.get(cl).unwrap_or(""));
                let Ok(clip) = name.parse::<u32>() else {
                    problems.push(row_error(
                        &file,
                        row,
                        format!("video_name `{name}` is not a clip number"),
                    ));
                    continue;
                };
                let class = match label.parse::<usize>() {
                    Ok(c @ 1..=7) => c - 1,
                    _ => {
                        problems.push(row_error(
                            &file,
                            row,
                            format!(
                                "label `{label}` is not a DFEW code 1–7 ({})",
                                DFEW_7.join(", ")
                            ),
                        ));
                        continue;
                    }
                };
                let here = format!("{}:{row}", file.display());
                match label_of.get(&clip) {
                    Some((c, at)) if *c != class => problems.push(row_error(
                        &file,
                        row,
                        format!(
                            "clip {clip} is labelled {} here but {} at {at}",
                            DFEW_7[class], DFEW_7[*c]
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        label_of.insert(clip, (class, here.clone()));
                    }
                }
                if is_test {
                    if let Some((f, at)) = test_of.get(&clip) {
                        problems.push(row_error(
                            &file,
                            row,
                            format!("clip {clip} is in the test list of set_{f} too ({at}): folds must not overlap"),
                        ));
                        continue;
                    }
                    test_of.insert(clip, (k, here));
                    in_test.insert(clip);
                } else if in_test.contains(&clip) {
                    problems.push(row_error(
                        &file,
                        row,
                        format!("clip {clip} is in both the train and the test list of set_{k}"),
                    ));
                }
            }
        }
    }
    for (clip, (_, at)) in &label_of {
        if !test_of.contains_key(clip) {
            problems.push(DataError {
                file: at.clone(),
                row: None,
                message: format!(
                    "clip {clip} is in no set's test list, so no fold would ever test it"
                ),
            });
        }
    }
    for (clip, (fold, at)) in test_of {
        let dir = frames.join(format!("{clip:05}"));
        if !dir.is_dir() {
            problems.push(DataError {
                file: at,
                row: None,
                message: format!("clip {clip}: no frame folder {}", dir.display()),
            });
            continue;
        }
        let class = DFEW_7[label_of.get(&clip).map_or(0, |(c, _)| *c)];
        found.push(Found::new(dir, format!("{clip:05}"), class, Some(fold)));
    }
}

/// FERV39k: `4_setups/All_scenes/{train,test}_All.csv`, one
/// `Scene/Class/id [label]` line per clip; frames in
/// `2_ClipsforFaceCrop/Scene/Class/id/`. The class is the path's folder;
/// a label given by name must agree with it.
fn scan_ferv39k(root: &Path, found: &mut Vec<Found>, problems: &mut Vec<DataError>) {
    let clips = root.join(FERV_CLIPS);
    if !clips.is_dir() {
        return problems.push(problem(
            &clips,
            "missing: FERV39k keeps clip frames in 2_ClipsforFaceCrop/<Scene>/<Class>/<id>/".into(),
        ));
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, split) in [("train_All.csv", "train"), ("test_All.csv", "test")] {
        let file = root.join(FERV_LISTS).join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem(
                    &file,
                    format!("cannot read the official list: {e}"),
                ));
                continue;
            }
        };
        for (i, line) in text.lines().enumerate() {
            let row = i + 1;
            let f: Vec<&str> = line
                .split([' ', '\t', ','])
                .filter(|x| !x.is_empty())
                .collect();
            let Some(path) = f.first() else { continue };
            if row == 1 && !path.contains('/') {
                continue; // a header line
            }
            let parts: Vec<&str> = path.split('/').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                problems.push(row_error(
                    &file,
                    row,
                    format!("`{path}` is not Scene/Class/id"),
                ));
                continue;
            }
            let Some(class) = DFEW_7.iter().find(|c| c.eq_ignore_ascii_case(parts[1])) else {
                problems.push(row_error(
                    &file,
                    row,
                    format!(
                        "unknown class folder `{}` (FERV39k: {})",
                        parts[1],
                        DFEW_7.join(", ")
                    ),
                ));
                continue;
            };
            if let Some(label) = f.get(1).filter(|l| l.parse::<i64>().is_err()) {
                if !label.eq_ignore_ascii_case(class) {
                    problems.push(row_error(
                        &file,
                        row,
                        format!(
                            "label `{label}` disagrees with the class folder `{}`",
                            parts[1]
                        ),
                    ));
                    continue;
                }
            }
            let here = format!("{}:{row}", file.display());
            if let Some(at) = seen.get(*path) {
                problems.push(row_error(
                    &file,
                    row,
                    format!("`{path}` is listed again (first at {at})"),
                ));
                continue;
            }
            seen.insert(path.to_string(), here);
            let dir = clips.join(path);
            if !dir.is_dir() {
                problems.push(row_error(
                    &file,
                    row,
                    format!("no frame folder {}", dir.display()),
                ));
                continue;
            }
            found.push(Found {
                dir,
                subject: path.to_string(),
                class,
                fold: None,
                split: Some(split),
            });
        }
    }
}

fn scan_ravdess(
    root: &Path,
    found: &mut Vec<Found>,
    left_out: &mut BTreeMap<String, usize>,
    videos: &mut Videos,
    problems: &mut Vec<DataError>,
) {
    let actors = match sorted_dir(root) {
        Ok(a) => a,
        Err(e) => return problems.push(e),
    };
    let mut any = false;
    for actor_dir in actors.into_iter().filter(|p| p.is_dir()) {
        let Some(name) = actor_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(actor) = name
            .strip_prefix("Actor_")
            .and_then(|a| a.parse::<u32>().ok())
        else {
            continue;
        };
        any = true;
        let entries = match sorted_dir(&actor_dir) {
            Ok(e) => e,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let dirs: BTreeSet<String> = videos
            .clips(&entries)
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        for stem in &dirs {
            let dir = actor_dir.join(stem);
            let f: Vec<&str> = stem.split('-').collect();
            let field = |i: usize, lo: u32, hi: u32| -> Option<u32> {
                f.get(i)
                    .filter(|s| s.len() == 2)
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|v| (lo..=hi).contains(v))
            };
            let parsed = (f.len() == 7)
                .then(|| {
                    Some((
                        field(0, 1, 3)?,
                        field(1, 1, 2)?,
                        field(2, 1, 8)?,
                        field(3, 1, 2)?,
                        field(4, 1, 2)?,
                        field(5, 1, 2)?,
                        field(6, 1, 24)?,
                    ))
                })
                .flatten();
            let Some((modality, vocal, emotion, ..)) = parsed else {
                problems.push(problem(&dir, "not a RAVDESS clip name MM-VV-EE-II-SS-RR-AA (modality 01–03, vocal channel 01–02, emotion 01–08, intensity/statement/repetition 01–02, actor 01–24)".into()));
                continue;
            };
            let aa = parsed.map(|p| p.6).unwrap_or(0);
            if aa != actor {
                problems.push(problem(
                    &dir,
                    format!("names actor {aa:02} but lies in Actor_{actor:02}"),
                ));
                continue;
            }
            if modality == 3 {
                problems.push(problem(
                    &dir,
                    "modality 03 is audio-only: it has no frames".into(),
                ));
                continue;
            }
            if vocal == 2 {
                *left_out
                    .entry("song clips (the DFER convention is speech only)".into())
                    .or_default() += 1;
                continue;
            }
            if modality == 2 && dirs.contains(&format!("01{}", &stem[2..])) {
                *left_out
                    .entry("video-only copies of audio-video clips (same frames)".into())
                    .or_default() += 1;
                continue;
            }
            found.push(Found::new(
                dir,
                format!("Actor_{actor:02}"),
                RAVDESS_8[emotion as usize - 1],
                None,
            ));
        }
    }
    if !any {
        problems.push(problem(
            root,
            "no Actor_XX folders: is this the RAVDESS root?".into(),
        ));
    }
}

fn scan_crema(
    root: &Path,
    found: &mut Vec<Found>,
    videos: &mut Videos,
    problems: &mut Vec<DataError>,
) {
    let base = root.join("VideoFlash");
    let entries = match sorted_dir(&base) {
        Ok(e) => e,
        Err(_) => {
            return problems.push(problem(
                &base,
                "missing: CREMA-D keeps its videos in VideoFlash/".into(),
            ))
        }
    };
    for dir in videos.clips(&entries) {
        let stem = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let f: Vec<&str> = stem.split('_').collect();
        let actor = f
            .first()
            .and_then(|a| a.parse::<u32>().ok())
            .filter(|a| (1001..=1091).contains(a));
        let emo = f
            .get(2)
            .and_then(|e| CREMA_CODES.iter().position(|c| c == e));
        let ok = f.len() == 4
            && f.get(1).is_some_and(|s| CREMA_SENTENCES.contains(s))
            && f.get(3).is_some_and(|l| CREMA_LEVELS.contains(l));
        match (actor, emo, ok) {
            (Some(a), Some(e), true) => {
                let fold = CREMA_FOLD_ENDS.iter().position(|end| a <= *end).unwrap_or(4) as i64 + 1;
                found.push(Found::new(dir, a.to_string(), CREMA_NAMES[e], Some(fold)));
            }
            (_, None, _) if f.len() == 4 => problems.push(problem(
                &dir,
                format!("unknown emotion `{}` (CREMA-D codes: {})", f[2], CREMA_CODES.join(", ")),
            )),
            _ => problems.push(problem(
                &dir,
                "not a CREMA-D clip name <actor 1001–1091>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<LO|MD|HI|XX>".into(),
            )),
        }
    }
}

fn scan_mead(
    root: &Path,
    found: &mut Vec<Found>,
    videos: &mut Videos,
    problems: &mut Vec<DataError>,
) {
    let actors = match sorted_dir(root) {
        Ok(a) => a,
        Err(e) => return problems.push(e),
    };
    for actor_dir in actors.into_iter().filter(|p| p.is_dir()) {
        let actor = actor_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let front = actor_dir.join("video/front");
        let Ok(emotions) = sorted_dir(&front) else {
            problems.push(problem(
                &front,
                format!("missing: MEAD keeps actor {actor}'s frontal clips in video/front/"),
            ));
            continue;
        };
        for edir in emotions.into_iter().filter(|p| p.is_dir()) {
            let ename = edir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let Some(class) = MEAD_8.iter().find(|c| **c == ename) else {
                problems.push(problem(
                    &edir,
                    format!("unknown emotion `{ename}` (MEAD: {})", MEAD_8.join(", ")),
                ));
                continue;
            };
            let levels = sorted_dir(&edir).unwrap_or_default();
            for ldir in levels.into_iter().filter(|p| p.is_dir()) {
                let lname = ldir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !lname
                    .strip_prefix("level_")
                    .and_then(|l| l.parse::<u32>().ok())
                    .is_some_and(|l| (1..=3).contains(&l))
                {
                    problems.push(problem(
                        &ldir,
                        "not an intensity folder level_1 … level_3".into(),
                    ));
                    continue;
                }
                let clips = sorted_dir(&ldir).unwrap_or_default();
                for d in videos.clips(&clips) {
                    found.push(Found::new(d, actor.clone(), class, None));
                }
            }
        }
    }
}

/// Per-frame 68-point landmarks from an OpenFace CSV, in pixels, by
/// 1-based frame number; untracked frames are absent.
pub fn read_openface(path: &Path) -> Result<Tracked, DataError> {
    let mut rd = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| problem(path, format!("cannot read: {e}")))?;
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| problem(path, format!("no header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| {
            problem(
                path,
                format!("no `{name}` column: not an OpenFace FeatureExtraction CSV with 2-D landmarks (-2Dfp)"),
            )
        })
    };
    let frame_col = need("frame")?;
    let success = col("success");
    let xs: Vec<usize> = (0..68)
        .map(|i| need(&format!("x_{i}")))
        .collect::<Result<_, _>>()?;
    let ys: Vec<usize> = (0..68)
        .map(|i| need(&format!("y_{i}")))
        .collect::<Result<_, _>>()?;
    let mut out = BTreeMap::new();
    for (i, rec) in rd.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| DataError {
            file: path.display().to_string(),
            row: Some(row),
            message: e.to_string(),
        })?;
        let num = |c: usize| -> Result<f32, DataError> {
            rec.get(c)
                .and_then(|v| v.parse::<f32>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| DataError {
                    file: path.display().to_string(),
                    row: Some(row),
                    message: format!(
                        "column `{}` is not a number: `{}`",
                        header[c],
                        rec.get(c).unwrap_or("")
                    ),
                })
        };
        if success.is_some_and(|c| rec.get(c).is_some_and(|v| v.trim() == "0")) {
            continue;
        }
        let frame = num(frame_col)? as usize;
        let pts = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| Ok([num(*x)?, num(*y)?]))
            .collect::<Result<Vec<_>, DataError>>()?;
        out.insert(frame, pts);
    }
    if out.is_empty() {
        return Err(problem(
            path,
            "OpenFace tracked no face in any frame".into(),
        ));
    }
    Ok(out)
}

/// The loader behind `dfer.ravdess`, `dfer.crema_d` and `dfer.mead`.
pub struct DferDataset {
    corpus: Corpus,
    records: Vec<ClipRecord>,
    classes: Vec<&'static str>,
    notes: Vec<String>,
    frames: usize,
    size: [usize; 2],
    color: bool,
    sampling: Sampling,
    rate: usize,
    landmarks: bool,
    /// Crop each frame to the landmarks' face box before resizing.
    crop: bool,
    /// Each record's subject as an index into the sorted subjects.
    subject_ids: Vec<i64>,
    /// OpenFace tables already parsed, by record: read once, not every epoch.
    tracked: Mutex<HashMap<usize, Arc<Tracked>>>,
}

/// Per-frame 68-point landmarks in pixels, by 1-based frame number.
type Tracked = BTreeMap<usize, Vec<[f32; 2]>>;

impl DferDataset {
    /// Builds the loader from a dataset node's parameters (schema defaults fill
    /// the gaps): scans `root` and refuses inconsistent options (a face crop
    /// without landmarks, onset sampling), any scan problem, or an empty
    /// corpus.
    pub fn new(corpus: Corpus, p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults(corpus.kind(), p);
        let root = match p.get("root") {
            Some(Value::Str(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(BuildError(format!("`{}` needs `root`", corpus.kind()))),
        };
        let set = super::text(p, "classes")?.to_string();
        let landmarks = super::text(p, "landmarks")? == "openface";
        let crop = super::text(p, "crop")? == "face";
        if crop && !landmarks {
            return Err(BuildError(format!(
                "`{}`: crop = \"face\" crops to the OpenFace landmarks' box, so it needs landmarks = \"openface\"",
                corpus.kind()
            )));
        }
        let sampling = Sampling::from_params(p, corpus.kind())?;
        if sampling.needs_apex() {
            // Silently reading the whole clip instead would train on other
            // frames than the recipe says.
            return Err(BuildError(format!(
                "`{}`: sampling = \"{}\" needs each clip's onset and apex, which {} does not annotate; use \"uniform\" or \"noisy_uniform\"",
                corpus.kind(),
                sampling.name(),
                corpus.kind()
            )));
        }
        let s = scan(corpus, &root, &set, landmarks);
        if let Some(e) = super::refusal(&s.problems, &root, corpus.kind()) {
            return Err(e);
        }
        if s.records.is_empty() {
            return Err(BuildError(format!(
                "`{}` found no clips under {}",
                corpus.kind(),
                root.display()
            )));
        }
        let size = super::size(p)?;
        let subjects: BTreeSet<&String> = s.records.iter().map(|r| &r.subject).collect();
        let subjects: Vec<&String> = subjects.into_iter().collect();
        let subject_ids = s
            .records
            .iter()
            .map(|r| subjects.binary_search(&&r.subject).unwrap_or(0) as i64)
            .collect();
        Ok(DferDataset {
            subject_ids,
            tracked: Mutex::new(HashMap::new()),
            corpus,
            classes: corpus.classes(&set),
            records: s.records,
            notes: s.notes,
            frames: super::count(p, "frames")?,
            size,
            color: super::flag(p, "color")?,
            sampling,
            rate: super::count(p, "sampling_rate")?,
            landmarks,
            crop,
        })
    }

    /// Record `p`'s OpenFace table, parsed on first use and kept.
    fn openface(&self, p: usize, csv: &Path) -> Result<Arc<Tracked>, DataError> {
        let mut cache = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&p) {
            return Ok(t.clone());
        }
        let t = Arc::new(read_openface(csv)?);
        cache.insert(p, t.clone());
        Ok(t)
    }

    /// Frame positions for one clip of `n` frames: every `rate`-th frame,
    /// then the shared sampler's choice among those.
    fn pick(&self, n: usize, aug: Option<&mut SeededRng>) -> Vec<usize> {
        let cand: Vec<usize> = (0..n).step_by(self.rate).collect();
        sampler::pick(
            &ClipFrames::whole(cand.len()),
            self.frames,
            self.sampling,
            aug,
        )
        .into_iter()
        .map(|i| cand[i])
        .collect()
    }

    /// [`Self::pick`] for clip `p` (a position in [`Dataset::index`]'s
    /// order); `None` past the end.
    #[cfg(test)]
    pub(crate) fn picks(&self, p: usize, aug: Option<&mut SeededRng>) -> Option<Vec<usize>> {
        Some(self.pick(self.records.get(p)?.frames.len(), aug))
    }
}

impl Dataset for DferDataset {
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        (port == "emotion").then(|| self.classes.iter().map(|c| c.to_string()).collect())
    }

    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .records
            .iter()
            .map(|r| {
                let mut labels = BTreeMap::from([(
                    "emotion".to_string(),
                    Value::Str(self.classes[r.class].to_string()),
                )]);
                if let Some(f) = r.fold {
                    labels.insert("fold".into(), Value::Int(f));
                }
                if let Some(sp) = r.split {
                    labels.insert("split".into(), Value::Str(sp.into()));
                }
                SampleMeta {
                    id: r.id.clone(),
                    dataset: String::new(),
                    group: r.subject.clone(),
                    labels,
                }
            })
            .collect())
    }

    fn load(
        &self,
        positions: &[usize],
        mut aug: Option<&mut SeededRng>,
    ) -> Result<Batch, DataError> {
        let [h, w] = self.size;
        let ch = if self.color { 3 } else { 1 };
        let t = self.frames;
        let b = positions.len();
        let mut video = Vec::with_capacity(b * ch * t * h * w);
        let (mut lms, mut lms5, mut boxes): (Vec<f32>, Vec<f32>, Vec<f32>) =
            (vec![], vec![], vec![]);
        let (mut emotion, mut subject, mut ids) = (vec![], vec![], vec![]);
        for &p in positions {
            let r = self.records.get(p).ok_or_else(|| DataError {
                file: self.corpus.kind().into(),
                row: None,
                message: format!("position {p} is outside the {} clips", self.records.len()),
            })?;
            let picks = self.pick(r.frames.len(), aug.as_deref_mut());
            if picks.is_empty() {
                return Err(problem(
                    Path::new(&r.id),
                    "the clip has no frames to read".into(),
                ));
            }
            let mut planes: Vec<Vec<f32>> =
                (0..ch).map(|_| Vec::with_capacity(t * h * w)).collect();
            let tracked = match (self.landmarks, &r.landmarks) {
                (true, Some(csv)) => Some((self.openface(p, csv)?, csv)),
                _ => None,
            };
            for &fi in &picks {
                // Nearest tracked frame (OpenFace numbers frames from 1).
                let near = match &tracked {
                    Some((t, csv)) => {
                        let want = fi + 1;
                        Some(
                            t.range(..=want)
                                .next_back()
                                .map(|(k, v)| (want - k, v))
                                .into_iter()
                                .chain(t.range(want..).next().map(|(k, v)| (k - want, v)))
                                .min_by_key(|(d, _)| *d)
                                .map(|(_, v)| v)
                                .ok_or_else(|| problem(csv, "no tracked frame".into()))?,
                        )
                    }
                    None => None,
                };
                let crop = near.filter(|_| self.crop).map(|pts| face::crop_box(pts));
                let dims = super::push_frame_crop(&r.frames[fi], None, [h, w], &mut planes, crop)?;
                if let Some(near) = near {
                    // Landmarks in the coordinates of what the model sees.
                    let [x0, y0, cw, chh] = crop
                        .map(|[x, y, w, h]| {
                            let x = x.min(dims.0 - 1);
                            let y = y.min(dims.1 - 1);
                            [x, y, w.min(dims.0 - x).max(1), h.min(dims.1 - y).max(1)]
                        })
                        .unwrap_or([0, 0, dims.0, dims.1])
                        .map(|v| v as f32);
                    let pts: Vec<[f32; 2]> = near
                        .iter()
                        .map(|q| [(q[0] - x0) / cw, (q[1] - y0) / chh])
                        .collect();
                    lms.extend(pts.iter().flatten());
                    boxes.extend(face::bounding_box(&pts));
                    lms5.extend(face::five_points(&pts).iter().flatten());
                }
            }
            for pl in planes {
                video.extend(pl);
            }
            emotion.push(r.class as i64);
            subject.push(self.subject_ids[p]);
            ids.push(r.id.clone());
        }
        let d = &Device::Cpu;
        let e =
            |e: mer_registry::candle::Error| problem(Path::new(self.corpus.kind()), e.to_string());
        let mut ports = BTreeMap::new();
        ports.insert(
            "video".into(),
            Tensor::from_vec(video, (b, ch, t, h, w), d).map_err(e)?,
        );
        ports.insert(
            "emotion".into(),
            Tensor::from_vec(emotion, b, d).map_err(e)?,
        );
        ports.insert(
            "subject".into(),
            Tensor::from_vec(subject, b, d).map_err(e)?,
        );
        if self.landmarks {
            ports.insert(
                "landmarks".into(),
                Tensor::from_vec(lms, (b, t, 68, 2), d).map_err(e)?,
            );
            ports.insert(
                "landmarks5".into(),
                Tensor::from_vec(lms5, (b, t, 5, 2), d).map_err(e)?,
            );
            ports.insert(
                "box".into(),
                Tensor::from_vec(boxes, (b, t, 4), d).map_err(e)?,
            );
        }
        Ok(Batch { ids, ports })
    }
}

/// `dfer.ravdess`'s factory.
pub fn ravdess(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(DferDataset::new(Corpus::Ravdess, p)?))
}

/// `dfer.crema_d`'s factory.
pub fn crema_d(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(DferDataset::new(Corpus::CremaD, p)?))
}

/// `dfer.dfew`'s factory.
pub fn dfew(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(DferDataset::new(Corpus::Dfew, p)?))
}

/// `dfer.ferv39k`'s factory.
pub fn ferv39k(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(DferDataset::new(Corpus::Ferv39k, p)?))
}

/// `dfer.mead`'s factory.
pub fn mead(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(DferDataset::new(Corpus::Mead, p)?))
}

/// `mer data verify` for a DFER corpus: counts, notes and every problem.
pub fn verify(corpus: Corpus, root: &Path) -> (String, bool) {
    verify_with(corpus, root, super::decode_cache().as_deref())
}

/// [`verify`] with its decode markers in `cache`.
fn verify_with(corpus: Corpus, root: &Path, cache: Option<&Path>) -> (String, bool) {
    use std::fmt::Write;
    let set = corpus.default_set();
    let mut s = scan(corpus, root, set, false);
    // Every frame of every clip: which ones a recipe reads depends on its
    // `frames` and `sampling_rate`, so all of them.
    let frames: Vec<(&ClipRecord, &Path)> = s
        .records
        .iter()
        .flat_map(|r| r.frames.iter().map(move |f| (r, f.as_path())))
        .collect();
    let paths: Vec<&Path> = frames.iter().map(|(_, f)| *f).collect();
    let (decoded, bad) = super::check_decodes(&paths, cache);
    let undecodable: Vec<DataError> = bad
        .into_iter()
        .map(|(i, why)| problem(frames[i].1, format!("{why} (clip {})", frames[i].0.id)))
        .collect();
    s.problems.extend(undecodable);
    let classes = corpus.classes(set);
    let mut untracked = 0usize;
    for r in &s.records {
        let csv = Path::new(&r.frames[0])
            .parent()
            .map(|d| d.with_extension("csv"));
        match csv.filter(|c| c.is_file()) {
            None => s.notes.push(format!(
                "{}: no OpenFace landmarks CSV (landmarks = \"none\" only)",
                r.id
            )),
            Some(c) => match read_openface(&c) {
                Ok(t) => untracked += r.frames.len().saturating_sub(t.len()),
                Err(e) => s.problems.push(e),
            },
        }
    }
    let mut o = String::new();
    let subjects: BTreeSet<&String> = s.records.iter().map(|r| &r.subject).collect();
    let _ = writeln!(o, "{} at {}", corpus.kind(), root.display());
    let _ = writeln!(
        o,
        "samples: {}   subjects: {}",
        s.records.len(),
        subjects.len()
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &s.records {
        *per.entry(classes[r.class]).or_default() += 1;
    }
    let list: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(o, "emotions: {}", list.join(", "));
    let folds: BTreeSet<i64> = s.records.iter().filter_map(|r| r.fold).collect();
    if !folds.is_empty() {
        let _ = writeln!(o, "official folds: {}", folds.len());
    }
    let _ = writeln!(
        o,
        "frames without a tracked face (filled from the nearest tracked frame): {untracked}"
    );
    let _ = writeln!(o, "{}", decoded.line(cache));
    super::verify_tail(&mut o, &s.notes, &s.problems);
    (o, s.problems.is_empty())
}

/// The OpenFace CSV header mer writes and reads (the columns it needs, in
/// OpenFace's order and spelling).
fn openface_header() -> String {
    let mut h = vec![
        "frame".to_string(),
        "face_id".into(),
        "timestamp".into(),
        "confidence".into(),
        "success".into(),
    ];
    h.extend((0..68).map(|i| format!("x_{i}")));
    h.extend((0..68).map(|i| format!("y_{i}")));
    h.join(", ")
}

/// Writes generated clips in the corpus layout: frame folders named as the
/// real files are, an OpenFace CSV beside each, and (RAVDESS) the
/// video-only twin of each actor's first clip, which the loader must drop.
pub fn write_layout(
    corpus: Corpus,
    p: &BTreeMap<String, Value>,
    root: &Path,
    frames_per_clip: usize,
) -> Result<usize, String> {
    let classes = corpus.classes(corpus.default_set());
    let mut params = p.clone();
    params.insert(
        "class_names".into(),
        Value::List(
            classes
                .iter()
                .map(|c| Value::Str(Corpus::synth_name(c).to_string()))
                .collect(),
        ),
    );
    let synth = Synth::new(super::synth::Flavor::Dfer, &params).map_err(|e| e.0)?;
    let [h, w] = synth.size_hw();
    let n = frames_per_clip.max(2);
    let subjects = super::count(p, "subjects").map_err(|e| e.0)?;
    let mut per_subject: BTreeMap<usize, usize> = BTreeMap::new();
    let mut written = 0;
    // The official lists the two list-driven corpora need.
    let mut dfew_lists: Vec<Vec<(u32, usize)>> = vec![Vec::new(); 5];
    let mut ferv_lists: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let list_driven = matches!(corpus, Corpus::Dfew | Corpus::Ferv39k);
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let k = {
            let c = per_subject.entry(info.subject).or_default();
            *c += 1;
            *c - 1
        };
        let class = classes
            .iter()
            .position(|c| Corpus::synth_name(c) == info.emotion)
            .ok_or_else(|| {
                format!(
                    "generated class {} has no {} name",
                    info.emotion,
                    corpus.kind()
                )
            })?;
        let s = info.subject;
        let mut dirs: Vec<PathBuf> = match corpus {
            Corpus::Ravdess => {
                if k >= 8 {
                    return Err("RAVDESS names allow at most 8 generated clips per actor here (--clips-per-subject 8)".into());
                }
                let intensity = if class == 0 { 1 } else { k % 2 + 1 };
                let name = |m: u32| {
                    format!(
                        "{m:02}-01-{:02}-{intensity:02}-{:02}-{:02}-{s:02}",
                        class + 1,
                        (k / 2) % 2 + 1,
                        (k / 4) % 2 + 1
                    )
                };
                let mut v = vec![root.join(format!("Actor_{s:02}")).join(name(1))];
                if k == 0 {
                    v.push(root.join(format!("Actor_{s:02}")).join(name(2)));
                }
                v
            }
            Corpus::CremaD => {
                if k >= CREMA_SENTENCES.len() {
                    return Err(format!("CREMA-D names allow at most {} generated clips per actor (one per sentence)", CREMA_SENTENCES.len()));
                }
                let level = if CREMA_CODES[class] == "NEU" {
                    "XX"
                } else {
                    CREMA_LEVELS[k % 3]
                };
                // Spread generated actors over 1001–1091 so that they fall
                // into all five official folds.
                let actor = 1001 + (s - 1) * 91 / subjects;
                vec![root.join("VideoFlash").join(format!(
                    "{actor}_{}_{}_{level}",
                    CREMA_SENTENCES[k], CREMA_CODES[class]
                ))]
            }
            Corpus::Mead => {
                let actor = if s % 2 == 1 {
                    format!("M{:03}", s)
                } else {
                    format!("W{:03}", s)
                };
                let level = if classes[class] == "neutral" {
                    1
                } else {
                    k % 3 + 1
                };
                vec![root
                    .join(actor)
                    .join("video/front")
                    .join(classes[class])
                    .join(format!("level_{level}"))
                    .join(format!("{:03}", k + 1))]
            }
            Corpus::Dfew => {
                let clip = i as u32 + 1;
                dfew_lists[i % 5].push((clip, class + 1));
                vec![root.join(DFEW_FRAMES).join(format!("{clip:05}"))]
            }
            Corpus::Ferv39k => {
                let cls = classes[class];
                let folder = format!("{}{}", cls[..1].to_ascii_uppercase(), &cls[1..]);
                let path = format!("Scene{s:02}/{folder}/{:04}", i + 1);
                // Every fifth clip of a subject is a test clip.
                ferv_lists[usize::from(k % 5 == 4)].push(format!("{path} {folder}"));
                vec![root.join(FERV_CLIPS).join(path)]
            }
        };
        let mut csv = openface_header();
        csv.push('\n');
        let first = dirs.remove(0);
        std::fs::create_dir_all(&first).map_err(|e| format!("{}: {e}", first.display()))?;
        for f in 0..n {
            let t = f as f32 / (n - 1) as f32;
            let (planes, lm) = synth.render_with_landmarks(i, t).ok_or("clip vanished")?;
            let img = super::to_image(&planes, [h, w]);
            let path = first.join(format!("{:05}.png", f + 1));
            img.save(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut row = format!("{}, 0, {:.3}, 0.98, 1", f + 1, f as f32 / 30.0);
            for q in lm.iter() {
                row.push_str(&format!(", {:.2}", q[0] * w as f32));
            }
            for q in lm.iter() {
                row.push_str(&format!(", {:.2}", q[1] * h as f32));
            }
            csv.push_str(&row);
            csv.push('\n');
        }
        if !list_driven {
            // OpenFace output beside the clip (DFEW and FERV39k ship none).
            std::fs::write(first.with_extension("csv"), &csv).map_err(|e| e.to_string())?;
        }
        for twin in dirs {
            std::fs::create_dir_all(&twin).map_err(|e| format!("{}: {e}", twin.display()))?;
            for f in 0..n {
                let name = format!("{:05}.png", f + 1);
                std::fs::copy(first.join(&name), twin.join(&name)).map_err(|e| e.to_string())?;
            }
            std::fs::write(twin.with_extension("csv"), &csv).map_err(|e| e.to_string())?;
        }
        written += 1;
    }
    let write = |path: PathBuf, text: String| -> Result<(), String> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    if corpus == Corpus::Dfew {
        for k in 0..5 {
            let rows = |set: &mut dyn Iterator<Item = &(u32, usize)>| {
                let mut t = "video_name,label\n".to_string();
                for (clip, code) in set {
                    t.push_str(&format!("{clip},{code}\n"));
                }
                t
            };
            let test = rows(&mut dfew_lists[k].iter());
            let mut others = (0..5)
                .filter(|j| *j != k)
                .flat_map(|j| dfew_lists[j].iter());
            let train = rows(&mut others);
            let dir = root.join(DFEW_SPLITS);
            write(
                dir.join("test(single-labeled)")
                    .join(format!("set_{}.csv", k + 1)),
                test,
            )?;
            write(
                dir.join("train(single-labeled)")
                    .join(format!("set_{}.csv", k + 1)),
                train,
            )?;
        }
    }
    if corpus == Corpus::Ferv39k {
        for (lines, name) in ferv_lists.iter().zip(["train_All.csv", "test_All.csv"]) {
            write(root.join(FERV_LISTS).join(name), lines.join("\n") + "\n")?;
        }
    }
    Ok(written)
}

/// `mer data synth` for a corpus of this file.
fn write_corpus(corpus: Corpus, out: &Path, req: &LayoutRequest) -> Result<usize, String> {
    write_layout(
        corpus,
        &super::synth::layout_params(req),
        out,
        req.frames_per_clip,
    )
}

// ---- the kinds ---------------------------------------------------------------

/// The dynamic-expression corpora this file reads, verifies and writes.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        dfer("dfer.dfew", "DFEW (11,697 single-labelled clips): `Clip/jpg_256/<00001>/` frame folders + `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<1..5>.csv` (`video_name,label`, codes 1–7). No subject ids: each clip is its own group.", "Folds: the official five sets, as a `fold` label (protocol.kfold { folds = 5 }).", &["7class"], "none")
            .dataset(dfew)
            .verify(|_, root, _| verify(Corpus::Dfew, root))
            .write_layout(|_, out, req| write_corpus(Corpus::Dfew, out, req))
            .build(),
        dfer("dfer.ferv39k", "FERV39k (38,935 clips): `2_ClipsforFaceCrop/<Scene>/<Class>/<id>/` frame folders + `4_setups/All_scenes/{train,test}_All.csv` lists. No subject ids: each clip is its own group.", "The official train/test split, as a `split` label (protocol.official).", &["7class"], "none")
            .dataset(ferv39k)
            .verify(|_, root, _| verify(Corpus::Ferv39k, root))
            .write_layout(|_, out, req| write_corpus(Corpus::Ferv39k, out, req))
            .build(),
        dfer("dfer.ravdess", "RAVDESS (Actor_01..24): `Actor_XX/<MM-VV-EE-II-SS-RR-AA>/` frame folders with filename-coded labels; speech clips, one copy per clip (audio-video preferred over its video-only twin).", "Actor-block folds (protocol.kfold).", &["8class", "7class"], "openface")
            .dataset(ravdess)
            .verify(|_, root, _| verify(Corpus::Ravdess, root))
            .write_layout(|_, out, req| write_corpus(Corpus::Ravdess, out, req))
            .build(),
        dfer("dfer.crema_d", "CREMA-D (91 actors): `VideoFlash/<actor>_<sentence>_<EMO>_<level>/` frame folders.", "Official folds: MAE-DFER's 5 actor blocks (1001–1018, 1019–1036, 1037–1054, 1055–1072, 1073–1091), as a `fold` label.", &["6class"], "openface")
            .dataset(crema_d)
            .verify(|_, root, _| verify(Corpus::CremaD, root))
            .write_layout(|_, out, req| write_corpus(Corpus::CremaD, out, req))
            .build(),
        dfer("dfer.mead", "MEAD front view: `<actor>/video/front/<emotion>/level_<n>/<nnn>/` frame folders.", "Actor folds (protocol.kfold; no official list exists).", &["8class"], "openface")
            .dataset(mead)
            .verify(|_, root, _| verify(Corpus::Mead, root))
            .write_layout(|_, out, req| write_corpus(Corpus::Mead, out, req))
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-dfer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn synth_params(subjects: i64, clips: i64) -> BTreeMap<String, Value> {
        [
            ("subjects", Value::Int(subjects)),
            ("clips_per_subject", Value::Int(clips)),
            ("size", Value::List(vec![Value::Int(24), Value::Int(24)])),
            ("color", Value::Bool(true)),
            ("intensity", Value::Float(1.0)),
            ("seed", Value::Int(5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn loader_params(root: &Path, set: &str) -> BTreeMap<String, Value> {
        [
            ("root", Value::Str(root.display().to_string())),
            ("classes", Value::Str(set.into())),
            ("frames", Value::Int(3)),
            ("size", Value::List(vec![Value::Int(16), Value::Int(16)])),
            ("landmarks", Value::Str("openface".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn generated_layouts_load_with_boxes_and_landmarks_in_the_frame() {
        for (corpus, set) in [
            (Corpus::Ravdess, "8class"),
            (Corpus::CremaD, "6class"),
            (Corpus::Mead, "8class"),
        ] {
            let root = tmp(corpus.kind());
            let n = write_layout(corpus, &synth_params(2, 4), &root, 5).unwrap();
            assert_eq!(n, 8);
            let ds = DferDataset::new(corpus, &loader_params(&root, set)).unwrap();
            let index = ds.index().unwrap();
            assert_eq!(index.len(), 8, "{}", corpus.kind());
            let b = ds.load(&[0, 7], None).unwrap();
            assert_eq!(b.ports["video"].dims(), &[2, 3, 3, 16, 16]);
            assert_eq!(b.ports["landmarks5"].dims(), &[2, 3, 5, 2]);
            let boxes: Vec<f32> = b.ports["box"].flatten_all().unwrap().to_vec1().unwrap();
            for q in boxes.chunks(4) {
                assert!(
                    q[0] > 0.0 && q[1] > 0.0 && q[2] > 0.2 && q[3] > 0.2,
                    "{q:?}"
                );
                assert!(q[0] + q[2] < 1.0 && q[1] + q[3] < 1.0, "{q:?}");
            }
            if corpus == Corpus::Ravdess {
                // Each actor's first clip also exists as a video-only twin.
                assert_eq!(
                    ds.notes(),
                    vec!["left out: 2 video-only copies of audio-video clips (same frames)"]
                );
            }
            if corpus == Corpus::CremaD {
                assert!(index.iter().all(|s| s.labels.contains_key("fold")));
            }
            std::fs::remove_dir_all(&root).ok();
        }
    }

    /// A clip of a class the label set leaves out is never read, so its
    /// empty frame folder or unextracted video does not stop the run;
    /// with the class in the set, both are problems.
    #[test]
    fn a_left_out_class_is_never_read() {
        let root = tmp("left-out");
        write_layout(Corpus::Ravdess, &synth_params(1, 2), &root, 3).unwrap();
        let actor = root.join("Actor_01");
        let calm = |s: &Scan| {
            s.notes
                .iter()
                .find_map(|n| n.strip_suffix(" calm (not in 7class)"))
                .and_then(|n| n.strip_prefix("left out: "))
                .map_or(0, |n| n.parse::<usize>().unwrap_or(0))
        };
        let before = calm(&scan_with(Corpus::Ravdess, &root, "7class", false, None));
        // Two calm clips (emotion 02): an empty folder, a video, no ffmpeg.
        std::fs::create_dir_all(actor.join("01-01-02-02-02-02-01")).unwrap();
        std::fs::write(actor.join("01-01-02-01-02-02-01.mp4"), b"").unwrap();
        let s = scan_with(Corpus::Ravdess, &root, "7class", false, None);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(calm(&s), before + 2, "{:?}", s.notes);
        let all = scan_with(Corpus::Ravdess, &root, "8class", false, None);
        let text: Vec<String> = all.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(text
            .iter()
            .any(|t| t.contains("01-01-02-02-02-02-01") && t.contains("no images")));
        assert!(text
            .iter()
            .any(|t| t.contains("01-01-02-01-02-02-01.mp4") && t.contains("ffmpeg -i")));
        std::fs::remove_dir_all(&root).ok();
    }

    /// Verify decodes every frame: a zero-byte and a truncated frame are
    /// problems naming the file and clip; a second verify only hashes.
    #[test]
    fn verify_names_frames_that_do_not_decode() {
        let root = tmp("decode");
        write_layout(Corpus::CremaD, &synth_params(2, 2), &root, 4).unwrap();
        let s = scan_with(Corpus::CremaD, &root, "6class", false, None);
        let (a, b) = (&s.records[0].frames[1], &s.records[1].frames[3]);
        std::fs::write(a, b"").unwrap();
        let bytes = std::fs::read(b).unwrap();
        std::fs::write(b, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let cache = root.join("cache");
        let (report, ok) = verify_with(Corpus::CremaD, &root, Some(&cache));
        assert!(!ok && report.contains("problems: 2"), "{report}");
        for (f, id) in [(a, &s.records[0].id), (b, &s.records[1].id)] {
            assert!(
                report
                    .lines()
                    .any(|l| l.contains(&format!("{}: ", f.display()))
                        && l.contains(&format!("(clip {id})"))),
                "{} not named:\n{report}",
                f.display()
            );
        }
        assert!(report.contains("images decoded: 16 ("), "{report}");
        let (again, _) = verify_with(Corpus::CremaD, &root, Some(&cache));
        assert!(
            again.contains("images decoded: 16 (14 unchanged"),
            "{again}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    /// `crop = "face"`: frames are cut to the landmarks' grown square box,
    /// so the face fills most of the frame and the landmark ports follow
    /// the crop; without landmarks it is refused.
    #[test]
    fn face_crop_follows_the_landmarks() {
        let root = tmp("crop");
        write_layout(Corpus::CremaD, &synth_params(2, 2), &root, 4).unwrap();
        // Generated faces fill the frame; move every face's landmarks into
        // the top-left quarter so that the crop has something to cut.
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "csv") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let mut lines = text.lines();
                    let mut out = format!("{}\n", lines.next().unwrap());
                    for l in lines {
                        let cells: Vec<String> = l
                            .split(", ")
                            .enumerate()
                            .map(|(i, c)| match (i >= 5, c.parse::<f32>()) {
                                (true, Ok(v)) => format!("{:.2}", v * 0.5),
                                _ => c.to_string(),
                            })
                            .collect();
                        out.push_str(&cells.join(", "));
                        out.push('\n');
                    }
                    std::fs::write(&path, out).unwrap();
                }
            }
        }
        let mut p = loader_params(&root, "6class");
        let wide = |p: &BTreeMap<String, Value>| -> f32 {
            let ds = DferDataset::new(Corpus::CremaD, p).unwrap();
            let b = ds.load(&[0, 1, 2], None).unwrap();
            let boxes: Vec<f32> = b.ports["box"].flatten_all().unwrap().to_vec1().unwrap();
            boxes.chunks(4).map(|q| q[2].max(q[3])).sum::<f32>() / (boxes.len() / 4) as f32
        };
        let full = wide(&p);
        p.insert("crop".into(), Value::Str("face".into()));
        let cropped = wide(&p);
        assert!(cropped > full * 1.2, "face share {full} → {cropped}");
        assert!((0.5..0.95).contains(&cropped), "{cropped}");
        p.insert("landmarks".into(), Value::Str("none".into()));
        let e = DferDataset::new(Corpus::CremaD, &p).err().unwrap().0;
        assert!(e.contains("needs landmarks"), "{e}");
        std::fs::remove_dir_all(&root).ok();
    }

    /// DFEW and FERV39k: generated trees in the distributed layouts load
    /// with their official folds / split, and no landmarks.
    #[test]
    fn list_driven_corpora_load_their_official_folds_and_split() {
        let mut p = loader_params(Path::new("."), "7class");
        p.insert("landmarks".into(), Value::Str("none".into()));
        let root = tmp("dfew");
        assert_eq!(
            write_layout(Corpus::Dfew, &synth_params(2, 5), &root, 3).unwrap(),
            10
        );
        p.insert("root".into(), Value::Str(root.display().to_string()));
        let ds = DferDataset::new(Corpus::Dfew, &p).unwrap();
        let index = ds.index().unwrap();
        assert_eq!(index.len(), 10);
        let folds: BTreeSet<i64> = index
            .iter()
            .map(|s| match s.labels["fold"] {
                Value::Int(f) => f,
                _ => 0,
            })
            .collect();
        assert_eq!(folds, (1..=5).collect());
        assert!(ds.notes()[0].contains("no subject ids"), "{:?}", ds.notes());
        let b = ds.load(&[0, 9], None).unwrap();
        assert_eq!(b.ports["video"].dims(), &[2, 3, 3, 16, 16]);
        assert!(!b.ports.contains_key("landmarks"));
        std::fs::remove_dir_all(&root).ok();

        let root = tmp("ferv");
        assert_eq!(
            write_layout(Corpus::Ferv39k, &synth_params(2, 5), &root, 3).unwrap(),
            10
        );
        p.insert("root".into(), Value::Str(root.display().to_string()));
        let ds = DferDataset::new(Corpus::Ferv39k, &p).unwrap();
        let splits: Vec<String> = ds
            .index()
            .unwrap()
            .iter()
            .map(|s| format!("{:?}", s.labels["split"]))
            .collect();
        assert_eq!(splits.iter().filter(|s| s.contains("test")).count(), 2);
        assert_eq!(splits.iter().filter(|s| s.contains("train")).count(), 8);
        std::fs::remove_dir_all(&root).ok();
    }

    /// Every defect of an official list is a problem with its file and
    /// row; the good lines still load.
    #[test]
    fn list_defects_are_reported_by_file_and_row() {
        let root = tmp("dfew-bad");
        write_layout(Corpus::Dfew, &synth_params(2, 5), &root, 3).unwrap();
        let test1 = root
            .join(DFEW_SPLITS)
            .join("test(single-labeled)/set_1.csv");
        let mut t = std::fs::read_to_string(&test1).unwrap();
        // Clip 2 is already in set_2's test list; clip 6 is labelled
        // differently elsewhere; code 9 does not exist; clip 77 has no frames.
        t.push_str("2,1\n77,3\nx,1\n");
        t = t.replacen("6,", "6,9\n6b,", 1);
        std::fs::write(&test1, t).unwrap();
        let s = scan(Corpus::Dfew, &root, "7class", false);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        let has = |what: &str| {
            msgs.iter()
                .any(|m| m.contains(what) && m.contains("set_1.csv"))
        };
        assert!(
            has("clip 2 is in the test list of set_") || has("folds must not overlap"),
            "{msgs:#?}"
        );
        assert!(has("is not a DFEW code 1–7"), "{msgs:#?}");
        assert!(has("`x` is not a clip number"), "{msgs:#?}");
        assert!(
            msgs.iter().any(|m| m.contains("clip 77: no frame folder")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().all(|m| m.contains(".csv")), "{msgs:#?}");
        assert!(s.records.len() >= 8, "good clips still load");
        std::fs::remove_dir_all(&root).ok();

        let root = tmp("ferv-bad");
        write_layout(Corpus::Ferv39k, &synth_params(2, 5), &root, 3).unwrap();
        let list = root.join(FERV_LISTS).join("test_All.csv");
        let mut t = std::fs::read_to_string(&list).unwrap();
        let first = t.lines().next().unwrap().to_string();
        t.push_str(&format!(
            "{first}\nScene01/Bored/0099 Bored\nScene01/Happy/0001 Sad\nbroken\n"
        ));
        std::fs::write(&list, t).unwrap();
        let s = scan(Corpus::Ferv39k, &root, "7class", false);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("is listed again")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown class folder `Bored`")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("label `Sad` disagrees")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("`broken` is not Scene/Class/id")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().all(|m| m.contains("test_All.csv:")),
            "{msgs:#?}"
        );
        assert_eq!(s.records.len(), 10);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn same_seed_writes_identical_bytes() {
        let (a, b) = (tmp("bytes-a"), tmp("bytes-b"));
        write_layout(Corpus::CremaD, &synth_params(1, 2), &a, 3).unwrap();
        write_layout(Corpus::CremaD, &synth_params(1, 2), &b, 3).unwrap();
        let files = |r: &Path| {
            let mut v = vec![];
            let mut stack = vec![r.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else {
                        v.push((
                            e.path().strip_prefix(r).unwrap().to_path_buf(),
                            std::fs::read(e.path()).unwrap(),
                        ));
                    }
                }
            }
            v.sort();
            v
        };
        assert_eq!(files(&a), files(&b));
        std::fs::remove_dir_all(&a).ok();
        std::fs::remove_dir_all(&b).ok();
    }

    #[test]
    fn malformed_trees_name_every_file_and_drop_nothing_silently() {
        let root = tmp("bad-ravdess");
        write_layout(Corpus::Ravdess, &synth_params(1, 3), &root, 3).unwrap();
        let actor = root.join("Actor_01");
        // A video nobody extracted, a wrong actor, a bad name, a song clip,
        // an empty frame folder, and a clip without its landmarks.
        std::fs::write(actor.join("01-01-05-01-01-01-01.mp4"), b"").unwrap();
        std::fs::create_dir_all(actor.join("01-01-03-01-01-01-02")).unwrap();
        std::fs::create_dir_all(actor.join("01-01-09-01-01-01-01")).unwrap();
        let song = actor.join("01-02-03-01-01-01-01");
        std::fs::create_dir_all(&song).unwrap();
        std::fs::write(song.join("00001.png"), b"").unwrap();
        std::fs::create_dir_all(actor.join("01-01-04-02-02-02-01")).unwrap();
        let first = sorted_dir(&actor)
            .unwrap()
            .into_iter()
            .find(|p| p.is_dir() && p.with_extension("csv").is_file())
            .unwrap();
        std::fs::remove_file(first.with_extension("csv")).unwrap();
        // No decoder: the video is reported with how to extract it.
        let s = scan_with(Corpus::Ravdess, &root, "8class", true, None);
        let text: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(
            has("01-01-05-01-01-01-01.mp4") && has("ffmpeg -i"),
            "{text:#?}"
        );
        assert!(has("names actor 02 but lies in Actor_01"), "{text:#?}");
        assert!(
            has("01-01-09-01-01-01-01") && has("not a RAVDESS clip name"),
            "{text:#?}"
        );
        assert!(has("01-01-04-02-02-02-01") && has("no images"), "{text:#?}");
        assert!(has(".csv") && has("FeatureExtraction"), "{text:#?}");
        assert!(
            s.notes.iter().any(|n| n.contains("1 song clips")),
            "{:?}",
            s.notes
        );
        // The loader refuses the tree and points at `mer data verify`.
        let err = DferDataset::new(Corpus::Ravdess, &loader_params(&root, "8class"))
            .err()
            .unwrap();
        assert!(
            err.0.contains("more problems") && err.0.contains("mer data verify"),
            "{}",
            err.0
        );
        // 7class leaves calm out, counted.
        let s7 = scan(Corpus::Ravdess, &root, "7class", false);
        let calm = s.records.iter().filter(|r| r.class == 1).count();
        if calm > 0 {
            assert!(s7.notes.iter().any(|n| n.contains("calm (not in 7class)")));
        }
        std::fs::remove_dir_all(&root).ok();

        let root = tmp("bad-crema");
        write_layout(Corpus::CremaD, &synth_params(1, 2), &root, 3).unwrap();
        std::fs::create_dir_all(root.join("VideoFlash/1001_DFA_XYZ_XX")).unwrap();
        let s = scan(Corpus::CremaD, &root, "6class", false);
        assert!(s
            .problems
            .iter()
            .any(|p| p.to_string().contains("unknown emotion `XYZ`")));
        std::fs::remove_dir_all(&root).ok();
    }

    fn pixels(p: &Path) -> Vec<u8> {
        image::open(p).unwrap().to_rgb8().into_raw()
    }

    /// A clip shipped as a video (no frame folder) reads as the folder
    /// would: same id, same landmarks, the same pixels (encoded
    /// losslessly here), decoded once and then taken from the cache; an
    /// undecodable video is a problem naming it.
    #[test]
    fn videos_without_frame_folders_are_decoded_through_ffmpeg() {
        let Some(ffmpeg) = crate::video::test_ffmpeg() else {
            return;
        };
        let root = tmp("video");
        write_layout(Corpus::Ravdess, &synth_params(1, 2), &root, 5).unwrap();
        let folders = scan_with(Corpus::Ravdess, &root, "8class", true, None);
        assert!(folders.problems.is_empty(), "{:?}", folders.problems);
        let rec = folders.records[0].clone();
        let dir = root.join(&rec.id);
        let video = dir.with_extension("mp4");
        let status = std::process::Command::new(&ffmpeg)
            .args(["-nostdin", "-v", "error", "-framerate", "30", "-i"])
            .arg(dir.join("%05d.png"))
            .args(["-c:v", "libx264rgb", "-qp", "0"])
            .arg(&video)
            .status()
            .unwrap();
        assert!(status.success());
        let kept = root.join("kept");
        std::fs::rename(&dir, &kept).unwrap();
        let from_video = scan_with(Corpus::Ravdess, &root, "8class", true, Some(ffmpeg.clone()));
        assert!(from_video.problems.is_empty(), "{:?}", from_video.problems);
        let ids = |s: &Scan| s.records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&from_video), ids(&folders), "no clip lost or renamed");
        let got = &from_video.records[0];
        assert_eq!(got.id, rec.id);
        assert_eq!(got.landmarks, rec.landmarks, "the CSV beside the video");
        assert_eq!(got.frames.len(), rec.frames.len());
        assert!(!got.frames[0].starts_with(&root), "decoded into the cache");
        for (a, b) in got.frames.iter().zip(&rec.frames) {
            let b = kept.join(b.file_name().unwrap());
            assert_eq!(pixels(a), pixels(&b), "{}", a.display());
        }
        let note = |s: &Scan, what: &str| s.notes.iter().any(|n| n.contains(what));
        assert!(
            note(&from_video, "1 clips read from their videos"),
            "{:?}",
            from_video.notes
        );
        assert!(note(&from_video, "1 decoded now"), "{:?}", from_video.notes);
        let again = scan_with(Corpus::Ravdess, &root, "8class", true, Some(ffmpeg.clone()));
        assert!(
            note(&again, "0 decoded now") && note(&again, "1 from the cache"),
            "{:?}",
            again.notes
        );
        assert_eq!(again.records[0].frames, got.frames);
        // A broken video names itself and what ffmpeg said.
        let other = root.join(&folders.records[1].id);
        std::fs::remove_dir_all(&other).unwrap();
        std::fs::write(other.with_extension("mp4"), b"not a video").unwrap();
        let broken = scan_with(Corpus::Ravdess, &root, "8class", true, Some(ffmpeg));
        let text: Vec<String> = broken.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains(&format!("{}.mp4", folders.records[1].id))
                    && t.contains("could not decode it")),
            "{text:#?}"
        );
        assert_eq!(broken.records.len(), folders.records.len() - 1);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn openface_rows_are_checked_and_untracked_frames_borrow_the_nearest() {
        let root = tmp("openface");
        write_layout(Corpus::Mead, &synth_params(1, 1), &root, 4).unwrap();
        let clip = root.join("M001/video/front");
        let csv = walk_csv(&clip);
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Frame 2 untracked: success = 0.
        lines[2] = lines[2].replacen(", 0.98, 1,", ", 0.10, 0,", 1);
        std::fs::write(&csv, lines.join("\n")).unwrap();
        let t = read_openface(&csv).unwrap();
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec![1, 3, 4]);
        // A non-number names the file and the row.
        lines[3] = lines[3].replacen(", 0.98, 1, ", ", 0.98, 1, abc", 1);
        std::fs::write(&csv, lines.join("\n")).unwrap();
        let e = read_openface(&csv).err().unwrap();
        assert_eq!(e.row, Some(4));
        assert!(e.to_string().contains("x_0"), "{e}");
        // An unreadable frame is an error at load with its path.
        lines[3] = lines[3].replacen("abc", "", 1);
        std::fs::write(&csv, lines.join("\n")).unwrap();
        let dir = csv.with_extension("");
        std::fs::write(dir.join("00001.png"), b"not a png").unwrap();
        let mut p = loader_params(&root, "8class");
        p.insert("frames".into(), Value::Int(4));
        let ds = DferDataset::new(Corpus::Mead, &p).unwrap();
        let e = ds.load(&[0], None).err().unwrap();
        assert!(
            e.file.ends_with("00001.png") && e.message.contains("cannot decode"),
            "{e}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    fn walk_csv(dir: &Path) -> PathBuf {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in sorted_dir(&d).unwrap() {
                if e.is_dir() {
                    stack.push(e);
                } else if e.extension().is_some_and(|x| x == "csv") {
                    return e;
                }
            }
        }
        panic!("no csv under {}", dir.display());
    }
}
