//! MLflow's REST API (2.0 paths, as MLflow 3.x serves them), over `ureq`.
//!
//! What the `mlflow-client` crate lacked and this does:
//! - NaN and ±∞ metric values are sent as the strings MLflow accepts and
//!   read back from either strings or numbers;
//! - a tracking URI with a path prefix (`https://host/team/mlflow`) keeps it;
//! - auth from MLflow's own variables: `MLFLOW_TRACKING_TOKEN` (bearer), or
//!   `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` or the URI's
//!   user-info (basic);
//! - error replies that are not JSON (auth layers, proxies, the Host check)
//!   are reported with their status and text;
//! - one connection pool, a timeout (`MLFLOW_HTTP_REQUEST_TIMEOUT`, s) and
//!   retries with exponential back-off on connection failures, 429 and
//!   502/503/504 (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`,
//!   `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`);
//! - artifact upload through the server's artifact proxy.

use super::{FoundRun, Metric, TrackError, Tracker};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;

/// A tracking server.
pub struct Rest {
    /// Scheme, host and path prefix, without credentials or trailing `/`.
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
    retries: u32,
    backoff: f64,
    artifact_uris: BTreeMap<String, String>,
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes one path for a URL, keeping `/`.
fn encode_path(p: &str) -> String {
    let mut out = String::new();
    for c in p.bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(c as char)
            }
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A metric value as MLflow's JSON accepts it.
fn metric_json(v: f64) -> Json {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// A metric value as MLflow returns it: a number, or `"NaN"` and friends.
fn metric_value(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
    }
}

fn tags_json(tags: &[(String, String)]) -> Json {
    Json::Array(
        tags.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

impl Rest {
    /// A client for `uri`, with auth, timeout and retries from MLflow's
    /// environment variables.
    pub fn from_env(uri: &str) -> Result<Rest, TrackError> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| TrackError::Protocol(format!("`{uri}` is not a URL")))?;
        // user:password@host… → basic auth, and out of every message.
        let (userinfo, hostpath) = match rest.split_once('@') {
            Some((u, h)) if !u.contains('/') => (Some(u), h),
            _ => (None, rest),
        };
        let base = format!("{scheme}://{}", hostpath.trim_end_matches('/'));
        let auth = if let Ok(t) = std::env::var("MLFLOW_TRACKING_TOKEN") {
            Some(format!("Bearer {t}"))
        } else if let (Ok(u), Ok(p)) = (
            std::env::var("MLFLOW_TRACKING_USERNAME"),
            std::env::var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            Some(format!("Basic {}", base64(&format!("{u}:{p}"))))
        } else {
            userinfo.map(|u| {
                let (user, pw) = u.split_once(':').unwrap_or((u, ""));
                format!(
                    "Basic {}",
                    base64(&format!("{}:{}", percent_decode(user), percent_decode(pw)))
                )
            })
        };
        let timeout = env_num("MLFLOW_HTTP_REQUEST_TIMEOUT", 120.0).max(0.1);
        Ok(Rest {
            base,
            agent: crate::net::agent()
                .timeout(Duration::from_secs_f64(timeout))
                .build(),
            auth,
            retries: env_num("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 5.0).max(0.0) as u32,
            backoff: env_num("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2.0).max(0.0),
            artifact_uris: BTreeMap::new(),
        })
    }

    /// Sends one request, retrying what is safe to retry.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
    ) -> Result<Json, TrackError> {
        let url = format!("{}/{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.request(method, &url);
            for (k, v) in query {
                req = req.query(k, v);
            }
            if let Some(a) = &self.auth {
                req = req.set("Authorization", a);
            }
            let result = match &body {
                None => req.call(),
                Some(Body::Json(j)) => req.send_json(j.clone()),
                Some(Body::Bytes(b)) => req
                    .set("Content-Type", "application/octet-stream")
                    .send_bytes(b),
            };
            let retryable = match &result {
                Ok(_) => false,
                Err(ureq::Error::Status(code, _)) => matches!(code, 429 | 502 | 503 | 504),
                Err(ureq::Error::Transport(_)) => true,
            };
            if retryable && attempt <= self.retries {
                let secs = (0.25 * self.backoff.powi(attempt as i32 - 1)).min(30.0);
                std::thread::sleep(Duration::from_secs_f64(secs));
                continue;
            }
            return match result {
                Ok(resp) => {
                    let text = resp
                        .into_string()
                        .map_err(|e| TrackError::Io(format!("{url}: {e}")))?;
                    if text.trim().is_empty() {
                        Ok(json!({}))
                    } else {
                        serde_json::from_str(&text).map_err(|e| {
                            TrackError::Protocol(format!(
                                "{url}: reply is not JSON ({e}): {}",
                                text.chars().take(200).collect::<String>()
                            ))
                        })
                    }
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let (code, body) = match serde_json::from_str::<Json>(&text) {
                        Ok(j) if j.get("error_code").is_some() => (
                            format!(" {}", j["error_code"].as_str().unwrap_or("")),
                            j["message"].as_str().unwrap_or("").to_string(),
                        ),
                        _ => (
                            String::new(),
                            text.split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ")
                                .chars()
                                .take(300)
                                .collect::<String>(),
                        ),
                    };
                    Err(TrackError::Server {
                        uri: url,
                        status,
                        code,
                        body,
                    })
                }
                Err(ureq::Error::Transport(t)) => Err(TrackError::Unreachable {
                    uri: url,
                    attempts: attempt,
                    message: t.to_string(),
                }),
            };
        }
    }

    fn api(&self, method: &str, endpoint: &str, body: Json) -> Result<Json, TrackError> {
        self.send(
            method,
            &format!("api/2.0/mlflow/{endpoint}"),
            &[],
            Some(Body::Json(body)),
        )
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Json, TrackError> {
        self.send("GET", &format!("api/2.0/mlflow/{endpoint}"), query, None)
    }

    fn artifact_uri(&mut self, run: &str) -> Result<String, TrackError> {
        if let Some(u) = self.artifact_uris.get(run) {
            return Ok(u.clone());
        }
        let j = self.get("runs/get", &[("run_id", run)])?;
        let u = j["run"]["info"]["artifact_uri"]
            .as_str()
            .ok_or_else(|| TrackError::Protocol(format!("run {run}: no artifact_uri")))?
            .to_string();
        self.artifact_uris.insert(run.to_string(), u.clone());
        Ok(u)
    }
}

/// `mlflow-artifacts:/1/<run>/artifacts` (or `mlflow-artifacts://host/…`)
/// → `1/<run>/artifacts`, the proxy's path.
fn proxied(root: &str) -> Option<String> {
    let rest = root.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(r) => r.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest.trim_start_matches('/'),
    };
    Some(rest.trim_end_matches('/').to_string())
}

enum Body {
    Json(Json),
    Bytes(Vec<u8>),
}

impl Tracker for Rest {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn experiment(&mut self, name: &str) -> Result<String, TrackError> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(j) => {
                let e = &j["experiment"];
                if e["lifecycle_stage"].as_str() == Some("deleted") {
                    return Err(TrackError::Protocol(format!(
                        "experiment `{name}` is deleted on {}; restore it (mlflow experiments restore) or rename the recipe's experiment",
                        self.base
                    )));
                }
                let id = e["experiment_id"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| TrackError::Protocol(format!("experiment `{name}`: no id")))?;
                // Experiments made before mer set its kind open on the
                // UI's Traces page until they carry it.
                let has_kind = e["tags"].as_array().into_iter().flatten().any(|t| {
                    t["key"].as_str() == Some(super::EXPERIMENT_KIND.0)
                        && t["value"].as_str() == Some(super::EXPERIMENT_KIND.1)
                });
                if !has_kind {
                    self.api(
                        "POST",
                        "experiments/set-experiment-tag",
                        json!({ "experiment_id": id, "key": super::EXPERIMENT_KIND.0, "value": super::EXPERIMENT_KIND.1 }),
                    )?;
                }
                Ok(id)
            }
            // Only MLflow's own "no such experiment"; a bare 404 means a
            // wrong URL (path prefix, proxy), which creating cannot fix.
            Err(TrackError::Server {
                status: 404, code, ..
            }) if code.contains("RESOURCE_DOES_NOT_EXIST") => {
                let j = self.api(
                    "POST",
                    "experiments/create",
                    json!({ "name": name, "tags": [{ "key": super::EXPERIMENT_KIND.0, "value": super::EXPERIMENT_KIND.1 }] }),
                )?;
                j["experiment_id"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| {
                        TrackError::Protocol(format!("experiments/create `{name}`: no id"))
                    })
            }
            Err(e) => Err(e),
        }
    }

    fn runs(&mut self, experiment: &str) -> Result<Vec<FoundRun>, TrackError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({ "experiment_ids": [experiment], "max_results": 1000 });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let j = self.api("POST", "runs/search", body)?;
            for r in j["runs"].as_array().into_iter().flatten() {
                let tags = r["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        Some((
                            t["key"].as_str()?.to_string(),
                            t["value"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                out.push(FoundRun {
                    run_id: r["info"]["run_id"].as_str().unwrap_or_default().to_string(),
                    status: r["info"]["status"].as_str().unwrap_or_default().to_string(),
                    tags,
                });
            }
            match j["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn create_run(
        &mut self,
        experiment: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<String, TrackError> {
        let j = self.api(
            "POST",
            "runs/create",
            json!({
                "experiment_id": experiment,
                "run_name": name,
                "start_time": start_ms,
                "tags": tags_json(tags),
            }),
        )?;
        let info = &j["run"]["info"];
        let id = info["run_id"]
            .as_str()
            .ok_or_else(|| TrackError::Protocol("runs/create: no run_id".into()))?
            .to_string();
        if let Some(u) = info["artifact_uri"].as_str() {
            self.artifact_uris.insert(id.clone(), u.to_string());
        }
        Ok(id)
    }

    fn log_batch(
        &mut self,
        run: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), TrackError> {
        // MLflow's limits per request: 1000 metrics, 100 params, 100 tags.
        for chunk in params.chunks(100) {
            self.api(
                "POST",
                "runs/log-batch",
                json!({"run_id": run, "params": tags_json(chunk)}),
            )?;
        }
        for chunk in tags.chunks(100) {
            self.api(
                "POST",
                "runs/log-batch",
                json!({"run_id": run, "tags": tags_json(chunk)}),
            )?;
        }
        for chunk in metrics.chunks(1000) {
            let ms: Vec<Json> = chunk
                .iter()
                .map(|m| {
                    json!({"key": m.key, "value": metric_json(m.value),
                           "timestamp": m.timestamp, "step": m.step})
                })
                .collect();
            self.api(
                "POST",
                "runs/log-batch",
                json!({"run_id": run, "metrics": ms}),
            )?;
        }
        Ok(())
    }

    fn metric_history(&mut self, run: &str, key: &str) -> Result<Vec<Metric>, TrackError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![
                ("run_id", run),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let j = self.get("metrics/get-history", &q)?;
            for m in j["metrics"].as_array().into_iter().flatten() {
                out.push(Metric {
                    key: key.to_string(),
                    value: metric_value(&m["value"]).ok_or_else(|| {
                        TrackError::Protocol(format!("metric {key}: value {}", m["value"]))
                    })?,
                    step: m["step"].as_i64().unwrap_or(0),
                    timestamp: m["timestamp"].as_i64().unwrap_or(0),
                });
            }
            match j["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    fn upload(&mut self, run: &str, path: &str, bytes: &[u8]) -> Result<(), TrackError> {
        let root = self.artifact_uri(run)?;
        if let Some(rel) = proxied(&root) {
            self.send(
                "PUT",
                &format!(
                    "api/2.0/mlflow-artifacts/artifacts/{}/{}",
                    encode_path(&rel),
                    encode_path(path)
                ),
                &[],
                Some(Body::Bytes(bytes.to_vec())),
            )?;
            return Ok(());
        }
        if let Some(dir) = root.strip_prefix("file://") {
            let p = std::path::Path::new(dir).join(path);
            return mer_store::write_atomic(&p, bytes)
                .map_err(|e| TrackError::Io(format!("{}: {e}", p.display())));
        }
        Err(TrackError::Protocol(format!(
            "run {run} stores artifacts at `{root}`, which mer cannot write; start the server with artifact proxying (the default, `--serve-artifacts`)"
        )))
    }

    fn finish(&mut self, run: &str, status: &str, end_ms: i64) -> Result<(), TrackError> {
        self.api(
            "POST",
            "runs/update",
            json!({"run_id": run, "status": status, "end_time": end_ms}),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_written_and_read_as_mlflow_does() {
        assert_eq!(metric_json(f64::NAN), json!("NaN"));
        assert_eq!(metric_json(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(metric_json(0.5), json!(0.5));
        // A reply as MLflow 3.17 sends it for a run holding NaN.
        let reply: Json = serde_json::from_str(
            r#"{"metrics":[{"key":"f1","value":"NaN","timestamp":1,"step":0},
                           {"key":"f1","value":0.25,"timestamp":2,"step":1}]}"#,
        )
        .unwrap();
        let vals: Vec<f64> = reply["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| metric_value(&m["value"]).unwrap())
            .collect();
        assert!(vals[0].is_nan());
        assert_eq!(vals[1], 0.25);
        assert_eq!(metric_value(&json!(null)), None);
    }

    #[test]
    fn path_prefix_is_kept_and_credentials_leave_the_url() {
        let r = Rest::from_env("https://bob:p%40ss@example.org/team/mlflow/").unwrap();
        assert_eq!(r.base, "https://example.org/team/mlflow");
        if std::env::var("MLFLOW_TRACKING_TOKEN").is_err()
            && std::env::var("MLFLOW_TRACKING_USERNAME").is_err()
        {
            assert_eq!(r.auth.as_deref(), Some("Basic Ym9iOnBAc3M="));
        }
        assert_eq!(r.describe(), "https://example.org/team/mlflow");
    }

    #[test]
    fn artifact_roots_map_to_proxy_paths() {
        assert_eq!(
            proxied("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied("s3://bucket/x"), None);
        assert_eq!(encode_path("a b/c[1].png"), "a%20b/c%5B1%5D.png");
        assert_eq!(percent_decode("p%40ss%2"), "p@ss%2");
    }

    #[test]
    fn a_refused_connection_is_reported_after_the_retries() {
        // Port 9 (discard) is closed on any test machine.
        let mut r = Rest::from_env("http://127.0.0.1:9").unwrap();
        r.retries = 2;
        r.backoff = 0.0;
        let e = r.experiment("x").unwrap_err().to_string();
        assert!(e.contains("unreachable after 3 attempt(s)"), "{e}");
    }
}
