//! FERPlus (Barsoum et al. 2016): FER2013's 48×48 grey faces relabelled by
//! ten annotators each, as Microsoft distributes it.
//!
//! * `fer2013.csv` (FER2013's own release): `emotion,pixels,Usage`, where
//!   `pixels` is 2304 space-separated grey values (0–255) of a 48×48 image,
//!   row by row, and `Usage` is `Training`, `PublicTest` or `PrivateTest`.
//!   Its `emotion` column is FER2013's label, which FERPlus replaces: it is
//!   not read.
//! * `fer2013new.csv` (FERPlus's labels): one row per FER2013 row, in the
//!   same order, `Usage,Image name,neutral,happiness,surprise,sadness,anger,
//!   disgust,fear,contempt,unknown,NF`: the ten annotators' votes. An empty
//!   `Image name` marks an image FERPlus dropped (not a face).
//!
//! The two files are read in step, row against row, streamed, so a file
//! that lost or gained a row is caught where it happens rather than
//! pairing every later face with its neighbour's votes.
//!
//! Labels follow FERPlus's `majority` mode (`ferplus.py`, `_process_data`):
//! single votes are removed as outliers, then the most-voted class is the
//! label when it holds more than half of the votes left. Rows without a
//! majority, with an `unknown` or `NF` majority, or without an image name
//! are left out, and so is contempt in the 7-class set; every one is
//! counted, by reason and by Usage, in the dataset's notes (the run log and
//! the report show them) and in `mer data verify`.
//!
//! Splits: `protocol.official` knows only `train` and `test`, so
//! PrivateTest (FERPlus's test set) is the `test` split and Training and
//! PublicTest (FERPlus's validation set, used to pick models and never
//! reported) together are `train`: the side of the split FERPlus's own
//! numbers were chosen on. The `usage` label keeps FER2013's Usage for
//! anyone who wants PublicTest apart. FER2013 publishes no identities: each
//! image is its own group, as RAF-DB's are.

use super::problem_at as err;
use crate::ports::still;
use crate::synth::{layout_params, Flavor, Synth};
use mer_registry::Kind;
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The kind's name.
const KIND: &str = "fer.ferplus";
/// FER2013's pixels and Usage.
const IMAGES: &str = "fer2013.csv";
/// FERPlus's votes.
const LABELS: &str = "fer2013new.csv";
/// FER2013's images are square, this many pixels a side.
const SIDE: usize = 48;
/// Grey values per image.
const PIXELS: usize = SIDE * SIDE;

/// FERPlus's classes, in vote-column order (label = index). The 7-class
/// set is the first seven.
pub const FERPLUS_CLASSES: &[&str] = &[
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
];

/// `fer2013new.csv`'s columns: Usage, the image name, then the ten vote
/// counts (the eight classes, `unknown`, `NF`).
const LABEL_COLUMNS: [&str; 12] = [
    "Usage",
    "Image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
];
/// The vote index of `unknown` (the annotators could not tell).
const UNKNOWN: usize = 8;
/// The vote index of `NF` (not a face).
const NOT_FACE: usize = 9;

/// FER2013's Usage values and the split each is given (see the module
/// documentation for why PublicTest is in `train`).
const USAGES: [(&str, &str); 3] = [
    ("Training", "train"),
    ("PublicTest", "train"),
    ("PrivateTest", "test"),
];

/// FER2013's `emotion` code for each FERPlus class, for the layout writer
/// (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral).
/// FER2013 has no contempt: those faces carry neutral's code. The loader
/// never reads the column.
const FER2013_CODES: [u8; 8] = [6, 3, 5, 4, 0, 1, 2, 6];

/// FERPlus's `majority` label of one row's ten vote counts (in
/// `fer2013new.csv`'s column order from `neutral`), as `ferplus.py` computes it:
/// votes of one are set to zero (a lone annotator is an outlier), then the
/// largest count is the label if it is more than half of what is left.
/// Returns the vote index (0–7 a class, 8 `unknown`, 9 `NF`), or `None`
/// when no count has that majority (ties included, and rows left with no
/// votes at all).
pub fn majority(votes: &[u32; 10]) -> Option<usize> {
    let kept: Vec<u64> = votes
        .iter()
        .map(|&v| if v <= 1 { 0 } else { u64::from(v) })
        .collect();
    let total: u64 = kept.iter().sum();
    // The first largest count, as numpy's argmax takes it (a count above
    // half the total is unique anyway).
    let (best, top) = kept.iter().enumerate().fold(
        (0, 0),
        |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
    );
    (2 * top > total).then_some(best)
}

/// Why a row of `fer2013new.csv` gives no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeftOut {
    /// An empty `Image name`: FERPlus dropped the image.
    Dropped,
    /// The majority is `unknown`.
    Unknown,
    /// The majority is `NF` (not a face).
    NotFace,
    /// No count is more than half of the votes left.
    NoMajority,
    /// Contempt, in the 7-class set.
    Contempt,
}

impl LeftOut {
    /// The reason in words, for the notes.
    fn what(self) -> &'static str {
        match self {
            LeftOut::Dropped => "without an image name (dropped by FERPlus: not a face)",
            LeftOut::Unknown => "with majority `unknown`",
            LeftOut::NotFace => "with majority `NF` (not a face)",
            LeftOut::NoMajority => "with no majority (no class holds more than half of the votes left after removing single votes)",
            LeftOut::Contempt => "contempt (not among the 7 classes)",
        }
    }
}

/// One labelled FERPlus image.
#[derive(Debug, Clone, PartialEq)]
pub struct FerPlusImage {
    /// Line in `fer2013new.csv` (1-based, header included); the same line
    /// of `fer2013.csv` holds the pixels.
    pub row: usize,
    /// FERPlus's image name (`fer0000000.png`), the sample id.
    pub name: String,
    /// FER2013's Usage: `Training`, `PublicTest` or `PrivateTest`.
    pub usage: &'static str,
    /// The split `protocol.official` reads: `train` or `test`.
    pub split: &'static str,
    /// Index into [`FERPLUS_CLASSES`].
    pub class: usize,
    /// The ten vote counts as distributed.
    pub votes: [u32; 10],
}

/// What reading the two files found.
#[derive(Debug, Default)]
pub struct FerPlusScan {
    /// Images kept, in file order.
    pub records: Vec<FerPlusImage>,
    /// The kept images' grey values, 48×48 per record, in record order
    /// (about 80 MB for the whole corpus, held so that loading a batch
    /// parses nothing).
    pub pixels: Vec<u8>,
    /// Rows left out, by reason, counted per Usage (Training, PublicTest,
    /// PrivateTest).
    pub left_out: BTreeMap<LeftOut, [usize; 3]>,
    /// Counted exclusions and the split choice, in words (shown in reports).
    pub notes: Vec<String>,
    /// Defects found, each naming its file and line; any one of them makes
    /// the loader refuse the corpus.
    pub problems: Vec<DataError>,
}

/// Opens one of the two files and reads its header; a file that cannot be
/// opened or has no header is a problem naming it.
fn open(file: &Path) -> Result<(csv::Reader<std::fs::File>, Vec<String>), DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        // Field counts are checked per row, with a message saying which.
        .flexible(true)
        .from_path(file)
        .map_err(|e| {
            err(
                file,
                None,
                format!("cannot read ({e}); FERPlus needs {IMAGES} (FER2013's pixels) and {LABELS} (FERPlus's votes) side by side in `root`"),
            )
        })?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| err(file, Some(1), format!("no header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((rdr, header))
}

/// The positions of the `want` columns in `header` (case aside); a missing
/// one is a problem on the header line.
fn columns<const N: usize>(
    file: &Path,
    header: &[String],
    want: [&str; N],
) -> Result<[usize; N], DataError> {
    let found = want.map(|w| header.iter().position(|h| h.eq_ignore_ascii_case(w)));
    let missing: Vec<&str> = want
        .iter()
        .zip(&found)
        .filter(|(_, c)| c.is_none())
        .map(|(w, _)| *w)
        .collect();
    if !missing.is_empty() {
        return Err(err(
            file,
            Some(1),
            format!(
                "no {} column (header: {})",
                missing.join(", "),
                header.join(",")
            ),
        ));
    }
    Ok(found.map(|c| c.unwrap_or(0)))
}

/// The line a record (or a record's error) starts on, 1-based with the
/// header as line 1; `fallback` when the reader does not say.
fn line_of(r: &csv::Result<csv::StringRecord>, fallback: usize) -> usize {
    let pos = match r {
        Ok(rec) => rec.position(),
        Err(e) => e.position(),
    };
    pos.map_or(fallback, |p| p.line() as usize)
}

/// A Usage value's index into [`USAGES`].
fn usage_index(s: &str) -> Result<usize, String> {
    USAGES
        .iter()
        .position(|(u, _)| *u == s)
        .ok_or_else(|| format!("Usage `{s}` is not Training, PublicTest or PrivateTest"))
}

/// A `pixels` cell: exactly [`PIXELS`] grey values 0–255.
fn parse_pixels(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(PIXELS);
    for (k, v) in s.split_ascii_whitespace().enumerate() {
        match v.parse::<u8>() {
            Ok(g) => out.push(g),
            Err(_) => return Err(format!("pixel {} is `{v}`, not a grey value 0–255", k + 1)),
        }
    }
    if out.len() != PIXELS {
        return Err(format!(
            "{} pixel values, expected {PIXELS} ({SIDE}×{SIDE})",
            out.len()
        ));
    }
    Ok(out)
}

/// One `fer2013.csv` row (`cols`: the `pixels` and `Usage` columns): its
/// Usage index and grey values.
fn image_row(
    rec: &csv::StringRecord,
    cols: &[usize; 2],
    width: usize,
) -> Result<(usize, Vec<u8>), String> {
    if rec.len() != width {
        return Err(format!("{} fields, the header has {width}", rec.len()));
    }
    let get = |k: usize| rec.get(cols[k]).unwrap_or("");
    let usage = usage_index(get(1))?;
    Ok((usage, parse_pixels(get(0))?))
}

/// One `fer2013new.csv` row: its Usage index, image name and votes. The
/// votes of a row FERPlus dropped (empty name) are not read: nothing uses
/// them.
fn label_row(
    rec: &csv::StringRecord,
    cols: &[usize; 12],
    width: usize,
) -> Result<(usize, String, Option<[u32; 10]>), String> {
    if rec.len() != width {
        return Err(format!("{} fields, the header has {width}", rec.len()));
    }
    let get = |k: usize| rec.get(cols[k]).unwrap_or("");
    let usage = usage_index(get(0))?;
    let name = get(1).to_string();
    if name.is_empty() {
        return Ok((usage, name, None));
    }
    let mut votes = [0u32; 10];
    for (k, v) in votes.iter_mut().enumerate() {
        let cell = get(2 + k);
        *v = cell.parse().map_err(|_| {
            format!(
                "the vote count for `{}` is `{cell}`, not a whole number",
                LABEL_COLUMNS[2 + k]
            )
        })?;
    }
    Ok((usage, name, Some(votes)))
}

/// Reads `fer2013.csv` and `fer2013new.csv` under `root` in step and
/// labels each row by FERPlus's majority rule, keeping the first `keep`
/// classes (8, or 7 without contempt).
pub fn scan_ferplus(root: &Path, keep: usize) -> FerPlusScan {
    let mut out = FerPlusScan::default();
    let (images, labels) = (root.join(IMAGES), root.join(LABELS));
    let ((mut ir, ih), (mut lr, lh)) = match (open(&images), open(&labels)) {
        (Ok(i), Ok(l)) => (i, l),
        (i, l) => {
            out.problems.extend(i.err());
            out.problems.extend(l.err());
            return out;
        }
    };
    let (ic, lc) = match (
        columns(&images, &ih, ["pixels", "Usage"]),
        columns(&labels, &lh, LABEL_COLUMNS),
    ) {
        (Ok(i), Ok(l)) => (i, l),
        (i, l) => {
            out.problems.extend(i.err());
            out.problems.extend(l.err());
            return out;
        }
    };
    let mut left_out: BTreeMap<LeftOut, [usize; 3]> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (mut a, mut b) = (ir.records(), lr.records());
    // Rows read from each file so far.
    let mut n = 0usize;
    loop {
        let (ra, rb) = match (a.next(), b.next()) {
            (None, None) => break,
            (Some(ra), Some(rb)) => (ra, rb),
            (Some(ra), None) => {
                let extra = 1 + a.by_ref().count();
                out.problems.push(err(
                    &images,
                    Some(line_of(&ra, n + 2)),
                    format!("this and {} more rows have no row in {LABELS}, which has {n}: FERPlus's labels have one row per FER2013 row, in the same order", extra - 1),
                ));
                break;
            }
            (None, Some(rb)) => {
                let extra = 1 + b.by_ref().count();
                out.problems.push(err(
                    &labels,
                    Some(line_of(&rb, n + 2)),
                    format!("this and {} more rows have no row in {IMAGES}, which has {n}: FERPlus's labels have one row per FER2013 row, in the same order", extra - 1),
                ));
                break;
            }
        };
        n += 1;
        let (la, lb) = (line_of(&ra, n + 1), line_of(&rb, n + 1));
        let ra = ra.map_err(|e| err(&images, Some(la), e.to_string()));
        let rb = rb.map_err(|e| err(&labels, Some(lb), e.to_string()));
        let (ra, rb) = match (ra, rb) {
            (Ok(ra), Ok(rb)) => (ra, rb),
            (ra, rb) => {
                out.problems.extend(ra.err());
                out.problems.extend(rb.err());
                continue;
            }
        };
        let img = image_row(&ra, &ic, ih.len()).map_err(|m| err(&images, Some(la), m));
        let lab = label_row(&rb, &lc, lh.len()).map_err(|m| err(&labels, Some(lb), m));
        let ((usage, px), (lusage, name, votes)) = match (img, lab) {
            (Ok(i), Ok(l)) => (i, l),
            (i, l) => {
                out.problems.extend(i.err());
                out.problems.extend(l.err());
                continue;
            }
        };
        if lusage != usage {
            out.problems.push(err(
                &labels,
                Some(lb),
                format!(
                    "Usage `{}`, but line {la} of {IMAGES} says `{}`: the files must list the same images in the same order",
                    USAGES[lusage].0, USAGES[usage].0
                ),
            ));
            continue;
        }
        let Some(votes) = votes else {
            left_out.entry(LeftOut::Dropped).or_insert([0; 3])[usage] += 1;
            continue;
        };
        if let Some(first) = seen.insert(name.clone(), lb) {
            out.problems.push(err(
                &labels,
                Some(lb),
                format!("`{name}` is listed twice (first on line {first})"),
            ));
            continue;
        }
        let why = match majority(&votes) {
            None => LeftOut::NoMajority,
            Some(UNKNOWN) => LeftOut::Unknown,
            Some(NOT_FACE) => LeftOut::NotFace,
            Some(c) if c >= keep => LeftOut::Contempt,
            Some(class) => {
                out.pixels.extend_from_slice(&px);
                out.records.push(FerPlusImage {
                    row: lb,
                    name,
                    usage: USAGES[usage].0,
                    split: USAGES[usage].1,
                    class,
                    votes,
                });
                continue;
            }
        };
        left_out.entry(why).or_insert([0; 3])[usage] += 1;
    }
    for (why, per) in &left_out {
        let by: Vec<String> = USAGES
            .iter()
            .zip(per)
            .map(|((u, _), k)| format!("{u} {k}"))
            .collect();
        out.notes.push(format!(
            "left out: {} {}; by Usage: {}",
            per.iter().sum::<usize>(),
            why.what(),
            by.join(", ")
        ));
    }
    out.left_out = left_out;
    let public = out
        .records
        .iter()
        .filter(|r| r.usage == "PublicTest")
        .count();
    out.notes.push(format!(
        "{KIND}: FER2013 has no subject ids, so each image is its own group; PublicTest ({public} images, FERPlus's validation set) is in the `train` split (protocol.official has train and test only), told apart by the `usage` label"
    ));
    out
}

/// The `classes` choice as a class count.
fn class_count(set: &str) -> Result<usize, BuildError> {
    match set {
        "8" => Ok(8),
        "7" => Ok(7),
        other => Err(BuildError(format!(
            "`classes` = `{other}`: FERPlus has \"8\" (with contempt) or \"7\""
        ))),
    }
}

/// FERPlus: FER2013's faces, held in memory, with FERPlus's labels.
pub struct FerPlusDataset {
    classes: &'static [&'static str],
    records: Vec<FerPlusImage>,
    pixels: Vec<u8>,
    notes: Vec<String>,
    size: [usize; 2],
    augment: bool,
    images: PathBuf,
    labels: PathBuf,
}

impl FerPlusDataset {
    /// Builds the `fer.ferplus` loader from its parameters (schema defaults
    /// fill the gaps), refusing on any scan problem or when no row keeps a
    /// label.
    pub fn new(p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults(KIND, p);
        let root = match p.get("root") {
            Some(Value::Str(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(BuildError(format!("`{KIND}` needs `root`"))),
        };
        let keep = class_count(super::text(p, "classes")?)?;
        let rule = super::text(p, "labels")?;
        if rule != "majority" {
            return Err(BuildError(format!(
                "`labels` = `{rule}`: FERPlus's `majority` rule is the one implemented"
            )));
        }
        let size = super::size(p)?;
        let augment = super::flag(p, "augment")?;
        let s = scan_ferplus(&root, keep);
        if let Some(e) = super::refusal(&s.problems, &root, KIND) {
            return Err(e);
        }
        let labels = root.join(LABELS);
        if s.records.is_empty() {
            return Err(BuildError(format!(
                "{}: no row keeps a label ({})",
                labels.display(),
                s.notes.join("; ")
            )));
        }
        Ok(FerPlusDataset {
            classes: &FERPLUS_CLASSES[..keep],
            records: s.records,
            pixels: s.pixels,
            notes: s.notes,
            size,
            augment,
            images: root.join(IMAGES),
            labels,
        })
    }
}

impl Dataset for FerPlusDataset {
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
                let mut m =
                    super::fer_layout::still_meta(&r.name, self.classes[r.class], r.split, r.row);
                m.labels
                    .insert("usage".to_string(), Value::Str(r.usage.to_string()));
                m
            })
            .collect())
    }

    fn load(
        &self,
        positions: &[usize],
        mut aug: Option<&mut SeededRng>,
    ) -> Result<Batch, DataError> {
        let [h, w] = self.size;
        let b = positions.len();
        let mut image = Vec::with_capacity(b * 3 * h * w);
        let (mut emotion, mut ids) = (vec![], vec![]);
        for &p in positions {
            let r = self.records.get(p).ok_or_else(|| {
                err(
                    &self.labels,
                    None,
                    format!(
                        "{KIND}: position {p} is outside the {} images",
                        self.records.len()
                    ),
                )
            })?;
            let grey = self
                .pixels
                .get(p * PIXELS..(p + 1) * PIXELS)
                .and_then(|px| image::GrayImage::from_raw(SIDE as u32, SIDE as u32, px.to_vec()))
                .ok_or_else(|| {
                    err(
                        &self.images,
                        Some(r.row),
                        format!("{}: pixels not held", r.name),
                    )
                })?;
            // Grey repeated in three channels: the RGB layout RAF-DB and
            // AffectNet give, so the same models read all three; then
            // RAF-DB's resizing and augmentation.
            let rgb = image::DynamicImage::ImageLuma8(grey).to_rgb8();
            image.extend(super::fer_layout::still_planes(
                &rgb,
                self.size,
                self.augment,
                aug.as_deref_mut(),
            ));
            emotion.push(r.class as i64);
            ids.push(r.name.clone());
        }
        super::fer_layout::still_batch(image, emotion, ids, self.size, &self.labels)
    }
}

/// `fer.ferplus`'s factory.
pub fn ferplus(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(FerPlusDataset::new(p)?))
}

/// `mer data verify ROOT --dataset fer.ferplus [--param classes=7]`:
/// samples per split and Usage, classes, every row left out by reason, and
/// every problem with its file and line.
pub fn verify_ferplus(root: &Path, p: &BTreeMap<String, Value>) -> (String, bool) {
    use std::fmt::Write;
    let p = super::with_defaults(KIND, p);
    let mut o = String::new();
    let _ = writeln!(o, "{KIND} at {}", root.display());
    let keep = match super::text(&p, "classes").and_then(class_count) {
        Ok(k) => k,
        Err(e) => {
            let _ = writeln!(o, "{e}");
            return (o, false);
        }
    };
    let s = scan_ferplus(root, keep);
    let count = |u: &str| s.records.iter().filter(|r| r.usage == u).count();
    let _ = writeln!(
        o,
        "samples: {}   train: {} (Training {}, PublicTest {})   test: {} (PrivateTest)",
        s.records.len(),
        count("Training") + count("PublicTest"),
        count("Training"),
        count("PublicTest"),
        count("PrivateTest")
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &s.records {
        *per.entry(FERPLUS_CLASSES[r.class]).or_default() += 1;
    }
    let list: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        o,
        "emotions ({keep} classes, FERPlus majority vote): {}",
        list.join(", ")
    );
    super::verify_tail(&mut o, &s.notes, &s.problems);
    (o, s.problems.is_empty())
}

/// Ten votes with a clear majority for `class` (6–9 of them), the rest
/// spread at random, single votes included, so the outlier removal has
/// something to remove.
fn clear_votes(class: usize, r: &mut SeededRng) -> [u32; 10] {
    let mut votes = [0u32; 10];
    let top = 6 + r.below(4) as u32;
    votes[class] = top;
    let mut rest = 10 - top;
    while rest > 0 {
        let k = r.below(10);
        if k != class {
            let v = 1 + r.below(rest as usize) as u32;
            votes[k] += v;
            rest -= v;
        }
    }
    votes
}

/// Ten vote counts, zero but for the `(vote index, count)` pairs.
fn votes_of(pairs: &[(usize, u32)]) -> [u32; 10] {
    let mut votes = [0u32; 10];
    for &(k, n) in pairs {
        votes[k] = n;
    }
    votes
}

/// The two files as text, growing a row at a time.
struct Rows {
    images: String,
    labels: String,
    n: usize,
}

impl Rows {
    /// Appends one FER2013 row and its FERPlus row; `named` false leaves the
    /// image name empty, as FERPlus does for the images it dropped.
    fn push(&mut self, code: u8, px: &[u8], usage: &str, named: bool, votes: [u32; 10]) {
        let px: Vec<String> = px.iter().map(|v| v.to_string()).collect();
        self.images
            .push_str(&format!("{code},{},{usage}\n", px.join(" ")));
        let name = if named {
            format!("fer{:07}.png", self.n)
        } else {
            String::new()
        };
        let votes: Vec<String> = votes.iter().map(|v| v.to_string()).collect();
        self.labels
            .push_str(&format!("{usage},{name},{}\n", votes.join(",")));
        self.n += 1;
    }
}

/// A rendered frame as FER2013's grey bytes.
fn grey(planes: &[Vec<f32>]) -> Vec<u8> {
    image::imageops::grayscale(&super::to_image(planes, [SIDE, SIDE])).into_raw()
}

/// Writes generated faces in FERPlus's layout: each clip's apex frame as a
/// 48×48 grey FER2013 row (FER2013's size, whatever `--size` asks), with
/// ten votes giving its class a clear majority. Actors in the first 70%
/// are Training, half of the rest PublicTest, the others PrivateTest, so
/// no identity straddles train and test. After every sixth face one row
/// the loader must leave out follows, in turn: a dropped image (no name),
/// an `unknown` majority, an `NF` majority, and no majority. Returns the
/// rows written, faces and left-out rows together.
pub fn write_ferplus(p: &BTreeMap<String, Value>, root: &Path) -> Result<usize, String> {
    let synth_names = [
        "neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt",
    ];
    let mut params = p.clone();
    params.insert(
        "class_names".into(),
        Value::List(
            synth_names
                .iter()
                .map(|c| Value::Str(c.to_string()))
                .collect(),
        ),
    );
    params.insert("size".into(), Value::List(vec![Value::Int(SIDE as i64); 2]));
    let synth = Synth::new(Flavor::Dfer, &params).map_err(|e| e.0)?;
    let subjects = super::count(p, "subjects").map_err(|e| e.0)?;
    let seed = super::int(p, "seed").map_err(|e| e.0)?.max(0) as u64;
    let train = (subjects * 7 / 10).max(1);
    let public = subjects.saturating_sub(train) / 2;
    let usage_of = |s: usize| {
        if s <= train {
            "Training"
        } else if s <= train + public {
            "PublicTest"
        } else {
            "PrivateTest"
        }
    };
    let mut rows = Rows {
        images: "emotion,pixels,Usage\n".to_string(),
        labels: format!("{}\n", LABEL_COLUMNS.join(",")),
        n: 0,
    };
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let class = synth_names
            .iter()
            .position(|c| *c == info.emotion)
            .ok_or("generated class outside FERPlus")?;
        let usage = usage_of(info.subject);
        let planes = synth.render_at(i, info.timing[1]).ok_or("clip vanished")?;
        let mut r = SeededRng::derive(seed, &format!("ferplus/votes/{i}"));
        rows.push(
            FER2013_CODES[class],
            &grey(&planes),
            usage,
            true,
            clear_votes(class, &mut r),
        );
        if i % 6 != 5 {
            continue;
        }
        // A row the loader must leave out: a neutral-time face for the
        // undecided ones, a textured non-face for the others.
        let face = grey(&synth.render_at(i, 0.0).ok_or("clip vanished")?);
        let noise: Vec<u8> = (0..PIXELS)
            .map(|k| ((((k / SIDE) + (k % SIDE)) * 2) as f32 + r.uniform() * 60.0).min(255.0) as u8)
            .collect();
        match (i / 6) % 4 {
            0 => rows.push(6, &noise, usage, false, votes_of(&[(NOT_FACE, 10)])),
            1 => rows.push(
                6,
                &face,
                usage,
                true,
                votes_of(&[(0, 2), (3, 1), (UNKNOWN, 7)]),
            ),
            2 => rows.push(6, &noise, usage, true, votes_of(&[(0, 2), (NOT_FACE, 8)])),
            _ => rows.push(
                6,
                &face,
                usage,
                true,
                votes_of(&[(0, 4), (3, 4), (4, 1), (2, 1)]),
            ),
        }
    }
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for (name, text) in [(IMAGES, &rows.images), (LABELS, &rows.labels)] {
        let path = root.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(rows.n)
}

// ---- the kind ----------------------------------------------------------------

/// `fer.ferplus`, read, verified and written here.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        still(KIND, "FERPlus (Barsoum et al. 2016): FER2013's `fer2013.csv` (48×48 grey faces, repeated in 3 channels and resized to `size`) with FERPlus's ten-annotator votes `fer2013new.csv`, side by side in `root`. Labels by FERPlus's majority rule (single votes removed; a class needs more than half of the votes left); rows with no majority, an `unknown` or `NF` majority, or no image name (dropped by FERPlus) are left out and counted in the notes. PrivateTest is the `test` split, Training and PublicTest (FERPlus's validation set) the `train` split (protocol.official); the `usage` label keeps FER2013's Usage. No subject ids: each image is its own group. No landmarks port data.")
            .choice("classes", &["8", "7"], Some("8"), "Label set: FERPlus's 8 (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt), or 7 without contempt (its images left out and counted).")
            .choice("labels", &["majority"], Some("majority"), "How ten annotators' votes become one label: FERPlus's `majority` mode.")
            .dataset(ferplus)
            .verify(|_, root, p| verify_ferplus(root, p))
            .write_layout(|_, out, req| write_ferplus(&layout_params(req), out))
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-ferplus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A 48×48 image of grey `base` with pixel (`y`, `x`) at 255, as
    /// fer2013.csv spells it.
    fn pixels(base: u8, bright: Option<(usize, usize)>) -> String {
        (0..PIXELS)
            .map(|k| {
                if bright == Some((k / SIDE, k % SIDE)) {
                    "255".to_string()
                } else {
                    base.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    type Row = (&'static str, &'static str, [u32; 10], String);

    /// Writes both files: one row per `(Usage, image name, votes, pixels)`.
    fn write(root: &Path, rows: &[Row]) {
        let mut a = String::from("emotion,pixels,Usage\n");
        let mut b = format!("{}\n", LABEL_COLUMNS.join(","));
        for (usage, name, votes, px) in rows {
            a.push_str(&format!("0,{px},{usage}\n"));
            let v: Vec<String> = votes.iter().map(|v| v.to_string()).collect();
            b.push_str(&format!("{usage},{name},{}\n", v.join(",")));
        }
        std::fs::write(root.join(IMAGES), a).unwrap();
        std::fs::write(root.join(LABELS), b).unwrap();
    }

    /// One row of every kind; the comment gives its line in both files.
    fn rows() -> Vec<Row> {
        let px = || pixels(20, None);
        vec![
            // 2: happiness, with a bright pixel at row 10, column 37.
            (
                "Training",
                "fer0000000.png",
                [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],
                pixels(20, Some((10, 37))),
            ),
            // 3: dropped by FERPlus.
            ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], px()),
            // 4: majority unknown.
            (
                "Training",
                "fer0000002.png",
                [2, 0, 0, 1, 0, 0, 0, 0, 7, 0],
                px(),
            ),
            // 5: majority NF.
            (
                "PublicTest",
                "fer0000003.png",
                [2, 0, 0, 0, 0, 0, 0, 0, 0, 8],
                px(),
            ),
            // 6: neutral.
            (
                "PublicTest",
                "fer0000004.png",
                [8, 1, 1, 0, 0, 0, 0, 0, 0, 0],
                px(),
            ),
            // 7: a tie, no majority.
            (
                "PrivateTest",
                "fer0000005.png",
                [4, 0, 0, 4, 2, 0, 0, 0, 0, 0],
                px(),
            ),
            // 8: contempt.
            (
                "PrivateTest",
                "fer0000006.png",
                [0, 0, 0, 0, 0, 0, 0, 8, 2, 0],
                px(),
            ),
            // 9: anger, a majority only once the five single votes are removed.
            (
                "PrivateTest",
                "fer0000007.png",
                [0, 0, 0, 0, 5, 1, 1, 1, 1, 1],
                px(),
            ),
        ]
    }

    fn params(root: &Path, extra: &[(&str, Value)]) -> BTreeMap<String, Value> {
        let mut p = BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(48), Value::Int(48)]),
            ),
        ]);
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        p
    }

    #[test]
    fn majority_follows_ferplus_including_outlier_removal() {
        let v = |a: [u32; 10]| majority(&a);
        assert_eq!(v([0, 10, 0, 0, 0, 0, 0, 0, 0, 0]), Some(1));
        assert_eq!(v([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]), Some(0));
        // FERPlus's first row: 4 of the 9 votes left is no majority.
        assert_eq!(v([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]), None);
        // 5 of 10 is not more than half; with the single votes removed,
        // 5 of 5 is.
        assert_eq!(v([5, 0, 0, 0, 1, 1, 1, 1, 1, 0]), Some(0));
        // Ties and exactly half are no majority.
        assert_eq!(v([4, 0, 0, 4, 2, 0, 0, 0, 0, 0]), None);
        assert_eq!(v([5, 0, 0, 5, 0, 0, 0, 0, 0, 0]), None);
        // Single votes only leave nothing: no majority.
        assert_eq!(v([1; 10]), None);
        assert_eq!(v([0; 10]), None);
        // unknown and NF can win too; the loader leaves them out.
        assert_eq!(v([2, 0, 0, 1, 0, 0, 0, 0, 7, 0]), Some(UNKNOWN));
        assert_eq!(v([2, 0, 0, 0, 0, 0, 0, 0, 0, 8]), Some(NOT_FACE));
    }

    #[test]
    fn exclusions_are_counted_by_reason_and_splits_follow_usage() {
        let root = tmp("labels");
        write(&root, &rows());
        let ds = FerPlusDataset::new(&params(&root, &[])).unwrap();
        let index = ds.index().unwrap();
        let got: Vec<(String, Value, Value, Value, Value)> = index
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.labels["emotion"].clone(),
                    s.labels["split"].clone(),
                    s.labels["usage"].clone(),
                    s.labels["row"].clone(),
                )
            })
            .collect();
        let want = |id: &str, e: &str, split: &str, usage: &str, row: i64| {
            (
                id.to_string(),
                Value::Str(e.into()),
                Value::Str(split.into()),
                Value::Str(usage.into()),
                Value::Int(row),
            )
        };
        assert_eq!(
            got,
            vec![
                want("fer0000000.png", "happiness", "train", "Training", 2),
                want("fer0000004.png", "neutral", "train", "PublicTest", 6),
                want("fer0000006.png", "contempt", "test", "PrivateTest", 8),
                want("fer0000007.png", "anger", "test", "PrivateTest", 9),
            ]
        );
        // Each image is its own group.
        assert!(index.iter().all(|s| s.group == s.id));
        assert_eq!(ds.label_names("emotion").unwrap().len(), 8);
        let b = ds.load(&[0, 1, 2, 3], None).unwrap();
        assert_eq!(
            b.ports["emotion"].to_vec1::<i64>().unwrap(),
            vec![1, 0, 7, 4]
        );
        // Every row left out is counted, by reason and Usage.
        let s = scan_ferplus(&root, 8);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(
            s.left_out,
            BTreeMap::from([
                (LeftOut::Dropped, [1, 0, 0]),
                (LeftOut::Unknown, [1, 0, 0]),
                (LeftOut::NotFace, [0, 1, 0]),
                (LeftOut::NoMajority, [0, 0, 1]),
            ])
        );
        let notes = ds.notes().join("\n");
        for want in [
            "left out: 1 without an image name",
            "left out: 1 with majority `unknown`; by Usage: Training 1, PublicTest 0, PrivateTest 0",
            "left out: 1 with majority `NF`",
            "left out: 1 with no majority",
            "PublicTest (1 images",
        ] {
            assert!(notes.contains(want), "{want}: {notes}");
        }
        assert!(!notes.contains("contempt"), "{notes}");
        // 7 classes: contempt is left out and counted too.
        let ds7 =
            FerPlusDataset::new(&params(&root, &[("classes", Value::Str("7".into()))])).unwrap();
        let ids: Vec<String> = ds7.index().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["fer0000000.png", "fer0000004.png", "fer0000007.png"]);
        assert_eq!(ds7.label_names("emotion").unwrap().len(), 7);
        assert_eq!(
            ds7.load(&[2], None).unwrap().ports["emotion"]
                .to_vec1::<i64>()
                .unwrap(),
            vec![4]
        );
        let notes7 = ds7.notes().join("\n");
        assert!(
            notes7.contains("left out: 1 contempt (not among the 7 classes); by Usage: Training 0, PublicTest 0, PrivateTest 1"),
            "{notes7}"
        );
        assert_eq!(
            scan_ferplus(&root, 7).left_out[&LeftOut::Contempt],
            [0, 0, 1]
        );
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn pixels_land_in_the_image_tensor_where_the_file_puts_them() {
        let root = tmp("pixels");
        write(&root, &rows());
        let ds = FerPlusDataset::new(&params(&root, &[])).unwrap();
        let b = ds.load(&[0], None).unwrap();
        assert_eq!(b.ids, ["fer0000000.png"]);
        assert_eq!(b.ports["image"].dims(), &[1, 3, 48, 48]);
        let px: Vec<f32> = b.ports["image"].flatten_all().unwrap().to_vec1().unwrap();
        for c in 0..3 {
            let at = |y: usize, x: usize| px[c * PIXELS + y * SIDE + x];
            assert_eq!(at(10, 37), 1.0, "channel {c}");
            assert_eq!(at(37, 10), 20.0 / 255.0, "channel {c}");
            assert_eq!(at(10, 36), 20.0 / 255.0, "channel {c}");
        }
        assert_eq!(px.iter().filter(|v| **v == 1.0).count(), 3);
        // Resized to `size`; evaluation (no stream) never augments.
        let p = params(
            &root,
            &[("size", Value::List(vec![Value::Int(24), Value::Int(32)]))],
        );
        let ds = FerPlusDataset::new(&p).unwrap();
        let b = ds.load(&[0, 1], None).unwrap();
        assert_eq!(b.ports["image"].dims(), &[2, 3, 24, 32]);
        let again = ds.load(&[0, 1], None).unwrap();
        let flat =
            |b: &Batch| -> Vec<f32> { b.ports["image"].flatten_all().unwrap().to_vec1().unwrap() };
        assert_eq!(flat(&b), flat(&again));
        // Augmentation is seeded: the same stream gives the same pixels.
        let a1 = ds.load(&[0], Some(&mut SeededRng::new(4))).unwrap();
        let a2 = ds.load(&[0], Some(&mut SeededRng::new(4))).unwrap();
        assert_eq!(flat(&a1), flat(&a2));
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn defects_name_file_and_line() {
        let root = tmp("bad");
        let mut r = rows();
        // Line 8 of fer2013.csv loses its last pixel.
        let mut short = pixels(20, None);
        short.truncate(short.rfind(' ').unwrap());
        r[6].3 = short;
        write(&root, &r);
        // Line 6 of fer2013new.csv has a vote that is not a number.
        let labels = root.join(LABELS);
        let t = std::fs::read_to_string(&labels).unwrap();
        std::fs::write(
            &labels,
            t.replace("fer0000004.png,8,1,1", "fer0000004.png,8,x,1"),
        )
        .unwrap();
        let s = scan_ferplus(&root, 8);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("fer2013.csv:8: 2303 pixel values, expected 2304")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("fer2013new.csv:6: the vote count for `happiness` is `x`")),
            "{msgs:#?}"
        );
        let e = FerPlusDataset::new(&params(&root, &[])).err().unwrap();
        assert!(e.0.contains("and 1 more problems"), "{e}");
        // A pixel that is no grey value.
        let mut r = rows();
        r[0].3 = pixels(20, None).replacen("20", "256", 1);
        write(&root, &r);
        let s = scan_ferplus(&root, 8);
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert_eq!(
            (s.problems[0].row, s.problems[0].file.ends_with(IMAGES)),
            (Some(2), true)
        );
        assert!(
            s.problems[0].message.contains("pixel 1 is `256`"),
            "{}",
            s.problems[0]
        );
        // One file longer than the other: named at its first extra row.
        write(&root, &rows());
        let images = root.join(IMAGES);
        let mut t = std::fs::read_to_string(&images).unwrap();
        t.push_str(&format!(
            "0,{},Training\n0,{},Training\n",
            pixels(1, None),
            pixels(2, None)
        ));
        std::fs::write(&images, t).unwrap();
        let s = scan_ferplus(&root, 8);
        let p = &s.problems[..];
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].file.ends_with(IMAGES) && p[0].row == Some(10),
            "{}",
            p[0]
        );
        assert!(
            p[0].message
                .contains("this and 1 more rows have no row in fer2013new.csv, which has 8"),
            "{}",
            p[0]
        );
        write(&root, &rows()[..7]);
        let mut t = std::fs::read_to_string(&labels).unwrap();
        t.push_str("PrivateTest,fer0000007.png,0,0,0,0,5,1,1,1,1,1\n");
        std::fs::write(&labels, t).unwrap();
        let s = scan_ferplus(&root, 8);
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(
            s.problems[0].file.ends_with(LABELS) && s.problems[0].row == Some(9),
            "{}",
            s.problems[0]
        );
        // Rows out of step show as a Usage that disagrees.
        let mut r = rows();
        r.swap(2, 4);
        write(&root, &r);
        let t = std::fs::read_to_string(&images).unwrap();
        let mut lines: Vec<&str> = t.lines().collect();
        lines.swap(3, 5);
        std::fs::write(&images, lines.join("\n") + "\n").unwrap();
        let msgs: Vec<String> = scan_ferplus(&root, 8)
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert!(
            msgs.iter().any(|m| m.contains(
                "fer2013new.csv:4: Usage `PublicTest`, but line 4 of fer2013.csv says `Training`"
            )),
            "{msgs:#?}"
        );
        // A missing file is named; the build refuses with it.
        let lone = tmp("lone");
        std::fs::copy(&images, lone.join(IMAGES)).unwrap();
        let s = scan_ferplus(&lone, 8);
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(
            s.problems[0].file.ends_with(LABELS)
                && s.problems[0].row.is_none()
                && s.problems[0].message.starts_with("cannot read"),
            "{}",
            s.problems[0]
        );
        let e = FerPlusDataset::new(&params(&lone, &[])).err().unwrap();
        assert!(e.0.contains("fer2013new.csv: cannot read"), "{e}");
        std::fs::remove_dir_all(&root).ok();
        std::fs::remove_dir_all(&lone).ok();
    }

    /// `mer data synth --layout ferplus` writes files the loader and the
    /// verifier read: every generated face kept, one row of each left-out
    /// kind, actors' Usage by block.
    #[test]
    fn generated_layout_loads_and_verifies() {
        let root = tmp("synth");
        let p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(6)),
            ("clips_per_subject", Value::Int(4)),
            ("size", Value::List(vec![Value::Int(64), Value::Int(64)])),
            ("color", Value::Bool(true)),
            ("intensity", Value::Float(1.0)),
            ("seed", Value::Int(5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // 24 faces and, after every sixth, one row to leave out.
        assert_eq!(write_ferplus(&p, &root).unwrap(), 28);
        let s = scan_ferplus(&root, 8);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.records.len(), 24);
        for why in [
            LeftOut::Dropped,
            LeftOut::Unknown,
            LeftOut::NotFace,
            LeftOut::NoMajority,
        ] {
            assert_eq!(s.left_out[&why].iter().sum::<usize>(), 1, "{why:?}");
        }
        // Actors 1–4 Training, 5 PublicTest, 6 PrivateTest.
        let usage = |u: &str| s.records.iter().filter(|r| r.usage == u).count();
        assert_eq!(
            (usage("Training"), usage("PublicTest"), usage("PrivateTest")),
            (16, 4, 4)
        );
        let ds = FerPlusDataset::new(&params(&root, &[])).unwrap();
        let b = ds.load(&[0, 23], None).unwrap();
        assert_eq!(b.ports["image"].dims(), &[2, 3, 48, 48]);
        let contempt = s.records.iter().filter(|r| r.class == 7).count();
        assert_eq!(scan_ferplus(&root, 7).records.len(), 24 - contempt);
        let (report, ok) = verify_ferplus(&root, &BTreeMap::new());
        assert!(ok, "{report}");
        assert!(
            report.contains("samples: 24   train: 20 (Training 16, PublicTest 4)   test: 4"),
            "{report}"
        );
        assert!(report.contains("problems: 0"), "{report}");
        std::fs::remove_dir_all(&root).ok();
    }
}
