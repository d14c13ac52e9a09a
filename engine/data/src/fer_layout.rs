//! Still-image expression corpora as distributed.
//!
//! * RAF-DB (basic): `basic/EmoLabel/list_patition_label.txt` (the file
//!   name really is spelled `patition`), one `train_00001.jpg 5` per line,
//!   codes 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger,
//!   7 neutral; aligned faces in `basic/Image/aligned/<stem>_aligned.jpg`.
//!   The official split is the `train_`/`test_` prefix, given as a `split`
//!   label for `protocol.official`.
//! * AffectNet: `Manually_Annotated_file_lists/{training,validation}.csv`
//!   (`subDirectory_filePath, face_x, face_y, face_width, face_height,
//!   facial_landmarks, expression, valence, arousal`), images under
//!   `Manually_Annotated_Images/`. Codes 0 neutral … 6 anger, 7 contempt,
//!   8 none, 9 uncertain, 10 non-face; 7-class keeps 0–6, 8-class 0–7, and
//!   what is left out is counted in the notes. The official validation set
//!   is the test split. Images are whole photos: the loader crops the
//!   annotated face box.

use super::problem_at as err;
use super::synth::Synth;
use crate::ports::still;
use crate::synth::layout_params;
use mer_registry::candle::{Device, Tensor};
use mer_registry::Kind;
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// RAF-DB's classes, in code order (code = index + 1).
pub const RAFDB_CLASSES: &[&str] = &[
    "surprise",
    "fear",
    "disgust",
    "happiness",
    "sadness",
    "anger",
    "neutral",
];
const LABEL_FILE: &str = "basic/EmoLabel/list_patition_label.txt";
const ALIGNED: &str = "basic/Image/aligned";

/// AffectNet's classes, in code order (code = index).
pub const AFFECTNET_CLASSES: &[&str] = &[
    "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt",
];
const AFFECTNET_LISTS: &str = "Manually_Annotated_file_lists";
const AFFECTNET_IMAGES: &str = "Manually_Annotated_Images";
/// Codes 8–10: not an expression.
const AFFECTNET_OTHER: &[&str] = &["none", "uncertain", "non-face"];

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Still {
    /// Line in the label file (1-based).
    pub row: usize,
    /// `train_00001`.
    pub stem: String,
    /// The official split, `train` or `test` (AffectNet's validation list is
    /// its test split), given as the `split` label.
    pub split: &'static str,
    /// Index into the corpus's class list (RAF-DB: code − 1; AffectNet: the
    /// code itself).
    pub class: usize,
    /// The image file, checked to exist during the scan.
    pub image: PathBuf,
    /// The annotated face box `[x, y, w, h]` in pixels, cropped before
    /// anything else; `None` for pre-aligned faces.
    pub face: Option<[u32; 4]>,
}

/// What reading the folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Images kept, in label-file order.
    pub records: Vec<Still>,
    /// Counted exclusions (shown in reports).
    pub notes: Vec<String>,
    /// Defects found, each naming its file and line; any one of them makes the
    /// loader refuse the corpus.
    pub problems: Vec<DataError>,
}

/// Reads RAF-DB's label list and checks every image.
pub fn scan_rafdb(root: &Path) -> Scan {
    let mut out = Scan::default();
    let label = root.join(LABEL_FILE);
    let text = match std::fs::read_to_string(&label) {
        Ok(t) => t,
        Err(e) => {
            out.problems.push(err(
                &label,
                None,
                format!("cannot read the label list ({e}); RAF-DB keeps it at {LABEL_FILE}"),
            ));
            return out;
        }
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let row = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, code] = fields[..] else {
            out.problems.push(err(
                &label,
                Some(row),
                format!("expected `<image> <code>`, found `{line}`"),
            ));
            continue;
        };
        let Some(stem) = name.strip_suffix(".jpg") else {
            out.problems.push(err(
                &label,
                Some(row),
                format!("`{name}` is not a .jpg name"),
            ));
            continue;
        };
        let split = if stem.starts_with("train_") {
            "train"
        } else if stem.starts_with("test_") {
            "test"
        } else {
            out.problems.push(err(
                &label,
                Some(row),
                format!(
                    "`{name}` has neither the train_ nor the test_ prefix that gives the split"
                ),
            ));
            continue;
        };
        let class = match code.parse::<usize>() {
            Ok(c) if (1..=7).contains(&c) => c - 1,
            _ => {
                out.problems.push(err(
                    &label,
                    Some(row),
                    format!("unknown emotion code `{code}` (RAF-DB: 1 surprise … 7 neutral)"),
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert(stem.to_string(), row) {
            out.problems.push(err(
                &label,
                Some(row),
                format!("`{name}` is listed twice (first on line {first})"),
            ));
            continue;
        }
        let image = root.join(ALIGNED).join(format!("{stem}_aligned.jpg"));
        if !image.is_file() {
            out.problems.push(err(
                &label,
                Some(row),
                format!("image {} is missing", image.display()),
            ));
            continue;
        }
        out.records.push(Still {
            row,
            stem: stem.to_string(),
            split,
            class,
            image,
            face: None,
        });
    }
    out
}

/// Reads AffectNet's two annotation lists (`set` = `7class` or `8class`)
/// and checks every image.
pub fn scan_affectnet(root: &Path, set: &str) -> Scan {
    let mut out = Scan::default();
    let keep = if set == "8class" { 8 } else { 7 };
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, split) in [("training.csv", "train"), ("validation.csv", "test")] {
        let file = root.join(AFFECTNET_LISTS).join(name);
        let mut rdr = match csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(&file)
        {
            Ok(r) => r,
            Err(e) => {
                out.problems.push(err(
                    &file,
                    None,
                    format!("cannot read the annotation list ({e}); AffectNet keeps it in {AFFECTNET_LISTS}/"),
                ));
                continue;
            }
        };
        let header: Vec<String> = match rdr.headers() {
            Ok(h) => h.iter().map(str::to_string).collect(),
            Err(e) => {
                out.problems
                    .push(err(&file, Some(1), format!("no header: {e}")));
                continue;
            }
        };
        let want = [
            "subDirectory_filePath",
            "face_x",
            "face_y",
            "face_width",
            "face_height",
            "expression",
        ];
        let cols: Vec<Option<usize>> = want
            .iter()
            .map(|w| header.iter().position(|h| h.eq_ignore_ascii_case(w)))
            .collect();
        let missing: Vec<&str> = want
            .iter()
            .zip(&cols)
            .filter(|(_, c)| c.is_none())
            .map(|(w, _)| *w)
            .collect();
        if !missing.is_empty() {
            out.problems.push(err(
                &file,
                Some(1),
                format!(
                    "no {} column (header: {})",
                    missing.join(", "),
                    header.join(", ")
                ),
            ));
            continue;
        }
        let cols: Vec<usize> = cols.into_iter().flatten().collect();
        for (i, rec) in rdr.records().enumerate() {
            let row = i + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    out.problems.push(err(&file, Some(row), e.to_string()));
                    continue;
                }
            };
            let get = |k: usize| rec.get(cols[k]).unwrap_or("");
            let path = get(0).to_string();
            let code = get(5);
            let class = match code.parse::<usize>() {
                Ok(c) if c < keep => c,
                Ok(c) if c < AFFECTNET_CLASSES.len() => {
                    *left_out
                        .entry(format!("{} (not in {set})", AFFECTNET_CLASSES[c]))
                        .or_default() += 1;
                    continue;
                }
                Ok(c @ 8..=10) => {
                    *left_out
                        .entry(format!(
                            "{} (code {c}, not an expression)",
                            AFFECTNET_OTHER[c - 8]
                        ))
                        .or_default() += 1;
                    continue;
                }
                _ => {
                    out.problems.push(err(
                        &file,
                        Some(row),
                        format!(
                            "unknown expression code `{code}` (AffectNet: 0 neutral … 10 non-face)"
                        ),
                    ));
                    continue;
                }
            };
            let b: Vec<Option<u32>> = (1..5)
                .map(|k| {
                    get(k)
                        .parse::<f64>()
                        .ok()
                        .filter(|v| *v >= 0.0)
                        .map(|v| v as u32)
                })
                .collect();
            let face = match b[..] {
                [Some(x), Some(y), Some(w), Some(h)] if w > 0 && h > 0 => [x, y, w, h],
                _ => {
                    out.problems.push(err(
                        &file,
                        Some(row),
                        format!(
                            "face box `{}, {}, {}, {}` is not four non-negative numbers with a positive size",
                            get(1),
                            get(2),
                            get(3),
                            get(4)
                        ),
                    ));
                    continue;
                }
            };
            let here = format!("{}:{row}", file.display());
            if let Some(first) = seen.insert(path.clone(), here) {
                out.problems.push(err(
                    &file,
                    Some(row),
                    format!("`{path}` is listed twice (first at {first})"),
                ));
                continue;
            }
            let image = root.join(AFFECTNET_IMAGES).join(&path);
            if !image.is_file() {
                out.problems.push(err(
                    &file,
                    Some(row),
                    format!("image {} is missing", image.display()),
                ));
                continue;
            }
            out.records.push(Still {
                row,
                stem: path,
                split,
                class,
                image,
                face: Some(face),
            });
        }
    }
    for (what, n) in left_out {
        out.notes.push(format!("left out: {n} {what}"));
    }
    out
}

/// A still-image corpus: RAF-DB (aligned faces) or AffectNet (face boxes).
pub struct StillDataset {
    kind: &'static str,
    classes: &'static [&'static str],
    records: Vec<Still>,
    notes: Vec<String>,
    size: [usize; 2],
    augment: bool,
    label: PathBuf,
}

impl StillDataset {
    fn from_scan(
        kind: &'static str,
        classes: &'static [&'static str],
        s: Scan,
        root: &Path,
        label: PathBuf,
        p: &BTreeMap<String, Value>,
    ) -> Result<Self, BuildError> {
        if let Some(e) = super::refusal(&s.problems, root, kind) {
            return Err(e);
        }
        if s.records.is_empty() {
            return Err(BuildError(format!(
                "{}: the label list names no images",
                label.display()
            )));
        }
        let size = super::size(p)?;
        Ok(StillDataset {
            kind,
            classes,
            records: s.records,
            notes: s.notes,
            size,
            augment: super::flag(p, "augment")?,
            label,
        })
    }

    fn root(p: &BTreeMap<String, Value>, kind: &str) -> Result<PathBuf, BuildError> {
        match p.get("root") {
            Some(Value::Str(s)) if !s.is_empty() => Ok(PathBuf::from(s)),
            _ => Err(BuildError(format!("`{kind}` needs `root`"))),
        }
    }

    /// Builds the `fer.rafdb` loader from its parameters (schema defaults fill
    /// the gaps), refusing on any scan problem or an empty label list.
    pub fn rafdb(p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults("fer.rafdb", p);
        let root = Self::root(p, "fer.rafdb")?;
        let s = scan_rafdb(&root);
        Self::from_scan(
            "fer.rafdb",
            RAFDB_CLASSES,
            s,
            &root,
            root.join(LABEL_FILE),
            p,
        )
    }

    /// Builds the `fer.affectnet` loader from its parameters: the 7- or 8-class
    /// set per `classes`, refusing on any scan problem or an empty list.
    pub fn affectnet(p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults("fer.affectnet", p);
        let root = Self::root(p, "fer.affectnet")?;
        let set = super::text(p, "classes")?;
        let s = scan_affectnet(&root, set);
        let classes = if set == "8class" {
            AFFECTNET_CLASSES
        } else {
            &AFFECTNET_CLASSES[..7]
        };
        Self::from_scan(
            "fer.affectnet",
            classes,
            s,
            &root,
            root.join(AFFECTNET_LISTS),
            p,
        )
    }
}

impl Dataset for StillDataset {
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
            .map(|r| still_meta(&r.stem, self.classes[r.class], r.split, r.row))
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
                    &self.label,
                    None,
                    format!(
                        "{}: position {p} is outside the {} images",
                        self.kind,
                        self.records.len()
                    ),
                )
            })?;
            let bytes = std::fs::read(&r.image)
                .map_err(|e| err(&r.image, Some(r.row), format!("cannot read: {e}")))?;
            let mut img = super::decode_image(&bytes)
                .map_err(|why| err(&r.image, Some(r.row), why))?
                .to_rgb8();
            if let Some([x, y, fw, fh]) = r.face {
                // The annotated box, clipped to the photo.
                let (x, y) = (x.min(img.width() - 1), y.min(img.height() - 1));
                let (fw, fh) = (
                    fw.min(img.width() - x).max(1),
                    fh.min(img.height() - y).max(1),
                );
                img = image::imageops::crop_imm(&img, x, y, fw, fh).to_image();
            }
            image.extend(still_planes(
                &img,
                self.size,
                self.augment,
                aug.as_deref_mut(),
            ));
            emotion.push(r.class as i64);
            ids.push(r.stem.clone());
        }
        still_batch(image, emotion, ids, self.size, &self.label)
    }
}

/// A still image's index entry: its own group (no still-image corpus
/// publishes identities), its class, split and label-file row.
pub(crate) fn still_meta(id: &str, class: &str, split: &str, row: usize) -> SampleMeta {
    SampleMeta {
        id: id.to_string(),
        dataset: String::new(),
        group: id.to_string(),
        labels: BTreeMap::from([
            ("emotion".to_string(), Value::Str(class.to_string())),
            ("split".to_string(), Value::Str(split.to_string())),
            ("row".to_string(), Value::Int(row as i64)),
        ]),
    }
}

/// One face as three planes `[3, H, W]` in [0, 1], resized to `size`;
/// with `augment` and a stream, training augmentation: a random crop of
/// 90% of each side and a horizontal flip, drawn from the run's seeded
/// stream. Every still-image corpus loads through here, so their faces
/// reach a model alike.
pub(crate) fn still_planes(
    img: &image::RgbImage,
    size: [usize; 2],
    augment: bool,
    aug: Option<&mut SeededRng>,
) -> Vec<f32> {
    let [h, w] = size;
    let (mut x0, mut y0, mut cw, mut ch) = (0, 0, img.width(), img.height());
    let mut flip = false;
    if let (true, Some(rng)) = (augment, aug) {
        cw = (img.width() * 9 / 10).max(1);
        ch = (img.height() * 9 / 10).max(1);
        x0 = rng.below((img.width() - cw + 1) as usize) as u32;
        y0 = rng.below((img.height() - ch + 1) as usize) as u32;
        flip = rng.uniform() < 0.5;
    }
    let crop = image::imageops::crop_imm(img, x0, y0, cw, ch).to_image();
    // Same size in and out is a copy: the pixels are the file's.
    let mut rs = image::imageops::resize(
        &crop,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    if flip {
        rs = image::imageops::flip_horizontal(&rs);
    }
    let mut planes: Vec<Vec<f32>> = (0..3).map(|_| Vec::with_capacity(h * w)).collect();
    for px in rs.pixels() {
        for (c, plane) in planes.iter_mut().enumerate() {
            plane.push(px.0[c] as f32 / 255.0);
        }
    }
    planes.concat()
}

/// A still-image batch: `image` `[B, 3, H, W]` and `emotion` `[B]`; a
/// tensor error names `label` (the corpus's label file).
pub(crate) fn still_batch(
    image: Vec<f32>,
    emotion: Vec<i64>,
    ids: Vec<String>,
    [h, w]: [usize; 2],
    label: &Path,
) -> Result<Batch, DataError> {
    let b = ids.len();
    let d = &Device::Cpu;
    let e = |e: mer_registry::candle::Error| err(label, None, e.to_string());
    let mut ports = BTreeMap::new();
    ports.insert(
        "image".into(),
        Tensor::from_vec(image, (b, 3, h, w), d).map_err(e)?,
    );
    ports.insert(
        "emotion".into(),
        Tensor::from_vec(emotion, b, d).map_err(e)?,
    );
    Ok(Batch { ids, ports })
}

/// `fer.rafdb`'s factory.
pub fn rafdb(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(StillDataset::rafdb(p)?))
}

/// `fer.affectnet`'s factory.
pub fn affectnet(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(StillDataset::affectnet(p)?))
}

/// `mer data verify ROOT --dataset fer.rafdb|fer.affectnet`.
pub fn verify_still(affectnet: bool, root: &Path) -> (String, bool) {
    verify_still_with(affectnet, root, super::decode_cache().as_deref())
}

/// [`verify_still`] with its decode markers in `cache`.
fn verify_still_with(affectnet: bool, root: &Path, cache: Option<&Path>) -> (String, bool) {
    use std::fmt::Write;
    let kind = if affectnet {
        "fer.affectnet"
    } else {
        "fer.rafdb"
    };
    let (mut s, classes) = if affectnet {
        (scan_affectnet(root, "8class"), AFFECTNET_CLASSES)
    } else {
        (scan_rafdb(root), RAFDB_CLASSES)
    };
    let paths: Vec<&Path> = s.records.iter().map(|r| r.image.as_path()).collect();
    let (decoded, bad) = super::check_decodes(&paths, cache);
    let undecodable: Vec<DataError> = bad
        .into_iter()
        .map(|(i, why)| {
            let r = &s.records[i];
            let list = match (affectnet, r.split) {
                (false, _) => root.join(LABEL_FILE),
                (true, "train") => root.join(AFFECTNET_LISTS).join("training.csv"),
                (true, _) => root.join(AFFECTNET_LISTS).join("validation.csv"),
            };
            err(
                &list,
                Some(r.row),
                format!("image {}: {why}", r.image.display()),
            )
        })
        .collect();
    s.problems.extend(undecodable);
    let mut o = String::new();
    let _ = writeln!(o, "{kind} at {}", root.display());
    let train = s.records.iter().filter(|r| r.split == "train").count();
    let _ = writeln!(
        o,
        "samples: {}   train: {train}   test: {}",
        s.records.len(),
        s.records.len() - train
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &s.records {
        *per.entry(classes[r.class]).or_default() += 1;
    }
    let list: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(o, "emotions: {}", list.join(", "));
    let _ = writeln!(o, "{}", decoded.line(cache));
    super::verify_tail(&mut o, &s.notes, &s.problems);
    (o, s.problems.is_empty())
}

/// Writes generated faces in AffectNet's layout: each clip's apex frame
/// pasted into a larger grey photo at a known box, listed with that box;
/// the first 80% of actors in training.csv, the rest in validation.csv.
pub fn write_affectnet(p: &BTreeMap<String, Value>, root: &Path) -> Result<usize, String> {
    let mut params = p.clone();
    let synth_names = [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt",
    ];
    params.insert(
        "class_names".into(),
        Value::List(
            synth_names
                .iter()
                .map(|c| Value::Str(c.to_string()))
                .collect(),
        ),
    );
    let synth = Synth::new(super::synth::Flavor::Dfer, &params).map_err(|e| e.0)?;
    let subjects = super::count(p, "subjects").map_err(|e| e.0)?;
    let train_subjects = ((subjects * 4) / 5).max(1);
    let [h, w] = synth.size_hw();
    let header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n";
    let (mut train, mut test) = (header.to_string(), header.to_string());
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let code = synth_names
            .iter()
            .position(|c| *c == info.emotion)
            .ok_or("generated class outside AffectNet")?;
        let planes = synth.render_at(i, info.timing[1]).ok_or("clip vanished")?;
        let face = super::to_image(&planes, [h, w]);
        // A photo with the face at an offset that varies per image.
        let (x0, y0) = ((i * 7 % 11) as u32, (i * 5 % 13) as u32);
        let mut photo =
            image::RgbImage::from_pixel(w as u32 + 24, h as u32 + 24, image::Rgb([128, 128, 128]));
        image::imageops::overlay(&mut photo, &face, x0 as i64, y0 as i64);
        let rel = format!("{}/{:05}.jpg", info.subject, i + 1);
        let path = root.join(AFFECTNET_IMAGES).join(&rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        photo
            .save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let line = format!("{rel},{x0},{y0},{w},{h},,{code},0.0,0.0\n");
        if info.subject <= train_subjects {
            train.push_str(&line);
        } else {
            test.push_str(&line);
        }
    }
    let dir = root.join(AFFECTNET_LISTS);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in [("training.csv", train), ("validation.csv", test)] {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(synth.len())
}

/// Writes generated faces in RAF-DB's layout: each generated clip's apex
/// frame as an aligned JPEG, actors in the first 80% train, the rest test.
pub fn write_rafdb(p: &BTreeMap<String, Value>, root: &Path) -> Result<usize, String> {
    let mut params = p.clone();
    let synth_names = [
        "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral",
    ];
    params.insert(
        "class_names".into(),
        Value::List(
            synth_names
                .iter()
                .map(|c| Value::Str(c.to_string()))
                .collect(),
        ),
    );
    let synth = Synth::new(super::synth::Flavor::Dfer, &params).map_err(|e| e.0)?;
    let subjects = super::count(p, "subjects").map_err(|e| e.0)?;
    let train_subjects = ((subjects * 4) / 5).max(1);
    let dir = root.join(ALIGNED);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mut lines, mut n_train, mut n_test) = (String::new(), 0, 0);
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let code = synth_names
            .iter()
            .position(|c| *c == info.emotion)
            .ok_or("generated class outside RAF-DB")?
            + 1;
        let stem = if info.subject <= train_subjects {
            n_train += 1;
            format!("train_{n_train:05}")
        } else {
            n_test += 1;
            format!("test_{n_test:04}")
        };
        let planes = synth.render_at(i, info.timing[1]).ok_or("clip vanished")?;
        let img = super::to_image(&planes, synth.size_hw());
        let path = dir.join(format!("{stem}_aligned.jpg"));
        img.save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        lines.push_str(&format!("{stem}.jpg {code}\n"));
    }
    let label = root.join(LABEL_FILE);
    if let Some(d) = label.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(&label, lines).map_err(|e| format!("{}: {e}", label.display()))?;
    Ok(synth.len())
}

// ---- the kinds ---------------------------------------------------------------

/// The still-image corpora this file reads, verifies and writes.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        still("fer.rafdb", "RAF-DB basic: basic/EmoLabel/list_patition_label.txt + basic/Image/aligned/*_aligned.jpg (7 classes); the official train/test split as a `split` label (protocol.official). No landmarks port data: RAF-DB basic ships none in 68 points.")
            .dataset(rafdb)
            .verify(|_, root, _| verify_still(false, root))
            .write_layout(|_, out, req| write_rafdb(&layout_params(req), out))
            .build(),
        still("fer.affectnet", "AffectNet: `Manually_Annotated_file_lists/{training,validation}.csv` + `Manually_Annotated_Images/`; each photo is cropped to its annotated face box. Codes 8–10 (none, uncertain, non-face) are left out and counted; the official validation set is the `test` split (protocol.official).")
            .choice("classes", &["7class", "8class"], Some("7class"), "Label set (8 adds contempt).")
            .dataset(affectnet)
            .verify(|_, root, _| verify_still(true, root))
            .write_layout(|_, out, req| write_affectnet(&layout_params(req), out))
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-fer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn gen(root: &Path) -> usize {
        let p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(5)),
            ("clips_per_subject", Value::Int(4)),
            ("size", Value::List(vec![Value::Int(40), Value::Int(40)])),
            ("color", Value::Bool(true)),
            ("intensity", Value::Float(1.0)),
            ("seed", Value::Int(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_rafdb(&p, root).unwrap()
    }

    #[test]
    fn generated_rafdb_loads_with_the_official_split() {
        let root = tmp("ok");
        assert_eq!(gen(&root), 20);
        let p = BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(24), Value::Int(24)]),
            ),
        ]);
        let ds = StillDataset::rafdb(&p).unwrap();
        let index = ds.index().unwrap();
        let train = index
            .iter()
            .filter(|s| s.labels["split"] == Value::Str("train".into()))
            .count();
        assert_eq!((index.len(), train), (20, 16));
        let b = ds.load(&[0, 19], None).unwrap();
        assert_eq!(b.ports["image"].dims(), &[2, 3, 24, 24]);
        // Augmentation is seeded: the same stream gives the same pixels.
        let a1 = ds.load(&[3], Some(&mut SeededRng::new(9))).unwrap().ports["image"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let a2 = ds.load(&[3], Some(&mut SeededRng::new(9))).unwrap().ports["image"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a1, a2);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn label_list_defects_are_named_by_line() {
        let root = tmp("bad");
        gen(&root);
        let label = root.join(LABEL_FILE);
        let mut text = std::fs::read_to_string(&label).unwrap();
        text.push_str("train_00001.jpg 4\n"); // duplicate
        text.push_str("train_09999.jpg 3\n"); // image missing
        text.push_str("test_0001.jpg 9\n"); // unknown code
        text.push_str("val_0001.jpg 1\n"); // no split prefix
        text.push_str("oops\n"); // malformed
        std::fs::write(&label, text).unwrap();
        std::fs::write(root.join(ALIGNED).join("train_00002_aligned.jpg"), b"no").unwrap();
        let s = scan_rafdb(&root);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        let at = |row: usize, needle: &str| {
            msgs.iter().any(|m| {
                m.contains(&format!("list_patition_label.txt:{row}")) && m.contains(needle)
            })
        };
        assert!(at(21, "listed twice (first on line 1)"), "{msgs:#?}");
        assert!(at(22, "is missing"), "{msgs:#?}");
        assert!(at(23, "unknown emotion code `9`"), "{msgs:#?}");
        assert!(at(24, "neither the train_ nor the test_"), "{msgs:#?}");
        assert!(at(25, "expected `<image> <code>`"), "{msgs:#?}");
        assert_eq!(s.records.len(), 20, "the 20 good lines stay");
        // An unreadable image fails at load with its path and line.
        let fixed = std::fs::read_to_string(&label).unwrap();
        let good: String = fixed.lines().take(20).map(|l| format!("{l}\n")).collect();
        std::fs::write(&label, good).unwrap();
        let p = BTreeMap::from([("root".to_string(), Value::Str(root.display().to_string()))]);
        let ds = StillDataset::rafdb(&p).unwrap();
        let e = ds.load(&[1], None).err().unwrap();
        assert!(
            e.file.ends_with("train_00002_aligned.jpg") && e.row == Some(2),
            "{e}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    /// Verify decodes every image: a zero-byte and a truncated JPEG are
    /// problems at their label line naming the image; a second verify
    /// finds the 18 good ones' markers.
    #[test]
    fn verify_decodes_each_image_by_label_line() {
        let root = tmp("decode");
        gen(&root);
        let s = scan_rafdb(&root);
        let (a, b) = (&s.records[3], &s.records[7]);
        std::fs::write(&a.image, b"").unwrap();
        let bytes = std::fs::read(&b.image).unwrap();
        std::fs::write(&b.image, &bytes[..bytes.len() - 40]).unwrap();
        let cache = root.join("cache");
        let (report, ok) = verify_still_with(false, &root, Some(&cache));
        assert!(!ok && report.contains("problems: 2"), "{report}");
        for r in [a, b] {
            let at = format!(
                "list_patition_label.txt:{}: image {}",
                r.row,
                r.image.display()
            );
            assert!(report.contains(&at), "{at} not in:\n{report}");
        }
        assert!(report.contains("images decoded: 20 ("), "{report}");
        let (again, _) = verify_still_with(false, &root, Some(&cache));
        assert!(
            again.contains("images decoded: 20 (18 unchanged"),
            "{again}"
        );
        std::fs::remove_dir_all(&root).ok();
    }

    fn gen_affectnet(root: &Path) -> usize {
        let p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(5)),
            ("clips_per_subject", Value::Int(4)),
            ("size", Value::List(vec![Value::Int(32), Value::Int(32)])),
            ("color", Value::Bool(true)),
            ("intensity", Value::Float(1.0)),
            ("seed", Value::Int(3)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_affectnet(&p, root).unwrap()
    }

    /// AffectNet as distributed: two lists, whole photos cropped to their
    /// face boxes, non-expression codes counted, validation = test.
    #[test]
    fn affectnet_crops_face_boxes_and_counts_what_it_leaves_out() {
        let root = tmp("affectnet");
        assert_eq!(gen_affectnet(&root), 20);
        let list = root.join(AFFECTNET_LISTS).join("training.csv");
        let t = std::fs::read_to_string(&list).unwrap();
        let cells: Vec<String> = t
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        // A "non-face" row and an "uncertain" one are left out and counted.
        let extra = |code: &str, path: &str| {
            let mut c = cells.clone();
            c[0] = path.into();
            c[6] = code.into();
            format!("{}\n", c.join(","))
        };
        let t = format!("{t}{}{}", extra("10", "x/a.jpg"), extra("9", "x/b.jpg"));
        std::fs::write(&list, t).unwrap();
        let p = BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(16), Value::Int(16)]),
            ),
        ]);
        let ds = StillDataset::affectnet(&p).unwrap();
        let index = ds.index().unwrap();
        let test = index
            .iter()
            .filter(|s| s.labels["split"] == Value::Str("test".into()))
            .count();
        assert_eq!(index.len(), 20 - count_contempt(&root));
        assert_eq!(test, 4, "one actor of five in validation.csv");
        let notes = ds.notes().join("; ");
        assert!(notes.contains("1 non-face (code 10"), "{notes}");
        assert!(notes.contains("1 uncertain (code 9"), "{notes}");
        // The crop: the face box, not the grey border of the photo.
        let b = ds.load(&[0], None).unwrap();
        let px: Vec<f32> = b.ports["image"].flatten_all().unwrap().to_vec1().unwrap();
        let grey = px
            .iter()
            .filter(|v| (**v - 128.0 / 255.0).abs() < 0.01)
            .count();
        assert!(
            grey < px.len() / 10,
            "{grey} of {} pixels are the border",
            px.len()
        );
        std::fs::remove_dir_all(&root).ok();
    }

    /// Generated contempt clips are not in the default 7-class set.
    fn count_contempt(root: &Path) -> usize {
        ["training.csv", "validation.csv"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(root.join(AFFECTNET_LISTS).join(f))
                    .unwrap()
                    .lines()
                    .skip(1)
                    .filter(|l| l.split(',').nth(6) == Some("7"))
                    .count()
            })
            .sum()
    }

    #[test]
    fn affectnet_defects_name_file_and_row() {
        let root = tmp("affectnet-bad");
        gen_affectnet(&root);
        let list = root.join(AFFECTNET_LISTS).join("validation.csv");
        let mut t = std::fs::read_to_string(&list).unwrap();
        let first = t.lines().nth(1).unwrap().to_string();
        let c: Vec<&str> = first.split(',').collect();
        let row = |cells: Vec<&str>| format!("{}\n", cells.join(","));
        t.push_str(&first); // listed twice
        t.push('\n');
        let mut bad = c.clone();
        bad[6] = "12";
        bad[0] = "y/1.jpg";
        t.push_str(&row(bad));
        let mut bad = c.clone();
        bad[3] = "0";
        bad[0] = "y/2.jpg";
        t.push_str(&row(bad));
        let mut bad = c.clone();
        bad[0] = "y/missing.jpg";
        t.push_str(&row(bad));
        std::fs::write(&list, t).unwrap();
        let s = scan_affectnet(&root, "7class");
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "is listed twice",
            "unknown expression code `12`",
            "positive size",
            "y/missing.jpg is missing",
        ] {
            assert!(
                msgs.iter()
                    .any(|m| m.contains(want) && m.contains("validation.csv:")),
                "{want}: {msgs:#?}"
            );
        }
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        std::fs::remove_dir_all(&root).ok();
    }
}
