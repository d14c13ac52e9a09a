//! The Slurm executor: every fold of a plan (variant × seed × fold) becomes
//! one task of a single `sbatch --array`, running into the same run store;
//! a merge job (`afterany`) recomputes the metrics, writes the report,
//! syncs MLflow and lists what did not finish.
//!
//! Nothing stays running on the submitting host: [`submit`] writes the
//! manifest (`<experiment dir>/slurm/manifest.json`, array index → cell),
//! calls `sbatch` twice and returns the job ids. A task is
//! `mer run FILE --cell-index $SLURM_ARRAY_TASK_ID --manifest PATH`
//! ([`run_task`]); the merge is `mer run FILE --merge --manifest PATH`
//! ([`crate::driver::merge_experiment`] plus the log paths from here).

use crate::driver::{self, Cell, DriverError, FoldCell, Sink};
use crate::exec::FeatureCache;
use crate::runner::{self, Progress, RunError, RunOptions};
use mer_registry::candle::Device;
use mer_registry::dsl::{CheckedExperiment, CheckedVariant};
use mer_registry::Registry;
use mer_store::{self as store, FoldStatus, RunStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a Slurm submission, task or status query could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// Boxed: the driver's and runner's errors are large, and every
    /// `Result` here would carry their size.
    #[error("{0}")]
    Driver(Box<DriverError>),
    /// A file of the run store or the Slurm folder could not be read or
    /// written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned, as displayed.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The manifest is missing, unreadable, or for another recipe.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file, as displayed.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// `sbatch`, `squeue` or `scontrol` could not be run or refused.
    #[error("`{command}`: {message}")]
    Command {
        /// The program (and arguments) that was run.
        command: String,
        /// Its error output, or why it could not start.
        message: String,
    },
    /// Earlier results and neither `--resume` nor `--restart`.
    #[error("{0}")]
    Existing(String),
    /// A cell's run failed before its fold recorded a `finished` or `failed`
    /// status.
    #[error("{label}: {source}")]
    Run {
        /// The cell, as `<experiment>/<variant> seed <seed> fold <fold>`.
        label: String,
        /// The runner's error, boxed for the same reason as
        /// [`SlurmError::Driver`].
        source: Box<RunError>,
    },
}

impl From<DriverError> for SlurmError {
    fn from(e: DriverError) -> SlurmError {
        SlurmError::Driver(Box::new(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlurmError + '_ {
    move |source| SlurmError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `manifest.json`: which cell each array index runs. Indices are stable
/// across submissions (new cells are appended), so a resubmission with
/// `--resume` reuses them and log names stay comparable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The experiment's name.
    pub experiment: String,
    /// The experiment's recipe hash: a task refuses a recipe that changed
    /// after submission (its folds would land in another folder).
    pub store_hash: String,
    /// The absolute path of the recipe the manifest was first written for.
    pub recipe: String,
    /// Every cell planned for this recipe so far; a cell's array index is its
    /// position here.
    pub cells: Vec<FoldCell>,
    /// Every submission (Slurm or local) so far, oldest first.
    #[serde(default)]
    pub submissions: Vec<Submission>,
}

/// One `mer run --executor slurm`: its jobs and the cells it submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// The array job's id, [`LOCAL_JOB`] for a local run, or empty when no cell
    /// needed training.
    pub array_job: String,
    /// The merge job's id; empty for a local run or when the merge could not be
    /// submitted.
    pub merge_job: String,
    /// The manifest indices of the cells this submission runs.
    pub indices: Vec<usize>,
    /// Seconds since the Unix epoch.
    pub submitted: u64,
}

impl Manifest {
    /// Reads the manifest at `path`; a missing file is an error that says to
    /// submit first.
    pub fn load(path: &Path) -> Result<Manifest, SlurmError> {
        store::read_json(path)
            .map_err(|e| SlurmError::Manifest {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
            .ok_or_else(|| SlurmError::Manifest {
                path: path.display().to_string(),
                message: "not found (submit with `mer run FILE --executor slurm` first)".into(),
            })
    }

    /// The index of a cell, if the manifest has it.
    pub fn index_of(&self, c: &FoldCell) -> Option<usize> {
        self.cells
            .iter()
            .position(|m| m.variant == c.variant && m.seed == c.seed && m.fold == c.fold)
    }

    /// The latest submission of cell `index`: `(array job, task id)`.
    pub fn job_of(&self, index: usize) -> Option<&Submission> {
        self.submissions
            .iter()
            .rev()
            .find(|s| s.indices.contains(&index))
    }
}

/// `<experiment dir>/slurm`.
pub fn slurm_dir(store: &RunStore, exp: &CheckedExperiment) -> PathBuf {
    store.experiment_dir(exp).join("slurm")
}

/// The log file of array task `index` of `array_job`, as `sbatch -o
/// logs/%A_%a.out` names it.
pub fn log_path(slurm_dir: &Path, array_job: &str, index: usize) -> PathBuf {
    slurm_dir
        .join("logs")
        .join(format!("{array_job}_{index}.out"))
}

/// How to submit.
pub struct SubmitOptions {
    /// The run store the tasks write into; the experiment's folder in it holds
    /// `slurm/`.
    pub store: RunStore,
    /// The `mer` executable the tasks run (this one, normally).
    pub exe: PathBuf,
    /// The recipe, absolute.
    pub recipe: PathBuf,
    /// Where tasks start (relative paths in the recipe are from here).
    pub workdir: PathBuf,
    /// Arguments every task and the merge get after `run FILE`: `-e`,
    /// `--set`, `-v`, `--runs`, `--mlflow`, `--device`, ...
    pub forward: Vec<String>,
    /// The Slurm partition of the array and the merge job; the cluster's
    /// default when `None`.
    pub partition: Option<String>,
    /// At most this many tasks at once (`--array=…%K`).
    pub parallelism: Option<usize>,
    /// Passed to both `sbatch` calls as they are (`--time=…`, `--gres=…`).
    pub sbatch_args: Vec<String>,
    /// Submit only the cells that are not finished.
    pub resume: bool,
    /// Discard the chosen variants' results before submitting (here, not
    /// in the tasks: concurrent tasks deleting their variant folder would
    /// delete each other's folds).
    pub restart: bool,
    /// Never fetch a missing pretrained file in the check before submitting.
    pub offline: bool,
}

/// What [`submit`] did.
#[derive(Debug)]
pub struct Submitted {
    /// `None` when every chosen cell had finished (only the merge runs).
    pub array_job: Option<String>,
    /// The merge job's id: it runs after this array and any earlier one still
    /// holding cells (`afterany`).
    pub merge_job: String,
    /// The cells submitted, by manifest index.
    pub indices: Vec<usize>,
    /// Unfinished cells left alone because their task is still queued or
    /// running (`squeue`'s state).
    pub in_queue: Vec<(usize, String)>,
    /// The chosen cells in all.
    pub total: usize,
    /// The manifest written (`<experiment dir>/slurm/manifest.json`).
    pub manifest: PathBuf,
    /// The folder of the task and merge logs (`slurm/logs`).
    pub logs: PathBuf,
}

/// The manifest written and the cells still to train: what the Slurm and
/// the local executor share.
struct Prepared {
    dir: PathBuf,
    logs: PathBuf,
    manifest_path: PathBuf,
    manifest: Manifest,
    /// Manifest indices of the chosen cells that are not finished (and not
    /// in the queue).
    todo: Vec<usize>,
    /// Unfinished cells whose task is still queued or running, with
    /// `squeue`'s state: not submitted again.
    in_queue: Vec<(usize, String)>,
    /// The chosen cells in all.
    total: usize,
}

/// Checks the recipe's paths, expands the plan into cells and writes the
/// manifest (complete before any task starts: tasks read it first).
fn prepare(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &SubmitOptions,
    sink: &dyn Sink,
) -> Result<Prepared, SlurmError> {
    let variants: Vec<&CheckedVariant> = cells.iter().map(|c| c.variant).collect();
    driver::preflight_paths(reg, &variants, opts.offline, sink)
        .map_err(|m| SlurmError::from(DriverError::Preflight(m)))?;
    let chosen = driver::fold_cells(reg, exp, cells)?;

    let dir = slurm_dir(&opts.store, exp);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let manifest_path = dir.join("manifest.json");
    let mut manifest =
        match store::read_json::<Manifest>(&manifest_path).map_err(io(&manifest_path))? {
            Some(m) if m.store_hash == exp.hash => m,
            _ => Manifest {
                experiment: exp.name.clone(),
                store_hash: exp.hash.clone(),
                recipe: opts.recipe.display().to_string(),
                cells: Vec::new(),
                submissions: Vec::new(),
            },
        };

    let mut seen_variant_dirs = BTreeSet::new();
    let mut existing = Vec::new();
    for c in &chosen {
        let vdir = opts.store.variant_dir(exp, &c.variant, c.seed);
        if seen_variant_dirs.insert(vdir.clone()) && vdir.join("folds").exists() {
            existing.push(vdir);
        }
    }
    if opts.restart {
        for d in &existing {
            std::fs::remove_dir_all(d).map_err(io(d))?;
        }
    } else if !opts.resume {
        if let Some(d) = existing.first() {
            return Err(SlurmError::Existing(format!(
                "{} already holds results of this recipe; pass --resume to submit only the cells that are not finished, or --restart to start over",
                d.display()
            )));
        }
    }

    let mut todo = Vec::new();
    for c in &chosen {
        let index = match manifest.index_of(c) {
            Some(i) => {
                // The position may differ if the data changed under the same
                // recipe; the fold's name is what identifies it.
                manifest.cells[i].position = c.position;
                i
            }
            None => {
                manifest.cells.push(c.clone());
                manifest.cells.len() - 1
            }
        };
        let vdir = opts.store.variant_dir(exp, &c.variant, c.seed);
        let finished = fold_status(&vdir, &c.fold)?.is_some_and(|s| s.state == "finished");
        if !finished {
            todo.push(index);
        }
    }
    // A cell whose task is still queued or running is left to it: a second
    // task on the same fold would train it twice into one folder.
    let queue = queue_states(&manifest);
    let mut in_queue = Vec::new();
    todo.retain(|&i| {
        let state = manifest
            .job_of(i)
            .and_then(|s| queue.get(&format!("{}_{i}", s.array_job)));
        match state {
            Some(st) => {
                in_queue.push((i, st.clone()));
                false
            }
            None => true,
        }
    });
    // Tasks read the manifest as soon as they start: it must be complete
    // before `sbatch`.
    store::write_json(&manifest_path, &manifest).map_err(io(&manifest_path))?;
    Ok(Prepared {
        dir,
        logs,
        manifest_path,
        manifest,
        todo,
        in_queue,
        total: chosen.len(),
    })
}

/// The `mer run` command line every task and the merge start with: the
/// recipe and the forwarded options.
fn task_argv(opts: &SubmitOptions) -> Vec<String> {
    let mut argv = vec!["run".to_string(), opts.recipe.display().to_string()];
    argv.extend(opts.forward.iter().cloned());
    argv
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks the recipe's paths, expands the plan into cells, writes the
/// manifest and submits the array and its merge job; returns at once.
pub fn submit(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &SubmitOptions,
    sink: &dyn Sink,
) -> Result<Submitted, SlurmError> {
    let Prepared {
        dir,
        logs,
        manifest_path,
        mut manifest,
        todo,
        in_queue,
        total,
    } = prepare(reg, exp, cells, opts, sink)?;
    let task_script = dir.join("task.sh");
    let merge_script = dir.join("merge.sh");
    let manifest_arg = manifest_path.display().to_string();
    // `raw` is appended unquoted (the shell expands the task id).
    let script = |extra: &[&str], raw: &str| -> String {
        let mut argv = vec![opts.exe.display().to_string()];
        argv.extend(task_argv(opts));
        argv.extend(extra.iter().map(|s| s.to_string()));
        let line: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        // `exec`: the batch shell becomes mer, so `--signal=B:USR1` reaches
        // it (B: signals only the batch shell, not its children).
        format!(
            "#!/bin/bash\n# Written by `mer run --executor slurm`.\ncd {}\nexec {}{raw}\n",
            shell_quote(&opts.workdir.display().to_string()),
            line.join(" ")
        )
    };
    let task_text = script(
        &["--manifest", &manifest_arg],
        " --cell-index \"$SLURM_ARRAY_TASK_ID\"",
    );
    write_script(&task_script, &task_text)?;
    write_script(
        &merge_script,
        &script(&["--merge", "--manifest", &manifest_arg], ""),
    )?;

    let name = format!("mer-{}", exp.name);
    let array_job = if todo.is_empty() {
        None
    } else {
        let mut array = compress(&todo);
        if let Some(k) = opts.parallelism {
            array.push_str(&format!("%{k}"));
        }
        let mut args = vec![
            "--parsable".to_string(),
            format!("--array={array}"),
            format!("--job-name={name}"),
            format!("--output={}", logs.join("%A_%a.out").display()),
            // A preempted task goes back to the queue and resumes its fold.
            "--requeue".into(),
            // A minute before the time limit: checkpoint and requeue.
            "--signal=B:USR1@60".into(),
        ];
        if let Some(p) = &opts.partition {
            args.push(format!("--partition={p}"));
        }
        args.extend(opts.sbatch_args.iter().cloned());
        args.push(task_script.display().to_string());
        Some(sbatch(&args)?)
    };
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={name}-merge"),
        format!("--output={}", logs.join("merge_%j.out").display()),
    ];
    // afterany: the merge runs however the tasks ended and reports the
    // missing ones, instead of waiting forever on a failed afterok. It also
    // waits for the earlier arrays still holding cells of this recipe.
    let mut after: BTreeSet<String> = in_queue
        .iter()
        .filter_map(|(i, _)| manifest.job_of(*i).map(|s| s.array_job.clone()))
        .collect();
    after.extend(array_job.iter().cloned());
    if !after.is_empty() {
        let ids: Vec<String> = after.into_iter().collect();
        args.push(format!("--dependency=afterany:{}", ids.join(":")));
    }
    if let Some(p) = &opts.partition {
        args.push(format!("--partition={p}"));
    }
    args.extend(opts.sbatch_args.iter().cloned());
    args.push(merge_script.display().to_string());
    // The array is queued whatever happens to the merge: record it either
    // way, so `mer status` finds its tasks and logs.
    let merge = sbatch(&args);
    let merge_job = merge.as_ref().map(String::clone).unwrap_or_default();
    manifest.submissions.push(Submission {
        array_job: array_job.clone().unwrap_or_default(),
        merge_job: merge_job.clone(),
        indices: todo.clone(),
        submitted: now(),
    });
    store::write_json(&manifest_path, &manifest).map_err(io(&manifest_path))?;
    merge?;
    Ok(Submitted {
        array_job,
        merge_job,
        indices: todo,
        in_queue,
        total,
        manifest: manifest_path,
        logs,
    })
}

/// The array job name the local executor records in the manifest: its
/// cells' logs are `logs/local_<index>.out`, and `mer status` asks no
/// queue about it.
pub const LOCAL_JOB: &str = "local";

/// What [`run_local`] did.
#[derive(Debug)]
pub struct LocalRun {
    /// The cells trained now, by manifest index.
    pub indices: Vec<usize>,
    /// The chosen cells in all.
    pub total: usize,
    /// Whether a cell stopped on Ctrl-C (checkpointed; `--resume` goes on).
    pub interrupted: bool,
    /// The manifest written, the same one the Slurm executor uses.
    pub manifest: PathBuf,
    /// The folder of the cells' logs (`local_<index>.out`).
    pub logs: PathBuf,
}

/// `--executor local --jobs N`: the same cells, manifest and store as
/// `--executor slurm`, each cell a `mer run … --cell-index I` process on
/// this machine, at most `jobs` at once, each with its share of the cores
/// (`RAYON_NUM_THREADS`, unless set). Returns when every process ended;
/// the caller merges (report, MLflow, missing cells) as the Slurm merge
/// job would.
pub fn run_local(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &SubmitOptions,
    jobs: usize,
    sink: &dyn Sink,
) -> Result<LocalRun, SlurmError> {
    let Prepared {
        dir: _,
        logs,
        manifest_path,
        mut manifest,
        todo,
        in_queue,
        total,
    } = prepare(reg, exp, cells, opts, sink)?;
    if let Some((i, state)) = in_queue.first() {
        return Err(SlurmError::Existing(format!(
            "{} cells of this recipe are still in the Slurm queue (cell {i}: {state}); wait for them or `scancel` them first",
            in_queue.len()
        )));
    }
    manifest.submissions.push(Submission {
        array_job: LOCAL_JOB.into(),
        merge_job: String::new(),
        indices: todo.clone(),
        submitted: now(),
    });
    store::write_json(&manifest_path, &manifest).map_err(io(&manifest_path))?;
    let jobs = jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1).to_string();
    let mut argv = task_argv(opts);
    argv.extend(["--manifest".into(), manifest_path.display().to_string()]);
    let mut queue: std::collections::VecDeque<usize> = todo.iter().copied().collect();
    let mut running: Vec<(usize, std::process::Child)> = Vec::new();
    let mut interrupted = false;
    loop {
        while running.len() < jobs {
            let Some(i) = queue.pop_front() else { break };
            let log = logs.join(format!("{LOCAL_JOB}_{i}.out"));
            let out = std::fs::File::create(&log).map_err(io(&log))?;
            let err = out.try_clone().map_err(io(&log))?;
            let mut cmd = std::process::Command::new(&opts.exe);
            cmd.args(&argv)
                .args(["--cell-index", &i.to_string()])
                .current_dir(&opts.workdir)
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(err);
            if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                cmd.env("RAYON_NUM_THREADS", &threads);
            }
            let child = cmd.spawn().map_err(|e| SlurmError::Command {
                command: opts.exe.display().to_string(),
                message: e.to_string(),
            })?;
            running.push((i, child));
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            match running[k].1.try_wait() {
                Ok(Some(status)) => {
                    // 130, or killed by the signal: Ctrl-C (the terminal
                    // sends it to every process of the group).
                    interrupted |= matches!(status.code(), Some(130) | None);
                    running.swap_remove(k);
                }
                Ok(None) => k += 1,
                Err(e) => {
                    return Err(SlurmError::Command {
                        command: opts.exe.display().to_string(),
                        message: e.to_string(),
                    })
                }
            }
        }
        if interrupted {
            // Start nothing new; let the running cells checkpoint.
            queue.clear();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(LocalRun {
        indices: todo,
        total,
        interrupted,
        manifest: manifest_path,
        logs,
    })
}

fn fold_status(vdir: &Path, fold: &str) -> Result<Option<FoldStatus>, SlurmError> {
    let path = RunStore::fold_dir(vdir, fold).join("status.json");
    store::read_json(&path).map_err(io(&path))
}

fn write_script(path: &Path, text: &str) -> Result<(), SlurmError> {
    store::write_atomic(path, text.as_bytes()).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(path))?;
    }
    Ok(())
}

/// `'…'` with inner quotes escaped, unless the word is plainly safe.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `0-3,7,9-10`: the `--array` form of sorted indices.
fn compress(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Runs a Slurm client command; its trimmed stdout.
fn slurm_command(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SlurmError::Command {
            command: shown.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not installed here (is this a Slurm login node?)")
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(SlurmError::Command {
            command: shown,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `sbatch --parsable …`: the job id (without a `;cluster` suffix).
fn sbatch(args: &[String]) -> Result<String, SlurmError> {
    let out = slurm_command("sbatch", args)?;
    let id = out.split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::Command {
            command: format!("sbatch {}", args.join(" ")),
            message: format!("unexpected output `{out}`"),
        });
    }
    Ok(id)
}

/// How an array task ended.
#[derive(Debug)]
pub enum TaskOutcome {
    /// The fold is finished (now or earlier).
    Finished {
        /// The cell the task ran.
        cell: FoldCell,
    },
    /// The fold failed; its `status.json` holds the message.
    Failed {
        /// The cell the task ran.
        cell: FoldCell,
        /// Why the fold failed, from its `status.json`.
        message: String,
    },
    /// Stopped on a signal after checkpointing; a requeue resumes it.
    Interrupted {
        /// The cell the task ran.
        cell: FoldCell,
        /// The interruption, with the epoch the checkpoint holds.
        error: RunError,
    },
}

/// One array task: which cell of which manifest, and how to run it.
pub struct Task {
    /// The manifest the submission wrote (`--manifest`).
    pub manifest: PathBuf,
    /// `$SLURM_ARRAY_TASK_ID`: the cell's index in the manifest.
    pub index: usize,
    /// The run store the fold is trained into, shared by every task.
    pub store: RunStore,
    /// The device the fold trains on.
    pub device: Device,
    /// Disables the frozen-feature cache, so encoder features are recomputed
    /// every time.
    pub no_feature_cache: bool,
}

/// Runs cell `index` of the manifest: exactly one fold, resumed from its
/// checkpoint when there is one, into the shared run store. No report and
/// no MLflow: the merge job does both once.
pub fn run_task(
    reg: &Registry,
    exp: &CheckedExperiment,
    task: &Task,
    progress: &dyn Progress,
) -> Result<TaskOutcome, SlurmError> {
    let (manifest_path, index, store) = (task.manifest.as_path(), task.index, &task.store);
    let manifest = Manifest::load(manifest_path)?;
    let bad = |message: String| SlurmError::Manifest {
        path: manifest_path.display().to_string(),
        message,
    };
    if manifest.store_hash != exp.hash {
        return Err(bad(format!(
            "written for another version of the recipe (hash {} here, {} there); submit again",
            &exp.hash[..12.min(exp.hash.len())],
            &manifest.store_hash[..12.min(manifest.store_hash.len())]
        )));
    }
    let cell = manifest
        .cells
        .get(index)
        .cloned()
        .ok_or_else(|| bad(format!("no cell {index} (it has {})", manifest.cells.len())))?;
    let v = exp
        .variant(&cell.variant)
        .ok_or_else(|| bad(format!("the recipe has no variant `{}`", cell.variant)))?;
    let opts = RunOptions {
        root: store.root().to_path_buf(),
        folds: vec![cell.position.to_string()],
        // Always: a requeued task continues its fold, and the other folds
        // of the variant belong to other tasks.
        resume: true,
        restart: false,
        device: task.device.clone(),
    };
    // Tasks share the run store, so one task's tower features serve the
    // others (files are written atomically).
    let mut cache = FeatureCache::persistent(store.root().join("cache").join("features"));
    cache.disabled = task.no_feature_cache;
    let result = runner::run_variant(exp, v, cell.seed, reg, &opts, &mut cache, progress);
    let vdir = store.variant_dir(exp, &cell.variant, cell.seed);
    let status = fold_status(&vdir, &cell.fold)?;
    match (result, status) {
        (Err(error @ RunError::Interrupted { .. }), _) => {
            Ok(TaskOutcome::Interrupted { cell, error })
        }
        // The fold finished; only the variant's partial metrics (which the
        // merge recomputes anyway) went wrong.
        (_, Some(s)) if s.state == "finished" => Ok(TaskOutcome::Finished { cell }),
        (_, Some(s)) if s.state == "failed" => Ok(TaskOutcome::Failed {
            message: s.message.unwrap_or_default(),
            cell,
        }),
        (Err(source), _) => Err(SlurmError::Run {
            label: format!(
                "{}/{} seed {} fold {}",
                exp.name, cell.variant, cell.seed, cell.fold
            ),
            source: Box::new(source),
        }),
        (Ok(_), s) => Ok(TaskOutcome::Failed {
            message: format!(
                "the fold ended in state `{}`",
                s.map(|s| s.state).unwrap_or_else(|| "none".into())
            ),
            cell,
        }),
    }
}

/// Puts this array task back into the queue (`scontrol requeue`), after it
/// checkpointed on the time-limit warning: Slurm requeues by itself only on
/// preemption or node failure.
pub fn requeue_self() -> Result<(), SlurmError> {
    let id = std::env::var("SLURM_JOB_ID").map_err(|_| SlurmError::Command {
        command: "scontrol requeue".into(),
        message: "SLURM_JOB_ID is not set (not inside a Slurm job)".into(),
    })?;
    slurm_command("scontrol", &["requeue".into(), id]).map(|_| ())
}

/// A merge: the driver's, plus where each unfinished cell's log is.
pub struct SlurmMerged {
    /// The driver's merge: results, report and the unfinished folds.
    pub merged: driver::Merged,
    /// Per unfinished cell (same order): its Slurm task and log file.
    pub jobs: Vec<Option<(String, PathBuf)>>,
}

/// Merges the chosen cells (see [`driver::merge_experiment`]) and finds the
/// Slurm task and log of each unfinished one in the manifest, if any.
pub fn merge(
    reg: &Registry,
    exp: &CheckedExperiment,
    cells: &[Cell<'_>],
    opts: &driver::DriverOptions,
    manifest_path: Option<&Path>,
    sink: &dyn Sink,
) -> Result<SlurmMerged, SlurmError> {
    let merged = driver::merge_experiment(reg, exp, cells, opts, sink)?;
    // A merge by hand finds the experiment's manifest by itself.
    let default = slurm_dir(&opts.store, exp).join("manifest.json");
    let manifest_path = manifest_path.or_else(|| default.is_file().then_some(default.as_path()));
    let manifest = match manifest_path {
        Some(p) => Some(Manifest::load(p)?),
        None => None,
    };
    let dir = manifest_path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| slurm_dir(&opts.store, exp));
    let jobs = merged
        .unfinished
        .iter()
        .map(|u| {
            let m = manifest.as_ref()?;
            let i = m.index_of(&u.cell)?;
            let s = m.job_of(i)?;
            Some((
                format!("{}_{i}", s.array_job),
                log_path(&dir, &s.array_job, i),
            ))
        })
        .collect();
    Ok(SlurmMerged { merged, jobs })
}

/// One fold's state for `mer status`.
#[derive(Debug, Clone, Serialize)]
pub struct CellState {
    /// The experiment's name (its folder in the run store).
    pub experiment: String,
    /// The 12-hex folder of the recipe.
    pub hash: String,
    /// The variant's name.
    pub variant: String,
    /// The seed the variant runs with.
    pub seed: i64,
    /// The fold's name.
    pub fold: String,
    /// `finished`, `running`, `interrupted`, `failed`, or `pending` (in a
    /// Slurm manifest, not started yet).
    pub state: String,
    /// Epochs finished, from `status.json`; 0 when not started.
    pub epochs_done: usize,
    /// Epochs the fold trains in all; 0 when not started.
    pub epochs: usize,
    /// The `status.json` message (a failure's error), if any.
    pub message: Option<String>,
    /// `<array job>_<index>` of its latest submission.
    pub job: Option<String>,
    /// What `squeue` says of that task (when Slurm answers), e.g. `RUNNING`.
    pub slurm_state: Option<String>,
    /// The log file of its latest submission's task, when a manifest lists it.
    pub log: Option<PathBuf>,
}

/// Every fold under a run store (or one experiment folder of it): from the
/// `status.json` files, plus the Slurm manifests' cells that have not
/// started, their jobs and logs, and the queue's view when `squeue` works.
pub fn status(root: &Path) -> Result<Vec<CellState>, SlurmError> {
    let mut exp_dirs = Vec::new();
    find_experiment_dirs(root, 0, &mut exp_dirs);
    exp_dirs.sort();
    let mut out = Vec::new();
    for dir in exp_dirs {
        let hash = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let experiment = dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let manifest_path = dir.join("slurm").join("manifest.json");
        let manifest: Option<Manifest> =
            store::read_json(&manifest_path).map_err(io(&manifest_path))?;
        let mut cells: BTreeMap<(String, i64, String), CellState> = BTreeMap::new();
        let mut order = Vec::new();
        if let Some(m) = &manifest {
            for (i, c) in m.cells.iter().enumerate() {
                let key = (c.variant.clone(), c.seed, c.fold.clone());
                let sub = m.job_of(i);
                order.push(key.clone());
                cells.insert(
                    key,
                    CellState {
                        experiment: experiment.clone(),
                        hash: hash.clone(),
                        variant: c.variant.clone(),
                        seed: c.seed,
                        fold: c.fold.clone(),
                        state: "pending".into(),
                        epochs_done: 0,
                        epochs: 0,
                        message: None,
                        job: sub.map(|s| format!("{}_{i}", s.array_job)),
                        slurm_state: None,
                        log: sub.map(|s| log_path(&dir.join("slurm"), &s.array_job, i)),
                    },
                );
            }
        }
        let mut found = Vec::new();
        find_folds(&dir, &dir, 0, &mut found);
        found.sort();
        for (variant, seed, fold, path) in found {
            let Some(s) = store::read_json::<FoldStatus>(&path).map_err(io(&path))? else {
                continue;
            };
            let key = (variant.clone(), seed, fold.clone());
            if !cells.contains_key(&key) {
                order.push(key.clone());
            }
            let e = cells.entry(key).or_insert_with(|| CellState {
                experiment: experiment.clone(),
                hash: hash.clone(),
                variant,
                seed,
                fold,
                state: String::new(),
                epochs_done: 0,
                epochs: 0,
                message: None,
                job: None,
                slurm_state: None,
                log: None,
            });
            e.state = s.state;
            e.epochs_done = s.epochs_done;
            e.epochs = s.epochs;
            e.message = s.message;
        }
        let queue = manifest.as_ref().map(queue_states).unwrap_or_default();
        for key in order {
            if let Some(mut c) = cells.remove(&key) {
                c.slurm_state = c.job.as_ref().and_then(|j| queue.get(j).cloned());
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The queue's state of each task of the manifest's array jobs
/// (`<array>_<index>` → `RUNNING`, `PENDING`, ...); empty when `squeue` is
/// missing or does not answer (the run store is the truth either way).
fn queue_states(m: &Manifest) -> BTreeMap<String, String> {
    let jobs: BTreeSet<&str> = m
        .submissions
        .iter()
        .map(|s| s.array_job.as_str())
        .filter(|j| !j.is_empty() && *j != LOCAL_JOB)
        .collect();
    if jobs.is_empty() {
        return BTreeMap::new();
    }
    let args = vec![
        "-h".to_string(),
        "-r".into(),
        "-o".into(),
        "%i %T".into(),
        "-j".into(),
        jobs.into_iter().collect::<Vec<_>>().join(","),
    ];
    let Ok(text) = slurm_command("squeue", &args) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// Folders holding a recipe's results: `<experiment>/<12 hex>` with a
/// variant or a `slurm` folder inside.
fn find_experiment_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.len() == 12 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= 2 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_experiment_dirs(&e.path(), depth + 1, out);
        }
    }
}

/// `<variant…>/seed<S>/folds/<fold>/status.json` under an experiment folder
/// (a variant name may hold `/`).
fn find_folds(
    exp_dir: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, i64, String, PathBuf)>,
) {
    if depth > 6 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let seed = name
            .strip_prefix("seed")
            .and_then(|s| s.parse::<i64>().ok());
        match seed {
            Some(seed) if path.join("folds").is_dir() => {
                let variant = dir
                    .strip_prefix(exp_dir)
                    .map(|p| p.to_string_lossy().to_string())
                    .unwrap_or_default();
                let Ok(folds) = std::fs::read_dir(path.join("folds")) else {
                    continue;
                };
                for f in folds.flatten() {
                    let status = f.path().join("status.json");
                    if status.is_file() {
                        out.push((
                            variant.clone(),
                            seed,
                            f.file_name().to_string_lossy().to_string(),
                            status,
                        ));
                    }
                }
            }
            _ if name != "slurm" && name != "figures" => find_folds(exp_dir, &path, depth + 1, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges() {
        assert_eq!(compress(&[0, 1, 2, 3]), "0-3");
        assert_eq!(compress(&[7, 0, 1, 3, 9, 10]), "0-1,3,7,9-10");
        assert_eq!(compress(&[5]), "5");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("train.epochs=5"), "train.epochs=5");
        assert_eq!(shell_quote("~scheduler"), "'~scheduler'");
        assert_eq!(shell_quote("a'b c"), "'a'\\''b c'");
    }
}
