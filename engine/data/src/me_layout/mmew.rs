//! MMEW (`me.mmew`): 36 subjects at 90 fps, the MMEW_Micro_Exp workbook and
//! per-emotion frame folders.

use super::*;

/// MMEW (36 subjects, 90 fps).
pub const MMEW: Layout = Layout {
    dataset: "me.mmew",
    label_file: "MMEW_Micro_Exp.xlsx",
    header_row: 0,
    cols: [
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
    ],
    header: &[
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
        "remarks",
    ],
    subject_dir: |n| format!("S{n:02}"),
    releases: &[("Micro_Expression", false)],
    frame_name: |_, n, _| format!("{n}.jpg"),
    // MEB's corrections of 16 rows' apex and offset (0-based data rows).
    apex_fixes: &[
        (33, 40),
        (35, 15),
        (36, 46),
        (37, 20),
        (38, 25),
        (39, 20),
        (40, 23),
        (41, 28),
        (42, 32),
        (142, 56),
        (143, 32),
        (145, 27),
        (146, 22),
        (148, 29),
        (154, 31),
        (156, 38),
    ],
    offset_fixes: &[
        (33, 75),
        (35, 54),
        (36, 59),
        (37, 98),
        (38, 80),
        (39, 93),
        (40, 58),
        (41, 61),
        (42, 68),
        (142, 88),
        (143, 80),
        (145, 85),
        (146, 61),
        (148, 108),
        (154, 72),
        (156, 106),
    ],
    au_fixes: &[],
    class_sets: mmew_classes,
    emotion_name: |e| match e {
        "happiness" => "happiness",
        "sadness" => "sadness",
        "disgust" => "disgust",
        "surprise" => "surprise",
        "fear" => "fear",
        "anger" => "anger",
        _ => "others",
    },
    clip_name: |sub, k| format!("S{sub:02}_{k:02}"),
    clip_dir: |_, file, emotion| format!("{emotion}/{file}"),
    onset_fixes: &[],
    shared_videos: false,
    subject_as_text: false,
    folder_scan: None,
};

/// MMEW's class sets: `6class` leaves `others` out (counted).
pub(super) fn mmew_classes(set: &str) -> ClassSet {
    let six = vec![
        ("anger", &["anger"][..]),
        ("disgust", &["disgust"][..]),
        ("fear", &["fear"][..]),
        ("happiness", &["happiness"][..]),
        ("sadness", &["sadness"][..]),
        ("surprise", &["surprise"][..]),
    ];
    match set {
        "3class_megc" => vec![
            ("negative", &["anger", "disgust", "fear", "sadness"][..]),
            ("positive", &["happiness"][..]),
            ("surprise", &["surprise"][..]),
        ],
        "7class" => {
            let mut v = six;
            v.insert(4, ("others", &["others"][..]));
            v
        }
        _ => six,
    }
}

/// `me.mmew`'s factory.
pub fn mmew(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(MeDataset::new(&MMEW, p)?))
}

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    me("me.mmew", "MMEW (36 subjects, 90 fps): MMEW_Micro_Exp.xlsx + Micro_Expression/<emotion>/<Filename>/<frame>.jpg.", "MMEW_ROOT", ME_AUS, &["6class", "7class", "3class_megc"], "6class")
        .dataset(mmew)
        .verify(|_, root, _| verify(&MMEW, root))
        .write_layout(|_, out, req| write_me(&MMEW, out, req))
        .build()
}
