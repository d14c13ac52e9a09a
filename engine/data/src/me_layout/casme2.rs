//! CASME II (`me.casme2`): 26 subjects at 200 fps, the CASME2-coding workbook and
//! `sub*/EP*/img*.jpg` frames, with the documented label and apex corrections.

use super::*;

/// CASME II (26 subjects, 200 fps).
pub const CASME2: Layout = Layout {
    dataset: "me.casme2",
    label_file: "CASME2-coding-20140508.xlsx",
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
        "",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "",
        "Action Units",
        "Estimated Emotion",
    ],
    subject_dir: |n| format!("sub{n:02}"),
    releases: &[("CASME2_RAW_selected", false), ("Cropped", true)],
    frame_name: |_, n, cropped| {
        if cropped {
            format!("reg_img{n}.jpg")
        } else {
            format!("img{n}.jpg")
        }
    },
    apex_fixes: CASME2_APEX_FIXES,
    offset_fixes: &[(60, 91)],
    au_fixes: &[],
    class_sets: casme2_classes,
    emotion_name: |e| match e {
        "disgust" => "disgust",
        "happiness" => "happiness",
        "repression" => "repression",
        "surprise" => "surprise",
        _ => "others",
    },
    clip_name: |_, k| format!("EP{k:02}_01"),
    clip_dir: subject_then_file,
    onset_fixes: &[],
    shared_videos: false,
    subject_as_text: false,
    folder_scan: None,
};

/// MEB's apex fills for CASME II rows whose ApexFrame cell is not a number
/// (0-based data rows → apex frame estimated from optical flow).
pub const CASME2_APEX_FIXES: &[(usize, u32)] = &[
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

/// CASME II's class sets, in label order.
pub(super) fn casme2_classes(set: &str) -> ClassSet {
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

/// `me.casme2`'s factory.
pub fn casme2(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(MeDataset::new(&CASME2, p)?))
}

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    me("me.casme2", "CASME II (26 subjects, 200 fps): CASME2-coding xlsx + sub*/EP*/img*.jpg, with the documented label corrections.", "CASME2_ROOT", &[1, 2, 4, 7, 12, 14, 15, 17], ME5, "5class")
        .dataset(casme2)
        .verify(|_, root, _| verify(&CASME2, root))
        .write_layout(|_, out, req| write_me(&CASME2, out, req))
        .build()
}
