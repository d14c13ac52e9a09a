//! SMIC-HS (`me.smic`): 16 subjects with micro-expressions at 100 fps, frame
//! folders cut to onset..offset, the class from the folder; no AU labels.

use super::*;

/// SMIC-HS: no workbook; the class is the folder and each clip folder
/// holds onset..offset.
pub const SMIC: Layout = Layout {
    dataset: "me.smic",
    label_file: "HS",
    header_row: 0,
    cols: ["", "", "", "", "", "", ""],
    header: &[],
    subject_dir: |n| format!("s{n}"),
    releases: &[("HS", false)],
    frame_name: |_, n, _| format!("image{n:07}.bmp"),
    apex_fixes: &[],
    offset_fixes: &[],
    au_fixes: &[],
    class_sets: |_| {
        vec![
            ("negative", &["negative"][..]),
            ("positive", &["positive"][..]),
            ("surprise", &["surprise"][..]),
        ]
    },
    emotion_name: |e| match e {
        "happiness" => "positive",
        "surprise" => "surprise",
        _ => "negative",
    },
    clip_name: |_, k| format!("{k:02}"),
    clip_dir: |sub, file, emotion| format!("{sub}/micro/{emotion}/{file}"),
    onset_fixes: &[],
    shared_videos: false,
    subject_as_text: false,
    folder_scan: Some(scan_smic),
};

pub(super) const SMIC_CODES: [(&str, &str); 3] =
    [("positive", "po"), ("negative", "ne"), ("surprise", "sur")];

/// The number in a frame file's name (`image0634079.bmp` → 634079).
pub(super) fn frame_number(p: &Path) -> Option<u32> {
    let stem = p.file_stem()?.to_str()?;
    let digits: String = stem.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A folder's entries, sorted; none where it cannot be listed (SMIC's
/// scan reports missing folders itself).
pub(super) fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    crate::sorted_dir(dir).unwrap_or_default()
}

/// Reads SMIC-HS from its folders: `HS/s<N>/micro/<emotion>/s<N>_<code>_<kk>/`.
pub(super) fn scan_smic(_: &Layout, root: &Path) -> Scan {
    let mut out = Scan::default();
    let hs = root.join("HS");
    let problem = |file: &Path, message: String| DataError {
        file: file.display().to_string(),
        row: None,
        message,
    };
    if !hs.is_dir() {
        out.problems.push(problem(
            &hs,
            "missing: SMIC keeps its high-speed clips in HS/".into(),
        ));
        return out;
    }
    let mut without = Vec::new();
    for sdir in sorted_entries(&hs).into_iter().filter(|p| p.is_dir()) {
        let sname = sdir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Some(number) = sname.strip_prefix('s').and_then(|n| n.parse::<u32>().ok()) else {
            out.problems
                .push(problem(&sdir, "not a subject folder s<N>".into()));
            continue;
        };
        let micro = sdir.join("micro");
        if !micro.is_dir() {
            without.push(sname);
            continue;
        }
        for edir in sorted_entries(&micro).into_iter().filter(|p| p.is_dir()) {
            let emotion = edir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let Some((_, code)) = SMIC_CODES.iter().find(|(e, _)| *e == emotion) else {
                out.problems.push(problem(
                    &edir,
                    "unknown emotion folder (SMIC: positive, negative, surprise)".into(),
                ));
                continue;
            };
            for cdir in sorted_entries(&edir).into_iter().filter(|p| p.is_dir()) {
                let filename = cdir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                let prefix = format!("s{number}_{code}_");
                if !filename.starts_with(&prefix) {
                    out.problems.push(problem(
                        &cdir,
                        format!("clip name disagrees with its folders (expected {prefix}<kk>)"),
                    ));
                    continue;
                }
                let mut frames: Vec<(u32, PathBuf)> = sorted_entries(&cdir)
                    .into_iter()
                    .filter(|p| {
                        p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            matches!(
                                e.to_ascii_lowercase().as_str(),
                                "bmp" | "jpg" | "jpeg" | "png"
                            )
                        })
                    })
                    .filter_map(|p| Some((frame_number(&p)?, p)))
                    .collect();
                frames.sort();
                let (Some((on, _)), Some((off, _))) = (frames.first(), frames.last()) else {
                    out.problems.push(problem(
                        &cdir,
                        "clip folder holds no numbered frames".into(),
                    ));
                    continue;
                };
                let (on, off) = (*on, *off);
                if (off - on + 1) as usize != frames.len() {
                    let have: std::collections::BTreeSet<u32> =
                        frames.iter().map(|(n, _)| *n).collect();
                    let gap = (on..=off).find(|n| !have.contains(n)).unwrap_or(on);
                    out.problems.push(problem(
                        &cdir,
                        format!(
                            "frame {gap} is missing ({} frames from {on} to {off})",
                            frames.len()
                        ),
                    ));
                    continue;
                }
                out.records.push(Record {
                    row: 0,
                    subject: sname.clone(),
                    filename,
                    onset: on,
                    apex: on + (off - on) / 2,
                    offset: off,
                    aus: vec![],
                    emotion: emotion.clone(),
                    frames: frames.into_iter().map(|(_, p)| p).collect(),
                });
            }
        }
    }
    if !out.records.is_empty() {
        out.corrections.push(format!(
            "apex = the middle frame of each clip ({} clips; SMIC annotates none)",
            out.records.len()
        ));
    }
    if !without.is_empty() {
        out.corrections.push(format!(
            "subjects without micro-expressions (no micro/ folder): {}",
            without.join(", ")
        ));
    }
    out
}

/// `me.smic`'s factory.
pub fn smic(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(MeDataset::new(&SMIC, p)?))
}

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    clip("me.smic", "SMIC-HS (16 subjects with MEs, 100 fps): `HS/s<N>/micro/<positive|negative|surprise>/s<N>_<po|ne|sur>_<kk>/` frame folders, each cut to onset..offset; the class is the folder. No AU labels (so no `aus` port) and no apex: the middle frame stands in (MEB's convention).", 6, 64, false)
        .output("flow", "onset→apex optical flow [B, 2, H, W]")
        .path("root", None, "Dataset folder as distributed (e.g. env(\"SMIC_ROOT\")), holding HS/.")
        .choice("classes", &["3class"], Some("3class"), "Emotion label set: positive, negative, surprise.")
        .bool("flow", true, "Compute the `flow` port: TV-L1 optical flow from the onset to the middle frame, cached on disk.")
        .port_when("flow", "flow", Value::Bool(true))
        .shapes(smic_data)
        .dataset(smic)
        .verify(|_, root, _| verify(&SMIC, root))
        .write_layout(|_, out, req| write_me(&SMIC, out, req))
        .build()
}
