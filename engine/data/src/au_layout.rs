//! Frame-level AU corpora as distributed.
//!
//! * DISFA: `ActionUnit_Labels/SN001/SN001_au<k>.txt`, one
//!   `frameIdx,intensity` line per frame (intensity 0–5; present at or
//!   above `intensity_threshold`, 2 by convention).
//! * BP4D: `AUCoding/AU_OCC/<Subject>_<Task>.csv`; the header names the
//!   frame column and the AU ids, each row is a frame with 0, 1, or 9
//!   (unknown). A frame with a requested AU coded 9 is left out and counted.
//!
//! Both ship video, not frames: the `frames` pattern says where the
//! extracted images are (`{subject}`, `{task}`, `{frame}` as labelled,
//! `{index}` its 0-based position). The defaults are ME-GraphAU's
//! extraction, whose subject-exclusive 3-fold split both loaders carry as
//! a `fold` label (fold k tests part 4−k).

use super::problem_at as problem;
use crate::ports::au;
use mer_registry::candle::{Device, Tensor};
use mer_registry::Kind;
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// ME-GraphAU's DISFA parts (fold k tests part 4−k).
const DISFA_PARTS: [&[&str]; 3] = [
    &[
        "SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016",
    ],
    &[
        "SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024",
    ],
    &[
        "SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004",
    ],
];

/// ME-GraphAU's BP4D parts (fold k tests part 4−k).
const BP4D_PARTS: [&[&str]; 3] = [
    &[
        "F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016",
        "M014", "F023", "M008",
    ],
    &[
        "M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020",
        "F011", "M013", "M005",
    ],
    &[
        "F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017",
        "M015", "F014",
    ],
];

/// Which corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuCorpus {
    /// DISFA: per-AU intensity files (0–5), thresholded into occurrence; kind
    /// `au.disfa`.
    Disfa,
    /// BP4D: per-sequence occurrence tables (0, 1 or 9 for unknown); kind
    /// `au.bp4d`.
    Bp4d,
}

impl AuCorpus {
    /// The dataset kind name recipes use for this corpus (in messages).
    pub fn kind(self) -> &'static str {
        match self {
            AuCorpus::Disfa => "au.disfa",
            AuCorpus::Bp4d => "au.bp4d",
        }
    }

    /// Where extracted frames are, by default.
    pub fn default_frames(self) -> &'static str {
        match self {
            AuCorpus::Disfa => "img/{subject}/{index}.png",
            AuCorpus::Bp4d => "img/{subject}/{task}/{frame}.jpg",
        }
    }

    fn parts(self) -> &'static [&'static [&'static str]; 3] {
        match self {
            AuCorpus::Disfa => &DISFA_PARTS,
            AuCorpus::Bp4d => &BP4D_PARTS,
        }
    }

    /// The official fold that tests `subject`.
    fn fold(self, subject: &str) -> Option<i64> {
        self.parts()
            .iter()
            .position(|p| p.contains(&subject))
            .map(|j| 3 - j as i64)
    }
}

/// One labelled frame.
#[derive(Debug, Clone)]
pub struct FrameRecord {
    /// Sample id: `<subject>/<frame>` for DISFA, `<subject>/<task>/<frame>` for
    /// BP4D, with the frame number as labelled.
    pub id: String,
    /// Subject code (`SN001`, `F001`), the group that subject-exclusive splits
    /// keep together.
    pub subject: String,
    /// The extracted frame image, resolved from the `frames` pattern; checked
    /// to exist during the scan.
    pub image: PathBuf,
    /// 0/1 per requested AU.
    pub aus: Vec<f32>,
    /// The ME-GraphAU fold (1–3) whose test part holds this subject, kept as
    /// the `fold` label.
    pub fold: i64,
}

/// What reading a corpus found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Frames kept: labelled, with every requested AU known, and with an image
    /// on disk.
    pub records: Vec<FrameRecord>,
    /// Counted exclusions (such as BP4D frames with a requested AU coded 9),
    /// shown in reports.
    pub notes: Vec<String>,
    /// Defects found, each naming its file and line; any one of them makes the
    /// loader refuse the corpus.
    pub problems: Vec<DataError>,
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn frame_path(
    root: &Path,
    pattern: &str,
    subject: &str,
    task: &str,
    frame: u32,
    index: usize,
) -> PathBuf {
    root.join(
        pattern
            .replace("{subject}", subject)
            .replace("{task}", task)
            .replace("{frame}", &frame.to_string())
            .replace("{index}", &index.to_string()),
    )
}

/// The frames of one subject (and task) whose images are missing, as one
/// problem naming the first and the count, with how to extract them.
fn missing_frames(missing: &[PathBuf], total: usize, how: String) -> Option<DataError> {
    let first = missing.first()?;
    Some(problem(
        first,
        None,
        format!(
            "{} of {total} labelled frames have no image here (this is the first); {how}",
            missing.len()
        ),
    ))
}

/// Options shared by both corpora.
pub struct Options<'a> {
    /// The requested AU numbers, in the order of the `aus` label columns.
    pub aus: &'a [u32],
    /// DISFA intensity (0–5) at or above which an AU counts as present; BP4D
    /// codes occurrence directly and ignores it.
    pub threshold: f64,
    /// Where extracted frame images are, relative to the root, with
    /// `{subject}`, `{task}`, `{frame}` and `{index}` placeholders.
    pub frames: &'a str,
    /// Keep every `stride`-th labelled frame of a sequence (0 is read as 1), to
    /// thin out near-duplicate neighbouring frames.
    pub stride: usize,
}

/// Reads DISFA's per-AU intensity files.
pub fn scan_disfa(root: &Path, o: &Options) -> Scan {
    let mut out = Scan::default();
    let labels = root.join("ActionUnit_Labels");
    if !labels.is_dir() {
        out.problems.push(problem(
            &labels,
            None,
            "missing: DISFA keeps its labels in ActionUnit_Labels/SN0xx/".into(),
        ));
        return out;
    }
    for sdir in sorted(&labels).into_iter().filter(|p| p.is_dir()) {
        let subject = sdir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Some(fold) = AuCorpus::Disfa.fold(&subject) else {
            out.problems.push(problem(
                &sdir,
                None,
                format!("subject `{subject}` is in none of the three official parts"),
            ));
            continue;
        };
        // frame → intensity per requested AU.
        let mut per_au: Vec<BTreeMap<u32, u32>> = Vec::new();
        let mut ok = true;
        for au in o.aus {
            let file = sdir.join(format!("{subject}_au{au}.txt"));
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    out.problems.push(problem(
                        &file,
                        None,
                        format!("cannot read AU{au}'s labels: {e}"),
                    ));
                    ok = false;
                    continue;
                }
            };
            let mut m = BTreeMap::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let parsed = line.split_once(',').and_then(|(f, v)| {
                    Some((f.trim().parse::<u32>().ok()?, v.trim().parse::<u32>().ok()?))
                });
                match parsed {
                    Some((f, v)) if v <= 5 => {
                        if m.insert(f, v).is_some() {
                            out.problems.push(problem(
                                &file,
                                Some(i + 1),
                                format!("frame {f} is labelled twice"),
                            ));
                        }
                    }
                    _ => out.problems.push(problem(
                        &file,
                        Some(i + 1),
                        format!("expected `frameIdx,intensity` with intensity 0–5, found `{line}`"),
                    )),
                }
            }
            per_au.push(m);
        }
        if !ok || per_au.is_empty() {
            continue;
        }
        let frames: BTreeSet<u32> = per_au[0].keys().copied().collect();
        for (m, au) in per_au.iter().zip(o.aus).skip(1) {
            let other: BTreeSet<u32> = m.keys().copied().collect();
            if other != frames {
                out.problems.push(problem(
                    &sdir.join(format!("{subject}_au{au}.txt")),
                    None,
                    format!(
                        "labels {} frames, {subject}_au{}.txt {}: the files must cover the same frames",
                        other.len(),
                        o.aus[0],
                        frames.len()
                    ),
                ));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let mut missing = Vec::new();
        let total = frames.len();
        for (index, f) in frames.iter().enumerate().step_by(o.stride.max(1)) {
            // ME-GraphAU's extraction numbers images from 0 for frame 1.
            let image = frame_path(root, o.frames, &subject, "", *f, index);
            if !image.is_file() {
                missing.push(image);
                continue;
            }
            let aus = per_au
                .iter()
                .map(|m| (m.get(f).copied().unwrap_or(0) as f64 >= o.threshold) as u8 as f32)
                .collect();
            out.records.push(FrameRecord {
                id: format!("{subject}/{f}"),
                subject: subject.clone(),
                image,
                aus,
                fold,
            });
        }
        let video = root.join(format!("Videos_LeftCamera/LeftVideo{subject}_comp.avi"));
        if let Some(p) = missing_frames(
            &missing,
            total,
            format!(
                "extract them, e.g. `ffmpeg -i {} -start_number 0 {}`, or set `frames` to where they are",
                video.display(),
                frame_path(root, o.frames, &subject, "", 0, 0)
                    .with_file_name("%d.png")
                    .display()
            ),
        ) {
            out.problems.push(p);
        }
    }
    out
}

/// Reads BP4D's occurrence tables.
pub fn scan_bp4d(root: &Path, o: &Options) -> Scan {
    let mut out = Scan::default();
    let dir = root.join("AUCoding/AU_OCC");
    if !dir.is_dir() {
        out.problems.push(problem(
            &dir,
            None,
            "missing: BP4D keeps its occurrence codes in AUCoding/AU_OCC/<Subject>_<Task>.csv"
                .into(),
        ));
        return out;
    }
    let mut unknown = 0usize;
    for file in sorted(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
    {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let Some((subject, task)) = stem.split_once('_') else {
            out.problems
                .push(problem(&file, None, "not <Subject>_<Task>.csv".into()));
            continue;
        };
        let Some(fold) = AuCorpus::Bp4d.fold(subject) else {
            out.problems.push(problem(
                &file,
                None,
                format!("subject `{subject}` is in none of the three official parts"),
            ));
            continue;
        };
        let mut rdr = match csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .from_path(&file)
        {
            Ok(r) => r,
            Err(e) => {
                out.problems.push(problem(&file, None, e.to_string()));
                continue;
            }
        };
        let mut rows = rdr.records();
        let header: Vec<String> = match rows.next() {
            Some(Ok(h)) => h.iter().map(str::to_string).collect(),
            _ => {
                out.problems
                    .push(problem(&file, Some(1), "no header row".into()));
                continue;
            }
        };
        let cols: Vec<Option<usize>> = o
            .aus
            .iter()
            .map(|au| {
                header
                    .iter()
                    .skip(1)
                    .position(|h| h.parse::<u32>().ok() == Some(*au))
                    .map(|i| i + 1)
            })
            .collect();
        if let Some(k) = cols.iter().position(Option::is_none) {
            out.problems.push(problem(
                &file,
                Some(1),
                format!("no AU{} column (header: {})", o.aus[k], header.join(",")),
            ));
            continue;
        }
        let cols: Vec<usize> = cols.into_iter().flatten().collect();
        let (mut missing, mut total) = (Vec::new(), 0usize);
        for (i, rec) in rows.enumerate() {
            let row = i + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    out.problems.push(problem(&file, Some(row), e.to_string()));
                    continue;
                }
            };
            let Some(frame) = rec
                .get(0)
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
            else {
                out.problems.push(problem(
                    &file,
                    Some(row),
                    format!("frame `{}` is not a frame number", rec.get(0).unwrap_or("")),
                ));
                continue;
            };
            let mut aus = Vec::with_capacity(cols.len());
            let mut bad = None;
            for (c, au) in cols.iter().zip(o.aus) {
                match rec.get(*c).and_then(|v| v.parse::<f64>().ok()) {
                    Some(v) if v == 0.0 || v == 1.0 => aus.push(v as f32),
                    Some(9.0) => bad = bad.or(Some(None)),
                    _ => {
                        bad = Some(Some(format!(
                            "AU{au} is `{}`, not 0, 1 or 9",
                            rec.get(*c).unwrap_or("")
                        )))
                    }
                }
            }
            match bad {
                Some(Some(msg)) => {
                    out.problems.push(problem(&file, Some(row), msg));
                    continue;
                }
                Some(None) => {
                    unknown += 1;
                    continue;
                }
                None => {}
            }
            total += 1;
            if (total - 1) % o.stride.max(1) != 0 {
                continue;
            }
            let frame = frame as u32;
            let image = frame_path(root, o.frames, subject, task, frame, row - 2);
            if !image.is_file() {
                missing.push(image);
                continue;
            }
            out.records.push(FrameRecord {
                id: format!("{subject}/{task}/{frame}"),
                subject: subject.to_string(),
                image,
                aus,
                fold,
            });
        }
        if let Some(p) = missing_frames(
            &missing,
            total,
            "extract the sequence's frames, or set `frames` to where they are".into(),
        ) {
            out.problems.push(p);
        }
    }
    if unknown > 0 {
        out.notes.push(format!(
            "left out: {unknown} frames with a requested AU coded 9 (unknown)"
        ));
    }
    out
}

/// A frame-level AU corpus.
pub struct AuDataset {
    corpus: AuCorpus,
    records: Vec<FrameRecord>,
    notes: Vec<String>,
    aus: Vec<u32>,
    size: [usize; 2],
    subject_ids: Vec<i64>,
}

impl AuDataset {
    /// Builds the loader from a dataset node's parameters (schema defaults fill
    /// the gaps): scans `root`, refusing on any problem or when no labelled
    /// frame is found.
    pub fn new(corpus: AuCorpus, p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults(corpus.kind(), p);
        let root = match p.get("root") {
            Some(Value::Str(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(BuildError(format!("`{}` needs `root`", corpus.kind()))),
        };
        let aus: Vec<u32> = super::ints(p, "aus")?
            .into_iter()
            .map(|a| a.max(0) as u32)
            .collect();
        let o = Options {
            aus: &aus,
            threshold: super::float(p, "intensity_threshold")?,
            frames: super::text(p, "frames")?,
            stride: super::count(p, "stride")?,
        };
        let s = match corpus {
            AuCorpus::Disfa => scan_disfa(&root, &o),
            AuCorpus::Bp4d => scan_bp4d(&root, &o),
        };
        if let Some(e) = super::refusal(&s.problems, &root, corpus.kind()) {
            return Err(e);
        }
        if s.records.is_empty() {
            return Err(BuildError(format!(
                "`{}` found no labelled frames under {}",
                corpus.kind(),
                root.display()
            )));
        }
        let subjects: BTreeSet<&String> = s.records.iter().map(|r| &r.subject).collect();
        let subjects: Vec<&String> = subjects.into_iter().collect();
        let subject_ids = s
            .records
            .iter()
            .map(|r| subjects.binary_search(&&r.subject).unwrap_or(0) as i64)
            .collect();
        Ok(AuDataset {
            corpus,
            subject_ids,
            records: s.records,
            notes: s.notes,
            aus,
            size: super::size(p)?,
        })
    }
}

impl Dataset for AuDataset {
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        (port == "aus").then(|| self.aus.iter().map(|a| format!("AU{a}")).collect())
    }

    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .records
            .iter()
            .map(|r| SampleMeta {
                id: r.id.clone(),
                dataset: String::new(),
                group: r.subject.clone(),
                labels: BTreeMap::from([("fold".to_string(), Value::Int(r.fold))]),
            })
            .collect())
    }

    fn load(&self, positions: &[usize], _aug: Option<&mut SeededRng>) -> Result<Batch, DataError> {
        let [h, w] = self.size;
        let b = positions.len();
        let mut planes: Vec<Vec<f32>> = (0..3).map(|_| Vec::with_capacity(b * h * w)).collect();
        let mut image = Vec::with_capacity(b * 3 * h * w);
        let (mut aus, mut subject, mut ids) = (vec![], vec![], vec![]);
        for &p in positions {
            let r = self.records.get(p).ok_or_else(|| {
                problem(
                    Path::new(self.corpus.kind()),
                    None,
                    format!("position {p} is outside the {} frames", self.records.len()),
                )
            })?;
            for pl in planes.iter_mut() {
                pl.clear();
            }
            super::push_frame(&r.image, None, [h, w], &mut planes)?;
            for pl in &planes {
                image.extend_from_slice(pl);
            }
            aus.extend_from_slice(&r.aus);
            subject.push(self.subject_ids[p]);
            ids.push(r.id.clone());
        }
        let d = &Device::Cpu;
        let e = |e: mer_registry::candle::Error| {
            problem(Path::new(self.corpus.kind()), None, e.to_string())
        };
        let mut ports = BTreeMap::new();
        ports.insert(
            "image".into(),
            Tensor::from_vec(image, (b, 3, h, w), d).map_err(e)?,
        );
        ports.insert(
            "aus".into(),
            Tensor::from_vec(aus, (b, self.aus.len()), d).map_err(e)?,
        );
        ports.insert(
            "subject".into(),
            Tensor::from_vec(subject, b, d).map_err(e)?,
        );
        Ok(Batch { ids, ports })
    }
}

/// `au.disfa`'s factory.
pub fn disfa(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(AuDataset::new(AuCorpus::Disfa, p)?))
}

/// `au.bp4d`'s factory.
pub fn bp4d(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(AuDataset::new(AuCorpus::Bp4d, p)?))
}

/// `mer data verify` for DISFA or BP4D (all AUs of the default set).
pub fn verify(corpus: AuCorpus, root: &Path, aus: &[u32]) -> (String, bool) {
    verify_with(corpus, root, aus, super::decode_cache().as_deref())
}

/// [`verify`] with its decode markers in `cache`.
fn verify_with(corpus: AuCorpus, root: &Path, aus: &[u32], cache: Option<&Path>) -> (String, bool) {
    use std::fmt::Write;
    let o = Options {
        aus,
        threshold: 2.0,
        frames: corpus.default_frames(),
        stride: 1,
    };
    let mut s = match corpus {
        AuCorpus::Disfa => scan_disfa(root, &o),
        AuCorpus::Bp4d => scan_bp4d(root, &o),
    };
    let paths: Vec<&Path> = s.records.iter().map(|r| r.image.as_path()).collect();
    let (decoded, bad) = super::check_decodes(&paths, cache);
    let undecodable: Vec<DataError> = bad
        .into_iter()
        .map(|(i, why)| {
            problem(
                &s.records[i].image,
                None,
                format!("{why} (frame {})", s.records[i].id),
            )
        })
        .collect();
    s.problems.extend(undecodable);
    let mut o = String::new();
    let subjects: BTreeSet<&String> = s.records.iter().map(|r| &r.subject).collect();
    let _ = writeln!(o, "{} at {}", corpus.kind(), root.display());
    let _ = writeln!(
        o,
        "frames: {}   subjects: {}",
        s.records.len(),
        subjects.len()
    );
    let freq: Vec<String> = aus
        .iter()
        .enumerate()
        .map(|(j, a)| {
            let n = s.records.iter().filter(|r| r.aus[j] > 0.5).count();
            format!("AU{a} {n}")
        })
        .collect();
    let _ = writeln!(o, "AU occurrence: {}", freq.join(", "));
    let folds: BTreeSet<i64> = s.records.iter().map(|r| r.fold).collect();
    let _ = writeln!(o, "official folds: {}", folds.len());
    let _ = writeln!(o, "{}", decoded.line(cache));
    super::verify_tail(&mut o, &s.notes, &s.problems);
    (o, s.problems.is_empty())
}

/// `mer data verify` for a corpus of this file: the AUs are the kind's
/// `aus` parameter (its default unless the caller set it).
fn verify_corpus(
    corpus: AuCorpus,
    root: &Path,
    params: &BTreeMap<String, Value>,
) -> (String, bool) {
    let aus: Vec<u32> = match params.get("aus") {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|v| match v {
                Value::Int(a) => u32::try_from(*a).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    verify(corpus, root, &aus)
}

// ---- the kinds ---------------------------------------------------------------

/// The AU corpora this file reads and verifies.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        au("au.disfa", "DISFA (27 subjects, 20 fps): `ActionUnit_Labels/SN0xx/SN0xx_au<k>.txt` intensities (present at ≥ `intensity_threshold`) + extracted frames; ME-GraphAU's subject-exclusive 3-fold split as a `fold` label.", &[1, 2, 4, 6, 9, 12, 25, 26], AuCorpus::Disfa.default_frames())
            .dataset(disfa)
            .verify(|_, root, p| verify_corpus(AuCorpus::Disfa, root, p))
            .build(),
        au("au.bp4d", "BP4D (41 subjects, 25 fps): `AUCoding/AU_OCC/<Subject>_<Task>.csv` occurrences (frames with a requested AU coded 9 are left out and counted) + extracted frames; ME-GraphAU's subject-exclusive 3-fold split as a `fold` label.", &[1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24], AuCorpus::Bp4d.default_frames())
            .dataset(bp4d)
            .verify(|_, root, p| verify_corpus(AuCorpus::Bp4d, root, p))
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-au-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn image(path: &Path, shade: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([shade, shade, shade]))
            .save(path)
            .unwrap();
    }

    /// Two DISFA subjects from different parts, 4 frames, AU1 and AU12.
    fn disfa_tree(root: &Path) {
        for (s, intens) in [("SN001", [0, 2, 5, 1]), ("SN003", [3, 0, 0, 2])] {
            let d = root.join("ActionUnit_Labels").join(s);
            std::fs::create_dir_all(&d).unwrap();
            for au in [1, 12] {
                let lines: String = intens
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{},{}\n", i + 1, if au == 1 { *v } else { 5 - *v }))
                    .collect();
                std::fs::write(d.join(format!("{s}_au{au}.txt")), lines).unwrap();
            }
            for i in 0..4 {
                image(&root.join(format!("img/{s}/{i}.png")), 40 * i as u8);
            }
        }
    }

    fn params(root: &Path, aus: &[i64]) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            (
                "aus".to_string(),
                Value::List(aus.iter().map(|a| Value::Int(*a)).collect()),
            ),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(8), Value::Int(8)]),
            ),
        ])
    }

    #[test]
    fn disfa_thresholds_intensities_and_carries_the_official_folds() {
        let root = tmp("disfa");
        disfa_tree(&root);
        let ds = AuDataset::new(AuCorpus::Disfa, &params(&root, &[1, 12])).unwrap();
        let idx = ds.index().unwrap();
        assert_eq!(idx.len(), 8);
        // SN001 is in part 1 (tested by fold 3), SN003 in part 3 (fold 1).
        assert_eq!(idx[0].labels["fold"], Value::Int(3));
        assert_eq!(idx[4].labels["fold"], Value::Int(1));
        let b = ds.load(&[0, 1, 2, 3], None).unwrap();
        let aus = b.ports["aus"].to_vec2::<f32>().unwrap();
        // AU1 intensities 0 2 5 1 → 0 1 1 0; AU12 5 3 0 4 → 1 1 0 1.
        assert_eq!(
            aus,
            vec![vec![0., 1.], vec![1., 1.], vec![1., 0.], vec![0., 1.]]
        );
        assert_eq!(b.ports["image"].dims(), &[4, 3, 8, 8]);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn disfa_defects_name_file_and_row_and_missing_frames_say_how_to_extract() {
        let root = tmp("disfa-bad");
        disfa_tree(&root);
        let f = root.join("ActionUnit_Labels/SN001/SN001_au1.txt");
        std::fs::write(&f, "1,0\n2,7\n3,x\n4,1\n").unwrap();
        std::fs::remove_file(root.join("img/SN003/2.png")).unwrap();
        std::fs::create_dir_all(root.join("ActionUnit_Labels/SN099")).unwrap();
        let s = scan_disfa(
            &root,
            &Options {
                aus: &[1, 12],
                threshold: 2.0,
                frames: AuCorpus::Disfa.default_frames(),
                stride: 1,
            },
        );
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("SN001_au1.txt:2") && m.contains("intensity 0–5")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("SN001_au1.txt:3")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().any(|m| m.contains("1 of 4 labelled frames have no image") && m.contains("ffmpeg")), "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("`SN099` is in none of the three official parts")),
            "{msgs:#?}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn bp4d_reads_occurrence_tables_and_counts_unknown_codes() {
        let root = tmp("bp4d");
        let d = root.join("AUCoding/AU_OCC");
        std::fs::create_dir_all(&d).unwrap();
        // F001 is in part 1 (fold 3); frame 12 has AU2 unknown (9).
        std::fs::write(
            d.join("F001_T1.csv"),
            "0,1,2,4\n10,1,0,0\n11,0,1,1\n12,1,9,0\n",
        )
        .unwrap();
        for f in [10, 11, 12] {
            image(&root.join(format!("img/F001/T1/{f}.jpg")), 90);
        }
        let ds = AuDataset::new(AuCorpus::Bp4d, &params(&root, &[1, 2])).unwrap();
        let idx = ds.index().unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx[0].id, "F001/T1/10");
        assert_eq!(idx[0].labels["fold"], Value::Int(3));
        assert_eq!(
            ds.notes(),
            vec!["left out: 1 frames with a requested AU coded 9 (unknown)"]
        );
        let aus = ds.load(&[0, 1], None).unwrap().ports["aus"]
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(aus, vec![vec![1., 0.], vec![0., 1.]]);

        // A bad code and a missing AU column are problems by file and row.
        std::fs::write(d.join("F001_T1.csv"), "0,1,2,4\n10,1,3,0\n").unwrap();
        let s = scan_bp4d(
            &root,
            &Options {
                aus: &[1, 2],
                threshold: 2.0,
                frames: AuCorpus::Bp4d.default_frames(),
                stride: 1,
            },
        );
        assert!(
            s.problems[0].to_string().contains("F001_T1.csv:2")
                && s.problems[0].message.contains("AU2 is `3`"),
            "{:?}",
            s.problems
        );
        let s = scan_bp4d(
            &root,
            &Options {
                aus: &[1, 17],
                threshold: 2.0,
                frames: AuCorpus::Bp4d.default_frames(),
                stride: 1,
            },
        );
        assert!(
            s.problems[0].message.contains("no AU17 column"),
            "{:?}",
            s.problems
        );
        std::fs::remove_dir_all(&root).ok();
    }
}
