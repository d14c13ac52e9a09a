//! CASME II as distributed: `CASME2-coding-20140508.xlsx` (first sheet,
//! header on row 1: Subject, Filename, -, OnsetFrame, ApexFrame,
//! OffsetFrame, -, Action Units, Estimated Emotion) and frame folders
//! `CASME2_RAW_selected/subXX/<Filename>/imgN.jpg` (or the cropped release
//! `Cropped/subXX/<Filename>/reg_imgN.jpg`), N the absolute frame number the
//! label file uses.
//!
//! The documented label defects are corrected from a table that is visible
//! here and in `mer data verify`, and only where the cell is actually
//! defective, so a corrected or generated file passes through untouched.

use super::au::{parse_aus, parse_numeric_au};
use super::synth::Synth;
use calamine::{open_workbook_auto, Data, Reader};
use mer_registry::candle::{Device, Tensor};
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The label file's name as distributed.
pub const LABEL_FILE: &str = "CASME2-coding-20140508.xlsx";

/// MEB's apex fills for rows whose ApexFrame cell is not a number
/// (0-based data rows → apex frame estimated from optical flow).
pub const APEX_FIXES: &[(usize, u32)] = &[
    (29, 279),
    (35, 68),
    (43, 77),
    (45, 81),
    (51, 166),
    (53, 100),
    (60, 78),
    (117, 187),
    (118, 89),
    (126, 80),
    (136, 88),
    (147, 134),
    (155, 231),
    (168, 53),
    (170, 329),
    (177, 111),
    (202, 91),
    (203, 103),
    (234, 98),
    (237, 153),
    (238, 98),
];

/// MEB's offset fix: data row 60's OffsetFrame is wrong; it is 91.
pub const OFFSET_FIXES: &[(usize, u32)] = &[(60, 91)];

/// One labelled clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Spreadsheet row (1-based, as a spreadsheet shows it).
    pub row: usize,
    pub subject: String,
    pub filename: String,
    pub onset: u32,
    pub apex: u32,
    pub offset: u32,
    pub aus: Vec<u32>,
    pub emotion: String,
    /// Frame files, onset..=offset.
    pub frames: Vec<PathBuf>,
}

/// The result of reading a CASME II folder: records, corrections applied,
/// and every problem found (each names the file and row).
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    pub corrections: Vec<String>,
    pub problems: Vec<DataError>,
}

fn cell_text(d: &Data) -> String {
    match d {
        Data::String(s) => s.trim().to_string(),
        Data::Float(f) => format!("{f}"),
        Data::Int(i) => i.to_string(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn cell_u32(d: &Data) -> Option<u32> {
    match d {
        Data::Float(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u32),
        Data::Int(i) if *i >= 0 => Some(*i as u32),
        Data::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads the label file and checks every clip's frames.
pub fn scan(root: &Path, cropped: bool) -> Scan {
    let mut out = Scan::default();
    let label = root.join(LABEL_FILE);
    let lf = label.display().to_string();
    let problem = |row: Option<usize>, message: String| DataError {
        file: lf.clone(),
        row,
        message,
    };
    let mut wb = match open_workbook_auto(&label) {
        Ok(w) => w,
        Err(e) => {
            out.problems
                .push(problem(None, format!("cannot open the label file: {e}")));
            return out;
        }
    };
    let range = match wb.worksheet_range_at(0) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            out.problems
                .push(problem(None, format!("first sheet: {e}")));
            return out;
        }
        None => {
            out.problems
                .push(problem(None, "the workbook has no sheet".into()));
            return out;
        }
    };
    let mut rows = range.rows();
    let Some(header) = rows.next() else {
        out.problems.push(problem(Some(1), "empty sheet".into()));
        return out;
    };
    let names: Vec<String> = header.iter().map(cell_text).collect();
    let col = |want: &str| names.iter().position(|n| n.eq_ignore_ascii_case(want));
    let needed = [
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
    ];
    let mut idx = BTreeMap::new();
    for n in needed {
        match col(n) {
            Some(i) => {
                idx.insert(n, i);
            }
            None => out.problems.push(problem(
                Some(1),
                format!("no `{n}` column (header: {})", names.join(", ")),
            )),
        }
    }
    if idx.len() != needed.len() {
        return out;
    }
    let frames_dir = if cropped {
        root.join("Cropped")
    } else {
        root.join("CASME2_RAW_selected")
    };
    if !frames_dir.is_dir() {
        out.problems.push(DataError {
            file: frames_dir.display().to_string(),
            row: None,
            message: if cropped {
                "no cropped release here; set `cropped = false` to read CASME2_RAW_selected".into()
            } else {
                "no CASME2_RAW_selected folder here".into()
            },
        });
        return out;
    }
    for (i, r) in rows.enumerate() {
        let row = i + 2;
        let get = |n: &str| r.get(idx[n]).cloned().unwrap_or(Data::Empty);
        if r.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        let subject = match get("Subject") {
            Data::Float(f) if f.fract() == 0.0 => format!("sub{:02}", f as i64),
            Data::Int(n) => format!("sub{n:02}"),
            Data::String(s) if s.trim().starts_with("sub") => s.trim().to_string(),
            Data::String(s) => match s.trim().parse::<u32>() {
                Ok(n) => format!("sub{n:02}"),
                Err(_) => {
                    out.problems.push(problem(
                        Some(row),
                        format!("Subject `{s}` is not a subject number"),
                    ));
                    continue;
                }
            },
            other => {
                out.problems.push(problem(
                    Some(row),
                    format!("Subject `{other}` is not a subject number"),
                ));
                continue;
            }
        };
        let filename = cell_text(&get("Filename"));
        let name = format!("{subject}/{filename}");
        let mut onset = cell_u32(&get("OnsetFrame"));
        let mut apex = cell_u32(&get("ApexFrame"));
        let mut offset = cell_u32(&get("OffsetFrame"));
        if apex.is_none() {
            if let Some((_, fix)) = APEX_FIXES.iter().find(|(r, _)| *r == i) {
                out.corrections.push(format!(
                    "row {row} ({name}): ApexFrame `{}` → {fix} (MEB's optical-flow apex table)",
                    cell_text(&get("ApexFrame"))
                ));
                apex = Some(*fix);
            }
        }
        if let (Some(a), Some(f)) = (apex, offset) {
            if f < a {
                if let Some((_, fix)) = OFFSET_FIXES.iter().find(|(r, _)| *r == i) {
                    out.corrections.push(format!(
                        "row {row} ({name}): OffsetFrame {f} → {fix} (MEB's fix)"
                    ));
                    offset = Some(*fix);
                }
            }
        }
        let (Some(on), Some(ap), Some(off)) = (onset.take(), apex, offset) else {
            out.problems.push(problem(
                Some(row),
                format!(
                    "{name}: onset/apex/offset `{}`/`{}`/`{}` are not all frame numbers",
                    cell_text(&get("OnsetFrame")),
                    cell_text(&get("ApexFrame")),
                    cell_text(&get("OffsetFrame"))
                ),
            ));
            continue;
        };
        if !(on <= ap && ap <= off) {
            out.problems.push(problem(
                Some(row),
                format!("{name}: onset {on} ≤ apex {ap} ≤ offset {off} does not hold"),
            ));
            continue;
        }
        let aus = match get("Action Units") {
            Data::Float(f) => parse_numeric_au(f),
            Data::Int(n) => parse_numeric_au(n as f64),
            other => parse_aus(&cell_text(&other)),
        };
        let aus = match aus {
            Ok(a) => {
                let mut v: Vec<u32> = a.iter().map(|c| c.au).collect();
                v.dedup();
                v
            }
            Err(e) => {
                out.problems
                    .push(problem(Some(row), format!("{name}: {e}")));
                continue;
            }
        };
        let dir = frames_dir.join(&subject).join(&filename);
        let prefix = if cropped { "reg_img" } else { "img" };
        let frames: Vec<PathBuf> = (on..=off)
            .map(|n| dir.join(format!("{prefix}{n}.jpg")))
            .collect();
        if let Some(missing) = frames.iter().find(|p| !p.is_file()) {
            out.problems.push(problem(
                Some(row),
                format!(
                    "{name}: frame {} is missing ({} frames expected, onset {on} to offset {off})",
                    missing.display(),
                    frames.len()
                ),
            ));
            continue;
        }
        out.records.push(Record {
            row,
            subject,
            filename,
            onset: on,
            apex: ap,
            offset: off,
            aus,
            emotion: cell_text(&get("Estimated Emotion")).to_lowercase(),
            frames,
        });
    }
    let mut seen = BTreeMap::new();
    for r in &out.records {
        if let Some(first) = seen.insert((r.subject.clone(), r.filename.clone()), r.row) {
            out.problems.push(problem(
                Some(r.row),
                format!("{}/{} repeats row {first}", r.subject, r.filename),
            ));
        }
    }
    out
}

/// The class sets: name → index, in label order.
fn class_set(set: &str) -> Vec<(&'static str, &'static [&'static str])> {
    match set {
        "3class_megc" => vec![
            ("negative", &["disgust", "repression"][..]),
            ("positive", &["happiness"][..]),
            ("surprise", &["surprise"][..]),
        ],
        "7class" => vec![
            ("disgust", &["disgust"][..]),
            ("fear", &["fear"][..]),
            ("happiness", &["happiness"][..]),
            ("others", &["others"][..]),
            ("repression", &["repression"][..]),
            ("sadness", &["sadness"][..]),
            ("surprise", &["surprise"][..]),
        ],
        _ => vec![
            ("disgust", &["disgust"][..]),
            ("happiness", &["happiness"][..]),
            ("others", &["others"][..]),
            ("repression", &["repression"][..]),
            ("surprise", &["surprise"][..]),
        ],
    }
}

/// The `me.casme2` dataset.
pub struct Casme2 {
    records: Vec<(Record, usize)>,
    corrections: Vec<String>,
    classes: Vec<&'static str>,
    excluded: BTreeMap<String, usize>,
    targets: Vec<i64>,
    frames: usize,
    size: [usize; 2],
    color: bool,
    sampling: String,
}

fn p_int(p: &BTreeMap<String, Value>, k: &str, d: i64) -> i64 {
    match p.get(k) {
        Some(Value::Int(i)) => *i,
        _ => d,
    }
}

impl Casme2 {
    pub fn new(p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        let root = match p.get("root") {
            Some(Value::Str(s)) => PathBuf::from(s),
            _ => {
                return Err(BuildError(
                    "`root` is required: the CASME II folder as distributed".into(),
                ))
            }
        };
        let cropped = !matches!(p.get("cropped"), Some(Value::Bool(false)));
        let s = scan(&root, cropped);
        if !s.problems.is_empty() {
            let list: Vec<String> = s.problems.iter().take(5).map(|e| e.to_string()).collect();
            return Err(BuildError(format!(
                "{} problem(s) in {} (`mer data verify {} --dataset me.casme2` lists all):\n  {}",
                s.problems.len(),
                root.display(),
                root.display(),
                list.join("\n  ")
            )));
        }
        let set = match p.get("classes") {
            Some(Value::Str(c)) => c.clone(),
            _ => "5class".into(),
        };
        let table = class_set(&set);
        let mut records = Vec::new();
        let mut excluded = BTreeMap::new();
        for r in s.records {
            match table
                .iter()
                .position(|(_, members)| members.contains(&r.emotion.as_str()))
            {
                Some(c) => records.push((r, c)),
                None => *excluded.entry(r.emotion.clone()).or_insert(0) += 1,
            }
        }
        let size = match p.get("size") {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| {
                    if let Value::Int(i) = v {
                        Some(*i as usize)
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>(),
            _ => vec![64, 64],
        };
        Ok(Casme2 {
            records,
            corrections: s.corrections,
            classes: table.iter().map(|(n, _)| *n).collect(),
            excluded,
            targets: match p.get("aus") {
                Some(Value::List(l)) => l
                    .iter()
                    .filter_map(|v| {
                        if let Value::Int(i) = v {
                            Some(*i)
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => vec![1, 2, 4, 7, 12, 14, 15, 17],
            },
            frames: p_int(p, "frames", 6).max(1) as usize,
            size: [
                size.first().copied().unwrap_or(64).max(1),
                size.get(1).copied().unwrap_or(64).max(1),
            ],
            color: matches!(p.get("color"), Some(Value::Bool(true))),
            sampling: match p.get("sampling") {
                Some(Value::Str(s)) => s.clone(),
                _ => "uniform".into(),
            },
        })
    }

    /// Clips left out by the class set, by emotion (stated, not dropped
    /// silently).
    pub fn excluded(&self) -> &BTreeMap<String, usize> {
        &self.excluded
    }

    /// Frame indices (into the record's frames) for one clip.
    fn pick(&self, r: &Record, aug: Option<&mut SeededRng>) -> Vec<usize> {
        let n = r.frames.len();
        let apex = (r.apex - r.onset) as usize;
        let (lo, hi) = match self.sampling.as_str() {
            "onset_apex" => (0, apex),
            _ => (0, n - 1),
        };
        let k = self.frames;
        let mut out = Vec::with_capacity(k);
        let mut aug = aug.filter(|_| self.sampling == "noisy_uniform");
        for i in 0..k {
            let mut x = if k == 1 {
                hi as f32
            } else {
                lo as f32 + (hi - lo) as f32 * i as f32 / (k - 1) as f32
            };
            if let Some(r) = aug.as_deref_mut() {
                x += r.uniform_range(-0.5, 0.5) * (hi - lo) as f32 / k as f32;
            }
            out.push((x.round().max(lo as f32) as usize).min(hi));
        }
        out
    }
}

impl Dataset for Casme2 {
    fn notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.corrections.clone();
        if !self.excluded.is_empty() {
            let list: Vec<String> = self
                .excluded
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push(format!(
                "outside the class set, left out: {}",
                list.join(", ")
            ));
        }
        out
    }

    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .records
            .iter()
            .map(|(r, c)| SampleMeta {
                id: format!("{}/{}", r.subject, r.filename),
                dataset: String::new(),
                group: r.subject.clone(),
                labels: BTreeMap::from([
                    (
                        "emotion".to_string(),
                        Value::Str(self.classes[*c].to_string()),
                    ),
                    ("row".to_string(), Value::Int(r.row as i64)),
                ]),
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
        let (mut emotion, mut subject, mut aus, mut ids) = (vec![], vec![], vec![], vec![]);
        for &p in positions {
            let (r, c) = self.records.get(p).ok_or_else(|| DataError {
                file: LABEL_FILE.into(),
                row: None,
                message: format!("position {p} is outside the {} clips", self.records.len()),
            })?;
            let mut planes = vec![Vec::with_capacity(t * h * w); ch];
            for fi in self.pick(r, aug.as_deref_mut()) {
                let path = &r.frames[fi];
                let img = image::open(path).map_err(|e| DataError {
                    file: path.display().to_string(),
                    row: Some(r.row),
                    message: format!("cannot decode: {e}"),
                })?;
                let rgb = image::imageops::resize(
                    &img.to_rgb8(),
                    w as u32,
                    h as u32,
                    image::imageops::FilterType::Triangle,
                );
                for px in rgb.pixels() {
                    let [rr, gg, bb] = px.0.map(|v| v as f32 / 255.0);
                    if self.color {
                        planes[0].push(rr);
                        planes[1].push(gg);
                        planes[2].push(bb);
                    } else {
                        planes[0].push(0.299 * rr + 0.587 * gg + 0.114 * bb);
                    }
                }
            }
            for pl in planes {
                video.extend(pl);
            }
            emotion.push(*c as i64);
            subject.push(
                r.subject
                    .trim_start_matches("sub")
                    .parse::<i64>()
                    .unwrap_or(0),
            );
            for a in &self.targets {
                aus.push(if r.aus.contains(&(*a as u32)) {
                    1f32
                } else {
                    0.0
                });
            }
            ids.push(format!("{}/{}", r.subject, r.filename));
        }
        let d = &Device::Cpu;
        let e = |e: mer_registry::candle::Error| DataError {
            file: LABEL_FILE.into(),
            row: None,
            message: e.to_string(),
        };
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
        ports.insert(
            "aus".into(),
            Tensor::from_vec(aus, (b, self.targets.len()), d).map_err(e)?,
        );
        Ok(Batch { ids, ports })
    }

    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        match port {
            "aus" => Some(self.targets.iter().map(|a| format!("AU{a}")).collect()),
            "emotion" => Some(self.classes.iter().map(|c| c.to_string()).collect()),
            _ => None,
        }
    }
}

/// `me.casme2`'s factory.
pub fn factory(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(Casme2::new(p)?))
}

/// `mer data verify ROOT --dataset me.casme2`: samples, subjects, classes,
/// AU frequencies, corrections applied, and every problem with its row.
pub fn verify(root: &Path) -> (String, bool) {
    use std::fmt::Write;
    let s = scan(root, root.join("Cropped").is_dir());
    let mut o = String::new();
    let subjects: std::collections::BTreeSet<&String> =
        s.records.iter().map(|r| &r.subject).collect();
    let _ = writeln!(o, "CASME II at {}", root.display());
    let _ = writeln!(
        o,
        "samples: {}   subjects: {}",
        s.records.len(),
        subjects.len()
    );
    let mut emo: BTreeMap<&str, usize> = BTreeMap::new();
    let mut aus: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &s.records {
        *emo.entry(&r.emotion).or_default() += 1;
        for a in &r.aus {
            *aus.entry(*a).or_default() += 1;
        }
    }
    let _ = writeln!(
        o,
        "emotions: {}",
        emo.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "AUs: {}",
        aus.iter()
            .map(|(k, v)| format!("AU{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(o, "corrections applied: {}", s.corrections.len());
    for c in &s.corrections {
        let _ = writeln!(o, "  {c}");
    }
    let _ = writeln!(o, "problems: {}", s.problems.len());
    for p in &s.problems {
        let _ = writeln!(o, "  {p}");
    }
    (o, s.problems.is_empty())
}

/// Writes generated clips in the CASME II layout: the label workbook and
/// both frame releases (`CASME2_RAW_selected/…/imgN.jpg`,
/// `Cropped/…/reg_imgN.jpg`), `frames_per_clip` frames from onset to
/// offset at absolute frame numbers, AU cells in the forms the real file
/// uses (`4+L10`, numeric cells for single AUs).
pub fn write_layout(
    synth: &Synth,
    root: &Path,
    frames_per_clip: usize,
    seed: u64,
) -> Result<usize, String> {
    use rust_xlsxwriter::Workbook;
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let header = [
        "Subject",
        "Filename",
        "",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "",
        "Action Units",
        "Estimated Emotion",
    ];
    for (c, h) in header.iter().enumerate() {
        ws.write_string(0, c as u16, *h)
            .map_err(|e| e.to_string())?;
    }
    let n = frames_per_clip.max(3);
    for p in 0..synth.len() {
        let Some(super::synth::ClipInfo {
            subject,
            id,
            emotion,
            aus,
            timing,
        }) = synth.clip_info(p)
        else {
            continue;
        };
        let filename = id.split('/').nth(1).unwrap_or(&id).to_string();
        let mut r = SeededRng::derive(seed, &format!("layout/{id}"));
        let onset = 20 + r.below(200) as u32;
        let offset = onset + n as u32 - 1;
        let [o, a, f] = timing;
        let apex = onset + (((a - o) / (f - o)) * (n - 1) as f32).round() as u32;
        let row = (p + 1) as u32;
        let w = |e: rust_xlsxwriter::XlsxError| e.to_string();
        ws.write_number(row, 0, subject as f64).map_err(w)?;
        ws.write_string(row, 1, &filename).map_err(w)?;
        ws.write_number(row, 3, onset as f64).map_err(w)?;
        ws.write_number(row, 4, apex as f64).map_err(w)?;
        ws.write_number(row, 5, offset as f64).map_err(w)?;
        if aus.len() == 1 {
            ws.write_number(row, 7, aus[0] as f64).map_err(w)?;
        } else {
            let cell: Vec<String> = aus
                .iter()
                .map(|a| match r.below(4) {
                    0 => format!("L{a}"),
                    1 => format!("R{a}"),
                    _ => a.to_string(),
                })
                .collect();
            ws.write_string(row, 7, cell.join("+")).map_err(w)?;
        }
        ws.write_string(row, 8, emotion).map_err(w)?;
        let sub = format!("sub{subject:02}");
        for k in 0..n {
            let t = o + (f - o) * k as f32 / (n - 1) as f32;
            let planes = synth.render_at(p, t).ok_or("clip vanished")?;
            let frame = onset + k as u32;
            let img = to_image(&planes, synth.size_hw());
            for (dir, name) in [
                ("CASME2_RAW_selected", format!("img{frame}.jpg")),
                ("Cropped", format!("reg_img{frame}.jpg")),
            ] {
                let d = root.join(dir).join(&sub).join(&filename);
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                img.save(d.join(&name))
                    .map_err(|e| format!("{}: {e}", d.join(&name).display()))?;
            }
        }
    }
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    wb.save(root.join(LABEL_FILE)).map_err(|e| e.to_string())?;
    Ok(synth.len())
}

fn to_image(planes: &[Vec<f32>], [h, w]: [usize; 2]) -> image::RgbImage {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn synth(n: i64) -> Synth {
        let p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(3)),
            ("clips_per_subject", Value::Int(n)),
            ("size", Value::List(vec![Value::Int(32), Value::Int(32)])),
            ("color", Value::Bool(true)),
            ("seed", Value::Int(5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Synth::new(super::super::synth::Flavor::Me, &p).unwrap()
    }

    fn params(root: &Path) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            ("frames".to_string(), Value::Int(3)),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(16), Value::Int(16)]),
            ),
            (
                "aus".to_string(),
                Value::List(vec![Value::Int(4), Value::Int(12)]),
            ),
        ])
    }

    #[test]
    fn generated_layout_reads_back_through_the_real_loader() {
        let root = std::env::temp_dir().join(format!("mer-casme2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = synth(4);
        assert_eq!(write_layout(&s, &root, 8, 1).unwrap(), 12);
        let d = Casme2::new(&params(&root)).unwrap();
        let idx = d.index().unwrap();
        // Every generated clip is either loaded or counted as excluded.
        let excluded: usize = d.excluded().values().sum();
        assert_eq!(idx.len() + excluded, 12);
        assert!(idx.iter().all(|m| m.group.starts_with("sub")));
        let b = d.load(&[0, 1], None).unwrap();
        assert_eq!(b.ports["video"].dims(), &[2, 1, 3, 16, 16]);
        // AU targets agree with the generator's labels.
        let info = s.clip_info(0).unwrap();
        let (id0, aus0) = (info.id, info.aus);
        assert_eq!(b.ids[0], id0);
        let row = b.ports["aus"].to_vec2::<f32>().unwrap()[0].clone();
        assert_eq!(
            row,
            vec![
                aus0.contains(&4) as u8 as f32,
                aus0.contains(&12) as u8 as f32
            ]
        );
        let (report, ok) = verify(&root);
        assert!(ok, "{report}");
        assert!(report.contains("samples: 12"), "{report}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn defects_are_named_by_file_and_row() {
        let root = std::env::temp_dir().join(format!("mer-casme2-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_layout(&synth(2), &root, 5, 1).unwrap();
        // Rewrite the label file with defects: a missing apex on data row
        // 0 (not in the table: a problem), an AU cell `4 or 5`, and a
        // missing frame.
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        let rows: [[&str; 9]; 4] = [
            [
                "Subject",
                "Filename",
                "",
                "OnsetFrame",
                "ApexFrame",
                "OffsetFrame",
                "",
                "Action Units",
                "Estimated Emotion",
            ],
            ["1", "EP01_01", "", "1", "/", "3", "", "4", "others"],
            ["1", "EP02_01", "", "1", "2", "3", "", "4 or 5", "others"],
            ["2", "EP01_01", "", "1", "2", "3", "", "4", "others"],
        ];
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                ws.write_string(r as u32, c as u16, *v).unwrap();
            }
        }
        wb.save(root.join(LABEL_FILE)).unwrap();
        let s = scan(&root, true);
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert_eq!(s.problems[0].row, Some(2));
        assert!(s.problems[0]
            .to_string()
            .contains("CASME2-coding-20140508.xlsx:2"));
        assert!(
            s.problems[0].message.contains("not all frame numbers"),
            "{}",
            s.problems[0]
        );
        assert!(
            s.problems[1].message.contains("AU cell `4 or 5`"),
            "{}",
            s.problems[1]
        );
        assert!(
            s.problems[2].message.contains("reg_img1.jpg is missing"),
            "{}",
            s.problems[2]
        );
        assert!(s.corrections.is_empty(), "row 0 is not in the apex table");
        let e = Casme2::new(&params(&root)).err().unwrap().0;
        assert!(e.contains("mer data verify"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_documented_defect_is_corrected_only_where_the_cell_is_defective() {
        let root = std::env::temp_dir().join(format!("mer-casme2-fix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // 3 subjects x 10 clips: data rows 0..29; row 29 is in the table.
        write_layout(&synth(10), &root, 4, 1).unwrap();
        assert!(
            scan(&root, true).corrections.is_empty(),
            "a clean file is untouched"
        );
        let mut wb = open_workbook_auto(root.join(LABEL_FILE)).unwrap();
        let range = wb.worksheet_range_at(0).unwrap().unwrap();
        let mut out = rust_xlsxwriter::Workbook::new();
        let ws = out.add_worksheet();
        for (r, row) in range.rows().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (r, c) = (r as u32, c as u16);
                match v {
                    _ if r == 30 && c == 4 => ws.write_string(r, c, "/").map(|_| ()),
                    Data::Float(f) => ws.write_number(r, c, *f).map(|_| ()),
                    Data::String(s) => ws.write_string(r, c, s).map(|_| ()),
                    _ => Ok(()),
                }
                .unwrap();
            }
        }
        out.save(root.join(LABEL_FILE)).unwrap();
        let s = scan(&root, true);
        assert_eq!(s.corrections.len(), 1, "{:?}", s.corrections);
        assert!(
            s.corrections[0].starts_with("row 31 ") && s.corrections[0].contains("`/` → 279"),
            "{}",
            s.corrections[0]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_correction_tables_match_the_documented_rows() {
        assert_eq!(APEX_FIXES.len(), 21);
        assert_eq!(APEX_FIXES[0], (29, 279));
        assert_eq!(OFFSET_FIXES, &[(60, 91)]);
    }
}
