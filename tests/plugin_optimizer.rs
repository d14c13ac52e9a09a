//! A plugin's optimiser kind trains a recipe: `plugins/testkit` adds
//! `testkit.signsgd`, and `mer run` builds it through the registry exactly
//! as it builds `optim.adam`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The testkit library cargo built for this test run.
fn testkit_so() -> PathBuf {
    let file = mer_registry::loader::library_file_name("testkit");
    for d in mer_registry::loader::search_path() {
        for p in [d.join(&file), d.join("deps").join(&file)] {
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{file} not built; `cargo test --workspace` builds it (it is a dev-dependency)");
}

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `epochs.json` under `dir`, sorted by path.
fn epoch_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            epoch_logs(&p, out);
        } else if p.file_name().is_some_and(|n| n == "epochs.json") {
            out.push(p);
        }
    }
    out.sort();
}

#[test]
fn a_recipe_trains_with_a_plugin_optimizer() {
    let so = testkit_so();
    let runs = std::env::temp_dir().join(format!("mer-plugin-optim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let describe = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(["plugins", "describe", "testkit.signsgd"])
        .env("NO_COLOR", "1")
        .env("MER_PLUGIN_PATH", so.parent().expect("dir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs");
    let text = String::from_utf8_lossy(&describe.stdout);
    assert_eq!(describe.status.code(), Some(0), "{text}");
    assert!(
        text.contains("an optimizer") && text.contains("groups"),
        "{text}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args([
            "run",
            "tests/plugin_recipes/testkit_optimizer.mer",
            "--no-mlflow",
        ])
        .arg("--runs")
        .arg(&runs)
        .env("NO_COLOR", "1")
        .env("MER_PLUGIN_PATH", so.parent().expect("dir"))
        .env_remove("MER_TESTKIT_PANIC")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");

    let mut logs = Vec::new();
    epoch_logs(&runs.join("testkit_optimizer"), &mut logs);
    assert_eq!(logs.len(), 4, "one fold per subject: {logs:?}\n{out}");
    for log in &logs {
        let epochs = json(log);
        let losses: Vec<f64> = epochs
            .as_array()
            .expect("a list of epochs")
            .iter()
            .map(|e| e["train_loss"].as_f64().expect("train_loss"))
            .collect();
        assert_eq!(losses.len(), 3, "{}", log.display());
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        // The optimiser moved the weights: the loss is not frozen.
        assert!(
            losses.windows(2).all(|w| w[0] != w[1]),
            "{}: {losses:?}",
            log.display()
        );
        let status = json(&log.with_file_name("status.json"));
        assert_eq!(status["state"], "finished", "{}", log.display());
    }
    let _ = std::fs::remove_dir_all(runs);
}
