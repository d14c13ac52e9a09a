#![allow(dead_code)] // Each test binary uses a different part.

//! Spawning the `mer` binary from end-to-end tests: in the repository
//! root, without colour, with the combined output for messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `mer ARGS` in the repository root; MLflow (when a run logs) goes to a
/// file store in `dir`.
pub fn mer_at(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("MLFLOW_TRACKING_URI", dir.join("mlruns"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs")
}

/// [`mer_at`] with extra environment variables (a recipe's `env(…)`).
pub fn mer_env(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env("MLFLOW_TRACKING_URI", dir.join("mlruns"))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("mer runs")
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh, empty folder for one test of one process.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-{group}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// A path as the `&str` an argument list needs.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Asserts that `mer` succeeded, showing its output when it did not.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "{}", text(o));
}

/// Every file called `name` under `d`, depth first.
pub fn find_all(d: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_all(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}
