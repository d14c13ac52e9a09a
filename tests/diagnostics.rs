//! Every file under `tests/bad/` is a broken recipe. Each must make
//! `mer check` exit 1 with a located diagnostic and never panic; the exact
//! rendering is pinned by an insta snapshot per file.
//!
//! A first line `// args: ...` passes extra arguments (e.g. `--set`).

use std::path::Path;
use std::process::Command;

fn mer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    // Hermetic plugin discovery: diagnostics must not depend on which
    // plugin libraries happen to be built.
    c.env("NO_COLOR", "1")
        .env_remove("MER_TEST_SURELY_UNSET")
        .env_remove("MER_PLUGIN_PATH")
        .env("MER_PLUGIN_PATH_ONLY", "1");
    c
}

fn extra_args(text: &str) -> Vec<String> {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("// args: "))
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn bad_recipes_give_precise_diagnostics() {
    let mut count = 0;
    insta::glob!("bad/*.mer", |path| {
        count += 1;
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .expect("under the crate");
        let text = std::fs::read_to_string(path).expect("fixture readable");
        let out = mer()
            .arg("check")
            .args(extra_args(&text))
            .arg(rel)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("mer runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: exit code\n{stderr}",
            rel.display()
        );
        assert!(
            !stderr.contains("panicked"),
            "{}: panic\n{stderr}",
            rel.display()
        );
        assert!(
            stderr.contains("mer::"),
            "{}: no diagnostic code\n{stderr}",
            rel.display()
        );
        // Every diagnostic names file:line:col.
        assert!(
            stderr.contains(".mer:") || stderr.contains("--set #"),
            "{}: no location\n{stderr}",
            rel.display()
        );
        insta::assert_snapshot!(stderr);
    });
    assert!(count >= 40, "only {count} bad recipes");
}

#[test]
fn short_format_is_one_line_per_diagnostic() {
    let out = mer()
        .args([
            "check",
            "--format",
            "short",
            "tests/bad/many_errors_one_pass.mer",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mer runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for l in lines {
        assert!(l.starts_with("tests/bad/many_errors_one_pass.mer:"), "{l}");
        assert!(l.contains(": error[mer::"), "{l}");
    }
    assert!(Path::new("tests/bad/support/base.mer").exists());
}
