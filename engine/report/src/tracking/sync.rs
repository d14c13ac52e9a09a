//! Copies the run store into a [`Tracker`], idempotently.
//!
//! The run store holds `runs/<experiment>/<hash>/<variant>/seed<S>/` with
//! `recipe.ron`, `graph.ron`, `context.json`, `metrics.json` and
//! `folds/<fold>/{status,epochs}.json` + predictions. In MLflow that is:
//!
//! - one experiment per recipe experiment;
//! - a parent run per recipe hash (one `mer run`, resumed or not), holding
//!   the report and figures;
//! - a nested run per variant and seed: params = the flattened resolved
//!   recipe, final metrics pooled (`uar`) and per-fold mean (`uar.fold_mean`);
//! - a nested run per fold under it: per-epoch losses, the fold's metrics,
//!   predictions.
//!
//! Every run carries a `mer.key` tag (its store path) by which later syncs
//! find it, and, once it reached a final state and everything was logged, a
//! `mer.synced` digest of the files it came from. A run with the same
//! digest is skipped; one without (an upload cut short) only gets the
//! metric steps it lacks; one with a different digest (the store was
//! re-run with `--restart`) is replaced. So `mer sync` never duplicates.

use super::{mlflow_key, now_ms, FoundRun, Metric, TrackError, Tracker};
use mer_dsl::check::ResolvedRecipe;
use mer_dsl::value::Value;
use mer_store::EpochRecord;
use mer_store::VariantResult;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where and how a variant ran; `mer run` writes it as `context.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    /// The `mer` version that ran the variant (its crate version).
    pub mer_version: String,
    /// The recipe's repository commit (`+dirty` with local changes), or
    /// `none` outside git.
    pub git_commit: String,
    /// The `--device` the run was given: `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Loaded plugins as `name version`.
    pub plugins: Vec<String>,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncSummary {
    /// Runs created because no run had their `mer.key`.
    pub created: usize,
    /// Fully synced runs whose files changed (a re-run), marked killed and
    /// created again.
    pub replaced: usize,
    /// Existing runs that were partly synced, or parents whose report grew,
    /// that got only what they lacked.
    pub updated: usize,
    /// Runs already synced from the same files, left alone.
    pub unchanged: usize,
    /// Metric values logged, across all runs.
    pub metrics: usize,
    /// Artifact files uploaded, across all runs.
    pub artifacts: usize,
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} runs created, {} replaced, {} updated, {} unchanged; {} metric values and {} artifacts logged",
            self.created, self.replaced, self.updated, self.unchanged, self.metrics, self.artifacts
        )
    }
}

/// MLflow's longest param value (3.x); longer values are cut with a note,
/// the whole recipe is an artifact anyway.
const MAX_PARAM: usize = 6000;

/// The resolved recipe as `dotted.key = value` params.
pub fn flatten_recipe(r: &ResolvedRecipe) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Map(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Call(c) => {
                out.push((prefix.to_string(), c.kind.clone()));
                if !c.inputs.is_empty() {
                    let ins: Vec<String> = c
                        .inputs
                        .iter()
                        .map(|i| match &i.name {
                            Some(n) => format!("{n} = {}", i.value),
                            None => i.value.to_string(),
                        })
                        .collect();
                    out.push((format!("{prefix}.inputs"), ins.join(", ")));
                }
                for (k, v) in &c.params {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Sum(terms) => {
                for (i, t) in terms.iter().enumerate() {
                    let p = format!("{prefix}.{i}");
                    out.push((format!("{p}.weight"), format!("{}", t.weight)));
                    walk(&p, &Value::Call(t.call.clone()), out);
                }
            }
            Value::Str(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = vec![
        ("mer".to_string(), r.mer.clone()),
        ("plugins".to_string(), r.plugins.join(", ")),
    ];
    for (k, v) in &r.config {
        walk(k, v, &mut out);
    }
    out.into_iter()
        .map(|(k, v)| {
            let k = mlflow_key(&k);
            if v.chars().count() > MAX_PARAM {
                let cut: String = v.chars().take(MAX_PARAM - 40).collect();
                (k, format!("{cut}… (cut; see recipe.ron artifact)"))
            } else {
                (k, v)
            }
        })
        .collect()
}

fn read(p: &Path) -> Result<Vec<u8>, TrackError> {
    std::fs::read(p).map_err(|e| TrackError::Io(format!("{}: {e}", p.display())))
}

/// BLAKE3 of the files' names and bytes; names without their folder, so a
/// store that was moved or copied syncs as unchanged.
fn digest(files: &[PathBuf]) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().to_string());
        h.update(name.unwrap_or_default().as_bytes());
        let bytes = std::fs::read(f).unwrap_or_default();
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Variant folders (`…/<variant>/seed<S>` holding `recipe.ron`) under `root`.
fn variant_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("recipe.ron").is_file() {
            out.push(d);
            continue;
        }
        if let Ok(es) = std::fs::read_dir(&d) {
            for e in es.flatten() {
                if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The `mer.key` of a run: the last `n` components of its store folder
/// (`<exp>/<hash>`, `…/<variant>/seed<S>`, `…/folds/<fold>`), so the key
/// does not depend on where the store is or how its path was spelled.
fn rel_key(p: &Path, n: usize) -> String {
    let parts: Vec<String> = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

struct Syncer<'a> {
    t: &'a mut dyn Tracker,
    summary: SyncSummary,
    /// Per experiment id: runs by `mer.key`.
    known: BTreeMap<String, BTreeMap<String, FoundRun>>,
}

/// How `ensure` found a run.
enum Found {
    /// Already holds exactly these files.
    Unchanged(String),
    /// Existed, partly logged: log only the missing steps.
    Partial(String),
    /// Made now.
    New(String),
}

impl Syncer<'_> {
    fn runs_of(&mut self, exp: &str) -> Result<&mut BTreeMap<String, FoundRun>, TrackError> {
        if !self.known.contains_key(exp) {
            let mut m = BTreeMap::new();
            for r in self.t.runs(exp)? {
                if let Some(k) = r.tags.get("mer.key") {
                    m.insert(k.clone(), r.clone());
                }
            }
            self.known.insert(exp.to_string(), m);
        }
        Ok(self.known.get_mut(exp).expect("inserted above"))
    }

    /// The run for `key`, created when missing; when it was completely
    /// synced from different files, replaced if `replace` (a re-run
    /// variant or fold), else updated (a parent whose report grew).
    fn ensure(
        &mut self,
        exp: &str,
        key: &str,
        name: &str,
        digest: &str,
        tags: &[(String, String)],
        replace: bool,
    ) -> Result<Found, TrackError> {
        let existing = self.runs_of(exp)?.get(key).cloned();
        if let Some(r) = existing {
            match r.tags.get("mer.synced") {
                Some(d) if d == digest => {
                    self.summary.unchanged += 1;
                    return Ok(Found::Unchanged(r.run_id));
                }
                Some(_) if replace => {
                    // A finished sync of other files: the store was re-run.
                    self.t.log_batch(
                        &r.run_id,
                        &[],
                        &[],
                        &[
                            ("mer.key".into(), format!("{key} (replaced)")),
                            ("mer.replaced_by_sync".into(), "true".into()),
                        ],
                    )?;
                    self.t.finish(&r.run_id, "KILLED", now_ms())?;
                    self.summary.replaced += 1;
                }
                _ => {
                    self.summary.updated += 1;
                    return Ok(Found::Partial(r.run_id));
                }
            }
        }
        let mut all = tags.to_vec();
        all.push(("mer.key".into(), key.into()));
        let id = self.t.create_run(exp, name, now_ms(), &all)?;
        self.runs_of(exp)?.insert(
            key.to_string(),
            FoundRun {
                run_id: id.clone(),
                status: "RUNNING".into(),
                tags: all.into_iter().collect(),
            },
        );
        self.summary.created += 1;
        Ok(Found::New(id))
    }

    /// Logs metrics, skipping (key, step) pairs a partial run already has.
    fn log_metrics(&mut self, run: &str, partial: bool, ms: Vec<Metric>) -> Result<(), TrackError> {
        let ms = if partial {
            let keys: BTreeSet<String> = ms.iter().map(|m| m.key.clone()).collect();
            let mut have = BTreeSet::new();
            for k in keys {
                for m in self.t.metric_history(run, &k)? {
                    have.insert((k.clone(), m.step));
                }
            }
            ms.into_iter()
                .filter(|m| !have.contains(&(m.key.clone(), m.step)))
                .collect()
        } else {
            ms
        };
        self.summary.metrics += ms.len();
        self.t.log_batch(run, &ms, &[], &[])
    }

    fn upload(&mut self, run: &str, name: &str, file: &Path) -> Result<(), TrackError> {
        if file.is_file() {
            self.t.upload(run, name, &read(file)?)?;
            self.summary.artifacts += 1;
        }
        Ok(())
    }

    fn finish(&mut self, run: &str, status: &str, digest: Option<&str>) -> Result<(), TrackError> {
        if let Some(d) = digest {
            self.t
                .log_batch(run, &[], &[], &[("mer.synced".into(), d.into())])?;
        }
        if status != "RUNNING" {
            self.t.finish(run, status, now_ms())?;
        }
        Ok(())
    }
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: mlflow_key(key),
        value,
        step,
        timestamp: now_ms(),
    }
}

/// The values a fold's run gets: per epoch, then its final metrics.
fn fold_metrics(epochs: &[EpochRecord], result: Option<&VariantResult>, fold: &str) -> Vec<Metric> {
    let mut ms = Vec::new();
    for e in epochs {
        let s = e.epoch as i64;
        ms.push(metric("train_loss", e.train_loss, s));
        ms.push(metric("grad_norm", e.grad_norm, s));
        ms.push(metric("lr_factor", e.lr_factor, s));
        for (t, v) in &e.terms {
            ms.push(metric(&format!("loss.{t}"), *v, s));
        }
        if let Some(v) = e.val_loss {
            ms.push(metric("val_loss", v, s));
        }
        if let Some(v) = e.test_score {
            // Named so no one mistakes it for a fair estimate.
            ms.push(metric("test_tuned.selection_score", v, s));
        }
    }
    for m in result.map(|r| r.metrics.as_slice()).unwrap_or_default() {
        if let Some((_, v)) = m.per_fold.iter().find(|(f, _)| f == fold) {
            ms.push(metric(&m.name, v.unwrap_or(f64::NAN), 0));
        }
    }
    ms
}

/// Syncs every variant under `root`: a run store, or one experiment or
/// variant folder inside it.
pub fn sync(tracker: &mut dyn Tracker, root: &Path) -> Result<SyncSummary, TrackError> {
    let mut s = Syncer {
        t: tracker,
        summary: SyncSummary::default(),
        known: BTreeMap::new(),
    };
    let dirs = variant_dirs(root);
    if dirs.is_empty() {
        return Err(TrackError::Io(format!(
            "{}: no runs here (folders with recipe.ron)",
            root.display()
        )));
    }
    // Group by the recipe-hash folder: one parent run each.
    let mut groups: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for d in dirs {
        let parent = d
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| d.clone());
        groups.entry(parent).or_default().push(d);
    }
    for (hash_dir, variants) in groups {
        let first: ResolvedRecipe = {
            let p = variants[0].join("recipe.ron");
            let text = String::from_utf8_lossy(&read(&p)?).to_string();
            ron::from_str(&text).map_err(|e| TrackError::Io(format!("{}: {e}", p.display())))?
        };
        let exp = s.t.experiment(&first.experiment)?;
        let hash = hash_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let pkey = rel_key(&hash_dir, 2);
        let report = hash_dir.join("report.md");
        let figures: Vec<PathBuf> = std::fs::read_dir(hash_dir.join("figures"))
            .map(|es| {
                let mut v: Vec<PathBuf> = es.flatten().map(|e| e.path()).collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        let mut parent_files = vec![report.clone()];
        parent_files.extend(figures.iter().cloned());
        for v in &variants {
            parent_files.push(v.join("metrics.json"));
        }
        let pdigest = digest(&parent_files);
        let parent = s.ensure(
            &exp,
            &pkey,
            &format!("{} {}", first.experiment, &hash[..8.min(hash.len())]),
            &pdigest,
            &[
                ("mer.recipe_hash".into(), hash.clone()),
                ("mer.experiment".into(), first.experiment.clone()),
            ],
            false,
        )?;
        let parent_id = match &parent {
            Found::Unchanged(id) | Found::Partial(id) | Found::New(id) => id.clone(),
        };
        let mut all_done = true;
        for vdir in &variants {
            all_done &= sync_variant(&mut s, &exp, &parent_id, vdir)?;
        }
        if !matches!(parent, Found::Unchanged(_)) {
            s.upload(&parent_id, "report.md", &report)?;
            for f in &figures {
                let name = f.file_name().map(|n| n.to_string_lossy().to_string());
                if let Some(name) = name {
                    s.upload(&parent_id, &format!("figures/{name}"), f)?;
                }
            }
            if all_done {
                s.finish(&parent_id, "FINISHED", Some(&pdigest))?;
            }
        }
    }
    Ok(s.summary)
}

/// One variant and its folds; true when it reached a final state.
fn sync_variant(s: &mut Syncer, exp: &str, parent: &str, vdir: &Path) -> Result<bool, TrackError> {
    let recipe: ResolvedRecipe = {
        let p = vdir.join("recipe.ron");
        ron::from_str(&String::from_utf8_lossy(&read(&p)?))
            .map_err(|e| TrackError::Io(format!("{}: {e}", p.display())))?
    };
    let result: Option<VariantResult> = mer_store::read_json(&vdir.join("metrics.json"))
        .map_err(|e| TrackError::Io(e.to_string()))?;
    let ctx: RunContext = mer_store::read_json(&vdir.join("context.json"))
        .map_err(|e| TrackError::Io(e.to_string()))?
        .unwrap_or_default();
    let seed = vdir
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches("seed").to_string())
        .unwrap_or_default();
    let mut folds: Vec<PathBuf> = std::fs::read_dir(vdir.join("folds"))
        .map(|es| {
            es.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    folds.sort();
    let fold_files = |f: &Path| -> Vec<PathBuf> {
        ["status.json", "epochs.json", "predictions.csv"]
            .iter()
            .map(|n| f.join(n))
            .collect()
    };
    let mut files = vec![
        vdir.join("recipe.ron"),
        vdir.join("metrics.json"),
        vdir.join("context.json"),
    ];
    for f in &folds {
        files.extend(fold_files(f));
    }
    let vdigest = digest(&files);
    let mut tags: Vec<(String, String)> = vec![
        ("mlflow.parentRunId".into(), parent.into()),
        ("mer.variant".into(), recipe.variant.clone()),
        ("mer.seed".into(), seed.clone()),
        ("mer.version".into(), ctx.mer_version.clone()),
        ("mer.device".into(), ctx.device.clone()),
        ("mer.plugins".into(), ctx.plugins.join(", ")),
        ("mlflow.source.git.commit".into(), ctx.git_commit.clone()),
        ("mlflow.user".into(), "mer".into()),
    ];
    if let Some(r) = &result {
        tags.push(("mer.recipe_hash".into(), r.recipe_hash.clone()));
        tags.push(("mer.protocol".into(), r.protocol.clone()));
        tags.push(("mer.select".into(), r.select.clone()));
    }
    let vkey = rel_key(vdir, 4);
    let found = s.ensure(
        exp,
        &vkey,
        &format!("{} seed {seed}", recipe.variant),
        &vdigest,
        &tags,
        true,
    )?;
    let (run, partial) = match found {
        Found::Unchanged(_) => return Ok(true),
        Found::Partial(id) => (id, true),
        Found::New(id) => (id, false),
    };
    s.t.log_batch(&run, &[], &flatten_recipe(&recipe), &tags)?;
    let mut ms = Vec::new();
    for m in result
        .as_ref()
        .map(|r| r.metrics.as_slice())
        .unwrap_or_default()
    {
        ms.push(metric(&m.name, m.pooled.unwrap_or(f64::NAN), 0));
        ms.push(metric(
            &format!("{}.fold_mean", m.name),
            m.per_fold_mean.unwrap_or(f64::NAN),
            0,
        ));
    }
    s.log_metrics(&run, partial, ms)?;
    for name in ["recipe.ron", "graph.ron", "metrics.json", "context.json"] {
        s.upload(&run, name, &vdir.join(name))?;
    }
    let mut done = result.is_some();
    // Older run stores have no plan.json: their folds just carry no id.
    let plan_ids: Vec<mer_store::PlanId> = mer_store::read_json(&vdir.join("plan.json"))
        .map_err(|e| TrackError::Io(e.to_string()))?
        .unwrap_or_default();
    for f in &folds {
        let fname = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let status: Option<mer_store::FoldStatus> = mer_store::read_json(&f.join("status.json"))
            .map_err(|e| TrackError::Io(e.to_string()))?;
        let state = match status.as_ref().map(|st| st.state.as_str()) {
            Some("finished") => "FINISHED",
            Some("failed") => "FAILED",
            // MLflow's own word for a run stopped on purpose.
            Some("interrupted") => "KILLED",
            _ => "RUNNING",
        };
        let epochs: Vec<EpochRecord> = mer_store::read_json(&f.join("epochs.json"))
            .map_err(|e| TrackError::Io(e.to_string()))?
            .unwrap_or_default();
        let fdigest = digest(&fold_files(f));
        let mut ftags = vec![
            ("mlflow.parentRunId".to_string(), run.clone()),
            ("mer.variant".into(), recipe.variant.clone()),
            ("mer.seed".into(), seed.clone()),
            ("mer.fold".into(), fname.clone()),
        ];
        if let Some(m) = status.as_ref().and_then(|st| st.message.clone()) {
            ftags.push(("mer.failure".into(), m));
        }
        if let Some(p) = plan_ids.iter().find(|p| p.fold == fname) {
            ftags.push(("mer.run_id".into(), p.id.clone()));
        }
        let found = s.ensure(
            exp,
            &rel_key(f, 6),
            &format!("{} seed {seed} fold {fname}", recipe.variant),
            &fdigest,
            &ftags,
            true,
        )?;
        let (frun, fpartial) = match found {
            Found::Unchanged(id) => {
                // Same files under a variant run that was replaced: move it.
                s.t.log_batch(&id, &[], &[], &ftags[..1])?;
                continue;
            }
            Found::Partial(id) => (id, true),
            Found::New(id) => (id, false),
        };
        s.t.log_batch(&frun, &[], &[], &ftags)?;
        s.log_metrics(
            &frun,
            fpartial,
            fold_metrics(&epochs, result.as_ref(), &fname),
        )?;
        for name in [
            "predictions.csv",
            "val_predictions.csv",
            "epochs.json",
            "status.json",
        ] {
            s.upload(&frun, name, &f.join(name))?;
        }
        let final_state = state != "RUNNING";
        done &= final_state;
        s.finish(&frun, state, final_state.then_some(fdigest.as_str()))?;
    }
    let vstate = match &result {
        Some(r) if !r.failed.is_empty() => "FAILED",
        Some(_) => "FINISHED",
        None => "RUNNING",
    };
    s.finish(&run, vstate, done.then_some(vdigest.as_str()))?;
    Ok(done)
}
