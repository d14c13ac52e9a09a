//! The ports, parameters and shape functions that dataset families share:
//! each corpus file declares its kinds with these builders, beside the loader,
//! verifier and layout writer that implement them.

use mer_registry::{Dim, KindBuilder, Role, Semantic, ShapeCtx, ShapeError, TensorType, Value};

/// The label sets of CASME II-style corpora.
pub(crate) const ME5: &[&str] = &["5class", "3class_megc", "7class"];

/// Every AU a micro-expression corpus may code.
pub(crate) const ME_AUS: &[i64] = &[1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26];

/// Ports and parameters shared by clip datasets.
pub(crate) fn clip(name: &str, doc: &str, frames: i64, size: i64, color: bool) -> KindBuilder {
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
pub(crate) fn still(name: &str, doc: &str) -> KindBuilder {
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
        .shapes(still_data)
}

/// A micro-expression corpus: clip ports, then AU targets and flow.
pub(crate) fn me(
    name: &str,
    doc: &str,
    root_env: &str,
    aus: &[i64],
    classes: &[&str],
    default_classes: &str,
) -> KindBuilder {
    clip(name, doc, 6, 64, false)
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
        .shapes(me_data)
}

/// The port every DFER kind adds: the 5-point landmarks MTCAE-DFER
/// regresses.
pub(crate) fn with_five_points(b: KindBuilder) -> KindBuilder {
    b.output(
        "landmarks5",
        "5-point landmarks per frame [B, T, 5, 2] (eye centres, nose tip, mouth corners), normalised",
    )
}

pub(crate) fn dfer(
    name: &str,
    doc: &str,
    folds_doc: &str,
    classes: &[&str],
    landmarks: &str,
) -> KindBuilder {
    with_five_points(clip(name, doc, 16, 224, true))
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
        .shapes(dfer_data)
}

pub(crate) fn au(name: &str, doc: &str, aus: &[i64], frames: &str) -> KindBuilder {
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
        .shapes(au_data)
}

// Shape functions of the dataset kinds: one type per output port, in the
// order the kind declares its ports.

fn b() -> Dim {
    Dim::sym("B")
}

fn sz(n: i64) -> Dim {
    Dim::Size(n.max(0) as usize)
}

/// Number of classes in a label-set name such as `5class` or `3class_megc`.
fn classes_of(name: &str) -> Option<usize> {
    name.split("class").next().and_then(|n| n.parse().ok())
}

fn class_index(classes: Option<usize>) -> TensorType {
    TensorType {
        dims: vec![b()],
        dtype: mer_registry::DType::I64,
        semantic: Semantic::ClassIndex { classes },
    }
}

fn group_ids() -> TensorType {
    TensorType {
        dims: vec![b()],
        dtype: mer_registry::DType::I64,
        semantic: Semantic::GroupId,
    }
}

fn hw(c: &ShapeCtx) -> (Dim, Dim) {
    let s = c.ints("size");
    (
        sz(*s.first().unwrap_or(&64)),
        sz(*s.get(1).or(s.first()).unwrap_or(&64)),
    )
}

/// video, emotion, landmarks, box, subject: the ports every clip dataset has.
fn clip_ports(c: &ShapeCtx, classes: Option<usize>) -> Vec<TensorType> {
    let ch = if c.bool("color").unwrap_or(false) {
        3
    } else {
        1
    };
    let t = sz(c.int("frames").unwrap_or(1));
    let (h, w) = hw(c);
    vec![
        TensorType::f32(vec![b(), Dim::Size(ch), t.clone(), h, w], Semantic::Video),
        class_index(classes),
        TensorType::f32(
            vec![b(), t.clone(), Dim::Size(68), Dim::Size(2)],
            Semantic::Landmarks,
        ),
        TensorType::f32(vec![b(), t, Dim::Size(4)], Semantic::Boxes),
        group_ids(),
    ]
}

fn aus_and_flow(c: &ShapeCtx, mut v: Vec<TensorType>) -> Vec<TensorType> {
    let (h, w) = hw(c);
    v.push(TensorType::f32(
        vec![b(), Dim::Size(c.ints("aus").len())],
        Semantic::MultiLabel,
    ));
    v.push(TensorType::f32(
        vec![b(), Dim::Size(2), h, w],
        Semantic::Flow,
    ));
    v
}

/// `me.*` and `synth.me`: clip ports, then aus and flow.
pub(crate) fn me_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c.str("classes").and_then(classes_of);
    Ok(aus_and_flow(c, clip_ports(c, classes)))
}

/// `me.smic`: clip ports, then flow (SMIC has no AU labels, so no `aus`).
pub(crate) fn smic_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c.str("classes").and_then(classes_of);
    let mut v = aus_and_flow(c, clip_ports(c, classes));
    v.remove(v.len() - 2);
    Ok(v)
}

/// `dfer.*` and `synth.dfer`: clip ports.
pub(crate) fn dfer_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c
        .usize("classes")
        .or_else(|| c.str("classes").and_then(classes_of))
        .or(Some(7));
    let mut v = clip_ports(c, classes);
    v.push(TensorType::f32(
        vec![
            b(),
            sz(c.int("frames").unwrap_or(1)),
            Dim::Size(5),
            Dim::Size(2),
        ],
        Semantic::Landmarks,
    ));
    Ok(v)
}

/// `fer.*`: image, emotion, landmarks.
pub(crate) fn still_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (h, w) = hw(c);
    let classes = c.str("classes").and_then(classes_of).or(Some(7));
    Ok(vec![
        TensorType::f32(vec![b(), Dim::Size(3), h, w], Semantic::Image),
        class_index(classes),
        TensorType::f32(vec![b(), Dim::Size(68), Dim::Size(2)], Semantic::Landmarks),
    ])
}

/// `au.*`: image, aus, landmarks, subject.
pub(crate) fn au_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (h, w) = hw(c);
    Ok(vec![
        TensorType::f32(vec![b(), Dim::Size(3), h, w], Semantic::Image),
        TensorType::f32(
            vec![b(), Dim::Size(c.ints("aus").len())],
            Semantic::MultiLabel,
        ),
        group_ids(),
    ])
}
