//! End-to-end tests of `mer run` and `mer report` on generated data.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn mer_in(runs: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .arg("--runs")
        .arg(runs)
        .env("NO_COLOR", "1")
        // Each test's MLflow file store sits beside its run store.
        .env("MLFLOW_TRACKING_URI", runs.join("mlruns"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs")
}

/// `mer ARGS` in the repository root, outside any run store.
fn mer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The single `<exp>/<hash>/<variant>/seed<S>` folder under `runs`.
fn variant_dir(runs: &Path, exp: &str, variant: &str, seed: i64) -> PathBuf {
    let exp_dir = runs.join(exp);
    let hash = std::fs::read_dir(&exp_dir)
        .expect("experiment folder")
        .next()
        .expect("a recipe hash")
        .expect("entry")
        .path();
    hash.join(variant).join(format!("seed{seed}"))
}

fn json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn metric<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn loso_predicts_every_sample_once_with_disjoint_groups_and_both_aggregates() {
    let runs = scratch("loso");
    let o = mer_in(&runs, &["run", "tests/run/tiny.mer", "--variant", "base"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = variant_dir(&runs, "tiny", "base", 1);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let folds: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("folds"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(folds.len(), 4, "one fold per subject");
    for f in &folds {
        let fold = f.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(json(&f.join("status.json"))["state"], "finished");
        let preds = std::fs::read_to_string(f.join("predictions.csv")).unwrap();
        for line in preds.lines().skip(1) {
            let id = line.split(',').next().unwrap().to_string();
            // The held-out subject is the only one predicted in its fold.
            assert!(
                id.starts_with(&format!("clips:{fold}/")),
                "{id} in fold {fold}"
            );
            assert!(
                seen.insert(id.clone(), fold.clone()).is_none(),
                "{id} predicted twice"
            );
        }
    }
    assert_eq!(seen.len(), 20, "every sample predicted exactly once");
    let m = json(&dir.join("metrics.json"));
    assert_eq!(m["complete"], true);
    let f1 = metric(&m, "f1");
    assert!(
        f1["pooled"].is_number() && f1["per_fold_mean"].is_number(),
        "{f1}"
    );
    assert_eq!(f1["per_fold"].as_array().unwrap().len(), 4);
    assert!(f1["how"].as_str().unwrap().contains("positive-class"));
    assert!(metric(&m, "f1_macro2[AU12]")["how"]
        .as_str()
        .unwrap()
        .contains("2-class macro"));
    assert!(metric(&m, "auc").is_object());
    let report =
        std::fs::read_to_string(dir.parent().unwrap().parent().unwrap().join("report.md")).unwrap();
    assert!(report.contains("| f1[AU1] |"), "{report}");
    assert!(!report.contains('†'), "nothing here is test-tuned");
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    let a = scratch("seed-a");
    let b = scratch("seed-b");
    let c = scratch("seed-c");
    for r in [&a, &b] {
        let o = mer_in(
            r,
            &[
                "run",
                "tests/run/tiny.mer",
                "--variant",
                "base",
                "--folds",
                "1,2",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let o = mer_in(
        &c,
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--folds",
            "1,2",
            "--set",
            "seed=2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let read = |r: &Path, s| {
        std::fs::read_to_string(
            variant_dir(r, "tiny", "base", s).join("folds/sub01/predictions.csv"),
        )
        .unwrap()
    };
    assert_eq!(read(&a, 1), read(&b, 1), "bit-identical predictions");
    assert_ne!(
        read(&a, 1),
        read(&c, 2),
        "another seed trains another model"
    );
    let ma = json(&variant_dir(&a, "tiny", "base", 1).join("metrics.json"));
    assert_eq!(ma["complete"], false, "two of four folds");
    for r in [a, b, c] {
        let _ = std::fs::remove_dir_all(r);
    }
}

#[test]
fn test_tuned_thresholds_run_only_when_named_and_are_labelled() {
    let runs = scratch("tuned");
    let o = mer_in(&runs, &["run", "tests/run/tuned.mer", "--variant", "base"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("mer::test-tuned"), "the warning is shown");
    let m = json(&variant_dir(&runs, "tuned", "base", 1).join("metrics.json"));
    let tuned = metric(&m, "f1_macro2_test_tuned");
    assert_eq!(tuned["test_tuned"], true);
    assert!(tuned["how"].as_str().unwrap().contains("TEST-TUNED"));
    assert_eq!(
        metric(&m, "f1")["test_tuned"],
        false,
        "the fixed-threshold metric is not tainted"
    );
    let report = std::fs::read_to_string(
        variant_dir(&runs, "tuned", "base", 1)
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("report.md"),
    )
    .unwrap();
    assert!(report.contains("f1_macro2_test_tuned †"), "{report}");
    assert!(report.contains("† marks test-tuned numbers"), "{report}");
    // And --deny-warnings refuses to check it.
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(["check", "--deny-warnings", "tests/run/tuned.mer"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn a_diverging_fold_fails_by_name_and_the_run_exits_1() {
    let runs = scratch("diverge");
    let o = mer_in(
        &runs,
        &[
            "run",
            "tests/run/diverge.mer",
            "--variant",
            "base",
            "--folds",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st = json(&variant_dir(&runs, "diverge", "base", 1).join("folds/sub01/status.json"));
    assert_eq!(st["state"], "failed");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.contains("epoch 1, batch") && msg.contains("NaN") || msg.contains("inf"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn existing_results_are_never_overwritten_silently() {
    let runs = scratch("again");
    let args = [
        "run",
        "tests/run/tiny.mer",
        "--variant",
        "base",
        "--folds",
        "1",
    ];
    assert_eq!(mer_in(&runs, &args).status.code(), Some(0));
    let again = mer_in(&runs, &args);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--resume"), "{}", text(&again));
    let resumed = mer_in(&runs, &[&args[..], &["--resume"]].concat());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("finished earlier"),
        "{}",
        text(&resumed)
    );
    let restarted = mer_in(&runs, &[&args[..], &["--restart"]].concat());
    assert_eq!(restarted.status.code(), Some(0), "{}", text(&restarted));
    let bad = mer_in(
        &runs,
        &["run", "tests/run/tiny.mer", "--folds", "9", "--restart"],
    );
    assert!(text(&bad).contains("no fold `9`"), "{}", text(&bad));
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn kill_dash_nine_then_resume_gives_the_uninterrupted_numbers() {
    let straight = scratch("straight");
    let o = mer_in(
        &straight,
        &["run", "tests/run/slow.mer", "--variant", "base"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let killed = scratch("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(["run", "tests/run/slow.mer", "--variant", "base", "--runs"])
        .arg(&killed)
        .env("MLFLOW_TRACKING_URI", killed.join("mlruns"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first fold has checkpointed a few epochs, then kill
    // without warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let ckpt = loop {
        // `killed/` appears at once (it also holds the MLflow file store);
        // the variant's folder shows up with the first fold.
        let found = std::fs::read_dir(killed.join("slow"))
            .ok()
            .and_then(|_| {
                let d = variant_dir(&killed, "slow", "base", 1).join("folds/fold1/checkpoint.json");
                std::fs::read_to_string(&d).ok().map(|s| (d, s))
            })
            .filter(|(_, s)| {
                // Mid-fold: a few epochs done, many to go.
                let done = serde_json::from_str::<Value>(s)
                    .ok()
                    .and_then(|v| v["epochs_done"].as_u64());
                done.is_some_and(|d| (2..30).contains(&d))
            });
        if let Some((d, _)) = found {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL on Unix
    let _ = child.wait();
    // Every file the run left parses: nothing half-written.
    let fold = ckpt.parent().unwrap();
    for e in std::fs::read_dir(fold).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            json(&p);
        }
    }
    assert_ne!(json(&fold.join("status.json"))["state"], "finished");
    let o = mer_in(
        &killed,
        &["run", "tests/run/slow.mer", "--variant", "base", "--resume"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("resuming after epoch"), "{}", text(&o));
    let m = |r: &Path| {
        std::fs::read_to_string(variant_dir(r, "slow", "base", 1).join("metrics.json")).unwrap()
    };
    assert_eq!(m(&straight), m(&killed), "same final metrics");
    for f in ["fold1", "fold2"] {
        let p = |r: &Path| {
            std::fs::read_to_string(
                variant_dir(r, "slow", "base", 1)
                    .join("folds")
                    .join(f)
                    .join("predictions.csv"),
            )
            .unwrap()
        };
        assert_eq!(p(&straight), p(&killed), "{f}: same predictions");
    }
    let _ = std::fs::remove_dir_all(straight);
    let _ = std::fs::remove_dir_all(killed);
}

#[test]
fn the_report_renders_from_a_fixed_run_store() {
    // A frozen metrics.json (from a tiny run) renders to a stable report.
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(["report", "tests/run/fixture"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    insta::assert_snapshot!("report_fixture", String::from_utf8_lossy(&o.stdout));
    let names: BTreeSet<String> = ["md", "tex", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for f in names {
        let o = Command::new(env!("CARGO_BIN_EXE_mer"))
            .args(["report", "tests/run/fixture", "--format", &f])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
    }
}

#[test]
fn a_composite_of_datasets_folds_by_dataset_and_subject_and_cuts_metrics() {
    let runs = scratch("composite");
    let o = mer_in(
        &runs,
        &["run", "tests/run/composite.mer", "--variant", "base"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = variant_dir(&runs, "composite", "base", 1);
    let m = json(&dir.join("metrics.json"));
    // Both generators number their subjects sub01..: still separate folds.
    let folds: Vec<&str> = m["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        folds,
        [
            "clips_sub01",
            "clips_sub02",
            "clips_sub03",
            "clips_sub04",
            "other_sub01",
            "other_sub02"
        ]
    );
    for cut in ["f1@clips", "f1@other"] {
        assert!(
            metric(&m, cut)["how"]
                .as_str()
                .unwrap()
                .contains("only the"),
            "{cut}"
        );
    }
    let _ = std::fs::remove_dir_all(runs);
}

/// `mer data synth|verify` offer what the registry's dataset kinds declare
/// (no list in the CLI): every corpus with a writer or a verifier, by full
/// or short name, and a misspelt one gets a suggestion.
#[test]
fn data_tools_come_from_the_dataset_kinds() {
    let o = mer(&["data", "synth", "--layout", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    for k in [
        "me.casme2",
        "me.smic",
        "dfer.dfew",
        "dfer.mead",
        "fer.affectnet",
    ] {
        assert!(t.contains(k), "{k}: {t}");
    }
    assert!(!t.contains("au.disfa"), "AU corpora write no layout: {t}");
    let o = mer(&["data", "verify", "nowhere", "--dataset", "au.disf"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("did you mean `au.disfa`?"),
        "{}",
        text(&o)
    );
    let o = mer(&["data", "verify", "nowhere", "--dataset", "synth.me"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("au.bp4d"), "{}", text(&o));
}

#[test]
fn generated_casme2_layout_verifies_and_runs_through_the_real_loader() {
    let runs = scratch("casme2-runs");
    let root = scratch("casme2-data");
    let r = root.display().to_string();
    let o = mer(&[
        "data",
        "synth",
        "--layout",
        "casme2",
        "--out",
        &r,
        "--subjects",
        "3",
        "--clips-per-subject",
        "4",
        "--size",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(root.join("CASME2-coding-20140508.xlsx").is_file());
    let o = mer(&["data", "verify", &r, "--dataset", "me.casme2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("samples: 12   subjects: 3"),
        "{}",
        text(&o)
    );
    let set = format!("data.clips.root={:?}", r);
    let o = mer_in(
        &runs,
        &[
            "run",
            "recipes/demo/casme2_layout.mer",
            "--set",
            &set,
            "--set",
            "train.epochs=1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = json(&variant_dir(&runs, "demo_casme2_layout", "base", 1).join("metrics.json"));
    assert_eq!(
        m["folds"].as_array().unwrap().len(),
        3,
        "LOSO over the 3 subjects"
    );
    // The same frames through TV-L1: the `flow` port computed from JPEGs.
    let cache = runs.join("flow-cache");
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args([
            "run",
            "recipes/demo/casme2_flow.mer",
            "--set",
            &set,
            "--set",
            "train.epochs=1",
        ])
        .args(["--runs", &runs.display().to_string()])
        .env("MER_CACHE_DIR", &cache)
        .env("MLFLOW_TRACKING_URI", runs.join("mlruns"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(cache.join("flow").is_dir(), "flows cached on disk");
    // A broken frame folder is named, with the label file's row.
    std::fs::remove_dir_all(root.join("Cropped/sub02")).unwrap();
    let o = mer(&["data", "verify", &r, "--dataset", "me.casme2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("CASME2-coding-20140508.xlsx:6") && text(&o).contains("is missing"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(runs);
    let _ = std::fs::remove_dir_all(root);
}

/// MTCAE-DFER end to end at toy size: a generated CREMA-D tree read by the
/// real loader (official actor-block folds), the plugin library, the frozen
/// encoder's tokens computed once for both variants, and the paper's
/// numbers beside ours in the report.
#[test]
fn mtcae_dfer_runs_on_a_generated_crema_d_tree_with_cached_encoder_tokens() {
    let runs = scratch("mtcae-runs");
    let root = scratch("mtcae-crema");
    let r = root.display().to_string();
    let o = mer(&[
        "data",
        "synth",
        "--layout",
        "crema_d",
        "--out",
        &r,
        "--subjects",
        "5",
        "--clips-per-subject",
        "3",
        "--frames-per-clip",
        "4",
        "--size",
        "16",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = mer(&["data", "verify", &r, "--dataset", "dfer.crema_d"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("official folds: 5"), "{}", text(&o));
    let set = format!("data.clips.root={:?}", r);
    let o = mer_in(
        &runs,
        &["run", "tests/run/mtcae_crema_d.mer", "--set", &set],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // 15 clips: computed once (5 folds × 2 epochs × 2 variants reuse them).
    assert!(out.contains("15 computed"), "{out}");
    let m = json(&variant_dir(&runs, "mtcae_crema_d_tiny", "parallel", 1).join("metrics.json"));
    assert_eq!(m["folds"].as_array().unwrap().len(), 5);
    let uar = metric(&m, "uar")["pooled"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&uar));
    assert!(
        out.contains("| reported by paper | – | – | – | 84.71‡ | 85.03‡ |")
            || out.contains("| reported by paper | – | – | – | 85.03‡ | 84.71‡ |"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(runs);
    let _ = std::fs::remove_dir_all(root);
}

/// RAF-DB's distributed layout, generated, verified and run on the
/// official split through the real `fer.rafdb` loader.
#[test]
fn generated_rafdb_layout_verifies_and_runs_on_the_official_split() {
    let runs = scratch("rafdb-runs");
    let root = scratch("rafdb-data");
    let r = root.display().to_string();
    let o = mer(&[
        "data",
        "synth",
        "--layout",
        "rafdb",
        "--out",
        &r,
        "--subjects",
        "5",
        "--clips-per-subject",
        "4",
        "--size",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = mer(&["data", "verify", &r, "--dataset", "fer.rafdb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("samples: 20   train: 16   test: 4"),
        "{}",
        text(&o)
    );
    let set = format!("data.faces.root={:?}", r);
    let o = mer_in(
        &runs,
        &[
            "run",
            "recipes/demo/rafdb_layout.mer",
            "--set",
            &set,
            "--set",
            "train.epochs=1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = json(&variant_dir(&runs, "demo_rafdb_layout", "base", 1).join("metrics.json"));
    assert_eq!(m["folds"], serde_json::json!(["official"]));
    assert_eq!(m["samples"], 20);
    let _ = std::fs::remove_dir_all(runs);
    let _ = std::fs::remove_dir_all(root);
}

/// The frozen multi-experiment store: every table kind, in Markdown and
/// LaTeX, as snapshots a reviewer diffs.
#[test]
fn the_report_fixture_renders_every_table_kind_in_md_and_tex() {
    let md = mer(&["report", "tests/run/report_fixture"]);
    assert_eq!(md.status.code(), Some(0), "{}", text(&md));
    let md = String::from_utf8_lossy(&md.stdout).to_string();
    for heading in [
        "## Per label: f1_macro2",
        "| reported by paper | – | 71.20‡ | 64.00‡ | 58.30‡ | – |",
        "# Across experiments",
        "## Ablation: variants × datasets, f1",
        "## Cross-domain: f1_macro2, base (seed 1)",
        "| train \\ test | synth.me:clips | synth.me:other |",
        "| truth \\ pred |",
        "Nothing here is test-tuned",
    ] {
        assert!(md.contains(heading), "missing `{heading}`");
    }
    // Every table is preceded by its caption.
    let lines: Vec<&str> = md.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("|---") {
            assert!(
                lines[i - 3].starts_with('*'),
                "table at line {} has no caption",
                i
            );
        }
    }
    insta::assert_snapshot!("report_fixture_md", md);
    let tex = mer(&["report", "tests/run/report_fixture", "--format", "tex"]);
    assert_eq!(tex.status.code(), Some(0), "{}", text(&tex));
    let tex = String::from_utf8_lossy(&tex.stdout).to_string();
    assert!(tex.starts_with("\\documentclass{article}"));
    assert!(tex.trim_end().ends_with("\\end{document}"));
    assert_eq!(
        tex.matches("\\begin{tabular}").count(),
        md.lines().filter(|l| l.starts_with("|---")).count(),
        "the same tables in both formats"
    );
    insta::assert_snapshot!("report_fixture_tex", tex);
}

/// Figures render without system fonts: PNGs decode, are not blank, and
/// carry their axis labels (in the SVG text and as ink in the PNG margins).
#[test]
fn report_figures_render_with_labelled_axes() {
    let out = scratch("figures");
    let o = mer(&[
        "report",
        "tests/run/report_fixture",
        "--figures",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("## Figures"), "{md}");
    // What the figures mark (a dot per epoch, zero against undefined bars,
    // confusion percentages pooled over N folds), as their captions say.
    let captions: Vec<String> = md
        .lines()
        .filter(|l| l.starts_with("!["))
        .map(|l| l.replace(&out.display().to_string(), "FIGURES"))
        .collect();
    insta::assert_snapshot!("report_fixture_figure_captions", captions.join("\n"));
    let names: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for n in [
        "fx_casme-base-seed1-loss",
        "fx_casme-per-label-f1",
        "fx_emotion-base-seed1-confusion",
    ] {
        for ext in ["svg", "png"] {
            assert!(
                names.contains(&format!("{n}.{ext}")),
                "{n}.{ext} in {names:?}"
            );
        }
    }
    let svg = std::fs::read_to_string(out.join("fx_casme-base-seed1-loss.svg")).unwrap();
    assert!(
        svg.contains(">\nepoch\n</text>") && svg.contains(">\nloss\n</text>"),
        "axis labels"
    );
    let img = image::open(out.join("fx_casme-base-seed1-loss.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(img.dimensions(), (720, 440));
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                if img.get_pixel(x, y)[0] < 128 {
                    n += 1;
                }
            }
        }
        n
    };
    let total = dark(0, 720, 0, 440);
    assert!(total > 720 * 440 / 100, "not blank: {total} dark pixels");
    // The y-axis title sits in the leftmost strip, the x-axis title in the
    // bottom strip; both are only text, so ink there means a label.
    assert!(dark(0, 28, 120, 320) > 20, "y-axis label");
    assert!(dark(200, 520, 410, 440) > 20, "x-axis label");
    // Deterministic bytes: drawing again gives the same files.
    let again = scratch("figures-again");
    mer(&[
        "report",
        "tests/run/report_fixture",
        "--figures",
        &again.display().to_string(),
    ]);
    for n in &names {
        assert_eq!(
            std::fs::read(out.join(n)).unwrap(),
            std::fs::read(again.join(n)).unwrap(),
            "{n} differs between two renders"
        );
    }
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(again);
}

/// AU-LLM end to end through the plugin library and the LLM body: LED →
/// 3D-CNN with SE → EFP → a (tiny, generated) GGUF LLaMA with LoRA → AU
/// head, one LOSO fold; the adapters land in PEFT's layout.
#[test]
fn au_llm_runs_end_to_end_with_a_gguf_llm_and_saves_peft_adapters() {
    let runs = scratch("au-llm");
    std::fs::create_dir_all(&runs).unwrap();
    let (_, gguf, c) = mer_engine::llm::tiny::tiny_checkpoint("llama", &runs).unwrap();
    assert_eq!(c.hidden, 16, "tests/run/au_llm_tiny.mer projects to 16");
    let weights = format!("model.llm.weights={:?}", gguf.display().to_string());
    let o = mer_in(
        &runs,
        &[
            "run",
            "tests/run/au_llm_tiny.mer",
            "--variant",
            "base",
            "--folds",
            "1",
            "--set",
            &weights,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = variant_dir(&runs, "au_llm_tiny", "base", 1);
    let m = json(&v.join("metrics.json"));
    assert!(m["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "f1"));
    let adapters = v.join("folds").join("sub01").join("adapters").join("llm");
    let cfg = json(&adapters.join("adapter_config.json"));
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    let saved = mer_registry::candle::safetensors::load(
        adapters.join("adapter_model.safetensors"),
        &mer_registry::candle::Device::Cpu,
    )
    .unwrap();
    // 2 layers × q, v × A, B.
    assert_eq!(saved.len(), 8, "{:?}", saved.keys().collect::<Vec<_>>());
    for (k, t) in &saved {
        assert!(k.starts_with("base_model.model.model.layers."), "{k}");
        if k.contains("lora_B") {
            let n = t
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "{k} never trained");
        }
    }
    // The saved adapters load back for generation, all of them or none.
    let (g, a) = (gguf.to_str().unwrap(), adapters.to_str().unwrap());
    let ask = |extra: &[&str]| {
        let mut args = vec![
            "models",
            "generate",
            g,
            "--prompt",
            "ab",
            "--max-tokens",
            "3",
            "--adapters",
            a,
        ];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_mer"))
            .args(&args)
            .output()
            .unwrap()
    };
    let o = ask(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("8 adapter tensors"), "{}", text(&o));
    let o = ask(&["--layers", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("adapter_model.safetensors") && text(&o).contains("--layers"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(runs);
}

/// Path parameters are checked before any compute: a missing file is an
/// error at the recipe's line; a known pretrained file is fetched, or,
/// offline, named with the command that fetches it. Nothing is trained.
#[test]
fn missing_weights_are_reported_before_any_compute() {
    let runs = scratch("preflight");
    std::fs::create_dir_all(&runs).unwrap();
    let missing = runs.join("no-such-model");
    let o = mer_in(
        &runs,
        &[
            "run",
            "recipes/au_llm/demo.mer",
            "--variant",
            "base",
            "--set",
            &format!("model.llm.weights={:?}", missing.display().to_string()),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("before any compute"), "{t}");
    assert!(
        t.contains("`llm.weights`") && t.contains("no such file or folder"),
        "{t}"
    );
    // The node's location in the recipe that defines it.
    assert!(t.contains("recipes/au_llm/demo.mer:"), "{t}");
    assert!(!runs.join("au_llm_demo").exists(), "nothing may run");

    let known = runs.join("elsewhere/SmolLM2-135M-Instruct.Q4_1.gguf");
    let o = mer_in(
        &runs,
        &[
            "run",
            "recipes/au_llm/demo.mer",
            "--variant",
            "base",
            "--offline",
            "--set",
            &format!("model.llm.weights={:?}", known.display().to_string()),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&format!(
            "mer models fetch smollm2 --to {}",
            known.display()
        )),
        "{t}"
    );
    assert!(!known.exists());
    let _ = std::fs::remove_dir_all(&runs);
}

/// `train.normalize`: each fold standardises with statistics of its own
/// training samples (never its test subject), records them, and the report
/// says so; a port the data lacks stops the fold by name.
#[test]
fn normalisation_statistics_come_from_each_folds_training_samples_only() {
    let runs = scratch("normalize");
    let o = mer_in(
        &runs,
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--set",
            "train.normalize=[\"flow\"]",
            "--set",
            "train.epochs=1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = variant_dir(&runs, "tiny", "base", 1);
    let mut means = Vec::new();
    for sub in ["sub01", "sub02", "sub03", "sub04"] {
        let s = json(&dir.join("folds").join(sub).join("normalization.json"));
        // 4 subjects × 5 clips; the held-out subject's 5 are not counted.
        assert_eq!(s["flow"]["samples"], 15, "{sub}: {s}");
        assert_eq!(s["flow"]["mean"].as_array().unwrap().len(), 2, "u and v");
        assert!(s["flow"]["std"][0].as_f64().unwrap() > 0.0);
        means.push(s["flow"]["mean"][0].as_f64().unwrap());
    }
    assert!(
        means.windows(2).any(|w| w[0] != w[1]),
        "each fold fits its own statistics: {means:?}"
    );
    let report =
        std::fs::read_to_string(dir.parent().unwrap().parent().unwrap().join("report.md")).unwrap();
    assert!(report.contains("training samples only"), "{report}");

    let o = mer_in(
        &runs,
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--restart",
            "--set",
            "train.normalize=[\"nope\"]",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("train.normalize names `nope`"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&runs);
}
