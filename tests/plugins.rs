//! Plugins: discovery and loading through the CLI, the handshake's
//! refusals, and gradient parity between a dynamically loaded component and
//! the same component linked statically.

use mer_registry::candle::{DType, Device, Var};
use mer_registry::{Dim, Mode, ParamStore, PluginError, Registry, SeededRng, TensorType, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The testkit library cargo built for this test run.
fn testkit_so() -> PathBuf {
    let file = mer_registry::loader::library_file_name("testkit");
    for d in mer_registry::loader::search_path() {
        let p = d.join(&file);
        if p.is_file() {
            return p;
        }
        let p = d.join("deps").join(&file);
        if p.is_file() {
            return p;
        }
    }
    panic!("{file} not built; `cargo test --workspace` builds it (it is a dev-dependency)");
}

fn mer(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let so = testkit_so();
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env("MER_PLUGIN_PATH", so.parent().expect("dir"))
        .env_remove("MER_TESTKIT_PANIC")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("mer runs")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_loads_the_plugin_and_checks_a_recipe_with_it() {
    let o = mer(&["check", "tests/plugin_recipes/testkit_ok.mer"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = mer(&["plugins", "describe", "testkit.affine"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Trainable affine map"));
    // The component runs: the CLI builds it, runs forward and backward, and
    // compares analytic and finite-difference gradients.
    let o = mer(
        &[
            "plugins",
            "gradcheck",
            "testkit.affine",
            "--input",
            "4x6",
            "--set",
            "out=3",
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("output [4, 3]"), "{out}");
    assert!(out.contains("gradients ok"), "{out}");
}

#[test]
fn plugin_shapes_are_checked() {
    let o = mer(&["check", "tests/plugin_recipes/testkit_shape.mer"], &[]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(stderr(&o));
}

#[test]
fn a_panicking_register_is_reported_not_fatal() {
    let o = mer(
        &["check", "tests/plugin_recipes/testkit_ok.mer"],
        &[("MER_TESTKIT_PANIC", "1")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("mer::plugin-refused"), "{err}");
    assert!(
        err.contains("panicked: testkit was asked to panic"),
        "{err}"
    );
}

#[test]
fn missing_plugin_lists_what_was_found() {
    // DEFT-LLM's plugin is not written yet.
    let o = mer(&["check", "recipes/deft_llm/dfme.mer"], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("plugin `deft_llm` is not available"), "{err}");
}

/// Copies the real plugin and rewrites bytes, as a plugin built elsewhere
/// would differ.
fn patched(tag: &str, edit: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(testkit_so()).expect("read plugin");
    edit(&mut bytes);
    let dir = std::env::temp_dir().join(format!("mer-plugin-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(mer_registry::loader::library_file_name("testkit"));
    std::fs::write(&p, bytes).expect("write copy");
    p
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

fn load(path: &Path) -> Result<mer_registry::PluginInfo, PluginError> {
    let mut reg = Registry::new();
    reg.load_plugin_from(path, "testkit")
}

#[test]
fn the_genuine_plugin_loads() {
    let info = load(&testkit_so()).expect("loads");
    assert_eq!(info.name, "testkit");
}

#[test]
fn refusals_are_errors_never_crashes() {
    use mer_registry::plugin::{RUSTC_VERSION, SDK_BUILD_ID};

    let p = patched("magic", |b| {
        assert_eq!(replace_all(b, b"MERPLUG1", b"MERPLUG9"), 1)
    });
    assert!(
        matches!(load(&p), Err(PluginError::BadMagic { .. })),
        "{:?}",
        load(&p)
    );

    let p = patched("abi", |b| {
        let i = b.windows(8).position(|w| w == b"MERPLUG1").expect("magic");
        b[i + 8..i + 12].copy_from_slice(&99u32.to_le_bytes());
    });
    match load(&p) {
        Err(
            e @ PluginError::Abi {
                plugin: 99,
                host: 1,
                ..
            },
        ) => assert!(e.to_string().contains("`cargo build --workspace`"), "{e}"),
        other => panic!("{other:?}"),
    }

    let other_rustc = RUSTC_VERSION.replacen("rustc 1", "rustc 9", 1);
    let p = patched("rustc", |b| {
        assert!(replace_all(b, RUSTC_VERSION.as_bytes(), other_rustc.as_bytes()) >= 1)
    });
    match load(&p) {
        Err(e @ PluginError::Rustc { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&other_rustc) && m.contains(RUSTC_VERSION),
                "names both: {m}"
            );
        }
        other => panic!("{other:?}"),
    }

    let other_id: String = SDK_BUILD_ID.chars().rev().collect();
    let p = patched("build-id", |b| {
        assert!(replace_all(b, SDK_BUILD_ID.as_bytes(), other_id.as_bytes()) >= 1)
    });
    match load(&p) {
        Err(e @ PluginError::BuildId { .. }) => assert!(e.to_string().contains(&other_id), "{e}"),
        other => panic!("{other:?}"),
    }

    let p = patched("symbol", |b| {
        assert!(replace_all(b, b"MER_PLUGIN\0", b"MER_PLUGXX\0") >= 1)
    });
    assert!(
        matches!(load(&p), Err(PluginError::NotAPlugin { .. })),
        "{:?}",
        load(&p)
    );

    // Cut inside the loaded segments, and inside the ELF header itself.
    for (tag, keep) in [("truncated", 8192), ("truncated-header", 40)] {
        let p = patched(tag, |b| b.truncate(keep));
        match load(&p) {
            Err(PluginError::Open { reason, .. }) => assert!(
                reason.contains("truncated") || reason.contains("not a shared library"),
                "{reason}"
            ),
            other => panic!("{tag}: {other:?}"),
        }
    }

    let p = patched("garbage", |b| {
        b.clear();
        b.extend_from_slice(b"this is not a shared library\n");
    });
    assert!(matches!(load(&p), Err(PluginError::Open { .. })));

    // A real shared library that is not a plugin: the C library this
    // process already uses.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("linux");
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libc.so") || p.contains("libc-"))
        .expect("libc mapped");
    assert!(
        matches!(load(Path::new(libc)), Err(PluginError::NotAPlugin { .. })),
        "{:?}",
        load(Path::new(libc))
    );
}

/// One SGD run of `affine → tanh → affine → mean squared error`, returning
/// every step's loss and every parameter's gradient, bit for bit.
fn train(reg: &Registry) -> Vec<(String, Vec<f32>)> {
    let dev = Device::Cpu;
    let mut store = ParamStore::new(42, dev.clone());
    let mut rng = SeededRng::new(9);
    let x = rng.normal_tensor(&[8, 5], &dev).expect("x");
    let y = rng.normal_tensor(&[8, 3], &dev).expect("y");
    let b = Dim::sym("B");
    let build = |store: &mut ParamStore, node: &str, kind: &str, out: Option<i64>, width: usize| {
        let params: BTreeMap<String, Value> = out
            .map(|o| ("out".to_string(), Value::Int(o)))
            .into_iter()
            .collect();
        let inputs = [TensorType::features(vec![b.clone(), Dim::Size(width)])];
        reg.get(kind)
            .expect("kind")
            .build(node, &params, &inputs, store)
            .expect("build")
    };
    let l1 = build(&mut store, "l1", "testkit.affine", Some(4), 5);
    let act = build(&mut store, "act", "testkit.tanh", None, 4);
    let l2 = build(&mut store, "l2", "testkit.affine", Some(3), 4);
    let vars: Vec<(String, Var)> = store.vars().map(|(n, v)| (n.clone(), v.clone())).collect();
    let mut record = Vec::new();
    for step in 0..5 {
        let mut r = SeededRng::new(step);
        let h = l1
            .forward(std::slice::from_ref(&x), Mode::Train, &mut r)
            .expect("l1")
            .remove(0);
        let h = act
            .forward(&[h], Mode::Train, &mut r)
            .expect("act")
            .remove(0);
        let p = l2.forward(&[h], Mode::Train, &mut r).expect("l2").remove(0);
        let loss = (p - &y)
            .expect("sub")
            .sqr()
            .expect("sqr")
            .mean_all()
            .expect("mean");
        record.push((
            format!("loss@{step}"),
            vec![loss.to_scalar::<f32>().expect("scalar")],
        ));
        let grads = loss.backward().expect("backward");
        for (name, v) in &vars {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient reached {name}"));
            let gv: Vec<f32> = g.flatten_all().expect("flat").to_vec1().expect("vec");
            assert!(gv.iter().any(|x| *x != 0.0), "zero gradient for {name}");
            record.push((format!("grad {name}@{step}"), gv));
            let updated = (v.as_tensor() - (g * 0.1).expect("scale")).expect("step");
            v.set(&updated).expect("set");
        }
    }
    let _ = DType::F32;
    record
}

#[test]
fn gradient_parity_dynamic_vs_static() {
    let mut dynamic = Registry::new();
    dynamic
        .load_plugin_from(&testkit_so(), "testkit")
        .expect("dynamic load");
    let mut fixed = Registry::new();
    fixed
        .add_static_plugin("testkit", "static", mer_plugin_testkit::register)
        .expect("static link");
    let a = train(&dynamic);
    let b = train(&fixed);
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{na}: dynamic {va:?} vs static {vb:?}");
    }
    // The loss fell: the run trained something.
    assert!(a.last().is_some());
    let first = a.iter().find(|(n, _)| n == "loss@0").expect("loss0").1[0];
    let last = a.iter().find(|(n, _)| n == "loss@4").expect("loss4").1[0];
    assert!(last < first, "{first} -> {last}");
}

#[test]
fn an_unknown_plugin_lists_what_was_found() {
    let o = mer(
        &["check", "tests/plugin_recipes/typo.mer"],
        &[("MER_PLUGIN_PATH_ONLY", "1")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("plugin `testkti` is not available"), "{err}");
    assert!(err.contains("did you mean `testkit`?"), "{err}");
    assert!(
        err.contains("plugins found:") && err.contains("testkit"),
        "{err}"
    );
}

/// A plugin's dataset kind gets `mer data synth` and `mer data verify`
/// from its own hooks, by full or short name, with no change to mer.
#[test]
fn a_plugin_dataset_gets_data_synth_and_verify() {
    let dir = std::env::temp_dir().join(format!("mer-tally-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.display().to_string();
    let o = mer(
        &[
            "data",
            "synth",
            "--use",
            "testkit",
            "--layout",
            "testkit.tally",
            "--out",
            &d,
            "--subjects",
            "2",
            "--clips-per-subject",
            "3",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = mer(
        &[
            "data",
            "verify",
            &d,
            "--use",
            "testkit",
            "--dataset",
            "tally",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("samples: 6"));
    let csv = dir.join("labels.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("s9,not-a-label\n");
    std::fs::write(&csv, text).unwrap();
    let o = mer(
        &[
            "data",
            "verify",
            &d,
            "--use",
            "testkit",
            "--dataset",
            "testkit.tally",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("labels.csv:8: not `id,label`"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Without the plugin, the kind is unknown (and the message lists what is).
    let o = mer(&["data", "verify", &d, "--dataset", "testkit.tally"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(dir);
}
