//! Face-LLaVA end to end through the binary: the shipped demo recipe on
//! generated FaceInstruct-layout clips with their landmarks, the tiny CLIP
//! that `tests/golden/make_clip_faces.py` pretrained, and a tiny random
//! LLaMA of SmolLM2's width in its place (so CI downloads nothing): both experiments
//! (emotions, AUs), the three-way ablation, answers parsed into metrics
//! with the unparseable ones counted; then stage 1, which must leave the
//! projector and the LLM exactly as they were.

#[path = "common/cli.rs"]
mod cli;

use cli::{ok, s};
use mer_registry::candle::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn under(d: &Path, parts: &[&str], name: &str) -> PathBuf {
    cli::find_all(d, name)
        .into_iter()
        .find(|p| {
            parts
                .iter()
                .all(|v| p.components().any(|c| c.as_os_str() == *v))
        })
        .unwrap_or_else(|| panic!("no {name} for {parts:?} under {}", d.display()))
}

fn weights(p: &Path) -> HashMap<String, Tensor> {
    mer_engine::checkpoint::load_tensors(p, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    let f = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    f(a) == f(b)
}

#[test]
fn the_face_llava_demo_runs_its_ablation_and_stage_one_trains_only_the_landmark_path() {
    let dir = cli::scratch("face-llava", "e2e");
    let mer = |args: &[&str]| cli::mer_at(args, &dir);
    let data = dir.join("data");
    ok(&mer(&[
        "data",
        "synth",
        "--layout",
        "faceinstruct",
        "--out",
        s(&data),
        "--subjects",
        "5",
        "--clips-per-subject",
        "3",
        "--frames-per-clip",
        "3",
        "--size",
        "64",
        "--intensity",
        "1.0",
    ]));
    ok(&mer(&[
        "models",
        "tiny",
        "--arch",
        "llama",
        "--hidden",
        "576",
        "--out",
        s(&dir.join("llm")),
    ]));
    let runs = dir.join("runs");
    let json = data.join("instruct.json");
    let llm = dir.join("llm/llama-hf");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip-faces");
    let env = [
        ("MER_INSTRUCT_JSON", json.as_path()),
        ("SMOLLM2_GGUF", llm.as_path()),
        ("MER_TINY_CLIP", clip.as_path()),
    ];
    let run = |recipe: &str| {
        let args = vec![
            "run",
            recipe,
            "--runs",
            s(&runs),
            "--no-mlflow",
            "--set",
            "train.epochs=2",
            "--set",
            "model.llm.layers=2",
            "--set",
            // The tiny model's tokenizer is byte-level: longer conversations.
            "data.clips.max_tokens=320",
            "--set",
            "model.llm.max_new_tokens=8",
        ];
        cli::mer_env(&args, &dir, &env)
    };
    ok(&run("recipes/face_llava/demo.mer"));
    ok(&run("recipes/face_llava/demo_aus.mer"));
    let emotion =
        std::fs::read_to_string(under(&runs, &["face_llava_demo_emotion"], "report.md")).unwrap();
    for row in ["| base |", "| no-landmarks |", "| masked |", "62.50‡"] {
        assert!(emotion.contains(row), "{row} missing:\n{emotion}");
    }
    assert!(
        emotion.contains("answers were generated over the finished folds")
            && emotion.contains("(unparseable)")
            && emotion.contains("| sample | gold | read as | answer |"),
        "{emotion}"
    );
    let aus = std::fs::read_to_string(under(&runs, &["face_llava_demo_aus"], "report.md")).unwrap();
    assert!(aus.contains("| base |") && aus.contains("f1"), "{aus}");
    assert!(aus.contains("(unparseable)"), "{aus}");

    // The ablation really removes the landmark path: no FRLP or FRGCA
    // weights in its model; the base has both, and the masked variant has
    // no output projection in its attention.
    let names = |variant: &str| -> Vec<String> {
        let mut v: Vec<String> = weights(&under(
            &runs,
            &["face_llava_demo_emotion", variant],
            "model.safetensors",
        ))
        .into_keys()
        .collect();
        v.sort();
        v
    };
    let (base, off, masked) = (names("base"), names("no-landmarks"), names("masked"));
    assert!(
        base.iter().any(|n| n == "lmk.region.face.weight"),
        "{base:?}"
    );
    assert!(base.iter().any(|n| n == "fuse.attn.out.weight"), "{base:?}");
    assert!(
        !off.iter()
            .any(|n| n.starts_with("lmk.") || n.starts_with("fuse.")),
        "{off:?}"
    );
    assert!(masked.iter().any(|n| n == "fuse.q.weight"), "{masked:?}");
    assert!(
        !masked.iter().any(|n| n.starts_with("fuse.attn.")),
        "{masked:?}"
    );

    // Stage 1: the projector frozen, no LoRA. One and two epochs leave the
    // projector bit-identical (the same seed gives the same initial
    // values), while the landmark path moves, and stage 2 moves the
    // projector; the LLM has no trainable tensor to save at all.
    let stage1 = |epochs: &str, store: &str| {
        let mut args = vec![
            "run",
            "recipes/face_llava/demo.mer",
            "--variant",
            "base",
            "--runs",
            store,
            "--no-mlflow",
            "--set",
            "model.llm.layers=2",
            "--set",
            // The tiny model's tokenizer is byte-level: longer conversations.
            "data.clips.max_tokens=320",
            "--set",
            "model.llm.max_new_tokens=4",
            "--set",
            "model.llm.lora=none",
            "--set",
            "optimizer=optim.adamw { lr = 1e-2, weight_decay = 0.0, groups = { proj = { freeze = true } } }",
        ];
        let e = format!("train.epochs={epochs}");
        args.extend_from_slice(&["--set", &e]);
        ok(&cli::mer_env(&args, &dir, &env));
        weights(&under(Path::new(store), &["base"], "model.safetensors"))
    };
    let (one, two) = (
        stage1("1", s(&dir.join("stage1-a"))),
        stage1("2", s(&dir.join("stage1-b"))),
    );
    let stage2 = weights(&under(
        &runs,
        &["face_llava_demo_emotion", "base"],
        "model.safetensors",
    ));
    assert!(
        !one.keys().any(|k| k.starts_with("llm.")),
        "{:?}",
        one.keys()
    );
    for (name, t) in &one {
        if name.starts_with("proj.") {
            assert!(same(t, &two[name]), "{name} moved in stage 1");
            assert!(!same(t, &stage2[name]), "{name} did not train in stage 2");
        }
        if name.starts_with("lmk.") || name.starts_with("fuse.") {
            assert!(!same(t, &two[name]), "{name} did not train in stage 1");
        }
    }
    assert!(one.keys().any(|k| k.starts_with("proj.")));
    let _ = std::fs::remove_dir_all(dir);
}
