//! Integration tests against a real MLflow server and MLflow's own reader.
//!
//! They need `MER_TEST_MLFLOW`: the path of an `mlflow` executable (its
//! venv's `python` is used too). `.ci/run` installs the pinned MLflow from
//! PyPI and sets it, with `MER_REQUIRE_MLFLOW=1` so a missing server is a
//! failure there, not a skip. Each test starts its own server (lean flags:
//! one worker, no job runner) on a free port with its own SQLite store.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mlflow_bin() -> Option<PathBuf> {
    match std::env::var_os("MER_TEST_MLFLOW") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var("MER_REQUIRE_MLFLOW").as_deref() != Ok("1"),
                "MER_REQUIRE_MLFLOW=1 but MER_TEST_MLFLOW (the mlflow executable) is not set"
            );
            eprintln!("skipped: set MER_TEST_MLFLOW to an mlflow executable (.ci/run does)");
            None
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-mlflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mlflow server`, stopped (its whole process group) on drop.
struct Server {
    child: Child,
    uri: String,
    dead: bool,
}

impl Server {
    fn start(bin: &Path, dir: &Path, port: u16) -> Server {
        Server::start_with(bin, dir, port, &[], &[])
    }

    fn start_with(
        bin: &Path,
        dir: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let mut child = Command::new(bin)
            .current_dir(dir)
            .envs(env.iter().copied())
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .args(["--workers", "1", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("mlflow server starts");
        let uri = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            // Any HTTP answer means it listens (basic-auth answers 401).
            match ureq::get(&format!("{uri}/health")).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => break,
                Err(_) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(format!("server-{port}.log")));
                panic!(
                    "mlflow server exited ({status}):\n{}",
                    log.unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not ready in 180 s; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        Server {
            child,
            uri,
            dead: false,
        }
    }

    /// SIGKILL to the group: the server dies as in a crash.
    fn kill(&mut self) {
        if std::mem::replace(&mut self.dead, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn mer(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mer"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn get(uri: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let mut r = ureq::get(&format!("{uri}/api/2.0/mlflow/{path}"));
    for (k, v) in query {
        r = r.query(k, v);
    }
    r.call().unwrap().into_json().unwrap()
}

fn post(uri: &str, path: &str, body: Value) -> Value {
    ureq::post(&format!("{uri}/api/2.0/mlflow/{path}"))
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap()
}

/// Every active run of an experiment, by `mer.key`; panics on duplicates.
fn runs_by_key(uri: &str, experiment: &str) -> BTreeMap<String, Value> {
    let e = get(
        uri,
        "experiments/get-by-name",
        &[("experiment_name", experiment)],
    );
    let id = e["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let found = post(
        uri,
        "runs/search",
        json!({"experiment_ids": [id], "max_results": 1000}),
    );
    let mut out = BTreeMap::new();
    for r in found["runs"].as_array().cloned().unwrap_or_default() {
        let key = tag(&r, "mer.key").expect("every run has mer.key");
        assert!(
            out.insert(key.clone(), r).is_none(),
            "two runs with mer.key {key}"
        );
    }
    out
}

fn tag(run: &Value, key: &str) -> Option<String> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str().map(String::from))
}

fn param(run: &Value, key: &str) -> Option<String> {
    run["data"]["params"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str().map(String::from))
}

fn metric(run: &Value, key: &str) -> Option<Value> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| t["value"].clone())
}

fn history_steps(uri: &str, run: &Value, key: &str) -> Vec<i64> {
    let id = run["info"]["run_id"].as_str().unwrap();
    let h = get(
        uri,
        "metrics/get-history",
        &[("run_id", id), ("metric_key", key)],
    );
    let mut steps: Vec<i64> = h["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["step"].as_i64().unwrap_or(0))
        .collect();
    steps.sort();
    steps
}

fn artifacts(uri: &str, run: &Value, path: &str) -> BTreeSet<String> {
    let id = run["info"]["run_id"].as_str().unwrap();
    let j = get(uri, "artifacts/list", &[("run_id", id), ("path", path)]);
    j["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f["path"].as_str().map(String::from))
        .collect()
}

fn hash_dir(runs: &Path, exp: &str) -> PathBuf {
    let d = runs.join(exp);
    std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap()
}

#[test]
fn a_run_reaches_a_real_server_with_params_metrics_tags_and_artifacts() {
    let Some(bin) = mlflow_bin() else { return };
    let dir = scratch("live");
    // The server `.ci/run` started, else one of our own.
    let shared = std::env::var("MER_TEST_MLFLOW_URI").ok();
    let server = match &shared {
        Some(uri) => Err(uri.clone()),
        None => Ok(Server::start(&bin, &dir, free_port())),
    };
    let uri = match &server {
        Ok(s) => s.uri.clone(),
        Err(u) => u.clone(),
    };
    let runs = dir.join("runs");
    let runs_s = runs.display().to_string();
    let env = [("MLFLOW_TRACKING_URI", uri.as_str())];
    let o = mer(
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--runs",
            &runs_s,
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("mlflow: {}", uri)),
        "{}",
        text(&o)
    );
    // The link opens the runs table, whatever the UI's GenAI switch says.
    assert!(
        text(&o).contains(&format!("runs table: {uri}/#/experiments/"))
            && text(&o).contains("/runs?workflowType=machine_learning"),
        "{}",
        text(&o)
    );

    let hash = hash_dir(&runs, "tiny");
    let h = hash.file_name().unwrap().to_string_lossy().to_string();
    // A shared server may hold other recipes' runs of `tiny`.
    let mine = |all: BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        all.into_iter()
            .filter(|(k, _)| k.starts_with(&format!("tiny/{h}")))
            .collect()
    };
    let all = mine(runs_by_key(&uri, "tiny"));
    // The UI opens the runs table, not the GenAI Traces page.
    let e = get(
        &uri,
        "experiments/get-by-name",
        &[("experiment_name", "tiny")],
    );
    assert!(
        e["experiment"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(
                |t| t["key"] == "mlflow.experimentKind" && t["value"] == "custom_model_development"
            ),
        "{e}"
    );
    // A parent, the variant, its 4 LOSO folds.
    assert_eq!(all.len(), 6, "{:?}", all.keys().collect::<Vec<_>>());
    let parent = &all[&format!("tiny/{h}")];
    let v = &all[&format!("tiny/{h}/base/seed1")];
    assert_eq!(v["info"]["status"], "FINISHED");
    assert_eq!(
        tag(v, "mlflow.parentRunId"),
        parent["info"]["run_id"].as_str().map(String::from)
    );
    assert_eq!(tag(v, "mer.variant").as_deref(), Some("base"));
    assert_eq!(tag(v, "mer.seed").as_deref(), Some("1"));
    assert_eq!(tag(v, "mer.protocol").as_deref(), Some("protocol.loso"));
    assert_eq!(tag(v, "mer.device").as_deref(), Some("cpu"));
    assert!(tag(v, "mer.recipe_hash").is_some_and(|x| x.len() == 64));
    assert!(tag(v, "mlflow.source.git.commit").is_some());
    // Params: the flattened resolved recipe, defaults included.
    assert_eq!(param(v, "optimizer").as_deref(), Some("optim.adam"));
    assert_eq!(param(v, "optimizer.lr").as_deref(), Some("0.003"));
    assert_eq!(param(v, "train.epochs").as_deref(), Some("3"));
    assert_eq!(param(v, "model.conv.out").as_deref(), Some("4"));
    // Final metrics, pooled and per-fold mean; a NaN (AU1 never occurs
    // positive, so its F1 is undefined) comes back as MLflow's "NaN".
    assert!(metric(v, "f1").is_some_and(|x| x.is_number()));
    assert!(metric(v, "f1.fold_mean").is_some());
    assert_eq!(metric(v, "f1.AU1"), Some(json!("NaN")));
    // Per-epoch values on each fold run, once per epoch.
    let f = &all[&format!("tiny/{h}/base/seed1/folds/sub01")];
    assert_eq!(
        tag(f, "mlflow.parentRunId"),
        v["info"]["run_id"].as_str().map(String::from)
    );
    assert_eq!(history_steps(&uri, f, "train_loss"), vec![1, 2, 3]);
    assert!(metric(f, "loss.loss").is_some(), "each loss term per epoch");
    assert!(artifacts(&uri, f, "").contains("predictions.csv"));
    let va = artifacts(&uri, v, "");
    for a in ["recipe.ron", "graph.ron", "metrics.json", "context.json"] {
        assert!(va.contains(a), "{a} in {va:?}");
    }
    // The report and figures through the artifact proxy, byte for byte.
    let pa = artifacts(&uri, parent, "");
    assert!(pa.contains("report.md") && pa.contains("figures"), "{pa:?}");
    assert!(!artifacts(&uri, parent, "figures").is_empty());
    let pid = parent["info"]["run_id"].as_str().unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut ureq::get(&format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{pid}/artifacts/report.md",
            uri,
            parent["info"]["experiment_id"].as_str().unwrap()
        ))
        .call()
        .unwrap()
        .into_reader(),
        &mut body,
    )
    .unwrap();
    assert_eq!(body, std::fs::read(hash.join("report.md")).unwrap());
    // Syncing again creates and logs nothing.
    let o = mer(&["sync", &runs_s], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("0 runs created, 0 replaced, 0 updated")
            && text(&o).contains("0 metric values"),
        "{}",
        text(&o)
    );
    assert_eq!(mine(runs_by_key(&uri, "tiny")).len(), 6);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_server_killed_mid_run_loses_nothing_after_mer_sync() {
    let Some(bin) = mlflow_bin() else { return };
    let dir = scratch("killed");
    let port = free_port();
    let mut server = Server::start(&bin, &dir, port);
    let uri = server.uri.clone();
    let runs = dir.join("runs");
    // Two variants × 4 folds × 40 epochs: the server dies after the first
    // variant reached it and before the second one does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args([
            "run",
            "tests/run/tiny.mer",
            "--set",
            "train.epochs=40",
            "--runs",
        ])
        .arg(&runs)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MLFLOW_TRACKING_URI", &uri)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ok = ureq::get(&format!("{uri}/api/2.0/mlflow/experiments/get-by-name"))
            .query("experiment_name", "tiny")
            .call()
            .is_ok()
            && runs_by_key(&uri, "tiny")
                .iter()
                .any(|(k, r)| k.ends_with("/base/seed1") && r["info"]["status"] == "FINISHED");
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first variant never reached MLflow"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "mer finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "the run goes on: {log}");
    assert!(log.contains("mer goes on without it"), "{log}");
    // Every result is in the run store.
    let hash = hash_dir(&runs, "tiny");
    for v in ["base", "wide"] {
        assert!(hash.join(v).join("seed1").join("metrics.json").is_file());
    }

    // The server comes back on the same store; `mer sync` fills the gap.
    let server = Server::start(&bin, &dir, port);
    let env = [("MLFLOW_TRACKING_URI", server.uri.as_str())];
    let runs_s = runs.display().to_string();
    let o = mer(&["sync", &runs_s], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let all = runs_by_key(&server.uri, "tiny");
    assert_eq!(
        all.len(),
        1 + 2 + 2 * 4,
        "{:?}",
        all.keys().collect::<Vec<_>>()
    );
    for (k, r) in &all {
        assert_eq!(r["info"]["status"], "FINISHED", "{k}");
        if k.contains("/folds/") {
            let steps = history_steps(&server.uri, r, "train_loss");
            assert_eq!(
                steps,
                (1..=40).collect::<Vec<i64>>(),
                "{k}: each epoch once"
            );
        }
    }
    let h = hash.file_name().unwrap().to_string_lossy().to_string();
    let wide = &all[&format!("tiny/{h}/wide/seed1")];
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(hash.join("wide/seed1/metrics.json")).unwrap(),
    )
    .unwrap();
    let f1 = stored["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "f1")
        .unwrap()["pooled"]
        .as_f64()
        .unwrap();
    assert_eq!(metric(wide, "f1").and_then(|v| v.as_f64()), Some(f1));
    // And once more: nothing new.
    let o = mer(&["sync", &runs_s], &env);
    assert!(text(&o).contains("0 runs created"), "{}", text(&o));
    assert_eq!(runs_by_key(&server.uri, "tiny").len(), 11);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The documented check: MLflow's own client reads mer's file store.
#[test]
fn mlflow_opens_the_local_file_store_and_lists_the_run_with_its_metrics() {
    let Some(bin) = mlflow_bin() else { return };
    let python = bin.with_file_name("python");
    let dir = scratch("filestore");
    let runs = dir.join("runs");
    let store = dir.join("mlruns");
    let o = mer(
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--runs",
            &runs.display().to_string(),
        ],
        &[("MLFLOW_TRACKING_URI", &store.display().to_string())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let script = r#"
import json, sys, mlflow
c = mlflow.MlflowClient(tracking_uri="file://" + sys.argv[1])
e = c.get_experiment_by_name("tiny")
assert e.tags.get("mlflow.experimentKind") == "custom_model_development", e.tags
out = []
for r in c.search_runs([e.experiment_id], filter_string="tags.`mer.variant` = 'base'"):
    out.append({"name": r.info.run_name, "status": r.info.status,
                "f1": r.data.metrics.get("f1"), "nan": str(r.data.metrics.get("f1.AU1")),
                "lr": r.data.params.get("optimizer.lr"),
                "steps": len(c.get_metric_history(r.info.run_id, "train_loss"))})
print(json.dumps(sorted(out, key=lambda x: x["name"])))
"#;
    let py = Command::new(&python)
        .args(["-c", script])
        .arg(&store)
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    let listed: Value = serde_json::from_slice(&py.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    // The variant run and its 4 folds.
    assert_eq!(listed.len(), 5, "{listed:?}");
    let v = listed.iter().find(|r| r["name"] == "base seed 1").unwrap();
    assert_eq!(v["status"], "FINISHED");
    assert!(v["f1"].is_number());
    assert_eq!(v["nan"], "nan");
    assert_eq!(v["lr"], "0.003");
    let fold = listed
        .iter()
        .find(|r| r["name"] == "base seed 1 fold sub01")
        .unwrap();
    assert_eq!(fold["steps"], 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// Basic auth from MLflow's variables, and a server error that is not JSON
/// (a wrong path prefix) reported with its status and text.
#[test]
fn auth_comes_from_mlflow_variables_and_non_json_errors_are_readable() {
    let Some(bin) = mlflow_bin() else { return };
    let dir = scratch("auth");
    let server = Server::start_with(
        &bin,
        &dir,
        free_port(),
        &["--app-name", "basic-auth"],
        &[
            ("MLFLOW_AUTH_ADMIN_PASSWORD", "s3cret-Passw0rd!"),
            ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mer-tests"),
        ],
    );
    let runs = dir.join("runs");
    let runs_s = runs.display().to_string();
    let o = mer(
        &[
            "run",
            "tests/run/tiny.mer",
            "--variant",
            "base",
            "--set",
            "train.epochs=1",
            "--runs",
            &runs_s,
        ],
        &[("MLFLOW_TRACKING_URI", "file:///dev/null/none")],
    );
    // An unusable file store is a warning; the run itself succeeds.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("warning: MLflow"), "{}", text(&o));
    // No credentials: the server's 401 is named, nothing is lost.
    let o = mer(&["sync", &runs_s], &[("MLFLOW_TRACKING_URI", &server.uri)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("HTTP 401"), "{}", text(&o));
    // Credentials from MLFLOW_TRACKING_USERNAME / _PASSWORD.
    let o = mer(
        &["sync", &runs_s],
        &[
            ("MLFLOW_TRACKING_URI", &server.uri),
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", "s3cret-Passw0rd!"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("6 runs created"), "{}", text(&o));
    // … or from the URI's user-info, percent-encoded.
    let with_user = server
        .uri
        .replace("http://", "http://admin:s3cret-Passw0rd%21@");
    let o = mer(&["sync", &runs_s], &[("MLFLOW_TRACKING_URI", &with_user)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 runs created"), "{}", text(&o));
    assert!(
        !text(&o).contains("s3cret"),
        "credentials stay out of messages"
    );
    // A path prefix is kept: this server has none, so it answers 404 in
    // plain text/HTML, which the error shows instead of a decode failure.
    let o = mer(
        &["sync", &runs_s],
        &[
            (
                "MLFLOW_TRACKING_URI",
                &format!("{}/team/mlflow", server.uri),
            ),
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", "s3cret-Passw0rd!"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("/team/mlflow/api/2.0/mlflow/experiments/get-by-name") && t.contains("HTTP 404"),
        "{t}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
