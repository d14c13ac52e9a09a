//! Vision-language towers from the command line and in recipes: tiny
//! random CLIP folders, zero-shot and embeddings, a prompt-learning recipe
//! (deep visual prompts + CoOp context) trained end to end on generated
//! RAF-DB-layout faces, and size mismatches caught by `mer check`.

#[path = "common/cli.rs"]
mod cli;

use cli::{s, text};
use std::path::{Path, PathBuf};
use std::process::Output;

fn mer(args: &[&str]) -> Output {
    cli::mer_at(args, &std::env::temp_dir())
}

fn scratch(name: &str) -> PathBuf {
    cli::scratch("vision", name)
}

/// A tiny random CLIP (`DIR/m/clip-tiny`) and 20 generated RAF-DB-layout
/// faces of 32 pixels (`DIR/raf`).
fn clip_and_faces(dir: &Path) -> (PathBuf, PathBuf) {
    let o = mer(&[
        "models",
        "tiny",
        "--arch",
        "clip",
        "--out",
        s(&dir.join("m")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let data = dir.join("raf");
    let o = mer(&[
        "data",
        "synth",
        "--layout",
        "rafdb",
        "--out",
        s(&data),
        "--subjects",
        "5",
        "--clips-per-subject",
        "4",
        "--size",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    (dir.join("m/clip-tiny"), data)
}

const CLASSES: &str =
    r#"["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]"#;

fn recipe(dir: &Path, clip: &Path, data: &Path, size: usize) -> PathBuf {
    let r = dir.join("prompts.mer");
    std::fs::write(
        &r,
        format!(
            r#"mer 0.1
experiment clip_prompts {{
  seed = 1
  data faces = fer.rafdb {{ root = "{data}", size = [{size}, {size}] }}
  model {{
    img = clip.vision(faces.image) {{ weights = "{clip}", prompts = 4, prompt_layers = 1 }}
    txt = clip.text() {{ weights = "{clip}", classes = {CLASSES}, context = 4 }}
    emo = clip.logits(img.embeds, txt.embeds)
  }}
  loss      = loss.cross_entropy(emo, faces.emotion)
  optimizer = optim.adam {{ lr = 3e-3 }}
  train     {{ epochs = 2, batch = 8 }}
  protocol  = protocol.official
  metrics   = [metric.accuracy(emo, faces.emotion), metric.uar(emo, faces.emotion)]
}}
"#,
            data = data.display(),
            clip = clip.display()
        ),
    )
    .unwrap();
    r
}

#[test]
fn a_prompted_clip_recipe_trains_end_to_end_and_a_size_mismatch_fails_the_check() {
    let dir = scratch("recipe");
    let (clip, data) = clip_and_faces(&dir);
    let r = recipe(&dir, &clip, &data, 32);
    let runs = dir.join("runs");
    let o = mer(&["run", s(&r), "--runs", s(&runs), "--no-mlflow"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("| base | 1 |"), "{}", text(&o));
    // The prompts and the context trained: the saved parameters hold both.
    let params: Vec<PathBuf> = walk(&runs)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    let names: String = params
        .iter()
        .map(|p| {
            String::from_utf8_lossy(&std::fs::read(p).unwrap())
                .chars()
                .take(4000)
                .collect::<String>()
        })
        .collect();
    assert!(
        names.contains("img.prompts") && names.contains("txt.context"),
        "{params:?}"
    );
    // 32-pixel faces into a tower trained on 64: caught before any compute.
    let o = mer(&[
        "models",
        "tiny",
        "--arch",
        "clip",
        "--image",
        "64",
        "--out",
        s(&dir.join("m64")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let bad = recipe(&dir, &dir.join("m64/clip-tiny"), &data, 32);
    let o = mer(&["check", s(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("this tower takes 64×64"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn zero_shot_and_embed_from_the_command_line() {
    let dir = scratch("cli");
    let o = mer(&["models", "tiny", "--arch", "clip", "--out", s(&dir)]);
    assert!(o.status.success(), "{}", text(&o));
    let clip = dir.join("clip-tiny");
    let face = "engine/data/assets/astronaut_face.png";
    let o = mer(&[
        "models",
        "zero-shot",
        s(&clip),
        face,
        "--classes",
        "happy,sad,angry",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let probs: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(probs.len(), 3);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{probs:?}");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "sorted: {probs:?}");
    // The golden folder's text embedding is transformers' get_text_features.
    let o = mer(&["models", "embed", "tests/golden/clip-tiny", "--text", "sad"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["dim"], 16);
    assert_eq!(j["normalized"], false);
    let first = j["embedding"][0].as_f64().unwrap();
    assert!((first - -1.5886114).abs() < 1e-4, "{first}");
    let o = mer(&["models", "embed", s(&clip), "--image", face]);
    assert!(o.status.success(), "{}", text(&o));
    // A SigLIP folder has no text tower: a clear error, exit 1.
    let o = mer(&["models", "tiny", "--arch", "siglip", "--out", s(&dir)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mer(&[
        "models",
        "zero-shot",
        s(&dir.join("siglip-tiny")),
        face,
        "--classes",
        "a,b",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("zero-shot needs a CLIP folder with both towers"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A frozen CLIP tower under a trained head: its features are computed on
/// the first run, stored in the run store, and the second run (`--restart`,
/// same store) computes no tower pass and predicts exactly the same.
#[test]
fn a_frozen_tower_is_paid_once_across_runs() {
    let dir = scratch("cache");
    let (clip, data) = clip_and_faces(&dir);
    let r = dir.join("frozen.mer");
    std::fs::write(
        &r,
        format!(
            r#"mer 0.1
experiment frozen_clip {{
  seed = 1
  // No augmentation: a randomly cropped face is a new sample each epoch.
  data faces = fer.rafdb {{ root = "{}", size = [32, 32], augment = false }}
  model {{
    img = clip.vision(faces.image) {{ weights = "{}" }}
    emo = nn.linear(img.embeds) {{ out = 7 }}
  }}
  loss      = loss.cross_entropy(emo, faces.emotion)
  optimizer = optim.adam {{ lr = 3e-3 }}
  train     {{ epochs = 3, batch = 8 }}
  protocol  = protocol.official
  metrics   = [metric.accuracy(emo, faces.emotion)]
}}
"#,
            data.display(),
            clip.display()
        ),
    )
    .unwrap();
    let runs = dir.join("runs");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", s(&r), "--runs", s(&runs), "--no-mlflow"];
        args.extend_from_slice(extra);
        let o = mer(&args);
        assert!(o.status.success(), "{}", text(&o));
        let line = text(&o)
            .lines()
            .find(|l| l.starts_with("feature cache:"))
            .unwrap_or_else(|| panic!("no cache line:\n{}", text(&o)))
            .to_string();
        let preds = walk(&runs)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == "predictions.csv"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .expect("predictions.csv");
        (line, preds)
    };
    let (first, p1) = run(&[]);
    // 20 samples: every one computed once, then served for epochs 2 and 3.
    assert!(
        first.contains("(0 from earlier runs), 20 computed"),
        "{first}"
    );
    let (second, p2) = run(&["--restart"]);
    assert!(
        second.contains("(20 from earlier runs), 0 computed"),
        "{second}"
    );
    assert_eq!(p1, p2);
    assert!(runs.join("cache/features").is_dir());
    let _ = std::fs::remove_dir_all(dir);
}
