//! MLflow's file store layout, written natively:
//!
//! ```text
//! mlruns/<exp>/meta.yaml                 experiment (name, ids, times)
//! mlruns/<exp>/<run>/meta.yaml           run (status 1 running, 3 finished, 4 failed)
//! mlruns/<exp>/<run>/metrics/<key>       "<ms> <value> <step>" per line, NaN as text
//! mlruns/<exp>/<run>/params/<key>        raw value
//! mlruns/<exp>/<run>/tags/<key>          raw value
//! mlruns/<exp>/<run>/artifacts/…
//! ```
//!
//! MLflow 3.x still reads this layout but keeps its file backend behind
//! `MLFLOW_ALLOW_FILE_STORE=true`, or converts it losslessly with
//! `mlflow migrate-filestore` (`shared/research/mlflow.md` §3).

use super::{FoundRun, Metric, TrackError, Tracker};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A `./mlruns` folder in MLflow's file layout.
pub struct FileStore {
    root: PathBuf,
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> TrackError + '_ {
    move |e| TrackError::Io(format!("{}: {e}", p.display()))
}

/// Single-quoted YAML scalar (quotes doubled), which holds any text.
fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads the `key: value` lines of a meta.yaml that this module or MLflow wrote.
fn yaml_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let v = v.trim();
            let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(inner) => inner.replace("''", "'"),
                None => v.to_string(),
            };
            (k.trim().to_string(), v)
        })
        .collect()
}

/// Turns a key into a relative path, refusing anything that could leave
/// the run folder.
fn key_path(key: &str) -> Result<PathBuf, TrackError> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(TrackError::Protocol(format!(
            "`{key}` cannot be an MLflow key"
        )));
    }
    Ok(PathBuf::from(key))
}

fn status_code(status: &str) -> u8 {
    match status {
        "RUNNING" => 1,
        "SCHEDULED" => 2,
        "FINISHED" => 3,
        "FAILED" => 4,
        _ => 5,
    }
}

fn status_name(code: &str) -> &'static str {
    match code {
        "1" => "RUNNING",
        "2" => "SCHEDULED",
        "3" => "FINISHED",
        "4" => "FAILED",
        _ => "KILLED",
    }
}

/// Writes `value` as the text of file `dir/key` (keys with `/` nest).
fn write_kv(dir: &Path, key: &str, value: &str) -> Result<(), TrackError> {
    let p = dir.join(key_path(key)?);
    mer_store::write_atomic(&p, value.as_bytes()).map_err(io(&p))
}

/// Every `key → value` file under `dir`, keys `/`-joined.
fn read_kv(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if e.path().is_dir() {
                stack.push((e.path(), key));
            } else if let Ok(v) = std::fs::read_to_string(e.path()) {
                out.insert(key, v);
            }
        }
    }
    out
}

impl FileStore {
    /// Opens (creating) a store at `root`.
    pub fn new(root: &Path) -> Result<FileStore, TrackError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let root = root.canonicalize().map_err(io(root))?;
        Ok(FileStore { root })
    }

    fn run_dir(&self, run: &str) -> Result<PathBuf, TrackError> {
        let entries = std::fs::read_dir(&self.root).map_err(io(&self.root))?;
        for e in entries.flatten() {
            let d = e.path().join(run);
            if d.join("meta.yaml").is_file() {
                return Ok(d);
            }
        }
        Err(TrackError::Protocol(format!(
            "{}: no run {run}",
            self.root.display()
        )))
    }

    fn uri(&self, p: &Path) -> String {
        format!("file://{}", p.display())
    }

    fn write_run_meta(&self, dir: &Path, f: &BTreeMap<String, String>) -> Result<(), TrackError> {
        let mut s = String::new();
        for (k, v) in f {
            s.push_str(&format!("{k}: {v}\n"));
        }
        let p = dir.join("meta.yaml");
        mer_store::write_atomic(&p, s.as_bytes()).map_err(io(&p))
    }
}

/// Tags an experiment folder with mer's experiment kind (MLflow keeps
/// experiment tags as `<exp>/tags/<key>` files), unless it already has it.
fn ensure_kind(dir: &Path) -> Result<(), TrackError> {
    let (key, value) = super::EXPERIMENT_KIND;
    if read_kv(&dir.join("tags")).get(key).map(String::as_str) != Some(value) {
        write_kv(&dir.join("tags"), key, value)?;
    }
    Ok(())
}

impl Tracker for FileStore {
    fn describe(&self) -> String {
        self.uri(&self.root)
    }

    fn experiment(&mut self, name: &str) -> Result<String, TrackError> {
        let mut max_id = 0u64;
        let entries = std::fs::read_dir(&self.root).map_err(io(&self.root))?;
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let Ok(n) = id.parse::<u64>() else { continue };
            max_id = max_id.max(n);
            if let Ok(text) = std::fs::read_to_string(e.path().join("meta.yaml")) {
                let f = yaml_fields(&text);
                if f.get("name").map(String::as_str) == Some(name)
                    && f.get("lifecycle_stage").map(String::as_str) != Some("deleted")
                {
                    ensure_kind(&e.path())?;
                    return Ok(id);
                }
            }
        }
        let id = (max_id + 1).to_string();
        let dir = self.root.join(&id);
        let now = super::now_ms();
        let meta = format!(
            "artifact_location: {}\ncreation_time: {now}\nexperiment_id: '{id}'\nlast_update_time: {now}\nlifecycle_stage: active\nname: {}\n",
            yaml_str(&self.uri(&dir)),
            yaml_str(name)
        );
        mer_store::write_atomic(&dir.join("meta.yaml"), meta.as_bytes()).map_err(io(&dir))?;
        ensure_kind(&dir)?;
        Ok(id)
    }

    fn runs(&mut self, experiment: &str) -> Result<Vec<FoundRun>, TrackError> {
        let dir = self.root.join(experiment);
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("meta.yaml")) else {
                continue;
            };
            let f = yaml_fields(&text);
            if f.get("lifecycle_stage").map(String::as_str) == Some("deleted") {
                continue;
            }
            out.push(FoundRun {
                run_id: e.file_name().to_string_lossy().to_string(),
                status: status_name(f.get("status").map(String::as_str).unwrap_or("")).into(),
                tags: read_kv(&e.path().join("tags")),
            });
        }
        out.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(out)
    }

    fn create_run(
        &mut self,
        experiment: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<String, TrackError> {
        // 32 hex digits like MLflow's uuid4().hex; unique per creation.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!("{experiment}/{name}/{nanos}/{}", std::process::id());
        let id = blake3::hash(seed.as_bytes()).to_hex()[..32].to_string();
        let dir = self.root.join(experiment).join(&id);
        let mut f = BTreeMap::new();
        f.insert(
            "artifact_uri".into(),
            yaml_str(&self.uri(&dir.join("artifacts"))),
        );
        f.insert("end_time".into(), "null".into());
        f.insert("entry_point_name".into(), "''".into());
        f.insert("experiment_id".into(), yaml_str(experiment));
        f.insert("lifecycle_stage".into(), "active".into());
        f.insert("run_id".into(), id.clone());
        f.insert("run_name".into(), yaml_str(name));
        f.insert("run_uuid".into(), id.clone());
        f.insert("source_name".into(), "''".into());
        f.insert("source_type".into(), "4".into());
        f.insert("source_version".into(), "''".into());
        f.insert("start_time".into(), start_ms.to_string());
        f.insert("status".into(), "1".into());
        f.insert("tags".into(), "[]".into());
        f.insert("user_id".into(), yaml_str("mer"));
        for sub in ["metrics", "params", "tags", "artifacts"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir))?;
        }
        self.write_run_meta(&dir, &f)?;
        let mut all = tags.to_vec();
        all.push(("mlflow.runName".into(), name.into()));
        self.log_batch(&id, &[], &[], &all)?;
        Ok(id)
    }

    fn log_batch(
        &mut self,
        run: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), TrackError> {
        let dir = self.run_dir(run)?;
        for (k, v) in params {
            let p = dir.join("params").join(key_path(k)?);
            // MLflow refuses to change a logged param; so does this store.
            if let Ok(old) = std::fs::read_to_string(&p) {
                if &old != v {
                    return Err(TrackError::Protocol(format!(
                        "param `{k}` of run {run} is already `{old}`, cannot log `{v}`"
                    )));
                }
                continue;
            }
            write_kv(&dir.join("params"), k, v)?;
        }
        for (k, v) in tags {
            write_kv(&dir.join("tags"), k, v)?;
        }
        let mut by_key: BTreeMap<&str, String> = BTreeMap::new();
        for m in metrics {
            key_path(&m.key)?;
            // Rust prints NaN as `NaN` and ∞ as `inf`: both are what
            // Python's float() (and so MLflow's reader) accepts.
            by_key
                .entry(&m.key)
                .or_default()
                .push_str(&format!("{} {} {}\n", m.timestamp, m.value, m.step));
        }
        for (k, lines) in by_key {
            let p = dir.join("metrics").join(key_path(k)?);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(io(&p))?;
            f.write_all(lines.as_bytes()).map_err(io(&p))?;
        }
        Ok(())
    }

    fn metric_history(&mut self, run: &str, key: &str) -> Result<Vec<Metric>, TrackError> {
        let p = self.run_dir(run)?.join("metrics").join(key_path(key)?);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(&p)(e)),
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let bad = || TrackError::Protocol(format!("{}:{}: `{line}`", p.display(), i + 1));
            if parts.len() < 2 {
                return Err(bad());
            }
            out.push(Metric {
                key: key.to_string(),
                timestamp: parts[0].parse().map_err(|_| bad())?,
                value: parts[1].parse().map_err(|_| bad())?,
                step: parts
                    .get(2)
                    .map_or(Ok(0), |s| s.parse())
                    .map_err(|_| bad())?,
            });
        }
        Ok(out)
    }

    fn upload(&mut self, run: &str, path: &str, bytes: &[u8]) -> Result<(), TrackError> {
        let p = self.run_dir(run)?.join("artifacts").join(key_path(path)?);
        mer_store::write_atomic(&p, bytes).map_err(io(&p))
    }

    fn finish(&mut self, run: &str, status: &str, end_ms: i64) -> Result<(), TrackError> {
        let dir = self.run_dir(run)?;
        let p = dir.join("meta.yaml");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let mut f: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        f.insert("status".into(), status_code(status).to_string());
        f.insert("end_time".into(), end_ms.to_string());
        self.write_run_meta(&dir, &f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_metrics_and_tags_round_trip_including_nan() {
        let dir = std::env::temp_dir().join(format!("mer-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = FileStore::new(&dir).unwrap();
        let e = s.experiment("demo 'quoted'").unwrap();
        assert_eq!(e, "1");
        assert_eq!(s.experiment("demo 'quoted'").unwrap(), "1");
        assert_eq!(s.experiment("other").unwrap(), "2");
        let r = s
            .create_run(&e, "base", 5, &[("mer.key".into(), "a/b".into())])
            .unwrap();
        assert_eq!(r.len(), 32);
        let m = |v: f64, step| Metric {
            key: "f1.AU4".into(),
            value: v,
            step,
            timestamp: 7,
        };
        s.log_batch(
            &r,
            &[m(0.5, 0), m(f64::NAN, 1), m(f64::INFINITY, 2)],
            &[("optimizer.lr".into(), "0.001".into())],
            &[("mer.variant".into(), "base".into())],
        )
        .unwrap();
        let h = s.metric_history(&r, "f1.AU4").unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].value, 0.5);
        assert!(h[1].value.is_nan());
        assert_eq!(h[2].value, f64::INFINITY);
        // Same value again is fine, a different one is refused (as MLflow).
        s.log_batch(&r, &[], &[("optimizer.lr".into(), "0.001".into())], &[])
            .unwrap();
        assert!(s
            .log_batch(&r, &[], &[("optimizer.lr".into(), "0.1".into())], &[])
            .is_err());
        assert!(s
            .log_batch(&r, &[], &[("../escape".into(), "x".into())], &[])
            .is_err());
        s.upload(&r, "report/report.md", b"# hi").unwrap();
        s.finish(&r, "FINISHED", 9).unwrap();
        let runs = s.runs(&e).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, "FINISHED");
        assert_eq!(runs[0].tags["mer.key"], "a/b");
        assert_eq!(runs[0].tags["mlflow.runName"], "base");
        let meta = std::fs::read_to_string(dir.join(&e).join("meta.yaml")).unwrap();
        assert!(meta.contains("name: 'demo ''quoted'''"), "{meta}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
