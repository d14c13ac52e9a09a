//! The contracts beyond components: how losses, metrics, datasets and
//! evaluation protocols plug in.
//!
//! * A **loss** is a [`Component`](crate::Component) of role `Loss`: inputs
//!   `(pred, target)`, one output, a scalar. The executor weights and sums
//!   the terms of `loss = a * x + b * y`.
//! * A **metric** accumulates predictions by sample id over batches and
//!   folds, then reports both pooled and per-fold values ([`Metric`]).
//! * A **dataset** indexes its samples (id, group, labels) without loading
//!   pixels, and loads batches by index ([`Dataset`]).
//! * A **protocol** turns a dataset index into folds whose groups never
//!   straddle train and test ([`Protocol`], checked by [`verify_folds`]).

use crate::component::BuildError;
use crate::rng::SeededRng;
use crate::Value;
use candle_core::Tensor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One sample as the index knows it: no pixels, only what protocols and
/// reports need. `id` is stable across runs (file path or clip name).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMeta {
    /// Stable identifier of the sample (file path or clip name); metrics and
    /// reports key predictions by it.
    pub id: String,
    /// The dataset node it came from (folds are keyed by (dataset, group)).
    pub dataset: String,
    /// The group key a protocol splits on, e.g. the subject.
    pub group: String,
    /// Label columns, e.g. `emotion`, for stratification and reports.
    pub labels: BTreeMap<String, Value>,
}

/// A batch of loaded samples: one tensor per output port of the dataset.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Sample ids ([`SampleMeta::id`]) in the order of the requested positions;
    /// row `i` of every port tensor belongs to `ids[i]`.
    pub ids: Vec<String>,
    /// One tensor per output port of the dataset, keyed by port name, with the
    /// batch as the first dimension.
    pub ports: BTreeMap<String, Tensor>,
}

/// A data error names the file and row it came from; nothing is dropped
/// silently.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {message}", row.map(|r| format!(":{r}")).unwrap_or_default())]
pub struct DataError {
    /// The file the problem was found in, as shown to the user (a placeholder
    /// such as `<synth>` for generated data).
    pub file: String,
    /// The row within `file` (a 1-based line number for text and CSV files,
    /// header included); `None` when the problem concerns the file as a whole.
    pub row: Option<usize>,
    /// What is wrong, in words; shown after `file:row`.
    pub message: String,
}

/// A dataset kind's implementation.
pub trait Dataset: Send + Sync {
    /// Every sample, in a stable order.
    fn index(&self) -> Result<Vec<SampleMeta>, DataError>;
    /// Loads the samples at these positions of [`Dataset::index`].
    ///
    /// `augment` is `Some` only for training batches: the dataset draws
    /// every random choice (noisy-uniform frame times, crops, noise) from
    /// it, so a resumed run replays the same augmentation. `None` means
    /// evaluation: the result must be a pure function of the positions.
    fn load(
        &self,
        positions: &[usize],
        augment: Option<&mut SeededRng>,
    ) -> Result<Batch, DataError>;
    /// What the dataset left out or changed and why (samples outside the
    /// recipe's class set, corrections applied), for the run log and the
    /// report. Nothing is dropped without a line here.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Names for the columns of a label port, used by metrics and reports:
    /// `aus` → `["AU1", "AU4"]`, `emotion` → the class names in label
    /// order. `None` (the default) keeps column indices.
    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        let _ = port;
        None
    }
}

/// Builds a dataset from its parameters (after defaults).
pub type DatasetFactory = fn(&BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError>;

/// Checks a dataset folder as distributed, for `mer data verify ROOT
/// --dataset KIND`: `kind` is the kind's name (one function may serve a
/// family of corpora), `params` its parameters after defaults (the AUs it
/// reports, the label set). Returns the report in words (samples,
/// subjects, classes, corrections, every problem with its file and row)
/// and whether the folder is clean.
pub type VerifyFn = fn(kind: &str, root: &Path, params: &BTreeMap<String, Value>) -> (String, bool);

/// What `mer data synth` asks a dataset kind to write: generated samples
/// in the kind's distributed layout, so its own loader reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutRequest {
    /// Subjects (or actors) to generate.
    pub subjects: usize,
    /// Clips (or images) per subject.
    pub clips_per_subject: usize,
    /// Frames written per clip, onset to offset.
    pub frames_per_clip: usize,
    /// Square frame size in pixels.
    pub size: usize,
    /// Expression intensity relative to a macro-expression.
    pub intensity: f64,
    /// Generator seed.
    pub seed: u64,
    /// `drawn` (a face drawn per subject) or `astronaut` (the public-domain photo).
    pub face: String,
}

/// Writes generated samples for `kind` into `out` in its distributed
/// layout; returns how many clips or images it wrote.
pub type WriteLayoutFn = fn(kind: &str, out: &Path, req: &LayoutRequest) -> Result<usize, String>;

/// One fold: positions into the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// Stable name, e.g. `sub07` for LOSO.
    pub name: String,
    /// Positions into the index that the fold trains on.
    pub train: Vec<usize>,
    /// Positions into the index that the fold is tested on; they must share
    /// no sample and no (dataset, group) with `train` ([`verify_folds`]).
    pub test: Vec<usize>,
}

/// An evaluation protocol's implementation.
pub trait Protocol: Send + Sync {
    /// The folds over `index`. The executor runs [`verify_folds`] on them
    /// before training.
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String>;
    /// Whether folds train on some datasets and test on others. The report
    /// lays such runs out as a train × test matrix instead of beside the
    /// within-dataset ones.
    fn across_datasets(&self) -> bool {
        false
    }
}

/// Builds a protocol from its parameters (after defaults).
pub type ProtocolFactory = fn(&BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError>;

/// Checks that no (dataset, group) appears in both train and test of any
/// fold, and that no sample is in both. Returns the first violation.
pub fn verify_folds(index: &[SampleMeta], folds: &[Fold]) -> Result<(), String> {
    for f in folds {
        let key = |p: &usize| index.get(*p).map(|s| (s.dataset.clone(), s.group.clone()));
        let train: BTreeSet<_> = f.train.iter().filter_map(key).collect();
        if let Some((d, g)) = f.test.iter().filter_map(key).find(|k| train.contains(k)) {
            return Err(format!(
                "fold `{}`: group `{g}` of dataset `{d}` is in both train and test",
                f.name
            ));
        }
        let tr: BTreeSet<usize> = f.train.iter().copied().collect();
        if let Some(p) = f.test.iter().find(|p| tr.contains(p)) {
            return Err(format!(
                "fold `{}`: sample {p} is in both train and test",
                f.name
            ));
        }
        if let Some(p) = f.train.iter().chain(&f.test).find(|p| **p >= index.len()) {
            return Err(format!(
                "fold `{}`: position {p} is outside the index",
                f.name
            ));
        }
    }
    Ok(())
}

/// A metric's value, with how it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// e.g. `uf1`, `f1[AU12]`.
    pub name: String,
    /// Over all folds' predictions at once.
    pub pooled: f64,
    /// Mean over folds, and how many folds had the needed classes.
    pub per_fold_mean: f64,
    /// How many folds entered `per_fold_mean`: those whose entry in `per_fold`
    /// is not `None`.
    pub folds_counted: usize,
    /// Each fold's value by fold name; `None` where the fold lacked what
    /// the metric needs (the `how` text says why).
    pub per_fold: Vec<(String, Option<f64>)>,
    /// Plain words for the report: "binary F1 per AU, threshold 0.5 fixed".
    pub how: String,
}

/// A metric kind's implementation: accumulates by fold, reports both
/// aggregates (the report states which it shows).
pub trait Metric: Send {
    /// Adds one batch of predictions for `fold`, keyed by sample id.
    fn update(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> candle_core::Result<()>;
    /// Adds predictions on held-out *training* subjects (the inner
    /// validation split) for `fold`. Metrics that choose something, such as
    /// a decision threshold, choose it here; the default ignores them.
    fn calibrate(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> candle_core::Result<()> {
        let _ = (fold, ids, pred, target);
        Ok(())
    }
    /// The values so far.
    fn finish(&self) -> Vec<MetricValue>;
    /// Whether a larger value is better. Choosing an epoch on inner
    /// validation maximises the headline value when true and minimises it
    /// when false (an error such as MAE).
    fn higher_is_better(&self) -> bool {
        true
    }
    /// Whether values are fractions that tables show as percent (accuracy
    /// 0.8123 → 81.23). False for values in their own units (MAE in years),
    /// which tables show as they are.
    fn percent(&self) -> bool {
        true
    }
}

/// Builds a metric from its parameters (after defaults).
pub type MetricFactory = fn(&BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str, group: &str) -> SampleMeta {
        SampleMeta {
            id: id.into(),
            dataset: "d".into(),
            group: group.into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn folds_must_keep_groups_apart() {
        let idx = vec![s("a", "s1"), s("b", "s1"), s("c", "s2")];
        let good = Fold {
            name: "s2".into(),
            train: vec![0, 1],
            test: vec![2],
        };
        assert!(verify_folds(&idx, &[good]).is_ok());
        let leak = Fold {
            name: "bad".into(),
            train: vec![0, 2],
            test: vec![1],
        };
        let e = verify_folds(&idx, &[leak]).unwrap_err();
        assert!(e.contains("group `s1`"), "{e}");
        let out = Fold {
            name: "x".into(),
            train: vec![0],
            test: vec![7],
        };
        assert!(verify_folds(&idx, &[out]).unwrap_err().contains("outside"));
    }
}
