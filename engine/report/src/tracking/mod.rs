//! Tracking to MLflow: the run store (`runs/…`) is the source of truth, and
//! [`sync`] copies it into MLflow through one [`Tracker`] trait with two
//! implementations:
//!
//! - [`file_store::FileStore`]: MLflow's file layout (`./mlruns`), written
//!   with no Python; MLflow opens it (see the README for the command).
//! - [`rest::Rest`]: the REST API of a tracking server, when
//!   `MLFLOW_TRACKING_URI` is `http(s)://…`.
//!
//! Why not the `mlflow-client` crate: measured against MLflow 3.17 it cannot
//! write NaN/∞ metrics, cannot read back any run holding one, drops the
//! tracking URI's path prefix, sends no auth header, has no artifact upload
//! and never retries (`shared/research/mlflow.md` §2). Every call mer makes
//! would have had to go around it, so the client here is ~400 lines over
//! `ureq`.
//!
//! Because sync reads the run store, a server that is down or dies mid-run
//! loses nothing: `mer sync` uploads later, and runs are matched by their
//! `mer.key` tag so nothing is created or logged twice.

pub mod file_store;
pub mod rest;
pub mod sync;

use std::collections::BTreeMap;

/// One metric value. MLflow metrics are `f64` and may be NaN or ±∞.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name in MLflow's key alphabet (see [`mlflow_key`]).
    pub key: String,
    /// The value; NaN and ±∞ are kept.
    pub value: f64,
    /// Position in the series: the epoch for curves, 0 for final values.
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// A run as found in the tracking backend.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FoundRun {
    /// The backend's run id.
    pub run_id: String,
    /// `RUNNING`, `FINISHED`, `FAILED` or `KILLED`.
    pub status: String,
    /// The run's tags by key (mer finds its runs by `mer.key`).
    pub tags: BTreeMap<String, String>,
}

/// What can go wrong talking to a tracking backend.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// No answer (connection refused, timeout) after every retry.
    #[error("{uri}: unreachable after {attempts} attempt(s): {message}")]
    Unreachable {
        /// The address that was called.
        uri: String,
        /// How many tries were made before giving up.
        attempts: u32,
        /// The last transport error.
        message: String,
    },
    /// The server answered with an error; `body` is the start of its reply
    /// whether or not it was JSON (proxies and auth layers answer in HTML).
    #[error("{uri}: HTTP {status}{code}: {body}")]
    Server {
        /// The address that was called.
        uri: String,
        /// The HTTP status code.
        status: u16,
        /// MLflow's `error_code` with a leading space, or empty when the reply
        /// carried none.
        code: String,
        /// MLflow's `message`, or the first 300 characters of a non-JSON reply.
        body: String,
    },
    /// A local file (run store or `./mlruns`) could not be read, parsed or
    /// written, or a reply body could not be read; names the path or address.
    #[error("{0}")]
    Io(String),
    /// A reply that parsed but did not say what MLflow says.
    #[error("{0}")]
    Protocol(String),
}

/// The operations `sync` needs. Each backend does them its own way; the
/// semantics are MLflow's.
pub trait Tracker {
    /// Where results go, for messages (credentials redacted).
    fn describe(&self) -> String;
    /// The id of the experiment called `name`, created when missing.
    fn experiment(&mut self, name: &str) -> Result<String, TrackError>;
    /// Every active run of an experiment, with its tags.
    fn runs(&mut self, experiment: &str) -> Result<Vec<FoundRun>, TrackError>;
    /// Creates a run; `tags` may include `mlflow.parentRunId`.
    fn create_run(
        &mut self,
        experiment: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<String, TrackError>;
    /// Logs metrics, params and tags (any number; the backend splits them).
    fn log_batch(
        &mut self,
        run: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), TrackError>;
    /// Every logged value of one metric.
    fn metric_history(&mut self, run: &str, key: &str) -> Result<Vec<Metric>, TrackError>;
    /// Stores an artifact at `path` (relative, `/`-separated) under the run.
    fn upload(&mut self, run: &str, path: &str, bytes: &[u8]) -> Result<(), TrackError>;
    /// Sets the run's final status and end time.
    fn finish(&mut self, run: &str, status: &str, end_ms: i64) -> Result<(), TrackError>;
}

/// The experiment tag MLflow's UI reads to choose an experiment's start
/// page: without it, MLflow 3 opens mer's experiments on its GenAI
/// "Traces" page; "custom_model_development" (the UI's own value for
/// model training) opens the runs table.
pub const EXPERIMENT_KIND: (&str, &str) = ("mlflow.experimentKind", "custom_model_development");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A metric or param key MLflow accepts: it allows letters, digits, `_`,
/// `-`, `.`, ` ` and `/`. mer's per-label names (`f1[AU4]`,
/// `confusion[happy,sad]`) become `f1.AU4` and `confusion.happy.sad`.
pub fn mlflow_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' | '.' | ' ' | '/' => out.push(c),
            '[' | ',' => out.push('.'),
            ']' => {}
            _ => out.push('_'),
        }
    }
    out.trim_end_matches('.').to_string()
}

/// The backend `MLFLOW_TRACKING_URI` names: unset or a path / `file:` URI
/// → a [`file_store::FileStore`] (default `./mlruns`); `http(s)://` → REST.
pub fn from_uri(uri: Option<&str>) -> Result<Box<dyn Tracker>, TrackError> {
    match uri.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(Box::new(file_store::FileStore::new("mlruns".as_ref())?)),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Box::new(rest::Rest::from_env(u)?))
        }
        Some(u) if u.starts_with("databricks") || u.starts_with("sqlite:") => Err(
            TrackError::Protocol(format!(
                "MLFLOW_TRACKING_URI `{u}`: mer writes to a tracking server (http(s)://…) or a file store (a path or file://…); point `mlflow server --backend-store-uri {u}` at it and use the server's URL"
            )),
        ),
        Some(u) => {
            let path = u.strip_prefix("file://").unwrap_or(u);
            Ok(Box::new(file_store::FileStore::new(path.as_ref())?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_label_names_become_valid_mlflow_keys() {
        assert_eq!(mlflow_key("f1[AU4]"), "f1.AU4");
        assert_eq!(mlflow_key("confusion[happy,sad]"), "confusion.happy.sad");
        assert_eq!(mlflow_key("uar"), "uar");
        assert_eq!(mlflow_key("f1 (macro)[x+y]"), "f1 _macro_.x_y");
    }

    #[test]
    fn unsupported_uris_are_refused_with_advice() {
        let e = from_uri(Some("sqlite:///x.db")).err().unwrap().to_string();
        assert!(e.contains("mlflow server --backend-store-uri"), "{e}");
    }
}
