//! CAS(ME)^3 part A (`me.casme3`): 30 fps, several micro-expressions per video,
//! with MEB's corrections.

use super::*;

/// CAS(ME)^3 part A (30 fps, colour; depth alongside, not read).
pub const CASME3: Layout = Layout {
    dataset: "me.casme3",
    label_file: "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
    header_row: 0,
    cols: [
        "Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion",
    ],
    header: &[
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "AU",
        "Objective class",
        "emotion",
    ],
    subject_dir: |n| format!("spNO.{n}"),
    releases: &[("part_A/data/ME_A", false)],
    frame_name: |_, n, _| format!("color/{n}.jpg"),
    // MEB's patches (0-based data rows).
    apex_fixes: &[(128, 160), (750, 1)],
    offset_fixes: &[(708, 34), (796, 1845), (798, 2403)],
    au_fixes: &[],
    class_sets: casme3_classes,
    emotion_name: |e| match e {
        "happiness" => "happy",
        "sadness" => "sad",
        "disgust" => "disgust",
        "surprise" => "surprise",
        "fear" => "fear",
        "anger" => "anger",
        _ => "others",
    },
    // Two MEs per generated video, as in the real set.
    clip_name: |_, k| ((b'a' + ((k - 1) / 2 % 26) as u8) as char).to_string(),
    clip_dir: subject_then_file,
    onset_fixes: &[(749, 2647), (750, 1)],
    shared_videos: true,
    subject_as_text: true,
    folder_scan: None,
};

/// CAS(ME)^3's class sets (its emotions are lower-case words).
pub(super) fn casme3_classes(set: &str) -> ClassSet {
    match set {
        "3class_megc" => vec![
            ("negative", &["anger", "disgust", "fear", "sad"][..]),
            ("positive", &["happy"][..]),
            ("surprise", &["surprise"][..]),
        ],
        "4class" => vec![
            ("negative", &["anger", "disgust", "fear", "sad"][..]),
            ("others", &["others"][..]),
            ("positive", &["happy"][..]),
            ("surprise", &["surprise"][..]),
        ],
        _ => vec![
            ("anger", &["anger"][..]),
            ("disgust", &["disgust"][..]),
            ("fear", &["fear"][..]),
            ("happy", &["happy"][..]),
            ("others", &["others"][..]),
            ("sad", &["sad"][..]),
            ("surprise", &["surprise"][..]),
        ],
    }
}

/// `me.casme3`'s factory.
pub fn casme3(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(MeDataset::new(&CASME3, p)?))
}

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    me("me.casme3", "CAS(ME)^3 part A (30 fps): cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx + part_A/data/ME_A/spNO.<k>/<video>/color/<frame>.jpg; several MEs per video (numbered a, a2, … as MEB does), with MEB's corrections.", "CASME3_ROOT", ME_AUS, &["7class", "4class", "3class_megc"], "7class")
        .dataset(casme3)
        .verify(|_, root, _| verify(&CASME3, root))
        .write_layout(|_, out, req| write_me(&CASME3, out, req))
        .build()
}
