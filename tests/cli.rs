//! End-to-end tests of the `mer` binary on the shipped recipes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn recipes() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("recipes dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "mer") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes")),
        &mut v,
    );
    v.sort();
    v.into_iter()
        .map(|p| {
            p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .expect("inside")
                .to_path_buf()
        })
        .collect()
}

/// Recipes whose components are all available today must check cleanly;
/// the others may fail only because their paper's plugin is not built yet.
#[test]
fn every_shipped_recipe_checks() {
    let all = recipes();
    assert!(all.len() >= 15, "{all:?}");
    let mut clean = Vec::new();
    for r in &all {
        let o = mer(&["check", "--format", "short", r.to_str().expect("utf8")]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{}: {err}", r.display());
        if o.status.code() == Some(0) {
            clean.push(r.display().to_string());
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{}: {err}", r.display());
        for line in err.lines().filter(|l| l.contains(": error[")) {
            assert!(
                line.contains("error[mer::unknown-plugin]"),
                "{}: only the missing plugin may fail, got: {line}",
                r.display()
            );
        }
    }
    for must in [
        "recipes/demo/synth_me_au.mer",
        "recipes/demo/synth_me_sweep.mer",
        "recipes/common/casme2.mer",
        "recipes/common/samm.mer",
        "recipes/au_llm/casme2.mer",
        "recipes/au_llm/samm.mer",
        "recipes/au_llm/cross_casme2_to_samm.mer",
        "recipes/au_llm/cross_samm_to_casme2.mer",
        "recipes/au_llm/led_baseline.mer",
        "recipes/au_llm/demo.mer",
        "recipes/au_llm/smollm2.mer",
        "recipes/mtcae_dfer/crema_d.mer",
        "recipes/mpa_fer/demo.mer",
        "recipes/mpa_fer/rafdb.mer",
        "recipes/mpa_fer/rafdb_l14.mer",
        "recipes/mpa_fer/ferplus.mer",
        "recipes/mpa_fer/affectnet7.mer",
        "recipes/mpa_fer/affectnet8_l14.mer",
        "recipes/face_llava/demo.mer",
        "recipes/face_llava/demo_aus.mer",
        "recipes/face_llava/stage1.mer",
        "recipes/face_llava/dfew.mer",
        "recipes/face_llava/rafdb.mer",
        "recipes/face_llava/disfa.mer",
        "recipes/face_llava/ffpp.mer",
    ] {
        assert!(
            clean.contains(&must.to_string()),
            "{must} must check cleanly; clean: {clean:?}"
        );
    }
}

#[test]
fn render_is_canonical_and_deterministic() {
    let a = mer(&["render", "recipes/demo/synth_me_au.mer"]);
    let b = mer(&["render", "recipes/demo/synth_me_au.mer"]);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    insta::assert_snapshot!("render_demo", stdout(&a));
}

#[test]
fn overrides_change_identity_and_kind_change_resets_params() {
    let base = stdout(&mer(&["render", "recipes/demo/synth_me_au.mer"]));
    let o = mer(&[
        "render",
        "recipes/demo/synth_me_au.mer",
        "--set",
        "train.epochs=3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let changed = stdout(&o);
    let hash = |s: &str| s.lines().nth(1).map(str::to_string).unwrap_or_default();
    assert_ne!(hash(&base), hash(&changed));
    assert!(changed.contains("\"epochs\": Int(3)"));

    // Same kind: parameters merge. Different kind: they start over.
    let same = stdout(&mer(&[
        "explain",
        "recipes/demo/synth_me_au.mer",
        "model.aus",
        "--set",
        "model.aus=nn.linear(drop) { bias = false }",
    ]));
    assert!(same.contains("model.aus.out = 4"), "{same}");
    assert!(same.contains("model.aus.bias = false"), "{same}");
    let swapped = mer(&[
        "explain",
        "recipes/demo/synth_me_au.mer",
        "model.aus",
        "--set",
        "model.aus=nn.mlp(drop) { out = 4, hidden = [8] }",
    ]);
    let swapped = stdout(&swapped);
    assert!(
        !swapped.contains("bias"),
        "stale parameter survived a kind change: {swapped}"
    );
    assert!(
        swapped.contains("model.aus.activation = \"gelu\""),
        "{swapped}"
    );
}

#[test]
fn explain_names_every_source() {
    let o = mer(&[
        "explain",
        "recipes/demo/synth_me_sweep.mer",
        "model.drop.p",
        "--variant",
        "no-dropout/optimizer.lr=0.0003",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("explain_sweep_drop", stdout(&o));
    let o = mer(&[
        "explain",
        "recipes/demo/synth_me_au.mer",
        "train",
        "--set",
        "train.batch=8",
    ]);
    insta::assert_snapshot!("explain_train_with_override", stdout(&o));
}

#[test]
fn graph_dot_and_ron() {
    let dot = mer(&["graph", "recipes/demo/synth_me_au.mer", "--format", "dot"]);
    assert_eq!(dot.status.code(), Some(0));
    insta::assert_snapshot!("graph_demo_dot", stdout(&dot));
    let ron = mer(&[
        "graph",
        "recipes/demo/synth_me_au.mer",
        "--format",
        "ron",
        "--variant",
        "bce",
    ]);
    assert_eq!(ron.status.code(), Some(0));
    let text = stdout(&ron);
    let g = mer_dsl::graph::GraphIr::from_ron(&text).expect("graph RON parses back");
    assert_eq!(g.to_ron().trim(), text.trim(), "RON round trip");
    assert_eq!(g.graph.node_count(), 13);
    assert!(g.topo_order().len() == 13, "acyclic");
}

#[test]
fn plan_lists_every_run() {
    let o = mer(&["plan", "recipes/demo/synth_me_sweep.mer"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    // (base 4 + no-dropout 2 + bce 4 sweep points) × 3 seeds × LOSO:
    // no-dropout sets the swept `drop.p`, so it is swept on lr alone.
    assert!(text.contains("30 run(s)"), "{text}");
    insta::assert_snapshot!("plan_sweep", text);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(mer(&[]).status.code(), Some(2));
    assert_eq!(mer(&["check"]).status.code(), Some(2));
    assert_eq!(mer(&["frobnicate"]).status.code(), Some(2));
    let o = mer(&[
        "render",
        "recipes/demo/synth_me_au.mer",
        "--variant",
        "no-dropuot",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `no-dropout`?"),
        "{}",
        stderr(&o)
    );
    let o = mer(&["explain", "recipes/demo/synth_me_au.mer", "train.epoch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `epochs`?"),
        "{}",
        stderr(&o)
    );
    let o = mer(&["plugins", "describe", "nn.linaer"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `nn.linear`?"));
}

#[test]
fn missing_file_is_a_recipe_error() {
    let o = mer(&["check", "recipes/nope.mer"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read `recipes/nope.mer`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn test_tuned_selection_is_flagged() {
    let o = mer(&[
        "check",
        "recipes/demo/synth_me_au.mer",
        "--set",
        "train.select=\"test_best_epoch\"",
    ]);
    assert_eq!(o.status.code(), Some(0), "a warning, not an error");
    assert!(stderr(&o).contains("mer::test-tuned"), "{}", stderr(&o));
    let o = mer(&[
        "check",
        "--deny-warnings",
        "recipes/demo/synth_me_au.mer",
        "--set",
        "train.select=\"test_best_epoch\"",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn plugins_describe() {
    let o = mer(&["plugins", "describe", "nn.linear"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("describe_linear", stdout(&o));
    let o = mer(&["plugins", "list"]);
    assert!(stdout(&o).contains("protocol.loso"));
}

/// A misspelt or missing variable falls back to `env`'s default: `mer
/// explain` names the variable it read and says it was not set.
#[test]
fn explain_names_an_unset_environment_variable() {
    let explain = |value: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
        c.args([
            "explain",
            "recipes/demo/casme2_layout.mer",
            "data.clips.root",
        ])
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        match value {
            Some(v) => c.env("CASME2_ROOT", v),
            None => c.env_remove("CASME2_ROOT"),
        };
        let o = c.output().expect("mer runs");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    let unset = explain(None);
    assert!(
        unset.contains("default of env(\"CASME2_ROOT\") at recipes/demo/casme2_layout.mer:13:5: environment variable CASME2_ROOT is not set"),
        "{unset}"
    );
    let set = explain(Some("/elsewhere"));
    assert!(set.contains("data.clips.root = \"/elsewhere\""), "{set}");
    assert!(
        set.contains("from environment variable CASME2_ROOT"),
        "{set}"
    );
}

/// An ablation that sets a swept key keeps its value; its variants are not
/// swept on that key (the demo's `no-dropout` under a dropout sweep), and
/// a warning at the ablation's statement says so.
#[test]
fn an_ablation_that_sets_a_swept_key_is_not_swept_on_it() {
    let sweep = "recipes/demo/synth_me_sweep.mer";
    let o = mer(&["check", sweep]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ablation `no-dropout` sets `drop.p`, a sweep axis"),
        "{err}"
    );
    assert!(err.contains("recipes/demo/synth_me_au.mer:50:27"), "{err}");
    let o = mer(&[
        "explain",
        sweep,
        "model.drop.p",
        "--variant",
        "no-dropout/optimizer.lr=0.0003",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("model.drop.p = 0.0\n    set at recipes/demo/synth_me_au.mer:50:27"),
        "{}",
        stdout(&o)
    );
}

/// An override of a swept key is an error at the override; `~sweep.AXIS`
/// (the fix it suggests) drops the axis, `~sweep` the whole grid.
#[test]
fn overrides_of_a_sweep_axis_are_refused_and_tilde_sweep_deletes() {
    let sweep = "recipes/demo/synth_me_sweep.mer";
    let o = mer(&["plan", sweep, "--set", "optimizer.lr=1e8"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("mer::sweep"), "{err}");
    assert!(err.contains("--set #1:1:1"), "{err}");
    assert!(err.contains("--set '~sweep.optimizer.lr'"), "{err}");
    let o = mer(&[
        "plan",
        sweep,
        "--set",
        "~sweep.optimizer.lr",
        "--set",
        "optimizer.lr=1e-2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("base/drop.p=0.1"), "{text}");
    assert!(!text.contains("optimizer.lr="), "{text}");
    let o = mer(&["plan", sweep, "--set", "~sweep"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // base + 2 ablations, 3 seeds each.
    assert!(stdout(&o).contains("9 run(s)"), "{}", stdout(&o));
}
