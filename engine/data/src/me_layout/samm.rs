//! SAMM (`me.samm`): 32 subjects at 200 fps, grey frames, the
//! SAMM_Micro_FACS_Codes workbook.

use super::*;

/// SAMM (32 subjects, 200 fps, grayscale).
pub const SAMM: Layout = Layout {
    dataset: "me.samm",
    label_file: "SAMM_Micro_FACS_Codes_v2.xlsx",
    header_row: 13,
    cols: [
        "Subject",
        "Filename",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Action Units",
        "Estimated Emotion",
    ],
    header: &[
        "Subject",
        "Filename",
        "Inducement Code",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Duration",
        "Micro",
        "Action Units",
        "Estimated Emotion",
        "Objective Classes",
        "Notes",
    ],
    subject_dir: |n| format!("{n:03}"),
    releases: &[("SAMM", false), ("SAMM", true)],
    frame_name: |sub, n, _| format!("{sub}_{n:05}.jpg"),
    apex_fixes: &[(125, 1105), (132, 4945), (133, 5130)],
    offset_fixes: &[(56, 5739)],
    au_fixes: &[
        (15, "R12 + R15"),
        (18, "R12 + R15"),
        (41, "L14"),
        (64, "R14"),
        (154, "R14A"),
    ],
    class_sets: samm_classes,
    emotion_name: |e| match e {
        "disgust" => "Disgust",
        "happiness" => "Happiness",
        "repression" => "Contempt",
        "surprise" => "Surprise",
        _ => "Other",
    },
    clip_name: |sub, k| format!("{sub:03}_1_{k}"),
    clip_dir: subject_then_file,
    onset_fixes: &[],
    shared_videos: false,
    subject_as_text: false,
    folder_scan: None,
};

/// SAMM's class sets (emotions lower-cased; `Other`/`Others` both).
pub(super) fn samm_classes(set: &str) -> ClassSet {
    match set {
        "3class_megc" => vec![
            (
                "negative",
                &["anger", "contempt", "disgust", "sadness", "fear"][..],
            ),
            ("positive", &["happiness"][..]),
            ("surprise", &["surprise"][..]),
        ],
        "8class" => vec![
            ("anger", &["anger"][..]),
            ("contempt", &["contempt"][..]),
            ("disgust", &["disgust"][..]),
            ("fear", &["fear"][..]),
            ("happiness", &["happiness"][..]),
            ("other", &["other", "others"][..]),
            ("sadness", &["sadness"][..]),
            ("surprise", &["surprise"][..]),
        ],
        _ => vec![
            ("anger", &["anger"][..]),
            ("contempt", &["contempt"][..]),
            ("happiness", &["happiness"][..]),
            ("other", &["other", "others"][..]),
            ("surprise", &["surprise"][..]),
        ],
    }
}

/// `me.samm`'s factory.
pub fn samm(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(MeDataset::new(&SAMM, p)?))
}

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    me(
        "me.samm",
        "SAMM (32 subjects, 200 fps, gray): SAMM_Micro_FACS_Codes xlsx + subject/clip/*.jpg.",
        "SAMM_ROOT",
        &[2, 4, 7, 12],
        &["5class", "3class_megc", "8class"],
        "5class",
    )
    .dataset(samm)
    .verify(|_, root, _| verify(&SAMM, root))
    .write_layout(|_, out, req| write_me(&SAMM, out, req))
    .build()
}
