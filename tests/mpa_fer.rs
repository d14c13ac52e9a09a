//! MPA-FER end to end through the binary: the shipped demo recipe on
//! generated RAF-DB-layout faces, with the tiny CLIP that
//! `tests/golden/make_clip_faces.py` pretrained, hard prompts described by
//! an LLM (a tiny random one here, so CI downloads nothing; the demo asks
//! the real SmolLM2), every Table 1 and Table 2 row, prototypes from the
//! training split only, and nothing of CLIP among the trained weights.

#[path = "common/cli.rs"]
mod cli;

use cli::{ok, s};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn under(d: &Path, variant: &str, name: &str) -> PathBuf {
    cli::find_all(d, name)
        .into_iter()
        .find(|p| p.components().any(|c| c.as_os_str() == variant))
        .unwrap_or_else(|| panic!("no {name} for {variant} under {}", d.display()))
}

#[test]
fn the_mpa_fer_demo_runs_every_table_row_and_keeps_test_images_out_of_prototypes() {
    let dir = cli::scratch("mpa-fer", "e2e");
    let mer = |args: &[&str]| cli::mer_at(args, &dir);
    let data = dir.join("faces");
    ok(&mer(&[
        "data",
        "synth",
        "--layout",
        "rafdb",
        "--out",
        s(&data),
        "--subjects",
        "5",
        "--clips-per-subject",
        "14",
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
        "32",
        "--out",
        s(&dir.join("llm")),
    ]));
    let runs = dir.join("runs");
    let cache = dir.join("cache");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip-faces");
    let llm = dir.join("llm/llama-hf");
    let env = [
        ("RAFDB_ROOT", data.as_path()),
        ("MER_TINY_CLIP", clip.as_path()),
        ("SMOLLM2_GGUF", llm.as_path()),
        ("MER_CACHE_DIR", cache.as_path()),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "recipes/mpa_fer/demo.mer",
            "--runs",
            s(&runs),
            "--no-mlflow",
            "--set",
            "train.epochs=2",
        ];
        args.extend_from_slice(extra);
        cli::mer_env(&args, &dir, &env)
    };
    let o = run(&[]);
    ok(&o);
    let report = std::fs::read_to_string(under(&runs, "mpa_fer_demo", "report.md")).unwrap();
    for row in [
        "| base |",
        "| baseline |",
        "| +visual-prompts |",
        "| +prototype |",
        "| +soft-hard |",
        "| template-1 |",
        "| template-2 |",
        "| reported by paper |",
    ] {
        assert!(report.contains(row), "{row} missing:\n{report}");
    }
    assert!(report.contains("92.51‡"), "{report}");

    // The LLM wrote one description per class, in label order.
    let described = under(&runs, "base", "descriptions.txt");
    let d = std::fs::read_to_string(&described).unwrap();
    assert!(d.contains("asked in this run"), "{d}");
    let classes = [
        "surprise",
        "fear",
        "disgust",
        "happiness",
        "sadness",
        "anger",
        "neutral",
    ];
    let lines: Vec<&str> = d.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 7, "{d}");
    for (l, c) in lines.iter().zip(classes) {
        assert!(l.starts_with(&format!("{c}: ")), "{l}");
    }

    // Prototypes: every training image once, no test image.
    let labels =
        std::fs::read_to_string(data.join("basic/EmoLabel/list_patition_label.txt")).unwrap();
    let mut train = [0u32; 7];
    for l in labels.lines().filter(|l| l.starts_with("train_")) {
        let code: usize = l.split_whitespace().nth(1).unwrap().parse().unwrap();
        train[code - 1] += 1;
    }
    assert!(labels.lines().any(|l| l.starts_with("test_")));
    let protos = under(&runs, "base", "prototypes.safetensors");
    let t =
        mer_engine::checkpoint::load_tensors(&protos, &mer_registry::candle::Device::Cpu).unwrap();
    let counts: Vec<u32> = t["images_per_class"].to_vec1().unwrap();
    assert_eq!(
        counts,
        train.to_vec(),
        "prototypes saw other images than the training split"
    );

    // CLIP stays frozen: the only trained tensors are the prompts.
    let model = under(&runs, "base", "model.safetensors");
    let trained: BTreeMap<String, _> =
        mer_engine::checkpoint::load_tensors(&model, &mer_registry::candle::Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        trained.keys().cloned().collect::<Vec<_>>(),
        vec!["soft.context".to_string(), "vision.prompts".to_string()],
    );

    // A second run asks the LLM nothing: the answers come from the cache.
    let o = run(&["--restart", "--variant", "base"]);
    ok(&o);
    let d2 = std::fs::read_to_string(under(&runs, "base", "descriptions.txt")).unwrap();
    assert!(d2.contains("read from the cache"), "{d2}");
    assert_eq!(
        d2.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        lines
    );
    let _ = std::fs::remove_dir_all(dir);
}
