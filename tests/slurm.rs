//! `mer run --executor slurm` against a real single-node Slurm.
//!
//! They need `SLURM_CONF` (from `scripts/slurm-up.sh`, which `.ci/run`
//! starts); `MER_REQUIRE_SLURM=1` makes a missing Slurm a failure instead of
//! a skip, as in CI. Every cell runs as a real array task of the `mer`
//! binary under test; nothing is mocked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn have_slurm() -> bool {
    let conf = std::env::var_os("SLURM_CONF");
    let ok = conf.is_some()
        && Command::new("sinfo")
            .args(["-h", "-o", "%a"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("MER_REQUIRE_SLURM").as_deref() != Ok("1"),
            "MER_REQUIRE_SLURM=1 but no Slurm answers (SLURM_CONF={conf:?}); start one with scripts/slurm-up.sh"
        );
        eprintln!(
            "skipped: no Slurm (run scripts/slurm-up.sh and export SLURM_CONF; .ci/run does)"
        );
    }
    ok
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-slurm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `mer ARGS --runs RUNS --no-mlflow` in the repository root.
fn mer(runs: &Path, args: &[&str]) -> Output {
    mer_to(runs, args, None)
}

/// `mer ARGS --runs RUNS` logging to the MLflow file store `mlflow`, or to
/// none.
fn mer_to(runs: &Path, args: &[&str], mlflow: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    c.args(args).arg("--runs").arg(runs);
    match mlflow {
        Some(m) => c.arg("--mlflow").arg(m),
        None => c.arg("--no-mlflow"),
    };
    c.env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The array and merge job ids that `mer run --executor slurm` printed.
fn submitted(o: &Output) -> (Option<String>, String) {
    let t = text(o);
    assert!(o.status.success(), "submission failed:\n{t}");
    let after = |key: &str| {
        t.split(key).nth(1).map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
    };
    let merge = after("merge job ").unwrap_or_else(|| panic!("no merge job in:\n{t}"));
    (after("array job "), merge)
}

/// `scontrol show job ID`'s `KEY=` value for one job (not an array).
fn job_field(id: &str, key: &str) -> Option<String> {
    let o = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Waits until job `id` has ended; its `(JobState, ExitCode)`.
fn wait_job(id: &str, limit: Duration) -> (String, String) {
    let t0 = Instant::now();
    loop {
        let state = job_field(id, "JobState").unwrap_or_default();
        if [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
        ]
        .contains(&state.as_str())
        {
            return (state, job_field(id, "ExitCode").unwrap_or_default());
        }
        assert!(
            t0.elapsed() < limit,
            "job {id} still {state} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The single `<exp>/<hash>` folder under `runs`.
fn exp_dir(runs: &Path, exp: &str) -> PathBuf {
    std::fs::read_dir(runs.join(exp))
        .expect("experiment folder")
        .next()
        .expect("a recipe hash")
        .expect("entry")
        .path()
}

/// Every `metrics.json` and `predictions.csv` under `dir`, relative.
fn result_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let r = rel.join(e.file_name());
        if p.is_dir() {
            result_files(&p, &r, out);
        } else if ["metrics.json", "predictions.csv"]
            .contains(&e.file_name().to_string_lossy().as_ref())
        {
            out.push(r);
        }
    }
}

fn assert_same_results(local: &Path, slurm: &Path, exp: &str, at_least: usize) {
    let (a, b) = (exp_dir(local, exp), exp_dir(slurm, exp));
    assert_eq!(a.file_name(), b.file_name(), "same recipe hash");
    let mut files = Vec::new();
    result_files(&a, Path::new(""), &mut files);
    assert!(files.len() >= at_least, "only {files:?}");
    for f in &files {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)));
        let y = y.unwrap_or_else(|e| panic!("{} missing from the Slurm run: {e}", f.display()));
        assert!(
            x == y,
            "{} differs between the local and the Slurm run",
            f.display()
        );
    }
}

#[test]
fn loso_through_slurm_matches_the_local_run() {
    if !have_slurm() {
        return;
    }
    let dir = scratch("loso");
    let (local, cluster) = (dir.join("local"), dir.join("slurm"));
    let t0 = Instant::now();
    let mlruns = dir.join("mlruns");
    let o = mer_to(
        &cluster,
        &[
            "run",
            "tests/run/tiny6.mer",
            "--executor",
            "slurm",
            "--array-parallelism",
            "2",
        ],
        Some(&mlruns),
    );
    let submit_s = t0.elapsed().as_secs_f64();
    let (array, merge) = submitted(&o);
    assert!(text(&o).contains("12 of 12 folds"), "{}", text(&o));
    // Submission returns at once: nothing of the run happens in it.
    assert!(submit_s < 30.0, "submission took {submit_s:.1} s");
    let l = mer(&local, &["run", "tests/run/tiny6.mer"]);
    assert!(l.status.success(), "{}", text(&l));
    let (state, code) = wait_job(&merge, Duration::from_secs(300));
    eprintln!(
        "submitted in {submit_s:.2} s; merge {state} {code} after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let slurm_dir = exp_dir(&cluster, "tiny6").join("slurm");
    let log = std::fs::read_to_string(slurm_dir.join("logs").join(format!("merge_{merge}.out")))
        .unwrap_or_default();
    assert_eq!(
        (state.as_str(), code.as_str()),
        ("COMPLETED", "0:0"),
        "merge log:\n{log}"
    );
    // Each task wrote its own log and trained exactly its fold.
    let array = array.expect("an array job");
    for i in 0..12 {
        let t = std::fs::read_to_string(slurm_dir.join("logs").join(format!("{array}_{i}.out")))
            .unwrap();
        assert!(t.contains(" finished"), "task {i}:\n{t}");
    }
    assert!(exp_dir(&cluster, "tiny6").join("report.md").is_file());
    // 2 variants × (metrics.json + 6 predictions.csv).
    assert_same_results(&local, &cluster, "tiny6", 14);

    let s = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(["status"])
        .arg(&cluster)
        .output()
        .unwrap();
    let st = text(&s);
    assert!(st.contains("12 folds: 12 finished"), "{st}");
    assert!(st.contains(&format!("[slurm {array}_0")), "{st}");

    // Everything is finished: --resume submits only the merge.
    let o = mer_to(
        &cluster,
        &[
            "run",
            "tests/run/tiny6.mer",
            "--executor",
            "slurm",
            "--resume",
        ],
        Some(&mlruns),
    );
    let (array2, merge2) = submitted(&o);
    assert_eq!(array2, None, "{}", text(&o));
    assert_eq!(wait_job(&merge2, Duration::from_secs(120)).0, "COMPLETED");
    assert_same_results(&local, &cluster, "tiny6", 14);
    // Two merges, one MLflow run per fold (matched by `mer.key`).
    let mut keys = Vec::new();
    for exp in std::fs::read_dir(&mlruns).unwrap().flatten() {
        for run in std::fs::read_dir(exp.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(k) = std::fs::read_to_string(run.path().join("tags/mer.key")) {
                keys.push(k);
            }
        }
    }
    let folds = keys.iter().filter(|k| k.contains("/folds/")).count();
    assert_eq!(folds, 12, "{keys:?}");
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate MLflow runs: {keys:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_fold_is_listed_by_the_merge() {
    if !have_slurm() {
        return;
    }
    let dir = scratch("diverge");
    let runs = dir.join("runs");
    let o = mer(
        &runs,
        &[
            "run",
            "tests/run/diverge.mer",
            "--executor",
            "slurm",
            "--variant",
            "base",
        ],
    );
    let (array, merge) = submitted(&o);
    let array = array.expect("an array job");
    let (state, code) = wait_job(&merge, Duration::from_secs(300));
    let slurm_dir = exp_dir(&runs, "diverge").join("slurm");
    let log =
        std::fs::read_to_string(slurm_dir.join("logs").join(format!("merge_{merge}.out"))).unwrap();
    // The merge ran despite the failed tasks (afterany) and failed itself.
    assert_eq!((state.as_str(), code.as_str()), ("FAILED", "1:0"), "{log}");
    assert!(log.contains("4 folds did not finish"), "{log}");
    let task_log = slurm_dir.join("logs").join(format!("{array}_0.out"));
    assert!(log.contains(&task_log.display().to_string()), "{log}");
    assert!(log.contains("the loss is NaN"), "{log}");
    assert!(std::fs::read_to_string(&task_log)
        .unwrap()
        .contains("failed"));
    // Each failed task ended FAILED in Slurm too.
    assert_eq!(
        job_field(&format!("{array}_0"), "JobState").as_deref(),
        Some("FAILED")
    );

    // The same merge by hand: exit 1, the same list.
    let manifest = slurm_dir.join("manifest.json");
    let o = mer(
        &runs,
        &[
            "run",
            "tests/run/diverge.mer",
            "--variant",
            "base",
            "--merge",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&task_log.display().to_string()),
        "{}",
        text(&o)
    );
    let s = Command::new(env!("CARGO_BIN_EXE_mer"))
        .arg("status")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(text(&s).contains("4 folds: 4 failed"), "{}", text(&s));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cancelled_task_reruns_alone_with_resume() {
    if !have_slurm() {
        return;
    }
    let dir = scratch("cancel");
    let (local, cluster) = (dir.join("local"), dir.join("slurm"));
    let recipe = "tests/run/slow.mer";
    let o = mer(
        &cluster,
        &["run", recipe, "--executor", "slurm", "--variant", "base"],
    );
    let (array, merge) = submitted(&o);
    let array = array.expect("an array job");
    // Resubmitting while the tasks are queued or running submits none of
    // them again (two tasks on one fold would train it twice).
    let again = mer(
        &cluster,
        &[
            "run",
            recipe,
            "--executor",
            "slurm",
            "--variant",
            "base",
            "--resume",
        ],
    );
    let (none, _) = submitted(&again);
    assert_eq!(none, None, "{}", text(&again));
    assert!(
        text(&again).contains("2 folds are still in the queue"),
        "{}",
        text(&again)
    );
    // Cancel task 1 once it has checkpointed an epoch.
    let fold = exp_dir(&cluster, "slow").join("base/seed1/folds/fold2/status.json");
    let t0 = Instant::now();
    loop {
        let s = std::fs::read_to_string(&fold).unwrap_or_default();
        let ckpt = fold.with_file_name("checkpoint.json");
        if s.contains("\"running\"") && ckpt.is_file() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "fold2 never ran: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = Command::new("scancel")
        .arg(format!("{array}_1"))
        .status()
        .unwrap();
    assert!(c.success());
    let (state, _) = wait_job(&merge, Duration::from_secs(300));
    assert_eq!(state, "FAILED", "the merge lists the cancelled fold");
    let status = std::fs::read_to_string(&fold).unwrap();
    assert!(status.contains("\"interrupted\""), "{status}");

    let o = mer(
        &cluster,
        &[
            "run",
            recipe,
            "--executor",
            "slurm",
            "--variant",
            "base",
            "--resume",
        ],
    );
    assert!(text(&o).contains("submitted 1 of 2 folds"), "{}", text(&o));
    let (array2, merge2) = submitted(&o);
    let l = mer(&local, &["run", recipe, "--variant", "base"]);
    assert!(l.status.success(), "{}", text(&l));
    let (state, code) = wait_job(&merge2, Duration::from_secs(300));
    assert_eq!((state.as_str(), code.as_str()), ("COMPLETED", "0:0"));
    let logs = exp_dir(&cluster, "slow").join("slurm/logs");
    let resumed = std::fs::read_to_string(logs.join(format!("{}_1.out", array2.unwrap()))).unwrap();
    assert!(resumed.contains("resuming after epoch"), "{resumed}");
    // Resumed from its checkpoint, the fold gives the same bytes.
    assert_same_results(&local, &cluster, "slow", 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--executor local --jobs 3`: the same manifest and cells as Slurm, each
/// a `mer` process on this machine, then the merge in the calling process;
/// byte-identical to the sequential run. Needs no Slurm.
#[test]
fn local_jobs_match_the_sequential_run() {
    let dir = scratch("jobs");
    let (seq, par) = (dir.join("seq"), dir.join("par"));
    let l = mer(&seq, &["run", "tests/run/tiny6.mer"]);
    assert!(l.status.success(), "{}", text(&l));
    let t0 = Instant::now();
    let args = [
        "run",
        "tests/run/tiny6.mer",
        "--executor",
        "local",
        "--jobs",
        "3",
    ];
    let p = mer(&par, &args);
    let t = text(&p);
    assert!(p.status.success(), "{t}");
    assert!(t.contains("trained 12 of 12 folds in 3 processes"), "{t}");
    eprintln!(
        "12 cells in 3 processes: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_same_results(&seq, &par, "tiny6", 14);
    let e = exp_dir(&par, "tiny6");
    assert!(e.join("report.md").is_file());
    for i in 0..12 {
        let log = e.join("slurm").join("logs").join(format!("local_{i}.out"));
        let t = std::fs::read_to_string(&log).unwrap();
        assert!(t.contains(" finished"), "{}:\n{t}", log.display());
    }
    // Nothing left to train: --resume only merges.
    let mut again = args.to_vec();
    again.push("--resume");
    let p = mer(&par, &again);
    assert!(p.status.success(), "{}", text(&p));
    assert!(text(&p).contains("trained 0 of 12 folds"), "{}", text(&p));
    assert_same_results(&seq, &par, "tiny6", 14);
    let _ = std::fs::remove_dir_all(dir);
}
