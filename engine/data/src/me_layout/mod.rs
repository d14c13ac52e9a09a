//! Micro-expression corpora as distributed: a label workbook plus frame
//! folders, described by a [`Layout`] per dataset, read by one loader and
//! written by one generator writer. This file is the shared core (the
//! layout description, the scanner, the dataset, the verifier and the
//! writer); each corpus is its own file beside it (`casme2.rs`, `samm.rs`,
//! `casme3.rs`, `mmew.rs`, `smic.rs`, `dfme.rs`) with its layout, label
//! sets, corrections, loader and kind.
//!
//! * CASME II: `CASME2-coding-20140508.xlsx` (first sheet, header on row 1:
//!   Subject, Filename, -, OnsetFrame, ApexFrame, OffsetFrame, -, Action
//!   Units, Estimated Emotion) and `CASME2_RAW_selected/subXX/<Filename>/imgN.jpg`
//!   or the cropped release `Cropped/subXX/<Filename>/reg_imgN.jpg`.
//! * SAMM: `SAMM_Micro_FACS_Codes_v2.xlsx` (13 rows of free text, header on
//!   row 14) and `SAMM/<subj3>/<Filename>/<subj3>_<frame5>.jpg`.
//! * CAS(ME)^3 part A: `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (Subject
//!   `spNO.1`, Filename `a`, Onset, Apex, Offset, AU, Objective class,
//!   emotion) and `part_A/data/ME_A/spNO.<k>/<letter>/color/<frame>.jpg`.
//!   One video holds several MEs, so a repeated (subject, Filename) is a new
//!   clip, numbered as MEB does (`a`, `a2`, …).
//! * MMEW: `MMEW_Micro_Exp.xlsx` (Subject, Filename, OnsetFrame,
//!   ApexFrame, OffsetFrame, Action Units, Estimated Emotion, remarks) and
//!   `Micro_Expression/<emotion>/<Filename>/<frame>.jpg` (frame file names
//!   unverified: no public loader shows them).
//!
//! Frame numbers are absolute and the label file uses them. The documented
//! label defects are corrected from tables visible here and in `mer data
//! verify`, and only where the cell is actually defective, so a corrected
//! or generated file passes through untouched.

use super::au::{parse_aus, parse_numeric_au};
use super::sampler::{self, ClipFrames, Sampling};
use super::synth::Synth;
use crate::ports::{clip, me, smic_data, ME5, ME_AUS};
use calamine::{open_workbook_auto, Data, Reader};
use mer_registry::candle::{Device, Tensor};
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use mer_registry::{Kind, LayoutRequest};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod casme2;
mod casme3;
mod dfme;
mod mmew;
mod samm;
mod smic;

pub use casme2::{casme2, CASME2, CASME2_APEX_FIXES};
pub use casme3::{casme3, CASME3};
pub use mmew::{mmew, MMEW};
pub use samm::{samm, SAMM};
use smic::SMIC_CODES;
pub use smic::{smic, SMIC};

/// The micro-expression corpora, one file each.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        casme2::kind(),
        samm::kind(),
        smic::kind(),
        casme3::kind(),
        mmew::kind(),
        dfme::kind(),
    ]
}

/// One labelled clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Spreadsheet row (1-based, as a spreadsheet shows it).
    pub row: usize,
    /// Subject folder name (`sub01`, `006`, `spNO.1`), as
    /// [`Layout::subject_dir`] makes it.
    pub subject: String,
    /// The clip's Filename cell (`EP02_01f`); CAS(ME)^3 clips sharing a video
    /// get a number appended (`a2`).
    pub filename: String,
    /// Onset frame number, absolute as the label file gives it.
    pub onset: u32,
    /// Apex frame number, absolute; SMIC annotates none, so its apex is the
    /// middle frame.
    pub apex: u32,
    /// Offset frame number, absolute and inclusive.
    pub offset: u32,
    /// Coded AU numbers, sides and intensities dropped; empty where the corpus
    /// codes none (SMIC).
    pub aus: Vec<u32>,
    /// The emotion as the label file writes it, lower case; the class set maps
    /// it to a class.
    pub emotion: String,
    /// Frame files, onset..=offset.
    pub frames: Vec<PathBuf>,
}

/// A class set: `(class, the label file's emotions in it, lower case)`
/// in label order.
pub type ClassSet = Vec<(&'static str, &'static [&'static str])>;

/// How one corpus is laid out on disk.
pub struct Layout {
    /// The kind name, e.g. `me.casme2`.
    pub dataset: &'static str,
    /// The label workbook, relative to the dataset root; for SMIC, which has
    /// none, its `HS` clip folder.
    pub label_file: &'static str,
    /// Free-text rows before the header row.
    pub header_row: usize,
    /// Column names: subject, filename, onset, apex, offset, AUs, emotion.
    pub cols: [&'static str; 7],
    /// Every header cell in order, for the writer (`""` = unnamed).
    pub header: &'static [&'static str],
    /// Subject folder name from a subject number.
    pub subject_dir: fn(u32) -> String,
    /// `(frames folder, cropped release?)`; the loader picks by `cropped`.
    pub releases: &'static [(&'static str, bool)],
    /// A frame's file name from (subject folder, frame number, cropped).
    pub frame_name: fn(&str, u32, bool) -> String,
    /// Documented fixes by 0-based data row, applied only to defective cells.
    pub apex_fixes: &'static [(usize, u32)],
    /// Documented offset-frame fixes by 0-based data row, applied only to rows
    /// whose frames are unsound.
    pub offset_fixes: &'static [(usize, u32)],
    /// Replacement AU cells by 0-based data row, applied only where the
    /// original cell does not parse.
    pub au_fixes: &'static [(usize, &'static str)],
    /// Class sets: `(set, [(class, emotions in the file, lower case)])`.
    pub class_sets: fn(&str) -> ClassSet,
    /// The label file's spelling of a generated emotion.
    pub emotion_name: fn(&str) -> &'static str,
    /// A clip's file name from (subject number, clip number).
    pub clip_name: fn(u32, usize) -> String,
    /// A clip's folder under the release from (subject folder, Filename,
    /// emotion as written): `sub01/EP02_01`, or MMEW's `happiness/EP…`.
    pub clip_dir: fn(&str, &str, &str) -> String,
    /// Onset fixes, applied only where onset is missing or after the apex.
    pub onset_fixes: &'static [(usize, u32)],
    /// Several MEs share one video (CAS(ME)^3): a repeated (subject,
    /// Filename) is another clip, not a duplicate.
    pub shared_videos: bool,
    /// The writer puts the subject folder's name in the Subject cell
    /// (`spNO.1`) instead of its number.
    pub subject_as_text: bool,
    /// Corpora without a label workbook (SMIC) are read from their folders.
    pub folder_scan: Option<fn(&Layout, &Path) -> Scan>,
}

fn subject_then_file(sub: &str, file: &str, _: &str) -> String {
    format!("{sub}/{file}")
}

/// The result of reading a corpus folder: records, corrections applied,
/// and every problem found (each names the file and row).
#[derive(Debug, Default)]
pub struct Scan {
    /// Clips whose rows parsed and whose frames all exist.
    pub records: Vec<Record>,
    /// Label fixes and conventions applied, one line each, shown in reports and
    /// `mer data verify`.
    pub corrections: Vec<String>,
    /// Defects found, each naming the file and row; the loader refuses on those
    /// in clips its class set reads.
    pub problems: Vec<DataError>,
    /// Each label-file data row's emotion (lower case), so a loader can
    /// tell a problem in a clip its class set leaves out from one in a
    /// clip it reads.
    pub row_emotion: BTreeMap<usize, String>,
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
pub fn scan(layout: &Layout, root: &Path, cropped: bool) -> Scan {
    if let Some(f) = layout.folder_scan {
        return f(layout, root);
    }
    let mut out = Scan::default();
    let label = root.join(layout.label_file);
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
    let mut rows = range.rows().skip(layout.header_row);
    let Some(header) = rows.next() else {
        out.problems
            .push(problem(Some(layout.header_row + 1), "no header row".into()));
        return out;
    };
    let names: Vec<String> = header.iter().map(cell_text).collect();
    let col = |want: &str| names.iter().position(|n| n.eq_ignore_ascii_case(want));
    let needed = layout.cols;
    let mut idx = BTreeMap::new();
    for n in needed {
        match col(n) {
            Some(i) => {
                idx.insert(n, i);
            }
            None => out.problems.push(problem(
                Some(layout.header_row + 1),
                format!("no `{n}` column (header: {})", names.join(", ")),
            )),
        }
    }
    if idx.len() != needed.len() {
        return out;
    }
    let release = layout
        .releases
        .iter()
        .find(|(_, c)| *c == cropped)
        .or(layout.releases.first())
        .map(|(d, _)| *d)
        .unwrap_or(".");
    let frames_dir = root.join(release);
    if !frames_dir.is_dir() {
        let other: Vec<&str> = layout
            .releases
            .iter()
            .filter(|(d, _)| *d != release)
            .map(|(d, _)| *d)
            .collect();
        out.problems.push(DataError {
            file: frames_dir.display().to_string(),
            row: None,
            message: if other.is_empty() {
                format!("no `{release}` frame folder here")
            } else {
                format!(
                    "no `{release}` frame folder here; set `cropped = {}` to read `{}`",
                    !cropped,
                    other.join("`, `")
                )
            },
        });
        return out;
    }
    let [c_subject, c_file, c_onset, c_apex, c_offset, c_aus, c_emotion] = layout.cols;
    for (i, r) in rows.enumerate() {
        let row = i + layout.header_row + 2;
        let get = |n: &str| r.get(idx[n]).cloned().unwrap_or(Data::Empty);
        if r.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        out.row_emotion
            .insert(row, cell_text(&get(c_emotion)).to_lowercase());
        let number = match get(c_subject) {
            Data::Float(f) if f.fract() == 0.0 && f >= 0.0 => Some(f as u32),
            Data::Int(n) if n >= 0 => Some(n as u32),
            // `sub01`, `spNO.1`, `S01`: the number after the prefix.
            Data::String(s) => s
                .trim()
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
                .ok(),
            _ => None,
        };
        let Some(number) = number else {
            out.problems.push(problem(
                Some(row),
                format!(
                    "{c_subject} `{}` is not a subject number",
                    cell_text(&get(c_subject))
                ),
            ));
            continue;
        };
        let subject = (layout.subject_dir)(number);
        let filename = cell_text(&get(c_file));
        let name = format!("{subject}/{filename}");
        let mut onset = cell_u32(&get(c_onset));
        let mut apex = cell_u32(&get(c_apex));
        let mut offset = cell_u32(&get(c_offset));
        let dir = frames_dir.join((layout.clip_dir)(
            &subject,
            &filename,
            &cell_text(&get(c_emotion)),
        ));
        // A row is sound when its frame numbers are in order and name
        // frames that exist; the documented fixes apply to unsound rows
        // only, so a corrected file passes through untouched.
        let sound = |on: Option<u32>, ap: Option<u32>, off: Option<u32>| match (on, ap, off) {
            (Some(o), Some(a), Some(f)) if o <= a && a <= f && f - o < 100_000 => {
                (o..=f).all(|n| {
                    dir.join((layout.frame_name)(&subject, n, cropped))
                        .is_file()
                })
            }
            _ => false,
        };
        if !sound(onset, apex, offset) {
            let fix = |table: &[(usize, u32)]| table.iter().find(|(r, _)| *r == i).map(|(_, v)| *v);
            for (cell, col, table) in [
                (&mut onset, c_onset, layout.onset_fixes),
                (&mut apex, c_apex, layout.apex_fixes),
                (&mut offset, c_offset, layout.offset_fixes),
            ] {
                if let Some(v) = fix(table).filter(|v| *cell != Some(*v)) {
                    out.corrections.push(format!(
                        "row {row} ({name}): {col} `{}` → {v} (MEB's table)",
                        cell_text(&get(col))
                    ));
                    *cell = Some(v);
                }
            }
        }
        let (Some(on), Some(ap), Some(off)) = (onset.take(), apex, offset) else {
            out.problems.push(problem(
                Some(row),
                format!(
                    "{name}: onset/apex/offset `{}`/`{}`/`{}` are not all frame numbers",
                    cell_text(&get(c_onset)),
                    cell_text(&get(c_apex)),
                    cell_text(&get(c_offset))
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
        let mut aus = match get(c_aus) {
            Data::Float(f) => parse_numeric_au(f),
            Data::Int(n) => parse_numeric_au(n as f64),
            other => parse_aus(&cell_text(&other)),
        };
        if aus.is_err() {
            if let Some((_, fix)) = layout.au_fixes.iter().find(|(r, _)| *r == i) {
                out.corrections.push(format!(
                    "row {row} ({name}): {c_aus} `{}` → `{fix}` (MEB's table)",
                    cell_text(&get(c_aus))
                ));
                aus = parse_aus(fix);
            }
        }
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
        let frames: Vec<PathBuf> = (on..=off)
            .map(|n| dir.join((layout.frame_name)(&subject, n, cropped)))
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
            emotion: cell_text(&get(c_emotion)).to_lowercase(),
            frames,
        });
    }
    if layout.shared_videos {
        // MEB's numbering of the MEs of one video: `a`, `a2`, `a3`, …
        let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in &mut out.records {
            let k = count
                .entry((r.subject.clone(), r.filename.clone()))
                .or_default();
            *k += 1;
            if *k > 1 {
                r.filename = format!("{}{}", r.filename, k);
            }
        }
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

/// A micro-expression corpus read through its [`Layout`].
pub struct MeDataset {
    layout: &'static Layout,
    records: Vec<(Record, usize)>,
    corrections: Vec<String>,
    classes: Vec<&'static str>,
    excluded: BTreeMap<String, usize>,
    targets: Vec<i64>,
    frames: usize,
    size: [usize; 2],
    color: bool,
    sampling: Sampling,
    /// Compute the onset→apex TV-L1 `flow` port.
    flow: bool,
    /// Flows already computed, by record (`u` then `v`): the disk cache
    /// spares the TV-L1 across runs, this spares decoding and hashing the
    /// two frames again every epoch.
    flows: Mutex<HashMap<usize, Arc<Vec<f32>>>>,
}

impl MeDataset {
    /// Builds the loader for `layout` from a dataset node's parameters (schema
    /// defaults fill the gaps); problems in clips the class set leaves out are
    /// counted, not fatal.
    pub fn new(layout: &'static Layout, p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        // Tests and `mer data synth` build loaders without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults(layout.dataset, p);
        let root = match p.get("root") {
            Some(Value::Str(s)) => PathBuf::from(s),
            _ => {
                return Err(BuildError(format!(
                    "`root` is required: the {} folder as distributed",
                    layout.dataset
                )))
            }
        };
        // SMIC's kind has no `cropped` (no cropped release to choose).
        let cropped = !p.contains_key("cropped") || super::flag(p, "cropped")?;
        let mut s = scan(layout, &root, cropped);
        let set = super::text(p, "classes")?.to_string();
        let table = (layout.class_sets)(&set);
        let mut excluded = BTreeMap::new();
        // A problem in a row whose emotion the class set leaves out does
        // not stop the run: that clip would not be read anyway. It is
        // counted with the left-out clips and stated in the notes.
        let label = root.join(layout.label_file).display().to_string();
        let left_out = |e: &DataError| {
            let emotion = e
                .row
                .filter(|_| e.file == label)
                .and_then(|r| s.row_emotion.get(&r));
            emotion.filter(|em| !table.iter().any(|(_, m)| m.contains(&em.as_str())))
        };
        let mut blocking = Vec::new();
        let mut set_aside = Vec::new();
        let mut counted = std::collections::BTreeSet::new();
        for e in std::mem::take(&mut s.problems) {
            match left_out(&e) {
                Some(em) => {
                    // One count per row, however many problems it has.
                    if counted.insert(e.row) {
                        *excluded.entry(em.clone()).or_insert(0) += 1;
                    }
                    set_aside.push(e);
                }
                None => blocking.push(e),
            }
        }
        if !blocking.is_empty() {
            let list: Vec<String> = blocking.iter().take(5).map(|e| e.to_string()).collect();
            return Err(BuildError(format!(
                "{} problem(s) in {} (`mer data verify {} --dataset {}` lists all):\n  {}",
                blocking.len(),
                root.display(),
                root.display(),
                layout.dataset,
                list.join("\n  ")
            )));
        }
        let mut corrections = s.corrections;
        corrections.extend(set_aside.iter().map(|e| {
            format!("outside the class set `{set}`, so not read (its problem does not stop the run): {e}")
        }));
        let mut records = Vec::new();
        for r in s.records {
            match table
                .iter()
                .position(|(_, members)| members.contains(&r.emotion.as_str()))
            {
                Some(c) => records.push((r, c)),
                None => *excluded.entry(r.emotion.clone()).or_insert(0) += 1,
            }
        }
        let size = super::size(p)?;
        Ok(MeDataset {
            layout,
            records,
            corrections,
            classes: table.iter().map(|(n, _)| *n).collect(),
            excluded,
            // SMIC's kind has no `aus`: it codes no AUs.
            targets: if p.contains_key("aus") {
                super::ints(p, "aus")?
            } else {
                Vec::new()
            },
            frames: super::count(p, "frames")?,
            size,
            color: super::flag(p, "color")?,
            sampling: Sampling::from_params(p, layout.dataset)?,
            flow: super::flag(p, "flow")?,
            flows: Mutex::new(HashMap::new()),
        })
    }

    /// Clips left out by the class set, by emotion (stated, not dropped
    /// silently).
    pub fn excluded(&self) -> &BTreeMap<String, usize> {
        &self.excluded
    }

    /// TV-L1 flow from the onset to the apex frame of record `p`,
    /// grayscale at `[h, w]`.
    fn onset_apex_flow(
        &self,
        p: usize,
        r: &Record,
        [h, w]: [usize; 2],
    ) -> Result<Arc<Vec<f32>>, DataError> {
        if let Some(f) = self.flows.lock().unwrap_or_else(|e| e.into_inner()).get(&p) {
            return Ok(f.clone());
        }
        let apex = ((r.apex - r.onset) as usize).min(r.frames.len() - 1);
        let mut g = [
            vec![Vec::with_capacity(h * w)],
            vec![Vec::with_capacity(h * w)],
        ];
        super::push_frame(&r.frames[0], Some(r.row), [h, w], &mut g[0])?;
        super::push_frame(&r.frames[apex], Some(r.row), [h, w], &mut g[1])?;
        let [a, b] = g.map(|mut planes| super::flow::Gray::new(w, h, planes.remove(0)));
        let f = super::flow::cached_flow(&super::flow::TvL1::default(), &a, &b);
        let uv = Arc::new([f.u, f.v].concat());
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p, uv.clone());
        Ok(uv)
    }

    /// Frame indices (into the record's frames) for one read of clip
    /// `p` (a position in [`Dataset::index`]'s order), from the shared
    /// sampler; `None` past the end.
    #[cfg(test)]
    pub(crate) fn picks(&self, p: usize, aug: Option<&mut SeededRng>) -> Option<Vec<usize>> {
        let (r, _) = self.records.get(p)?;
        Some(self.pick(r, aug))
    }

    fn pick(&self, r: &Record, aug: Option<&mut SeededRng>) -> Vec<usize> {
        // The frames on disk run from onset to offset.
        let clip = ClipFrames::onset_to_offset(r.frames.len(), (r.apex - r.onset) as usize);
        sampler::pick(&clip, self.frames, self.sampling, aug)
    }
}

impl Dataset for MeDataset {
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
        let mut flow: Vec<f32> = Vec::new();
        for &p in positions {
            let (r, c) = self.records.get(p).ok_or_else(|| DataError {
                file: self.layout.label_file.into(),
                row: None,
                message: format!("position {p} is outside the {} clips", self.records.len()),
            })?;
            let mut planes: Vec<Vec<f32>> =
                (0..ch).map(|_| Vec::with_capacity(t * h * w)).collect();
            for fi in self.pick(r, aug.as_deref_mut()) {
                super::push_frame(&r.frames[fi], Some(r.row), [h, w], &mut planes)?;
            }
            for pl in planes {
                video.extend(pl);
            }
            if self.flow {
                flow.extend(self.onset_apex_flow(p, r, [h, w])?.iter());
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
            file: self.layout.label_file.into(),
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
        if self.flow {
            ports.insert(
                "flow".into(),
                Tensor::from_vec(flow, (b, 2, h, w), d).map_err(e)?,
            );
        }
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

/// `mer data verify ROOT --dataset D`: samples, subjects, emotions, AU
/// frequencies, corrections applied, and every problem with its row,
/// including every frame that does not decode.
pub fn verify(layout: &Layout, root: &Path) -> (String, bool) {
    verify_with(layout, root, super::decode_cache().as_deref())
}

/// [`verify`] with its decode markers in `cache`.
fn verify_with(layout: &Layout, root: &Path, cache: Option<&Path>) -> (String, bool) {
    use std::fmt::Write;
    // The cropped release when the folder has it, else the full frames.
    let cropped = layout
        .releases
        .iter()
        .any(|(d, c)| *c && root.join(d).is_dir());
    let mut s = scan(layout, root, cropped);
    // Every frame onset..=offset: a recipe's sampling may read any of them.
    let frames: Vec<(&Record, &Path)> = s
        .records
        .iter()
        .flat_map(|r| r.frames.iter().map(move |f| (r, f.as_path())))
        .collect();
    let paths: Vec<&Path> = frames.iter().map(|(_, f)| *f).collect();
    let (decoded, bad) = super::check_decodes(&paths, cache);
    let label = root.join(layout.label_file);
    let undecodable: Vec<DataError> = bad
        .into_iter()
        .map(|(i, why)| {
            let (r, f) = frames[i];
            let file = if layout.folder_scan.is_some() {
                f
            } else {
                &label
            };
            let row = (layout.folder_scan.is_none()).then_some(r.row);
            super::problem_at(
                file,
                row,
                format!("{}/{}: frame {}: {why}", r.subject, r.filename, f.display()),
            )
        })
        .collect();
    s.problems.extend(undecodable);
    let mut o = String::new();
    let subjects: std::collections::BTreeSet<&String> =
        s.records.iter().map(|r| &r.subject).collect();
    let _ = writeln!(o, "{} at {}", layout.dataset, root.display());
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
    let list = |v: Vec<String>| v.join(", ");
    let _ = writeln!(
        o,
        "emotions: {}",
        list(emo.iter().map(|(k, v)| format!("{k} {v}")).collect())
    );
    let _ = writeln!(
        o,
        "AUs: {}",
        list(aus.iter().map(|(k, v)| format!("AU{k} {v}")).collect())
    );
    let _ = writeln!(o, "{}", decoded.line(cache));
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

/// Writes generated clips in `layout`: the label workbook (with the free
/// text above the header where the real file has it) and every frame
/// release, `frames_per_clip` frames from onset to offset at absolute frame
/// numbers, AU cells in the forms the real files use (`4+L10`, `R12 + R15`,
/// numeric cells for single AUs).
pub fn write_layout(
    layout: &Layout,
    synth: &Synth,
    root: &Path,
    frames_per_clip: usize,
    seed: u64,
) -> Result<usize, String> {
    use rust_xlsxwriter::Workbook;
    let w = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for r in 0..layout.header_row {
        let text = if r == 0 {
            format!(
                "{} (generated by mer data synth; not the real corpus)",
                layout.label_file
            )
        } else {
            String::new()
        };
        ws.write_string(r as u32, 0, text).map_err(w)?;
    }
    let hr = layout.header_row as u32;
    for (c, h) in layout.header.iter().enumerate() {
        ws.write_string(hr, c as u16, *h).map_err(w)?;
    }
    let col = |name: &str| layout.header.iter().position(|h| *h == name).unwrap_or(0) as u16;
    let [c_subject, c_file, c_onset, c_apex, c_offset, c_aus, c_emotion] = layout.cols.map(col);
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
        // SAMM numbers its subjects from 006.
        let number = if layout.header_row > 0 {
            subject as u32 + 5
        } else {
            subject as u32
        };
        let clip = id
            .split('/')
            .nth(1)
            .and_then(|c| c.get(2..4))
            .and_then(|k| k.parse().ok())
            .unwrap_or(p + 1);
        let filename = if layout.folder_scan.is_some() {
            // SMIC names its clips s<N>_<po|ne|sur>_<kk>.
            let e = (layout.emotion_name)(emotion);
            let code = SMIC_CODES
                .iter()
                .find(|(n, _)| *n == e)
                .map_or("ne", |(_, c)| c);
            format!("s{number}_{code}_{}", (layout.clip_name)(number, clip))
        } else {
            (layout.clip_name)(number, clip)
        };
        let mut r = SeededRng::derive(seed, &format!("layout/{id}"));
        let onset = 20 + r.below(200) as u32;
        let offset = onset + n as u32 - 1;
        let [o, _, f] = timing;
        // The generator's own rounding, so that `synth.me` and this layout
        // agree on the apex frame.
        let apex = onset + super::synth::me_apex_frame(timing, n) as u32;
        let row = hr + 1 + p as u32;
        if layout.subject_as_text {
            ws.write_string(row, c_subject, (layout.subject_dir)(number))
                .map_err(w)?;
        } else {
            ws.write_number(row, c_subject, number as f64).map_err(w)?;
        }
        ws.write_string(row, c_file, &filename).map_err(w)?;
        ws.write_number(row, c_onset, onset as f64).map_err(w)?;
        ws.write_number(row, c_apex, apex as f64).map_err(w)?;
        ws.write_number(row, c_offset, offset as f64).map_err(w)?;
        if aus.len() == 1 {
            ws.write_number(row, c_aus, aus[0] as f64).map_err(w)?;
        } else {
            let cell: Vec<String> = aus
                .iter()
                .map(|a| match r.below(4) {
                    0 => format!("L{a}"),
                    1 => format!("R{a}"),
                    _ => a.to_string(),
                })
                .collect();
            let sep = if layout.header_row > 0 { " + " } else { "+" };
            ws.write_string(row, c_aus, cell.join(sep)).map_err(w)?;
        }
        ws.write_string(row, c_emotion, (layout.emotion_name)(emotion))
            .map_err(w)?;
        let sub = (layout.subject_dir)(number);
        let mut releases: Vec<(&str, bool)> = layout.releases.to_vec();
        releases.dedup_by_key(|(d, _)| *d);
        for k in 0..n {
            let t = o + (f - o) * k as f32 / (n - 1) as f32;
            let planes = synth.render_at(p, t).ok_or("clip vanished")?;
            let frame = onset + k as u32;
            let img = super::to_image(&planes, synth.size_hw());
            for (dir, cropped) in &releases {
                let d = root.join(dir).join((layout.clip_dir)(
                    &sub,
                    &filename,
                    (layout.emotion_name)(emotion),
                ));
                let file = d.join((layout.frame_name)(&sub, frame, *cropped));
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                img.save(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
    }
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    if layout.folder_scan.is_none() {
        wb.save(root.join(layout.label_file))
            .map_err(|e| e.to_string())?;
    }
    Ok(synth.len())
}

/// `mer data synth` for a corpus of this file: generated clips through
/// [`Synth`], written in `layout`.
fn write_me(layout: &Layout, out: &Path, req: &LayoutRequest) -> Result<usize, String> {
    let s =
        Synth::new(super::synth::Flavor::Me, &super::synth::layout_params(req)).map_err(|e| e.0)?;
    write_layout(layout, &s, out, req.frames_per_clip, req.seed)
}

#[cfg(test)]
mod tests {
    use super::casme2::casme2_classes;
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
        assert_eq!(write_layout(&CASME2, &s, &root, 8, 1).unwrap(), 12);
        let d = MeDataset::new(&CASME2, &params(&root)).unwrap();
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
        let (report, ok) = verify(&CASME2, &root);
        assert!(ok, "{report}");
        assert!(report.contains("samples: 12"), "{report}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// CAS(ME)^3 and MMEW in their layouts: CAS(ME)^3's videos hold two
    /// MEs each (numbered `a`, `a2` as MEB does), MMEW files clips by
    /// emotion; both read back through the one loader.
    #[test]
    fn casme3_and_mmew_layouts_read_back() {
        for layout in [&CASME3, &MMEW] {
            let root = std::env::temp_dir().join(format!(
                "mer-{}-{}",
                layout.dataset.replace('.', "-"),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&root);
            write_layout(layout, &synth(4), &root, 5, 1).unwrap();
            let s = scan(layout, &root, true);
            assert!(
                s.problems.is_empty(),
                "{}: {:?}",
                layout.dataset,
                s.problems
            );
            assert_eq!(s.records.len(), 12, "{}", layout.dataset);
            if layout.shared_videos {
                let names: Vec<&str> = s.records.iter().map(|r| r.filename.as_str()).collect();
                assert!(names.contains(&"a") && names.contains(&"a2"), "{names:?}");
                assert!(s.records.iter().all(|r| r.subject.starts_with("spNO.")));
                assert!(s.records[0].frames[0].to_string_lossy().contains("/color/"));
            } else {
                // MMEW: the clip folder is under its emotion.
                let r = &s.records[0];
                assert!(r.frames[0]
                    .to_string_lossy()
                    .contains(&format!("/{}/", r.emotion)));
            }
            let mut p = params(&root);
            p.insert("classes".into(), Value::Str("3class_megc".into()));
            let d = MeDataset::new(layout, &p).unwrap();
            let excluded: usize = d.excluded().values().sum();
            assert_eq!(d.index().unwrap().len() + excluded, 12);
            let (report, ok) = verify(layout, &root);
            assert!(ok, "{report}");
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    /// SMIC from its folders: classes from the folder, apex in the middle,
    /// no AUs; a gap in a clip's frames and a misnamed clip are problems.
    #[test]
    fn smic_reads_from_folders_and_reports_gaps() {
        let root = std::env::temp_dir().join(format!("mer-smic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_layout(&SMIC, &synth(4), &root, 5, 1).unwrap();
        std::fs::create_dir_all(root.join("HS/s9")).unwrap(); // a subject without MEs
        let s = scan(&SMIC, &root, true);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.records.len(), 12);
        let r = &s.records[0];
        assert_eq!((r.apex - r.onset, r.offset - r.onset), (2, 4));
        assert!(r.aus.is_empty());
        assert!(
            s.corrections.iter().any(|c| c.contains("s9")),
            "{:?}",
            s.corrections
        );
        let d = MeDataset::new(&SMIC, &params(&root)).unwrap();
        let labels: std::collections::BTreeSet<String> = d
            .index()
            .unwrap()
            .iter()
            .map(|m| format!("{:?}", m.labels["emotion"]))
            .collect();
        assert!(labels.len() >= 2, "{labels:?}");
        // A gap, then a clip filed under the wrong emotion.
        let gap = &s.records[1].frames[2];
        std::fs::remove_file(gap).unwrap();
        let clip = s.records[2].frames[0].parent().unwrap().to_path_buf();
        let name = clip
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("_po_", "_xx_")
            .replace("_ne_", "_xx_")
            .replace("_sur_", "_xx_");
        std::fs::rename(&clip, clip.with_file_name(name)).unwrap();
        let s = scan(&SMIC, &root, true);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs.iter().any(|m| m.contains("is missing (4 frames")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("disagrees with its folders")),
            "{msgs:#?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// MEB's CAS(ME)^3 onset patch applies only where the onset is after
    /// the apex; a sound row is left alone.
    #[test]
    fn onset_fixes_apply_only_to_defective_rows() {
        let root = std::env::temp_dir().join(format!("mer-casme3-fix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in CASME3.header.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        // Data rows 0..=749; row 749 has onset 9999 > apex 2650.
        for r in 0..750u32 {
            let (on, ap, off) = if r == 749 {
                (9999, 2650, 2660)
            } else {
                (1, 2, 3)
            };
            let cells = [
                "spNO.1".to_string(),
                "a".into(),
                on.to_string(),
                ap.to_string(),
                off.to_string(),
                "4".into(),
                "".into(),
                "others".into(),
            ];
            for (c, v) in cells.iter().enumerate() {
                ws.write_string(r + 1, c as u16, v).unwrap();
            }
        }
        wb.save(root.join(CASME3.label_file)).unwrap();
        let video = root.join("part_A/data/ME_A/spNO.1/a/color");
        std::fs::create_dir_all(&video).unwrap();
        for n in 1..=3 {
            image::RgbImage::new(4, 4)
                .save(video.join(format!("{n}.jpg")))
                .unwrap();
        }
        let s = scan(&CASME3, &root, true);
        // Rows 128 and 708 have fixes but are sound: untouched.
        assert_eq!(s.corrections.len(), 1, "{:?}", s.corrections);
        assert!(
            s.corrections[0].contains("row 751") && s.corrections[0].contains("→ 2647"),
            "{:?}",
            s.corrections
        );
        // Row 751, now in order, names frames this tree lacks.
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(s.problems[0].message.contains("is missing") && s.problems[0].row == Some(751));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn defects_are_named_by_file_and_row() {
        let root = std::env::temp_dir().join(format!("mer-casme2-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_layout(&CASME2, &synth(2), &root, 5, 1).unwrap();
        // Rewrite the label file with defects: a missing apex on data row
        // 0 (not in the table: a problem), an AU cell `4 or 5`, and a
        // missing frame.
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        let rows: [&[&str]; 4] = [
            CASME2.header,
            &["1", "EP01_01", "", "1", "/", "3", "", "4", "others"],
            &["1", "EP02_01", "", "1", "2", "3", "", "4 or 5", "others"],
            &["2", "EP01_01", "", "1", "2", "3", "", "4", "others"],
        ];
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                ws.write_string(r as u32, c as u16, *v).unwrap();
            }
        }
        wb.save(root.join(CASME2.label_file)).unwrap();
        let s = scan(&CASME2, &root, true);
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
        let e = MeDataset::new(&CASME2, &params(&root)).err().unwrap().0;
        assert!(e.contains("mer data verify"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A zero-byte and a truncated JPEG pass a stat but not verify: each
    /// is a problem naming the frame and its label row. A second verify
    /// only hashes the frames that decoded the first time.
    #[test]
    fn verify_decodes_every_frame_and_caches_by_content() {
        let root = std::env::temp_dir().join(format!("mer-casme2-decode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_layout(&CASME2, &synth(2), &root, 5, 1).unwrap();
        let s = scan(&CASME2, &root, true);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let (empty, cut) = (&s.records[0], &s.records[1]);
        std::fs::write(&empty.frames[2], b"").unwrap();
        let bytes = std::fs::read(&cut.frames[4]).unwrap();
        std::fs::write(&cut.frames[4], &bytes[..bytes.len() / 2]).unwrap();
        let cache = root.join("cache");
        let (report, ok) = verify_with(&CASME2, &root, Some(&cache));
        assert!(!ok, "{report}");
        assert!(report.contains("problems: 2"), "{report}");
        for (r, f, why) in [(empty, 2, "0 bytes"), (cut, 4, "")] {
            let line = report
                .lines()
                .find(|l| l.contains(&*r.frames[f].to_string_lossy()))
                .unwrap_or_else(|| panic!("{} not named:\n{report}", r.frames[f].display()));
            assert!(
                line.contains(&format!("{}:{}:", CASME2.label_file, r.row)) && line.contains(why),
                "{line}"
            );
        }
        assert!(report.contains("images decoded: 30 ("), "{report}");
        // A marker per distinct good frame (a neutral onset can repeat);
        // the second run decodes none of the 28.
        let good: std::collections::BTreeSet<Vec<u8>> = s
            .records
            .iter()
            .flat_map(|r| &r.frames)
            .map(|f| std::fs::read(f).unwrap())
            .filter(|b| b.ends_with(&[0xFF, 0xD9]))
            .collect();
        assert_eq!(super::super::tests_walk(&cache).len(), good.len());
        let (again, _) = verify_with(&CASME2, &root, Some(&cache));
        assert!(
            again.contains("images decoded: 30 (28 unchanged"),
            "{again}"
        );
        assert!(again.contains("problems: 2"), "{again}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A missing frame in a clip the class set leaves out does not refuse
    /// the run (it is noted and counted as left out); the same gap in a
    /// clip the class set reads does.
    #[test]
    fn a_problem_in_an_excluded_clip_does_not_refuse_the_run() {
        let root = std::env::temp_dir().join(format!("mer-casme2-excl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_layout(&CASME2, &synth(6), &root, 4, 1).unwrap();
        let s = scan(&CASME2, &root, true);
        let megc = casme2_classes("3class_megc");
        let kept = |r: &&Record| megc.iter().any(|(_, m)| m.contains(&r.emotion.as_str()));
        let out = s
            .records
            .iter()
            .find(|r| !kept(r))
            .expect("a clip outside 3class_megc");
        std::fs::remove_file(&out.frames[1]).unwrap();
        let mut p = params(&root);
        p.insert("classes".into(), Value::Str("3class_megc".into()));
        let d = MeDataset::new(&CASME2, &p).unwrap();
        let excluded: usize = d.excluded().values().sum();
        assert_eq!(d.index().unwrap().len() + excluded, 18);
        let notes = d.notes().join("\n");
        assert!(
            notes.contains("outside the class set `3class_megc`")
                && notes.contains(&*out.frames[1].to_string_lossy()),
            "{notes}"
        );
        // 5class reads `others`: the same gap refuses it.
        let mut all = p.clone();
        all.insert("classes".into(), Value::Str("5class".into()));
        if (CASME2.class_sets)("5class")
            .iter()
            .any(|(_, m)| m.contains(&out.emotion.as_str()))
        {
            let e = MeDataset::new(&CASME2, &all).err().expect("refused").0;
            assert!(e.contains("is missing"), "{e}");
        }
        // A gap in a clip 3class_megc reads refuses it.
        let inside = s.records.iter().find(kept).expect("a clip in 3class_megc");
        std::fs::remove_file(&inside.frames[1]).unwrap();
        let e = MeDataset::new(&CASME2, &p).err().expect("refused").0;
        assert!(
            e.contains("1 problem(s)") && e.contains(&*inside.frames[1].to_string_lossy()),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_documented_defect_is_corrected_only_where_the_cell_is_defective() {
        let root = std::env::temp_dir().join(format!("mer-casme2-fix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // 3 subjects x 10 clips: data rows 0..29; row 29 is in the table.
        write_layout(&CASME2, &synth(10), &root, 4, 1).unwrap();
        assert!(
            scan(&CASME2, &root, true).corrections.is_empty(),
            "a clean file is untouched"
        );
        let mut wb = open_workbook_auto(root.join(CASME2.label_file)).unwrap();
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
        out.save(root.join(CASME2.label_file)).unwrap();
        let s = scan(&CASME2, &root, true);
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
        assert_eq!(CASME2_APEX_FIXES.len(), 21);
        assert_eq!(CASME2_APEX_FIXES[0], (29, 279));
        assert_eq!(CASME2.offset_fixes, &[(60, 91)]);
        assert_eq!(SAMM.apex_fixes, &[(125, 1105), (132, 4945), (133, 5130)]);
        assert_eq!(SAMM.au_fixes.len(), 5);
    }

    #[test]
    fn samm_layout_has_its_free_text_header_and_three_digit_subjects() {
        let root = std::env::temp_dir().join(format!("mer-samm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = synth(3);
        write_layout(&SAMM, &s, &root, 5, 2).unwrap();
        let clip = root.join("SAMM/006/006_1_1");
        let names: Vec<String> = std::fs::read_dir(&clip)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        let framed = |n: &String| n.len() == 13 && n.starts_with("006_") && n.ends_with(".jpg");
        assert!(names.iter().all(framed), "{names:?}");
        let (report, ok) = verify(&SAMM, &root);
        assert!(ok, "{report}");
        assert!(report.contains("samples: 9   subjects: 3"), "{report}");
        let mut p = params(&root);
        p.insert(
            "aus".into(),
            Value::List(vec![Value::Int(4), Value::Int(12)]),
        );
        let d = MeDataset::new(&SAMM, &p).unwrap();
        let idx = d.index().unwrap();
        assert!(
            idx.iter()
                .all(|m| m.group.len() == 3 && m.group.starts_with('0')),
            "{:?}",
            idx[0]
        );
        // Rows are numbered as a spreadsheet shows them: data starts on 15.
        assert!(idx
            .iter()
            .any(|m| m.labels.get("row") == Some(&Value::Int(15))));
        let excluded: usize = d.excluded().values().sum();
        assert_eq!(idx.len() + excluded, 9);
        let _ = std::fs::remove_dir_all(&root);
    }
}
