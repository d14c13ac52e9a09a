//! `mer new plugin`: the scaffold writes a plugin that builds, loads and
//! passes its own test. `plugins/hello` is committed scaffold output, so the
//! workspace build compiles it, its unit test runs with the suite, and the
//! tests below load it through the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn plugin_dir(name: &str) -> PathBuf {
    let file = mer_registry::loader::library_file_name(name);
    for d in mer_registry::loader::search_path() {
        for cand in [d.clone(), d.join("deps")] {
            if cand.join(&file).is_file() {
                return cand;
            }
        }
    }
    panic!("{file} not built; run `cargo build --workspace` (`.ci/run` does)");
}

fn mer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("MER_PLUGIN_PATH", plugin_dir("hello"))
        .current_dir(root())
        .output()
        .expect("mer runs")
}

#[test]
fn committed_hello_is_exactly_the_scaffold() {
    for (path, text) in mer_registry::scaffold::plugin_files("hello") {
        let committed = std::fs::read_to_string(root().join(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed,
            text,
            "{} differs from `mer new plugin hello`",
            path.display()
        );
    }
}

#[test]
fn new_plugin_writes_files_and_never_overwrites() {
    let tmp = std::env::temp_dir().join(format!("mer-scaffold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let t = tmp.to_str().expect("utf8");
    let o = mer(&["new", "plugin", "my_paper", "--root", t]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(tmp.join("plugins/my_paper/Cargo.toml").is_file());
    assert!(tmp.join("plugins/my_paper/src/lib.rs").is_file());
    assert!(tmp.join("recipes/my_paper/example.mer").is_file());
    let o = mer(&["new", "plugin", "my_paper", "--root", t]);
    assert_eq!(o.status.code(), Some(2), "refuses to overwrite");
    assert_eq!(
        mer(&["new", "plugin", "Bad-Name", "--root", t])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        mer(&["new", "plugin", "nn", "--root", t]).status.code(),
        Some(2),
        "builtin namespace"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn scaffolded_plugin_loads_checks_and_trains() {
    let o = mer(&["check", "recipes/hello/example.mer"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = mer(&[
        "plugins",
        "gradcheck",
        "hello.gated_linear",
        "--input",
        "3x5",
        "--set",
        "out=2",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("gradients ok"), "{out}");
}
