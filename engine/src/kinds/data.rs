//! Dataset kinds. Each names the on-disk layout it reads (as distributed)
//! and the ports it provides. `synth.*` generate data in memory from a seed.

use super::shapes;
use mer_registry::{Kind, KindBuilder, Role, Value};

const ME_AUS: &[i64] = &[1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26];

/// Ports and parameters shared by clip datasets.
fn clip(name: &str, doc: &str, frames: i64, size: i64, color: bool) -> KindBuilder {
    KindBuilder::new(name, Role::Data)
        .doc(doc)
        .output("video", "clip frames [B, C, T, H, W], f32 in [0, 1]")
        .output("emotion", "class index [B]")
        .output("landmarks", "68-point landmarks per frame [B, T, 68, 2], normalised to [0, 1]")
        .output("box", "face box per frame [B, T, 4] (x, y, w, h), normalised")
        .output("subject", "subject id [B] (the LOSO group key)")
        .int("frames", Some(frames), Some(1), "Frames sampled per clip.")
        .ints("size", Some(&[size, size]), Some(8), "Frame size [H, W] after resizing.")
        .bool("color", color, "Keep RGB; false converts to grayscale.")
        .choice(
            "sampling",
            &["uniform", "noisy_uniform", "onset_apex", "onset_apex_offset"],
            Some("uniform"),
            "Temporal sampling; training may use noisy_uniform while evaluation always uses uniform.",
        )
}

/// Still-image expression datasets.
fn still(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Data)
        .doc(doc)
        .output("image", "face [B, C, H, W], f32 in [0, 1]")
        .output("emotion", "class index [B]")
        .output("landmarks", "68-point landmarks [B, 68, 2], normalised")
        .path("root", None, "Dataset folder as distributed.")
        .ints("size", Some(&[224, 224]), Some(8), "Image size [H, W].")
        .bool(
            "augment",
            true,
            "Random crop + erasing during training (never at evaluation).",
        )
        .shapes(shapes::still_data)
}

fn me(
    name: &str,
    doc: &str,
    root_env: &str,
    aus: &[i64],
    classes: &[&str],
    default_classes: &str,
) -> Kind {
    me_with(name, doc, root_env, aus, classes, default_classes, None)
}

/// [`me`] with a loader.
fn me_with(
    name: &str,
    doc: &str,
    root_env: &str,
    aus: &[i64],
    classes: &[&str],
    default_classes: &str,
    loader: Option<mer_registry::contracts::DatasetFactory>,
) -> Kind {
    let b = clip(name, doc, 6, 64, false)
        .output("aus", "multi-label AU targets [B, n_aus] in {0, 1}")
        .output("flow", "onset→apex optical flow [B, 2, H, W]")
        .path(
            "root",
            None,
            &format!("Dataset folder as distributed (e.g. env(\"{root_env}\"))."),
        )
        .ints(
            "aus",
            Some(aus),
            Some(1),
            "AUs used as multi-label targets, in order.",
        )
        .choice(
            "classes",
            classes,
            Some(default_classes),
            "Emotion label set.",
        )
        .bool(
            "cropped",
            true,
            "Read the cropped-face release where one exists.",
        )
        .bool(
            "flow",
            true,
            "Compute the `flow` port: TV-L1 optical flow from the onset to the apex frame at `size`, cached on disk (MER_CACHE_DIR or ~/.cache/mer).",
        )
        .port_when("flow", "flow", Value::Bool(true))
        .shapes(shapes::me_data);
    match loader {
        Some(f) => b.dataset(f).build(),
        None => b.build(),
    }
}

/// The port every DFER kind adds: the 5-point landmarks MTCAE-DFER
/// regresses.
fn with_five_points(b: KindBuilder) -> KindBuilder {
    b.output(
        "landmarks5",
        "5-point landmarks per frame [B, T, 5, 2] (eye centres, nose tip, mouth corners), normalised",
    )
}

fn dfer(
    name: &str,
    doc: &str,
    folds_doc: &str,
    classes: &[&str],
    landmarks: &str,
    loader: Option<mer_registry::contracts::DatasetFactory>,
) -> Kind {
    let b = with_five_points(clip(name, doc, 16, 224, true))
        .path(
            "root",
            None,
            &format!("Dataset folder as distributed, with videos extracted to frame folders. {folds_doc}"),
        )
        .choice("classes", classes, classes.first().copied(), "Emotion label set.")
        .int(
            "sampling_rate",
            Some(1),
            Some(1),
            "Take every N-th frame before uniform subsampling (MTCAE-DFER: RAVDESS 6, CREMA-D 3, MEAD 3).",
        )
        .choice(
            "landmarks",
            &["openface", "none"],
            Some(landmarks),
            "Where face boxes and landmarks come from: `openface` reads `<clip>.csv` beside each frame folder (OpenFace 2 FeatureExtraction output, as RAVDESS's landmark release ships); `none` provides video and emotion only.",
        )
        .choice(
            "crop",
            &["none", "face"],
            Some("none"),
            "`face` crops every frame to the OpenFace landmarks' box (grown by a quarter, square) before resizing; landmark ports are then in crop coordinates. Needs landmarks = \"openface\".",
        )
        // Without OpenFace CSVs the loader provides video, emotion and subject only.
        .port_when("landmarks", "landmarks", Value::Str("openface".into()))
        .port_when("landmarks5", "landmarks", Value::Str("openface".into()))
        .port_when("box", "landmarks", Value::Str("openface".into()))
        .shapes(shapes::dfer_data);
    match loader {
        Some(f) => b.dataset(f).build(),
        None => b.build(),
    }
}

fn au(
    name: &str,
    doc: &str,
    aus: &[i64],
    frames: &str,
    loader: mer_registry::contracts::DatasetFactory,
) -> Kind {
    KindBuilder::new(name, Role::Data)
        .doc(doc)
        .output("image", "frame [B, C, H, W]")
        .output("aus", "AU occurrence [B, n_aus]")
        .output("subject", "subject id [B]")
        .path("root", None, "Dataset folder as distributed.")
        .string("frames", Some(frames), "Where the extracted frames are, under `root`: `{subject}`, `{task}`, `{frame}` (as labelled), `{index}` (0-based position). The default is ME-GraphAU's extraction.")
        .int("stride", Some(1), Some(1), "Keep every N-th labelled frame (neighbouring frames are near-duplicates).")
        .ints("aus", Some(aus), Some(1), "AUs used as targets.")
        .ints("size", Some(&[224, 224]), Some(8), "Image size [H, W].")
        .float(
            "intensity_threshold",
            Some(2.0),
            Some(0.0),
            Some(5.0),
            "AU intensity at or above which an AU counts as present.",
        )
        .shapes(shapes::au_data)
        .dataset(loader)
        .build()
}

pub fn kinds() -> Vec<Kind> {
    let me5 = &["5class", "3class_megc", "7class"];
    vec![
        clip("synth.me", "Generated micro-expression clips: subjects with distinct identities, FACS-region motions at micro intensity with onset–apex–offset timing, head motion and sensor noise. Deterministic from `seed`.", 8, 64, false)
            .output("aus", "multi-label AU targets [B, n_aus]")
            .output("flow", "onset→apex optical flow [B, 2, H, W]")
            .int("subjects", Some(12), Some(2), "Number of synthetic subjects.")
            .int("clips_per_subject", Some(10), Some(1), "Clips generated per subject.")
            .ints("aus", Some(&[1, 2, 4, 7, 12, 14, 15, 17]), Some(1), "AUs used as multi-label targets.")
            .choice("classes", me5, Some("5class"), "Emotion label set (CASME II-style classes by AU rules).")
            .float("intensity", Some(0.15), Some(0.0), Some(1.0), "Peak motion amplitude relative to a macro-expression.")
            .float("noise", Some(0.02), Some(0.0), Some(1.0), "Sensor noise standard deviation.")
            .int("seed", Some(0), Some(0), "Generator seed (independent of the training seed).")
            .choice("face", &["drawn", "astronaut"], Some("drawn"), "`drawn`: a face drawn per subject; `astronaut`: the public-domain astronaut photo (scikit-image's) animated by the same landmark motions, subjects differing in lighting, head motion and expressions.")
            .shapes(shapes::me_data)
            .dataset(crate::data::synth::synth_me)
            .build(),
        with_five_points(clip("synth.dfer", "Generated dynamic facial-expression clips with per-frame face boxes and landmarks, for multi-task recipes.", 16, 64, true))
            .int("subjects", Some(10), Some(2), "Number of synthetic actors.")
            .int("clips_per_subject", Some(14), Some(1), "Clips generated per actor.")
            .int("classes", Some(7), Some(2), "Number of expression classes.")
            .float("intensity", Some(0.6), Some(0.0), Some(1.0), "Peak expression amplitude.")
            .float("noise", Some(0.02), Some(0.0), Some(1.0), "Sensor noise standard deviation.")
            .int("seed", Some(0), Some(0), "Generator seed.")
            .choice("face", &["drawn", "astronaut"], Some("drawn"), "`drawn`: a face drawn per subject; `astronaut`: the public-domain astronaut photo animated by the same landmark motions.")
            .shapes(shapes::dfer_data)
            .dataset(crate::data::synth::synth_dfer)
            .build(),
me_with("me.casme2", "CASME II (26 subjects, 200 fps): CASME2-coding xlsx + sub*/EP*/img*.jpg, with the documented label corrections.", "CASME2_ROOT", &[1, 2, 4, 7, 12, 14, 15, 17], me5, "5class", Some(crate::data::me_layout::casme2)),
        me_with("me.samm", "SAMM (32 subjects, 200 fps, gray): SAMM_Micro_FACS_Codes xlsx + subject/clip/*.jpg.", "SAMM_ROOT", &[2, 4, 7, 12], &["5class", "3class_megc", "8class"], "5class", Some(crate::data::me_layout::samm)),
        clip("me.smic", "SMIC-HS (16 subjects with MEs, 100 fps): `HS/s<N>/micro/<positive|negative|surprise>/s<N>_<po|ne|sur>_<kk>/` frame folders, each cut to onset..offset; the class is the folder. No AU labels (so no `aus` port) and no apex: the middle frame stands in (MEB's convention).", 6, 64, false)
            .output("flow", "onset→apex optical flow [B, 2, H, W]")
            .path("root", None, "Dataset folder as distributed (e.g. env(\"SMIC_ROOT\")), holding HS/.")
            .choice("classes", &["3class"], Some("3class"), "Emotion label set: positive, negative, surprise.")
            .bool("flow", true, "Compute the `flow` port: TV-L1 optical flow from the onset to the middle frame, cached on disk.")
            .port_when("flow", "flow", Value::Bool(true))
            .shapes(shapes::smic_data)
            .dataset(crate::data::me_layout::smic)
            .build(),
        me_with("me.casme3", "CAS(ME)^3 part A (30 fps): cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx + part_A/data/ME_A/spNO.<k>/<video>/color/<frame>.jpg; several MEs per video (numbered a, a2, … as MEB does), with MEB's corrections.", "CASME3_ROOT", ME_AUS, &["7class", "4class", "3class_megc"], "7class", Some(crate::data::me_layout::casme3)),
        me_with("me.mmew", "MMEW (36 subjects, 90 fps): MMEW_Micro_Exp.xlsx + Micro_Expression/<emotion>/<Filename>/<frame>.jpg.", "MMEW_ROOT", ME_AUS, &["6class", "7class", "3class_megc"], "6class", Some(crate::data::me_layout::mmew)),
        me("me.dfme", "DFME (CCAC 2024 challenge): train / TestA / TestB partitions, 7 classes. No loader yet: the on-disk layout and label files ship only with the licence package and are not public, so recipes check but do not run on it.", "DFME_ROOT", ME_AUS, &["7class"], "7class"),
        still("fer.rafdb", "RAF-DB basic: basic/EmoLabel/list_patition_label.txt + basic/Image/aligned/*_aligned.jpg (7 classes); the official train/test split as a `split` label (protocol.official). No landmarks port data: RAF-DB basic ships none in 68 points.")
            .dataset(crate::data::fer_layout::rafdb)
            .build(),
        still("fer.affectnet", "AffectNet: `Manually_Annotated_file_lists/{training,validation}.csv` + `Manually_Annotated_Images/`; each photo is cropped to its annotated face box. Codes 8–10 (none, uncertain, non-face) are left out and counted; the official validation set is the `test` split (protocol.official).")
            .choice("classes", &["7class", "8class"], Some("7class"), "Label set (8 adds contempt).")
            .dataset(crate::data::fer_layout::affectnet)
            .build(),
        dfer("dfer.dfew", "DFEW (11,697 single-labelled clips): `Clip/jpg_256/<00001>/` frame folders + `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<1..5>.csv` (`video_name,label`, codes 1–7). No subject ids: each clip is its own group.", "Folds: the official five sets, as a `fold` label (protocol.kfold { folds = 5 }).", &["7class"], "none", Some(crate::data::dfer_layout::dfew)),
        dfer("dfer.ferv39k", "FERV39k (38,935 clips): `2_ClipsforFaceCrop/<Scene>/<Class>/<id>/` frame folders + `4_setups/All_scenes/{train,test}_All.csv` lists. No subject ids: each clip is its own group.", "The official train/test split, as a `split` label (protocol.official).", &["7class"], "none", Some(crate::data::dfer_layout::ferv39k)),
        dfer("dfer.ravdess", "RAVDESS (Actor_01..24): `Actor_XX/<MM-VV-EE-II-SS-RR-AA>/` frame folders with filename-coded labels; speech clips, one copy per clip (audio-video preferred over its video-only twin).", "Actor-block folds (protocol.kfold).", &["8class", "7class"], "openface", Some(crate::data::dfer_layout::ravdess)),
        dfer("dfer.crema_d", "CREMA-D (91 actors): `VideoFlash/<actor>_<sentence>_<EMO>_<level>/` frame folders.", "Official folds: MAE-DFER's 5 actor blocks (1001–1018, 1019–1036, 1037–1054, 1055–1072, 1073–1091), as a `fold` label.", &["6class"], "openface", Some(crate::data::dfer_layout::crema_d)),
        dfer("dfer.mead", "MEAD front view: `<actor>/video/front/<emotion>/level_<n>/<nnn>/` frame folders.", "Actor folds (protocol.kfold; no official list exists).", &["8class"], "openface", Some(crate::data::dfer_layout::mead)),
        au("au.disfa", "DISFA (27 subjects, 20 fps): `ActionUnit_Labels/SN0xx/SN0xx_au<k>.txt` intensities (present at ≥ `intensity_threshold`) + extracted frames; ME-GraphAU's subject-exclusive 3-fold split as a `fold` label.", &[1, 2, 4, 6, 9, 12, 25, 26], crate::data::au_layout::AuCorpus::Disfa.default_frames(), crate::data::au_layout::disfa),
        au("au.bp4d", "BP4D (41 subjects, 25 fps): `AUCoding/AU_OCC/<Subject>_<Task>.csv` occurrences (frames with a requested AU coded 9 are left out and counted) + extracted frames; ME-GraphAU's subject-exclusive 3-fold split as a `fold` label.", &[1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24], crate::data::au_layout::AuCorpus::Bp4d.default_frames(), crate::data::au_layout::bp4d),
    ]
}
