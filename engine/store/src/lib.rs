//! The run store: `runs/<experiment>/<recipe-hash>/<variant>/seed<S>/<fold>/`.
//!
//! Every file is written to a temporary name in the same folder and then
//! renamed, so a run killed at any instant leaves either the old file or the
//! new one, never half of one.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod notes;

/// The run store's layout: every path under `runs/` comes from here, so
/// the driver, the runner, reports and tracking agree on it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    /// The store rooted at `root` (`runs/` by default).
    pub fn new(root: impl Into<PathBuf>) -> RunStore {
        RunStore { root: root.into() }
    }

    /// The folder every run path is under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<experiment>/<recipe hash, 12 hex>`: one recipe's results.
    pub fn experiment_dir(&self, exp: &mer_dsl::CheckedExperiment) -> PathBuf {
        self.root
            .join(&exp.name)
            .join(&exp.hash[..12.min(exp.hash.len())])
    }

    /// `<experiment dir>/<variant>/seed<S>`.
    pub fn variant_dir(
        &self,
        exp: &mer_dsl::CheckedExperiment,
        variant: &str,
        seed: i64,
    ) -> PathBuf {
        self.experiment_dir(exp)
            .join(variant)
            .join(format!("seed{seed}"))
    }

    /// `<variant dir>/folds/<fold>`.
    pub fn fold_dir(variant_dir: &Path, fold: &str) -> PathBuf {
        variant_dir.join("folds").join(fold)
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tmp_name(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The temporary name `path` is first written under: hidden, in the same
/// folder (so the rename is atomic), unique per host and process.
pub fn tmp_name(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Cluster tasks on different nodes may share a pid and write the same
    // variant files (recipe.ron, plan.json) on a shared file system.
    // Read once per process: every checkpoint and record goes through here.
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    });
    path.with_file_name(format!(".{name}.tmp{host}.{}", std::process::id()))
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file, `None` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The records of results: what `metrics.json` and `plan.json` hold.
/// A metric's values after renaming columns to label names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMetric {
    /// The metric node (`metrics[0]`) and kind.
    pub node: String,
    /// The metric kind, e.g. `metric.uf1`.
    pub kind: String,
    /// The value's name as the metric reports it, e.g. `uf1` or `f1[AU12]`.
    pub name: String,
    /// Computed over all folds' predictions at once; `None` when not finite.
    pub pooled: Option<f64>,
    /// Mean of the per-fold values over the folds counted; `None` when not
    /// finite.
    pub per_fold_mean: Option<f64>,
    /// How many folds had what the metric needs and enter the per-fold mean.
    pub folds_counted: usize,
    /// Each fold's value by fold name; `None` where the fold lacked what the
    /// metric needs (`how` says why).
    pub per_fold: Vec<(String, Option<f64>)>,
    /// Plain words for the report on how the value was computed, with floor,
    /// collapse and one-class clauses ([`notes`]).
    pub how: String,
    /// True when any number here saw the test set while choosing something.
    pub test_tuned: bool,
    /// Smaller is better (an error such as MAE), from the metric kind.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lower_is_better: bool,
    /// Values are in the metric's own units (MAE in years), shown as they
    /// are; otherwise fractions, shown as percent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub own_units: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// `metrics.json` of one variant and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    /// The experiment's name, the first folder under the store root.
    pub experiment: String,
    /// The variant's name, its folder under the experiment.
    pub variant: String,
    /// Hash of the variant's resolved recipe.
    pub recipe_hash: String,
    /// The seed this run used, as in its `seed<S>` folder.
    pub seed: i64,
    /// The evaluation protocol's kind, e.g. `protocol.loso`.
    pub protocol: String,
    /// The protocol trains on some datasets and tests on others: the report
    /// puts these runs in a train × test matrix.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cross_dataset: bool,
    /// Names of the folds that finished, whose predictions the metrics pool.
    pub folds: Vec<String>,
    /// Folds that failed, as `(fold, error message)`.
    pub failed: Vec<(String, String)>,
    /// Whether every fold of the protocol finished (otherwise pooled values
    /// cover only the finished folds, and the report says so).
    pub complete: bool,
    /// `last`, `inner_val` or `test_best_epoch` (test-tuned).
    pub select: String,
    /// What each dataset left out or corrected, by data node.
    #[serde(default)]
    pub data_notes: Vec<(String, String)>,
    /// Number of samples in the combined index of the run's data nodes, before
    /// any split.
    pub samples: usize,
    /// Data nodes and their kinds (`clips` → `me.casme2`), for the
    /// cross-domain matrix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<(String, String)>,
    /// Every metric value, from the stored predictions of the finished folds.
    pub metrics: Vec<StoredMetric>,
    /// The recipe's `reported` map: the paper's own figures (`source` and
    /// values by mer metric name, in percent), shown beside ours, never
    /// mixed with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<(String, String)>,
    /// The experiment's recipe hash, which names the run-store folder
    /// (`<experiment>/<hash[..12]>/…`): the report keeps runs of different
    /// hashes apart. Empty in stores written before it was kept; the report
    /// reads it from the folder then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store_hash: String,
    /// The variant's resolved recipe flattened to `key = value`, read by
    /// the report from `recipe.ron` (not stored twice) to name the keys in
    /// which runs of different hashes differ.
    #[serde(skip)]
    pub recipe_keys: Vec<(String, String)>,
    /// Generated answers the report shows (a few per gold class and a few
    /// unparseable ones, from the folds' `answers.csv`), with how many
    /// answers there were and how many were unparseable.
    #[serde(default, skip_serializing_if = "Answers::is_empty")]
    pub answers: Answers,
}

/// The report's view of a variant's generated answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// Answers generated over the finished folds.
    pub total: usize,
    /// Of those, answers that gave no reading for the task.
    pub unparseable: usize,
    /// The examples shown, in fold and sample order.
    pub samples: Vec<AnswerRow>,
}

impl Answers {
    /// Whether no answer was generated.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The view of `rows` (every answer of the finished folds, in order):
    /// the first `per_class` answers of each gold label and the first
    /// `per_class` unparseable ones, in their original order.
    pub fn pick(rows: &[AnswerRow], per_class: usize) -> Answers {
        let mut seen: BTreeMap<(bool, &str), usize> = BTreeMap::new();
        let samples = rows
            .iter()
            .filter(|r| {
                let n = seen
                    .entry((r.reading.starts_with("unparseable"), r.gold.as_str()))
                    .or_default();
                *n += 1;
                *n <= per_class
            })
            .cloned()
            .collect();
        Answers {
            total: rows.len(),
            unparseable: rows
                .iter()
                .filter(|r| r.reading.starts_with("unparseable"))
                .count(),
            samples,
        }
    }
}

/// One fold's id as `mer plan` printed it, in `plan.json` of the variant
/// folder, so one id follows a run from the plan to the run store and to
/// MLflow (`mer.run_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanId {
    /// The fold's name, its folder under `folds/`.
    pub fold: String,
    /// The run id `mer plan` printed, also MLflow's `mer.run_id`.
    pub id: String,
}

/// A fold's lifecycle, in `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldStatus {
    /// `running`, `finished`, `failed` or `interrupted` (stopped by the
    /// user; `--resume` continues it).
    pub state: String,
    /// Epochs completed so far; `--resume` continues from here.
    pub epochs_done: usize,
    /// Epochs the recipe asks for.
    pub epochs: usize,
    /// Why a fold failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One epoch's record in `epochs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch number, 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Each loss term's mean (unweighted).
    pub terms: Vec<(String, f64)>,
    /// Mean global gradient norm before clipping, over the epoch's optimizer
    /// steps.
    pub grad_norm: f64,
    /// The factor the schedule (and any plateau reduction) applied to the base
    /// learning rate at the epoch's last step.
    pub lr_factor: f64,
    /// Loss on the inner validation subjects, when there is a split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// The selection score on the test fold: present only under
    /// `select = "test_best_epoch"` (test-tuned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_score: Option<f64>,
}

/// One generated answer of a fold (`answers.csv`): what the model said
/// for a sample and what it was read as, beside the gold label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRow {
    /// The sample id.
    pub id: String,
    /// The node that generated it.
    pub node: String,
    /// The gold label in words (a class, the AUs on, a number), where a
    /// metric compares the answer with one.
    pub gold: String,
    /// What the answer was read as, or `unparseable: <reason>`.
    pub reading: String,
    /// The answer as generated.
    pub answer: String,
}

/// Writes a fold's answers as CSV, atomically.
pub fn write_answers(path: &Path, rows: &[AnswerRow]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(std::io::Error::other)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads a fold's `answers.csv`; no file is no answers.
pub fn read_answers(path: &Path) -> Result<Vec<AnswerRow>, String> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| format!("{}:{}: {e}", path.display(), i + 2)))
        .collect()
}

/// Predictions of one fold: sample ids and, per stored output, one row of
/// values per sample. Written as CSV (`id,<output>[0],…`), with floats in
/// their shortest round-trip form so re-reading gives identical bits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions {
    /// Sample ids, one per row, in row order.
    pub ids: Vec<String>,
    /// `(output name, width)` in column order.
    pub columns: Vec<(String, usize)>,
    /// `rows[i]` has `sum(width)` values.
    pub rows: Vec<Vec<f32>>,
}

impl Predictions {
    /// Writes the predictions as CSV (`id,<output>[0],…`) atomically, floats in
    /// shortest round-trip form.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["id".to_string()];
        for (name, width) in &self.columns {
            for j in 0..*width {
                header.push(format!("{name}[{j}]"));
            }
        }
        w.write_record(&header).map_err(std::io::Error::other)?;
        for (id, row) in self.ids.iter().zip(&self.rows) {
            let mut rec = vec![id.clone()];
            rec.extend(row.iter().map(|v| v.to_string()));
            w.write_record(&rec).map_err(std::io::Error::other)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        write_atomic(path, &bytes)
    }

    /// Reads a predictions file; errors name the file and row.
    pub fn read(path: &Path) -> Result<Predictions, String> {
        let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = r
            .headers()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .clone();
        let mut columns: Vec<(String, usize)> = Vec::new();
        for h in header.iter().skip(1) {
            let name = h.rsplit_once('[').map(|(n, _)| n).unwrap_or(h);
            match columns.last_mut() {
                Some((n, w)) if n == name => *w += 1,
                _ => columns.push((name.to_string(), 1)),
            }
        }
        let mut p = Predictions {
            columns,
            ..Default::default()
        };
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| format!("{}:{}: {e}", path.display(), i + 2))?;
            p.ids.push(rec.get(0).unwrap_or_default().to_string());
            let row = rec
                .iter()
                .skip(1)
                .map(|v| v.parse::<f32>())
                .collect::<Result<Vec<f32>, _>>()
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 2))?;
            p.rows.push(row);
        }
        Ok(p)
    }

    /// The `[n, width]` block of one output.
    pub fn column(&self, name: &str) -> Option<(usize, Vec<f32>)> {
        let mut off = 0;
        for (n, w) in &self.columns {
            if n == name {
                let mut v = Vec::with_capacity(self.rows.len() * w);
                for r in &self.rows {
                    v.extend_from_slice(r.get(off..off + w)?);
                }
                return Some((*w, v));
            }
            off += w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_round_trip_bit_for_bit() {
        let dir = std::env::temp_dir().join(format!("mer-store-{}", std::process::id()));
        let p = Predictions {
            ids: vec!["sub01/EP01,x".into(), "b".into()],
            columns: vec![("aus".into(), 2), ("clips.aus".into(), 1)],
            rows: vec![
                vec![0.1, -1e-7, 1.0],
                vec![f32::MIN_POSITIVE, 3.333_333_3, 0.0],
            ],
        };
        let path = dir.join("p.csv");
        p.write(&path).unwrap();
        let q = Predictions::read(&path).unwrap();
        assert_eq!(p, q);
        assert_eq!(q.column("clips.aus"), Some((1, vec![1.0, 0.0])));
        std::fs::write(&path, "id,a[0]\nx,notanumber\n").unwrap();
        let e = Predictions::read(&path).unwrap_err();
        assert!(e.contains("p.csv:2"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn atomic_writes_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("mer-atomic-{}", std::process::id()));
        write_json(
            &dir.join("s.json"),
            &FoldStatus {
                state: "running".into(),
                epochs_done: 1,
                epochs: 3,
                message: None,
            },
        )
        .unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let s: FoldStatus = read_json(&dir.join("s.json")).unwrap().unwrap();
        assert_eq!(s.epochs_done, 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
