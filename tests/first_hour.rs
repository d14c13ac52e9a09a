//! What a new researcher trips over in the first hour, through the binary
//! (exit codes, what reaches the terminal): closed pipes, progress without
//! a terminal, Ctrl-C, variant selection, browsing kinds and blocks, the
//! plan's ids in the run store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn mer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-first-hour-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `mer ARGS` with its standard output closed before it writes: what
/// `mer … | head -1` does once `head` has its line.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = mer()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mer starts");
    drop(child.stdout.take());
    child.wait_with_output().expect("mer ends")
}

#[test]
fn a_closed_pipe_ends_quietly_with_exit_0() {
    for args in [
        &["render", "recipes/demo/synth_me_au.mer"][..],
        &["plugins", "list"][..],
        &["plan", "tests/run/sweep.mer"][..],
    ] {
        let o = with_closed_stdout(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_run_whose_reader_went_away_still_finishes_its_report() {
    let runs = scratch("pipe");
    let runs_s = runs.display().to_string();
    let o = with_closed_stdout(&[
        "run",
        "tests/run/tiny.mer",
        "--variant",
        "base",
        "--no-mlflow",
        "--runs",
        &runs_s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let reports: Vec<_> = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path().join("report.md"))
        .collect();
    assert!(reports.iter().all(|r| r.is_file()), "{reports:?}");
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn without_a_terminal_a_run_prints_one_line_per_epoch_and_a_summary() {
    let runs = scratch("epochs");
    let o = mer()
        .args([
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--no-mlflow",
        ])
        .arg("--runs")
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // 4 LOSO folds × 3 epochs.
    let epochs: Vec<&str> = err.lines().filter(|l| l.contains(" epoch ")).collect();
    assert_eq!(epochs.len(), 12, "{err}");
    assert!(
        epochs[0].contains("fold 1/4 sub01 epoch 1/3 loss ")
            && epochs[0].contains("s/epoch, fold ETA "),
        "{}",
        epochs[0]
    );
    // The terminal gets the headline table; the file has the full report.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("# "), "{out}");
    assert!(out.matches("\n| ").count() > 1, "{out}");
    assert!(err.contains("full report: "), "{err}");
    let report_dir = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let full = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(
        full.len() > out.len(),
        "the summary is shorter than the report"
    );
    // The data root line says what was read (a generated set has none).
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn ctrl_c_stops_at_a_checkpoint_says_how_to_resume_and_resume_finishes() {
    let runs = scratch("sigint");
    let mut child = mer()
        .args([
            "run",
            "tests/run/slow.mer",
            "--variant",
            "base",
            "--no-mlflow",
        ])
        .arg("--runs")
        .arg(&runs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // After the second epoch line, press Ctrl-C.
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        assert!(n > 0, "the run ended before its second epoch: {seen}");
        seen.push_str(&line);
        if line.contains(" epoch 2/40 ") {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains("interrupted after epoch")
            && seen.contains("of fold fold1")
            && seen.contains("rerun with --resume"),
        "{seen}"
    );
    let exp = std::fs::read_dir(runs.join("slow"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(exp.join("base/seed1/folds/fold1/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "interrupted", "{status}");
    assert!(status["epochs_done"].as_u64().unwrap() >= 2, "{status}");

    let o = mer()
        .args([
            "run",
            "tests/run/slow.mer",
            "--variant",
            "base",
            "--no-mlflow",
        ])
        .args(["--resume", "--runs"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("resuming after epoch"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(runs);
}

fn ok(args: &[&str]) -> String {
    let o = mer().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn variants_are_picked_by_name_glob_or_plan_id() {
    let sweep = "tests/run/sweep.mer";
    // A glob that matches one variant works where one is shown.
    let one = ok(&["render", sweep, "-v", "wide/*=0.003"]);
    assert!(one.contains("--variant wide/optimizer.lr=0.003"), "{one}");
    // A glob that matches several is a usage error that lists them.
    let o = mer()
        .args(["render", sweep, "-v", "wide/*"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("matches 2 variants"), "{}", text(&o));
    // The run id `mer plan` prints selects its variant.
    let plan = ok(&["plan", sweep]);
    let row = plan
        .lines()
        .find(|l| l.contains("wide/optimizer.lr=0.001"))
        .unwrap();
    let id = row.split_whitespace().next().unwrap();
    let shown = ok(&["render", sweep, "-v", id]);
    assert!(
        shown.contains("--variant wide/optimizer.lr=0.001"),
        "{shown}"
    );
    // Nothing matches: the variants are listed.
    let o = mer()
        .args(["render", sweep, "-v", "nope/*"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("variants: base/"), "{}", text(&o));
    // A wrong experiment name lists the experiments.
    let o = mer()
        .args(["render", sweep, "-e", "tiny_swep"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("experiments: tiny_sweep"), "{}", text(&o));
}

#[test]
fn blocks_and_kinds_can_be_browsed_and_render_diff_shows_what_was_set() {
    let train = ok(&["describe", "train"]);
    assert!(
        train.contains("epochs : ") && train.contains("select : "),
        "{train}"
    );
    let adam = ok(&["describe", "optim.adam"]);
    assert!(adam.contains("lr"), "{adam}");
    let kinds = ok(&["kinds"]);
    assert!(
        kinds.contains("protocol.loso") && kinds.contains("optim.adam"),
        "{kinds}"
    );

    let full = ok(&["render", "recipes/demo/synth_me_au.mer"]);
    let diff = ok(&["render", "recipes/demo/synth_me_au.mer", "--diff"]);
    assert!(diff.lines().count() * 3 < full.lines().count(), "{diff}");
    assert!(diff.contains("optimizer.lr = 0.003"), "{diff}");
    assert!(
        diff.contains("set at recipes/demo/synth_me_au.mer:"),
        "{diff}"
    );
    assert!(
        !diff.contains("mer default"),
        "defaults are left out: {diff}"
    );
}

#[test]
fn the_plan_ids_follow_a_run_into_the_run_store() {
    let plan = ok(&["plan", "tests/run/tiny.mer"]);
    assert!(plan.contains("/folds/<fold>/"), "{plan}");
    let id = plan
        .lines()
        .find(|l| l.contains(" base "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let runs = scratch("plan-ids");
    let o = mer()
        .args([
            "run",
            "tests/run/tiny.mer",
            "-v",
            &id,
            "--no-mlflow",
            "--runs",
        ])
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let exp = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!exp.join("wide").exists(), "only the planned variant ran");
    let ids: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exp.join("base/seed1/plan.json")).unwrap())
            .unwrap();
    let ids = ids.as_array().unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|i| i["id"] == id.as_str()), "{ids:?}");
    let _ = std::fs::remove_dir_all(runs);
}

#[test]
fn a_new_plugin_says_to_build_the_whole_workspace() {
    let root = scratch("new-plugin");
    std::fs::create_dir_all(&root).unwrap();
    let o = mer()
        .args(["new", "plugin", "fresh_idea", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("next: cargo build --workspace &&"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(root);
}
