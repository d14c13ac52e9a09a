//! The experiment driver through the library, without spawning the binary:
//! LOSO, an interrupted run resumed to the uninterrupted numbers, and a
//! test-tuned metric that is labelled everywhere.

use mer_dsl::resolve::Session;
use mer_dsl::CheckedExperiment;
use mer_engine::driver::{self, DriverOptions, Outcome, QuietSink, Sink};
use mer_engine::runner::Progress;
use mer_engine::store::RunStore;
use mer_registry::candle::Device;
use mer_registry::Registry;
use std::cell::Cell;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-driver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The one experiment of a recipe, checked against the builtin kinds.
fn checked(reg: &Registry, file: &str) -> CheckedExperiment {
    let mut session = Session::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let fc = mer_dsl::check_file(&mut session, reg, &path, &[], None);
    assert!(!session.has_errors(), "{file}: {:?}", session.diags);
    fc.experiments
        .into_iter()
        .find(|e| e.kind == mer_dsl::ast::BlockKind::Experiment)
        .expect("an experiment")
}

fn options(runs: &Path) -> DriverOptions {
    DriverOptions {
        store: RunStore::new(runs),
        folds: vec![],
        resume: false,
        restart: false,
        device: Device::Cpu,
        no_feature_cache: false,
        offline: true,
        mlflow: None,
        context: Default::default(),
        figures: false,
    }
}

fn finished(o: Result<Outcome, driver::DriverError>) -> driver::Finished {
    match o {
        Ok(Outcome::Finished(f)) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn loso_runs_every_variant_through_the_library() {
    let reg = mer_engine::builtin_registry();
    let exp = checked(&reg, "tests/run/tiny.mer");
    let runs = scratch("loso");
    let done = finished(driver::run_experiment(
        &reg,
        &exp,
        &driver::all_cells(&exp),
        &options(&runs),
        &QuietSink,
    ));
    assert!(!done.failed);
    let names: Vec<&str> = done.results.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(names, ["base", "wide"]);
    for r in &done.results {
        assert_eq!(r.protocol, "protocol.loso");
        assert_eq!(r.folds, ["sub01", "sub02", "sub03", "sub04"]);
        assert!(r.complete);
        let f1 = r.metrics.iter().find(|m| m.name == "f1").expect("f1");
        assert!(
            f1.pooled.is_some_and(|x| (0.0..=1.0).contains(&x)),
            "{f1:?}"
        );
    }
    assert_eq!(done.dir, RunStore::new(&runs).experiment_dir(&exp));
    let md = std::fs::read_to_string(done.dir.join("report.md")).unwrap();
    assert_eq!(md, mer_engine::report::markdown_of(&done.report));
    assert!(md.contains("protocol.loso"), "{md}");
    let _ = std::fs::remove_dir_all(runs);
}

/// Asks to stop once `after` epochs have ended, as Ctrl-C does.
struct StopAfter {
    epochs: Cell<usize>,
    after: usize,
}

impl Progress for StopAfter {
    fn epoch_end(&self, _epoch: usize, _loss: f64) {
        self.epochs.set(self.epochs.get() + 1);
    }
    fn interrupted(&self) -> bool {
        self.epochs.get() >= self.after
    }
}

struct StopSink(usize);

impl Sink for StopSink {
    fn progress(&self, _label: &str) -> Box<dyn Progress + '_> {
        Box::new(StopAfter {
            epochs: Cell::new(0),
            after: self.0,
        })
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_numbers() {
    let reg = mer_engine::builtin_registry();
    let exp = checked(&reg, "tests/run/slow.mer");
    let base: Vec<driver::Cell> = driver::all_cells(&exp)
        .into_iter()
        .filter(|c| c.variant.variant.name == "base")
        .collect();
    let straight = scratch("straight");
    finished(driver::run_experiment(
        &reg,
        &exp,
        &base,
        &options(&straight),
        &QuietSink,
    ));

    let stopped = scratch("stopped");
    match driver::run_experiment(&reg, &exp, &base, &options(&stopped), &StopSink(5)) {
        Ok(Outcome::Interrupted { label, error }) => {
            assert_eq!(label, "slow/base seed 1");
            assert!(
                error
                    .to_string()
                    .contains("interrupted after epoch 5 of 40 of fold fold1"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let vdir = RunStore::new(&stopped).variant_dir(&exp, "base", 1);
    let status =
        std::fs::read_to_string(RunStore::fold_dir(&vdir, "fold1").join("status.json")).unwrap();
    assert!(status.contains("\"interrupted\""), "{status}");
    // The same call with `resume` continues from the checkpoint.
    let mut again = options(&stopped);
    again.resume = true;
    let done = finished(driver::run_experiment(
        &reg, &exp, &base, &again, &QuietSink,
    ));
    assert!(done.results[0].complete);
    let metrics = |runs: &Path| {
        std::fs::read_to_string(
            RunStore::new(runs)
                .variant_dir(&exp, "base", 1)
                .join("metrics.json"),
        )
        .unwrap()
    };
    assert_eq!(metrics(&straight), metrics(&stopped), "same final metrics");
    for r in [straight, stopped] {
        let _ = std::fs::remove_dir_all(r);
    }
}

#[test]
fn a_test_tuned_metric_is_labelled_in_results_and_report() {
    let reg = mer_engine::builtin_registry();
    let exp = checked(&reg, "tests/run/tuned.mer");
    let runs = scratch("tuned");
    let base: Vec<driver::Cell> = driver::all_cells(&exp)
        .into_iter()
        .filter(|c| c.variant.variant.name == "base")
        .collect();
    let done = finished(driver::run_experiment(
        &reg,
        &exp,
        &base,
        &options(&runs),
        &QuietSink,
    ));
    let m = &done.results[0].metrics;
    let tuned = m
        .iter()
        .find(|x| x.name == "f1_macro2_test_tuned")
        .expect("the tuned metric");
    assert!(
        tuned.test_tuned && tuned.how.contains("TEST-TUNED"),
        "{tuned:?}"
    );
    let fixed = m.iter().find(|x| x.name == "f1").expect("f1");
    assert!(
        !fixed.test_tuned,
        "the fixed-threshold metric is not tainted"
    );
    let md = mer_engine::report::markdown_of(&done.report);
    assert!(md.contains("f1_macro2_test_tuned †"), "{md}");
    assert!(md.contains("† marks test-tuned numbers"), "{md}");
    let _ = std::fs::remove_dir_all(runs);
}

/// An ablation that swaps a branch needs no `~` line per node: the nodes
/// that then feed no loss or metric are left out of its graph, with one
/// note that names them; the base keeps them, and trains as before.
#[test]
fn an_ablation_that_swaps_a_branch_prunes_it_with_one_note() {
    let reg = mer_engine::builtin_registry();
    let dir = scratch("prune");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("swap.mer");
    let tiny =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/tiny.mer"))
            .unwrap();
    let swapped = tiny.replace(
        "ablation \"wide\" { conv.out = 6 }",
        "ablation \"flat\" { aus = nn.linear(clips.aus) { out = 3 } }",
    );
    assert_ne!(swapped, tiny);
    std::fs::write(&file, swapped).unwrap();
    let mut session = Session::new();
    let fc = mer_dsl::check_file(&mut session, &reg, &file, &[], None);
    assert!(!session.has_errors(), "{:?}", session.diags);
    let notes: Vec<_> = session
        .diags
        .iter()
        .filter(|d| d.code == "mer::pruned")
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", session.diags);
    assert!(
        notes[0]
            .message
            .contains("4 model node(s) feed no loss or metric here and are left out: conv, act, pool, feat (in variant `flat`)"),
        "{}",
        notes[0].message
    );
    assert!(
        !session.diags.iter().any(|d| d.code == "mer::unused-node"),
        "{:?}",
        session.diags
    );
    let exp = &fc.experiments[0];
    let names = |v: &str| -> Vec<String> {
        let g = &exp.variant(v).expect("variant").graph.graph;
        let mut n: Vec<String> = g.node_weights().map(|n| n.name.clone()).collect();
        n.sort();
        n
    };
    assert!(names("base").contains(&"conv".to_string()));
    assert!(
        !names("flat").contains(&"conv".to_string()),
        "{:?}",
        names("flat")
    );
    assert!(names("flat").contains(&"aus".to_string()));
    // The pruned variant runs.
    let done = finished(driver::run_experiment(
        &reg,
        exp,
        &driver::all_cells(exp),
        &options(&dir.join("runs")),
        &QuietSink,
    ));
    assert!(!done.failed);
    assert_eq!(done.results.len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}
