//! Metric implementations (`metric.*`).
//!
//! Every metric keeps predictions by sample id and fold, and reports two
//! aggregates: **pooled** (counts over the concatenated predictions of all
//! folds, as MEB and the MEGC helpers do) and the **per-fold mean** (as
//! MAE-DFER reports). Classes or AUs a fold lacks are never dropped
//! silently: the `how` text lists them and says what the mean covers.

use mer_registry::candle::{DType, Result as CResult, Tensor};
use mer_registry::{BuildError, Metric, MetricValue, Params, Value};
use mer_registry::{Kind, KindBuilder, Role};
use mer_store::notes::{class_floor, floor_words, COLLAPSED, FLOOR, ONE_CLASS};
use std::collections::BTreeMap;

/// Names for column indices (AUs, classes), passed by the runner as the
/// `labels` parameter; indices stand in where there are none.
#[derive(Debug, Default, Clone)]
struct Labels(Vec<String>);

impl Labels {
    fn from(p: &BTreeMap<String, Value>) -> Labels {
        match p.get("labels") {
            Some(Value::List(l)) => Labels(
                l.iter()
                    .map(|v| match v {
                        Value::Str(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            ),
            _ => Labels(vec![]),
        }
    }
    fn name(&self, i: usize) -> String {
        self.0.get(i).cloned().unwrap_or_else(|| i.to_string())
    }
    fn list(&self, is: &[usize]) -> String {
        is.iter()
            .map(|i| self.name(*i))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One prediction row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    pred: Vec<f32>,
    target: Vec<f32>,
}

/// Rows by fold name (sorted, so output order is stable).
#[derive(Debug, Default, Clone)]
struct Rows(BTreeMap<String, Vec<Row>>);

impl Rows {
    fn add(&mut self, fold: &str, ids: &[String], pred: &Tensor, target: &Tensor) -> CResult<()> {
        let p = as_rows(pred)?;
        let t = as_rows(target)?;
        if p.len() != ids.len() || t.len() != ids.len() {
            mer_registry::candle::bail!(
                "{} ids but {} predictions and {} targets",
                ids.len(),
                p.len(),
                t.len()
            );
        }
        let rows = self.0.entry(fold.to_string()).or_default();
        for ((id, pred), target) in ids.iter().zip(p).zip(t) {
            rows.push(Row {
                id: id.clone(),
                pred,
                target,
            });
        }
        Ok(())
    }
    fn all(&self) -> Vec<&Row> {
        self.0.values().flatten().collect()
    }
}

/// `[B]` or `[B, K]` (any dtype) as one `Vec<f32>` per sample.
fn as_rows(t: &Tensor) -> CResult<Vec<Vec<f32>>> {
    let t = t.to_dtype(DType::F32)?;
    match t.rank() {
        1 => Ok(t.to_vec1::<f32>()?.into_iter().map(|v| vec![v]).collect()),
        2 => t.to_vec2::<f32>(),
        _ => {
            let b = t.dim(0)?;
            t.reshape((b, ()))?.to_vec2::<f32>()
        }
    }
}

/// A row with no prediction: every value NaN, as `llm.instruct` writes an
/// answer that gives no reading.
fn unread(r: &Row) -> bool {
    !r.pred.is_empty() && r.pred.iter().all(|x| x.is_nan())
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Per-class counts of a single-label classification.
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    tp: Vec<usize>,
    fp: Vec<usize>,
    fn_: Vec<usize>,
    /// `matrix[truth][pred]`.
    matrix: Vec<Vec<usize>>,
    n: usize,
    /// Rows with no prediction (all NaN: a generated answer that names no
    /// single class): counted in `n` and as missed, in no matrix cell.
    unread: usize,
}

fn class_counts(rows: &[&Row], classes: usize) -> Counts {
    let mut c = Counts {
        tp: vec![0; classes],
        fp: vec![0; classes],
        fn_: vec![0; classes],
        matrix: vec![vec![0; classes]; classes],
        n: 0,
        unread: 0,
    };
    for r in rows {
        let t = r.target.first().copied().unwrap_or(-1.0);
        if t < 0.0 || t as usize >= classes {
            continue;
        }
        let t = t as usize;
        c.n += 1;
        if unread(r) {
            c.unread += 1;
            c.fn_[t] += 1;
            continue;
        }
        let p = argmax(&r.pred);
        c.matrix[t][p] += 1;
        if t == p {
            c.tp[t] += 1;
        } else {
            c.fn_[t] += 1;
            c.fp[p] += 1;
        }
    }
    c
}

/// Which single-label statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClassStat {
    Accuracy,
    Uar,
    Uf1,
    Confusion,
    PerClass,
}

/// Single-label classification metrics over logits `[B, C]` and class
/// indices `[B]`.
struct Classification {
    stat: ClassStat,
    rows: Rows,
    labels: Labels,
}

/// `(value, classes left out)` of one statistic over one set of rows.
fn class_stat(stat: ClassStat, c: &Counts) -> (Option<f64>, Vec<usize>) {
    let k = c.tp.len();
    match stat {
        ClassStat::Accuracy => {
            let right: usize = c.tp.iter().sum();
            ((c.n > 0).then(|| right as f64 / c.n as f64), vec![])
        }
        ClassStat::Uar => {
            let (mut recalls, mut absent) = (vec![], vec![]);
            for i in 0..k {
                let n = c.tp[i] + c.fn_[i];
                if n == 0 {
                    absent.push(i);
                } else {
                    recalls.push(c.tp[i] as f64 / n as f64);
                }
            }
            ((!recalls.is_empty()).then(|| mean(&recalls)), absent)
        }
        ClassStat::Uf1 => {
            let (mut f1s, mut absent) = (vec![], vec![]);
            for i in 0..k {
                let d = 2 * c.tp[i] + c.fp[i] + c.fn_[i];
                if d == 0 {
                    absent.push(i);
                } else {
                    f1s.push(2.0 * c.tp[i] as f64 / d as f64);
                }
            }
            ((!f1s.is_empty()).then(|| mean(&f1s)), absent)
        }
        ClassStat::Confusion | ClassStat::PerClass => (None, vec![]),
    }
}

fn fold_note(absent: &BTreeMap<String, Vec<usize>>, what: &str, labels: &Labels) -> String {
    if absent.is_empty() {
        return String::new();
    }
    let list: Vec<String> = absent
        .iter()
        .map(|(f, cs)| format!("{f}: {}", labels.list(cs)))
        .collect();
    format!(
        "; {what} are left out of that fold's mean ({})",
        list.join("; ")
    )
}

/// The `how` clauses on floors, collapsed predictions and one-class folds.
fn class_clauses(
    metric: &str,
    pooled: &Counts,
    folds: &[(String, Counts)],
    labels: &Labels,
) -> String {
    let mut out = String::new();
    if pooled.unread > 0 {
        out.push_str(&format!(
            "; {} of {} answers named no single class (unparseable): counted wrong, in no confusion cell",
            pooled.unread, pooled.n
        ));
    }
    let truth: Vec<usize> = (0..pooled.tp.len())
        .map(|c| pooled.tp[c] + pooled.fn_[c])
        .collect();
    if let Some((maj, always, chance)) = class_floor(metric, &truth) {
        out.push_str(&format!(
            "; {FLOOR}{}",
            floor_words(&labels.name(maj), always, chance)
        ));
    }
    let predicted: Vec<usize> = (0..pooled.tp.len())
        .filter(|&c| pooled.tp[c] + pooled.fp[c] > 0)
        .collect();
    if pooled.n > 1 && predicted.len() == 1 {
        out.push_str(&format!("; {COLLAPSED}`{}`", labels.name(predicted[0])));
    }
    let one: Vec<&str> = folds
        .iter()
        .filter(|(_, c)| (0..c.tp.len()).filter(|&i| c.tp[i] + c.fn_[i] > 0).count() == 1)
        .map(|(f, _)| f.as_str())
        .collect();
    if !one.is_empty() && metric != "accuracy" {
        out.push_str(&format!(
            "; {ONE_CLASS}{} (there it is that class's {} alone, 100 when every sample is right; they count like any other fold in the per-fold mean)",
            one.join(", "),
            if metric == "uar" { "recall" } else { "F1" }
        ));
    }
    out
}

impl Classification {
    fn classes(&self) -> usize {
        self.rows
            .all()
            .iter()
            .map(|r| r.pred.len())
            .max()
            .unwrap_or(0)
    }

    fn scalar(&self, name: &str, how: &str) -> Vec<MetricValue> {
        let k = self.classes();
        let all = self.rows.all();
        let pooled_counts = class_counts(&all, k);
        let (pooled, pooled_absent) = class_stat(self.stat, &pooled_counts);
        let mut per_fold = Vec::new();
        let mut absent = BTreeMap::new();
        let mut fold_counts = Vec::new();
        for (f, rows) in &self.rows.0 {
            let refs: Vec<&Row> = rows.iter().collect();
            let counts = class_counts(&refs, k);
            let (v, a) = class_stat(self.stat, &counts);
            if !a.is_empty() {
                absent.insert(f.clone(), a);
            }
            per_fold.push((f.clone(), v));
            fold_counts.push((f.clone(), counts));
        }
        let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
        let mut how = how.to_string();
        if !pooled_absent.is_empty() {
            let cs = [self.labels.list(&pooled_absent)];
            how.push_str(&format!(
                "; classes {} never occur (pooled mean covers the others)",
                cs.join(",")
            ));
        }
        how.push_str(&fold_note(
            &absent,
            "classes absent from a fold",
            &self.labels,
        ));
        how.push_str(&class_clauses(
            name,
            &pooled_counts,
            &fold_counts,
            &self.labels,
        ));
        vec![MetricValue {
            name: name.into(),
            pooled: pooled.unwrap_or(f64::NAN),
            per_fold_mean: mean(&vals),
            folds_counted: vals.len(),
            per_fold,
            how,
        }]
    }

    /// One value per cell or class: pooled counts / scores, per-fold means.
    fn table(&self) -> Vec<MetricValue> {
        let k = self.classes();
        let folds: Vec<(String, Counts)> = self
            .rows
            .0
            .iter()
            .map(|(f, rows)| (f.clone(), class_counts(&rows.iter().collect::<Vec<_>>(), k)))
            .collect();
        let pooled = class_counts(&self.rows.all(), k);
        let unread = if pooled.unread > 0 {
            format!(
                "; {} of {} answers named no single class (unparseable): in no confusion cell, each a miss of its true class",
                pooled.unread, pooled.n
            )
        } else {
            String::new()
        };
        let mut out = Vec::new();
        let mut push = |name: String, f: &dyn Fn(&Counts) -> Option<f64>, how: &str| {
            let per_fold: Vec<(String, Option<f64>)> =
                folds.iter().map(|(n, c)| (n.clone(), f(c))).collect();
            let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
            out.push(MetricValue {
                name,
                pooled: f(&pooled).unwrap_or(f64::NAN),
                per_fold_mean: mean(&vals),
                folds_counted: vals.len(),
                per_fold,
                how: format!("{how}{unread}"),
            });
        };
        for t in 0..k {
            if self.stat == ClassStat::Confusion {
                for p in 0..k {
                    push(
                        format!("confusion[{},{}]", self.labels.name(t), self.labels.name(p)),
                        &|c: &Counts| Some(c.matrix[t][p] as f64),
                        "count of samples with truth (row) and prediction (column); pooled sums all folds",
                    );
                }
            } else {
                let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
                push(
                    format!("precision[{}]", self.labels.name(t)),
                    &|c: &Counts| ratio(c.tp[t], c.tp[t] + c.fp[t]),
                    "precision of the class; undefined (left out) where the class is never predicted",
                );
                push(
                    format!("recall[{}]", self.labels.name(t)),
                    &|c: &Counts| ratio(c.tp[t], c.tp[t] + c.fn_[t]),
                    "recall of the class; undefined (left out) where the class never occurs",
                );
                push(
                    format!("f1[{}]", self.labels.name(t)),
                    &|c: &Counts| ratio(2 * c.tp[t], 2 * c.tp[t] + c.fp[t] + c.fn_[t]),
                    "F1 of the class; undefined (left out) where it neither occurs nor is predicted",
                );
            }
        }
        out
    }
}

impl Metric for Classification {
    fn update(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> CResult<()> {
        self.rows.add(fold, ids, pred, target)
    }
    fn finish(&self) -> Vec<MetricValue> {
        match self.stat {
            ClassStat::Accuracy => self.scalar("accuracy", "accuracy (WAR): correct / samples"),
            ClassStat::Uar => self.scalar(
                "uar",
                "UAR: mean over classes of recall TP/N, classes with no samples left out",
            ),
            ClassStat::Uf1 => self.scalar(
                "uf1",
                "UF1: mean over classes of F1 = 2TP/(2TP+FP+FN), classes neither present nor predicted left out",
            ),
            ClassStat::Confusion | ClassStat::PerClass => self.table(),
        }
    }
}

/// F1 of one binary problem; `None` when undefined (no positives in the
/// truth and none predicted).
fn binary_f1(truth: &[bool], pred: &[bool]) -> Option<f64> {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (t, p) in truth.iter().zip(pred) {
        match (t, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => {}
        }
    }
    let d = 2 * tp + fp + fn_;
    (d > 0).then(|| 2.0 * tp as f64 / d as f64)
}

/// The AU F1 of one label under an average: `binary` (positive class) or
/// `macro2` (mean of the positive- and negative-class F1).
fn label_f1(macro2: bool, truth: &[bool], pred: &[bool]) -> Option<f64> {
    let pos = binary_f1(truth, pred);
    if !macro2 {
        return pos;
    }
    let nt: Vec<bool> = truth.iter().map(|x| !x).collect();
    let np: Vec<bool> = pred.iter().map(|x| !x).collect();
    // sklearn's macro with zero_division=0: an undefined side counts 0.
    Some((pos.unwrap_or(0.0) + binary_f1(&nt, &np).unwrap_or(0.0)) / 2.0)
}

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// AU-LLM's threshold grid: 0.10, 0.15, …, 0.85.
fn threshold_grid() -> Vec<f64> {
    (0..16).map(|i| 0.10 + 0.05 * i as f64).collect()
}

/// The grid threshold with the best F1 for label `j` over `rows` (ties go
/// to the lowest threshold, so the choice is deterministic).
fn tune(macro2: bool, rows: &[&Row], j: usize) -> Option<f64> {
    let truth: Vec<bool> = rows
        .iter()
        .map(|r| r.target.get(j).copied().unwrap_or(0.0) > 0.5)
        .collect();
    let mut best: Option<(f64, f64)> = None;
    for th in threshold_grid() {
        let pred: Vec<bool> = rows
            .iter()
            .map(|r| sigmoid(r.pred.get(j).copied().unwrap_or(0.0)) >= th)
            .collect();
        if let Some(f) = label_f1(macro2, &truth, &pred) {
            if best.is_none_or(|(b, _)| f > b) {
                best = Some((f, th));
            }
        }
    }
    best.map(|(_, th)| th)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ThresholdFrom {
    Fixed,
    InnerVal,
    TestTuned,
}

/// Multi-label AU F1 over logits `[B, L]` and 0/1 targets `[B, L]`.
struct MultiLabelF1 {
    labels: Labels,
    macro2: bool,
    threshold: f64,
    from: ThresholdFrom,
    rows: Rows,
    calib: Rows,
}

impl MultiLabelF1 {
    fn labels(&self) -> usize {
        self.rows
            .all()
            .iter()
            .map(|r| r.target.len())
            .max()
            .unwrap_or(0)
    }

    /// The threshold for label `j` in `fold`, and how it was chosen.
    fn threshold_for(&self, fold: Option<&str>, j: usize) -> (f64, &'static str) {
        match self.from {
            ThresholdFrom::Fixed => (self.threshold, "fixed"),
            ThresholdFrom::TestTuned => {
                let rows: Vec<&Row> = match fold {
                    Some(f) => self
                        .rows
                        .0
                        .get(f)
                        .map(|r| r.iter().collect())
                        .unwrap_or_default(),
                    None => self.rows.all(),
                };
                match tune(self.macro2, &rows, j) {
                    Some(t) => (t, "tuned on the test predictions"),
                    None => (self.threshold, "fixed (nothing to tune on)"),
                }
            }
            ThresholdFrom::InnerVal => {
                let rows: Vec<&Row> = match fold {
                    Some(f) => self
                        .calib
                        .0
                        .get(f)
                        .map(|r| r.iter().collect())
                        .unwrap_or_default(),
                    None => vec![],
                };
                match tune(self.macro2, &rows, j) {
                    Some(t) => (t, "tuned on the inner validation subjects"),
                    None => (self.threshold, "fixed (no inner validation predictions)"),
                }
            }
        }
    }

    /// F1 of label `j` over `rows`, each row thresholded by its fold's
    /// threshold (`fold_scope`) or one pooled threshold.
    fn f1_of(&self, rows: &[(&str, &Row)], j: usize, pooled: bool) -> Option<f64> {
        let truth: Vec<bool> = rows
            .iter()
            .map(|(_, r)| r.target.get(j).copied().unwrap_or(0.0) > 0.5)
            .collect();
        let mut cache: BTreeMap<&str, f64> = BTreeMap::new();
        let pooled_th = if pooled && self.from == ThresholdFrom::TestTuned {
            Some(self.threshold_for(None, j).0)
        } else {
            None
        };
        let pred: Vec<bool> = rows
            .iter()
            .map(|(f, r)| {
                let th = match pooled_th {
                    Some(t) => t,
                    None => *cache
                        .entry(f)
                        .or_insert_with(|| self.threshold_for(Some(f), j).0),
                };
                sigmoid(r.pred.get(j).copied().unwrap_or(0.0)) >= th
            })
            .collect();
        label_f1(self.macro2, &truth, &pred)
    }
}

impl Metric for MultiLabelF1 {
    fn update(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> CResult<()> {
        self.rows.add(fold, ids, pred, target)
    }
    fn calibrate(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> CResult<()> {
        self.calib.add(fold, ids, pred, target)
    }
    fn finish(&self) -> Vec<MetricValue> {
        let l = self.labels();
        let base = if self.macro2 { "f1_macro2" } else { "f1" };
        let suffix = if self.from == ThresholdFrom::TestTuned {
            "_test_tuned"
        } else {
            ""
        };
        let avg = if self.macro2 {
            "2-class macro F1 per AU ((F1 positive + F1 negative) / 2, an undefined side counts 0)"
        } else {
            "positive-class (binary) F1 per AU"
        };
        let th_words = match self.from {
            ThresholdFrom::Fixed => format!("threshold {:.2} on the sigmoid, fixed", self.threshold),
            ThresholdFrom::InnerVal => {
                let lacking: Vec<&String> = self.rows.0.keys().filter(|f| !self.calib.0.contains_key(*f)).collect();
                let mut w = "threshold per AU and fold tuned on inner-validation training subjects (grid 0.10–0.85)".to_string();
                if !lacking.is_empty() {
                    let names: Vec<&str> = lacking.iter().map(|s| s.as_str()).collect();
                    w.push_str(&format!(
                        "; folds without inner-validation predictions use the fixed threshold {:.2} ({})",
                        self.threshold,
                        names.join(", ")
                    ));
                }
                w
            }
            ThresholdFrom::TestTuned => "TEST-TUNED: threshold per AU searched on the test predictions (grid 0.10–0.85; pooled: one per AU over all folds, per fold: one per AU and fold); reproduces papers, not a fair estimate".into(),
        };
        let all: Vec<(&str, &Row)> = self
            .rows
            .0
            .iter()
            .flat_map(|(f, rs)| rs.iter().map(move |r| (f.as_str(), r)))
            .collect();
        let mut out = Vec::new();
        let mut pooled_means = Vec::new();
        let mut fold_means: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut undefined: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut pooled_undefined = Vec::new();
        for j in 0..l {
            let pooled = self.f1_of(&all, j, true);
            let mut per_fold = Vec::new();
            for (f, rs) in &self.rows.0 {
                let rows: Vec<(&str, &Row)> = rs.iter().map(|r| (f.as_str(), r)).collect();
                let v = self.f1_of(&rows, j, false);
                match v {
                    Some(x) => fold_means.entry(f.clone()).or_default().push(x),
                    None => undefined.entry(f.clone()).or_default().push(j),
                }
                per_fold.push((f.clone(), v));
            }
            let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
            match pooled {
                Some(p) => pooled_means.push(p),
                None => pooled_undefined.push(j),
            }
            out.push(MetricValue {
                name: format!("{base}{suffix}[{}]", self.labels.name(j)),
                pooled: pooled.unwrap_or(f64::NAN),
                per_fold_mean: mean(&vals),
                folds_counted: vals.len(),
                per_fold,
                how: format!("{avg}, {th_words}"),
            });
        }
        let per_fold: Vec<(String, Option<f64>)> = self
            .rows
            .0
            .keys()
            .map(|f| (f.clone(), fold_means.get(f).map(|v| mean(v))))
            .collect();
        let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
        // The floor a reader should compare against: the same metric for the
        // better constant prediction per AU ("always present" or "always
        // absent") on the same test labels.
        let floor: Vec<f64> = (0..l)
            .filter(|j| !pooled_undefined.contains(j))
            .filter_map(|j| {
                let truth: Vec<bool> = all
                    .iter()
                    .map(|(_, r)| r.target.get(j).copied().unwrap_or(0.0) > 0.5)
                    .collect();
                [true, false]
                    .iter()
                    .filter_map(|c| label_f1(self.macro2, &truth, &vec![*c; truth.len()]))
                    .reduce(f64::max)
            })
            .collect();
        out.push(MetricValue {
            name: format!("{base}{suffix}"),
            pooled: mean(&pooled_means),
            per_fold_mean: mean(&vals),
            folds_counted: vals.len(),
            per_fold,
            how: format!(
                "mean over AUs of {avg}, {th_words}; the better constant prediction per AU (always present or always absent) scores {:.2} pooled{}{}{}",
                100.0 * mean(&floor),
                if pooled_undefined.is_empty() {
                    String::new()
                } else {
                    let js = [self.labels.list(&pooled_undefined)];
                    format!("; left out of the pooled mean, with no true or predicted positives in any fold: {}", js.join(","))
                },
                fold_note(&undefined, "AUs with no true or predicted positives in a fold", &self.labels),
                match all.iter().filter(|(_, r)| unread(r)).count() {
                    0 => String::new(),
                    u => format!("; {u} of {} answers named no AU set (unparseable): read as no AU present", all.len()),
                }
            ),
        });
        out
    }
}

/// ROC AUC by the rank statistic (ties share their average rank); `None`
/// when only one class occurs.
fn auc(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let pos = truth.iter().filter(|t| **t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let sum: f64 = truth
        .iter()
        .zip(&ranks)
        .filter(|(t, _)| **t)
        .map(|(_, r)| r)
        .sum();
    Some((sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

struct Auc {
    rows: Rows,
    labels: Labels,
}

impl Metric for Auc {
    fn update(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> CResult<()> {
        self.rows.add(fold, ids, pred, target)
    }
    fn finish(&self) -> Vec<MetricValue> {
        let l = self
            .rows
            .all()
            .iter()
            .map(|r| r.target.len())
            .max()
            .unwrap_or(0);
        let of = |rows: &[&Row], j: usize| {
            let s: Vec<f32> = rows
                .iter()
                .map(|r| r.pred.get(j).copied().unwrap_or(0.0))
                .collect();
            let t: Vec<bool> = rows
                .iter()
                .map(|r| r.target.get(j).copied().unwrap_or(0.0) > 0.5)
                .collect();
            auc(&s, &t)
        };
        let mut out = Vec::new();
        let mut pooled_all = vec![];
        for j in 0..l {
            let per_fold: Vec<(String, Option<f64>)> = self
                .rows
                .0
                .iter()
                .map(|(f, rs)| (f.clone(), of(&rs.iter().collect::<Vec<_>>(), j)))
                .collect();
            let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
            let pooled = of(&self.rows.all(), j);
            pooled_all.extend(pooled);
            out.push(MetricValue {
                name: format!("auc[{}]", self.labels.name(j)),
                pooled: pooled.unwrap_or(f64::NAN),
                per_fold_mean: mean(&vals),
                folds_counted: vals.len(),
                per_fold,
                how: "ROC AUC of the label's score; undefined (left out) in a fold where only one class occurs".into(),
            });
        }
        out.push(MetricValue {
            name: "auc".into(),
            pooled: mean(&pooled_all),
            per_fold_mean: f64::NAN,
            folds_counted: 0,
            per_fold: vec![],
            how: "mean over labels of the pooled ROC AUC".into(),
        });
        out
    }
}

struct Mae {
    rows: Rows,
}

impl Metric for Mae {
    fn update(
        &mut self,
        fold: &str,
        ids: &[String],
        pred: &Tensor,
        target: &Tensor,
    ) -> CResult<()> {
        self.rows.add(fold, ids, pred, target)
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn percent(&self) -> bool {
        false
    }
    fn finish(&self) -> Vec<MetricValue> {
        let of = |rows: &[&Row]| {
            let (mut s, mut n) = (0f64, 0usize);
            for r in rows.iter().filter(|r| !unread(r)) {
                for (p, t) in r.pred.iter().zip(&r.target) {
                    s += (p - t).abs() as f64;
                    n += 1;
                }
            }
            (n > 0).then(|| s / n as f64)
        };
        let per_fold: Vec<(String, Option<f64>)> = self
            .rows
            .0
            .iter()
            .map(|(f, rs)| (f.clone(), of(&rs.iter().collect::<Vec<_>>())))
            .collect();
        let vals: Vec<f64> = per_fold.iter().filter_map(|(_, v)| *v).collect();
        vec![MetricValue {
            name: "mae".into(),
            pooled: of(&self.rows.all()).unwrap_or(f64::NAN),
            per_fold_mean: mean(&vals),
            folds_counted: vals.len(),
            per_fold,
            how: format!(
                "mean absolute error over every output element{}",
                match self.rows.all().into_iter().filter(|r| unread(r)).count() {
                    0 => String::new(),
                    u => format!(
                        "; {u} of {} answers gave no number (unparseable): left out of the mean, which covers the others",
                        self.rows.all().len()
                    ),
                }
            ),
        }]
    }
}

fn class_metric(stat: ClassStat, p: &BTreeMap<String, Value>) -> Box<dyn Metric> {
    Box::new(Classification {
        stat,
        rows: Rows::default(),
        labels: Labels::from(p),
    })
}

/// Builds `metric.accuracy`: correct predictions over samples (WAR).
pub fn accuracy(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(class_metric(ClassStat::Accuracy, p))
}
/// Builds `metric.uar`: mean per-class recall, classes with no samples left out.
pub fn uar(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(class_metric(ClassStat::Uar, p))
}
/// Builds `metric.uf1`: mean per-class F1, classes neither present nor
/// predicted left out.
pub fn uf1(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(class_metric(ClassStat::Uf1, p))
}
/// Builds `metric.confusion`: one count per (truth, prediction) class pair.
pub fn confusion(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(class_metric(ClassStat::Confusion, p))
}
/// Builds `metric.per_class`: precision, recall and F1 of every class.
pub fn per_class(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(class_metric(ClassStat::PerClass, p))
}
/// Builds `metric.f1`: multi-label F1 per label and their mean, from
/// `average` (binary or macro2), `threshold` and `threshold_from`.
pub fn f1(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    // After the schema's defaults: nothing is defaulted again here.
    let q = Params::new("metric.f1", p);
    Ok(Box::new(MultiLabelF1 {
        labels: Labels::from(p),
        macro2: q.str("average")? == "macro2",
        threshold: q.float("threshold")?,
        from: match q.str("threshold_from")? {
            "test_tuned" => ThresholdFrom::TestTuned,
            "inner_val" => ThresholdFrom::InnerVal,
            _ => ThresholdFrom::Fixed,
        },
        rows: Rows::default(),
        calib: Rows::default(),
    }))
}
/// Builds `metric.auc`: ROC AUC per label and their mean.
pub fn roc_auc(p: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(Box::new(Auc {
        rows: Rows::default(),
        labels: Labels::from(p),
    }))
}
/// Builds `metric.mae`: mean absolute error over every output element.
pub fn mae(_: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
    Ok(Box::new(Mae {
        rows: Rows::default(),
    }))
}

// ---- the kinds -------------------------------------------------------------

fn metric(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Metric)
        .doc(doc)
        .input("pred", "predictions (logits or probabilities)")
        .input("target", "targets")
        .choice(
            "report",
            &["pooled", "per_fold_mean"],
            Some("pooled"),
            "Which aggregate the headline table shows (both are stored).",
        )
}

pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        metric("metric.accuracy", "Accuracy (WAR: weighted average recall).").shapes(crate::loss::loss_classification)
            .metric(accuracy)
            .build(),
        metric("metric.uar", "Unweighted average recall (mean of per-class recall).").shapes(crate::loss::loss_classification)
            .metric(uar)
            .build(),
        metric("metric.uf1", "Unweighted F1 (mean of per-class F1); classes absent from a fold are listed, never silently dropped.").shapes(crate::loss::loss_classification)
            .metric(uf1)
            .build(),
        metric("metric.f1", "Multi-label F1 per label (AUs) and their mean.")
            .choice("average", &["binary", "macro2"], Some("binary"), "binary: positive-class F1 per AU; macro2: mean of positive- and negative-class F1 per AU (as AU-LLM's code reports).")
            .float("threshold", Some(0.5), Some(0.0), Some(1.0), "Decision threshold on probabilities.")
            .choice("threshold_from", &["fixed", "inner_val", "test_tuned"], Some("fixed"), "Where the threshold comes from; test_tuned reproduces papers and is labelled as such.")
            .shapes(crate::loss::loss_multilabel)
            .metric(f1)
            .build(),
        metric("metric.auc", "ROC AUC per label and mean.").shapes(crate::loss::loss_multilabel)
            .metric(roc_auc)
            .build(),
        metric("metric.confusion", "Confusion matrix (rows: truth, columns: prediction).").shapes(crate::loss::loss_classification)
            .metric(confusion)
            .build(),
        metric("metric.per_class", "Per-class precision, recall and F1 table.").shapes(crate::loss::loss_classification)
            .metric(per_class)
            .build(),
        metric("metric.mae", "Mean absolute error of regression outputs.").shapes(crate::loss::loss_regression)
            .metric(mae)
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;

    fn logits(classes: &[usize], k: usize) -> Tensor {
        let mut v = vec![0f32; classes.len() * k];
        for (i, c) in classes.iter().enumerate() {
            v[i * k + c] = 1.0;
        }
        Tensor::from_vec(v, (classes.len(), k), &Device::Cpu).unwrap()
    }
    fn idx(classes: &[i64]) -> Tensor {
        Tensor::new(classes, &Device::Cpu).unwrap()
    }
    fn ids(n: usize, f: &str) -> Vec<String> {
        (0..n).map(|i| format!("{f}/{i}")).collect()
    }
    fn get<'a>(vs: &'a [MetricValue], name: &str) -> &'a MetricValue {
        vs.iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    }

    /// Two folds, three classes; fold B has no class 1.
    ///   A: truth 0 0 1 2, pred 0 1 1 2
    ///   B: truth 0 2,     pred 0 0
    /// Pooled counts: class 0 TP 2 FP 1 FN 1, class 1 TP 1 FP 1 FN 0,
    /// class 2 TP 1 FP 0 FN 1.
    /// A generated answer that names no class is a row of NaN: a miss of
    /// its true class in every statistic, counted in `how`, never a guess.
    #[test]
    fn unparseable_answers_count_wrong_and_are_named() {
        let score = |stat: ClassStat| {
            let mut m = Classification {
                stat,
                rows: Rows::default(),
                labels: Labels::default(),
            };
            // truth 0 0 1 1; answers: 0, unparseable, 1, unparseable.
            let mut p = logits(&[0, 0, 1, 0], 2);
            let nan = Tensor::from_vec(vec![f32::NAN; 2], (1, 2), &Device::Cpu).unwrap();
            p = Tensor::cat(
                &[
                    p.narrow(0, 0, 1).unwrap(),
                    nan.clone(),
                    p.narrow(0, 2, 1).unwrap(),
                    nan,
                ],
                0,
            )
            .unwrap();
            m.update("A", &ids(4, "A"), &p, &idx(&[0, 0, 1, 1]))
                .unwrap();
            m.finish()
        };
        let acc = score(ClassStat::Accuracy);
        assert_eq!(acc[0].pooled, 0.5);
        assert!(
            acc[0].how.contains("2 of 4 answers named no single class"),
            "{}",
            acc[0].how
        );
        let uar = score(ClassStat::Uar);
        assert_eq!(uar[0].pooled, 0.5);
        let conf = score(ClassStat::Confusion);
        // No cell holds the unparseable answers; the caption says why.
        assert_eq!(get(&conf, "confusion[0,0]").pooled, 1.0);
        assert_eq!(get(&conf, "confusion[1,0]").pooled, 0.0);
        assert!(get(&conf, "confusion[1,1]")
            .how
            .contains("in no confusion cell"));
    }

    /// Generated answers without a reading in the AU and age metrics:
    /// no AU present for F1, left out of the MAE; both say how many.
    #[test]
    fn unparseable_aus_and_numbers_are_named() {
        let nan = f32::NAN;
        let rows =
            |v: Vec<f32>, n: usize, k: usize| Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap();
        let defaults = crate::builtin_registry()
            .get("metric.f1")
            .unwrap()
            .with_defaults(&BTreeMap::new());
        let mut f = f1(&defaults).unwrap();
        f.update(
            "A",
            &ids(3, "A"),
            &rows(vec![10., -10., nan, nan, 10., 10.], 3, 2),
            &rows(vec![1., 0., 1., 0., 1., 1.], 3, 2),
        )
        .unwrap();
        let v = f.finish();
        let all = v.last().unwrap();
        assert!(
            all.how
                .contains("1 of 3 answers named no AU set (unparseable): read as no AU present"),
            "{}",
            all.how
        );
        // AU 0: truth 1 1 1, predicted 1 0 1: F1 = 0.8.
        assert!((v[0].pooled - 0.8).abs() < 1e-9, "{}", v[0].pooled);
        let mut m = mae(&BTreeMap::new()).unwrap();
        m.update(
            "A",
            &ids(3, "A"),
            &rows(vec![30., nan, 20.], 3, 1),
            &rows(vec![34., 50., 22.], 3, 1),
        )
        .unwrap();
        let v = m.finish();
        assert_eq!(v[0].pooled, 3.0);
        assert!(
            v[0].how.contains("1 of 3 answers gave no number"),
            "{}",
            v[0].how
        );
    }

    fn two_folds(stat: ClassStat) -> Vec<MetricValue> {
        let mut m = Classification {
            stat,
            rows: Rows::default(),
            labels: Labels::default(),
        };
        m.update(
            "A",
            &ids(4, "A"),
            &logits(&[0, 1, 1, 2], 3),
            &idx(&[0, 0, 1, 2]),
        )
        .unwrap();
        m.update("B", &ids(2, "B"), &logits(&[0, 0], 3), &idx(&[0, 2]))
            .unwrap();
        m.finish()
    }

    #[test]
    fn accuracy_uar_uf1_match_hand_computed_values() {
        let acc = &two_folds(ClassStat::Accuracy)[0];
        assert!((acc.pooled - 4.0 / 6.0).abs() < 1e-12);
        assert!((acc.per_fold_mean - (0.75 + 0.5) / 2.0).abs() < 1e-12);

        // UAR pooled: recall 2/3, 1/1, 1/2 → 13/18.
        let uar = &two_folds(ClassStat::Uar)[0];
        assert!((uar.pooled - 13.0 / 18.0).abs() < 1e-12);
        // Fold A: 1/2, 1, 1 → 5/6. Fold B: class 1 absent → mean(1, 0) = 1/2.
        assert!((uar.per_fold_mean - (5.0 / 6.0 + 0.5) / 2.0).abs() < 1e-12);
        assert!(
            uar.how.contains("B: 1"),
            "the absent class is stated: {}",
            uar.how
        );

        // UF1 pooled: F1 = 4/6, 2/3, 2/3 → 2/3.
        let uf1 = &two_folds(ClassStat::Uf1)[0];
        assert!((uf1.pooled - 2.0 / 3.0).abs() < 1e-12);
        // Fold A: 2/3, 2/3, 1 → 7/9. Fold B: class 0 F1 2/3, class 2 0,
        // class 1 neither present nor predicted → left out: 1/3.
        assert!((uf1.per_fold_mean - (7.0 / 9.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(uf1.per_fold.len(), 2);
        assert!(
            uf1.how.contains("left out of that fold's mean (B: 1)"),
            "{}",
            uf1.how
        );
    }

    #[test]
    fn classification_how_states_the_floors() {
        // Pooled truth: class 0 ×3, class 1 ×1, class 2 ×2 of 6.
        let acc = &two_folds(ClassStat::Accuracy)[0];
        assert!(
            acc.how
                .contains("floor on the pooled test labels: always `0` 50.00, chance 33.33"),
            "{}",
            acc.how
        );
        let uar = &two_folds(ClassStat::Uar)[0];
        assert!(
            uar.how.contains("always `0` 33.33, chance 33.33"),
            "{}",
            uar.how
        );
        // UF1: majority 2·3/(6+3)/3; chance mean of 2n_c/(6+3n_c) over 3 classes.
        let uf1 = &two_folds(ClassStat::Uf1)[0];
        assert!(
            uf1.how.contains("always `0` 22.22, chance 31.85"),
            "{}",
            uf1.how
        );
        assert!(!uf1.how.contains("collapsed") && !uf1.how.contains("holds one class"));
        let (maj, always, chance) = class_floor("uf1", &[3, 1, 2]).unwrap();
        assert_eq!(maj, 0);
        assert!((always - 2.0 / 9.0).abs() < 1e-12);
        assert!((chance - (0.4 + 2.0 / 9.0 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(class_floor("uar", &[0, 0]), None);
    }

    #[test]
    fn collapsed_predictions_and_one_class_folds_are_named() {
        let mut m = Classification {
            stat: ClassStat::Uf1,
            rows: Rows::default(),
            labels: Labels(vec!["neg".into(), "pos".into()]),
        };
        // Every prediction is `neg`; fold B's test set holds `neg` only.
        m.update("A", &ids(3, "A"), &logits(&[0, 0, 0], 2), &idx(&[0, 1, 1]))
            .unwrap();
        m.update("B", &ids(2, "B"), &logits(&[0, 0], 2), &idx(&[0, 0]))
            .unwrap();
        let uf1 = &m.finish()[0];
        assert_eq!(
            uf1.per_fold[1],
            ("B".to_string(), Some(1.0)),
            "one class, all right: UF1 100"
        );
        assert!(
            uf1.how
                .contains("collapsed: every pooled prediction is `neg`"),
            "{}",
            uf1.how
        );
        assert!(
            uf1.how.contains(
                "folds whose test set holds one class: B (there it is that class's F1 alone"
            ),
            "{}",
            uf1.how
        );
    }

    #[test]
    fn confusion_and_per_class_tables() {
        let c = two_folds(ClassStat::Confusion);
        assert_eq!(get(&c, "confusion[0,0]").pooled, 2.0);
        assert_eq!(get(&c, "confusion[0,1]").pooled, 1.0);
        assert_eq!(get(&c, "confusion[2,0]").pooled, 1.0);
        assert_eq!(c.len(), 9);
        let p = two_folds(ClassStat::PerClass);
        assert!((get(&p, "precision[0]").pooled - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            get(&p, "recall[1]").folds_counted,
            1,
            "fold B has no class 1"
        );
    }

    fn au_rows() -> MultiLabelF1 {
        // Two AUs, logits: positive when > 0. Fold A and fold B.
        //   AU0 truth A: 1 1 0 0, pred A: 1 0 0 0 | B: truth 0 0, pred 1 0
        //   AU1 truth A: 0 0 0 0, pred A: 0 0 0 0 | B: truth 1 0, pred 1 0
        let t = |v: Vec<f32>, n| Tensor::from_vec(v, (n, 2), &Device::Cpu).unwrap();
        let mut m = MultiLabelF1 {
            labels: Labels::default(),
            macro2: false,
            threshold: 0.5,
            from: ThresholdFrom::Fixed,
            rows: Rows::default(),
            calib: Rows::default(),
        };
        m.update(
            "A",
            &ids(4, "A"),
            &t(vec![2., -2., -2., -2., -2., -2., -2., -2.], 4),
            &t(vec![1., 0., 1., 0., 0., 0., 0., 0.], 4),
        )
        .unwrap();
        m.update(
            "B",
            &ids(2, "B"),
            &t(vec![2., 2., -2., -2.], 2),
            &t(vec![0., 1., 0., 0.], 2),
        )
        .unwrap();
        m
    }

    #[test]
    fn binary_and_macro_au_f1_differ_as_computed_by_hand() {
        let mut m = au_rows();
        let b = m.finish();
        // AU0 pooled: TP 1, FP 1, FN 1 → 0.5. AU1 pooled: TP 1 → 1.0.
        assert!((get(&b, "f1[0]").pooled - 0.5).abs() < 1e-12);
        assert!((get(&b, "f1[1]").pooled - 1.0).abs() < 1e-12);
        assert!((get(&b, "f1").pooled - 0.75).abs() < 1e-12);
        // Per fold: AU1 in fold A has no positives at all → undefined.
        assert_eq!(get(&b, "f1[1]").per_fold[0], ("A".to_string(), None));
        assert!(get(&b, "f1").how.contains("A: 1"), "{}", get(&b, "f1").how);
        // The constant floor: "always present" gives AU0 4/8 and AU1 2/7.
        assert!(
            get(&b, "f1").how.contains("scores 39.29 pooled"),
            "{}",
            get(&b, "f1").how
        );

        m.macro2 = true;
        let mc = m.finish();
        // AU0 negative class pooled: truth-neg 4, TN 3, FP→FN_neg 1, FN→FP_neg 1:
        // F1_neg = 6/8; macro = (0.5 + 0.75)/2 = 0.625. AU1: F1_neg = 1 → 1.
        assert!((get(&mc, "f1_macro2[0]").pooled - 0.625).abs() < 1e-12);
        assert!((get(&mc, "f1_macro2").pooled - 0.8125).abs() < 1e-12);
        // Under macro2 "always absent" is the better constant: AU0 (0 +
        // 8/10)/2, AU1 (0 + 10/11)/2.
        let how = &get(&mc, "f1_macro2").how;
        assert!(how.contains("scores 42.73 pooled"), "{how}");
        assert!(
            get(&mc, "f1_macro2").pooled > get(&b, "f1").pooled,
            "macro inflates"
        );
    }

    #[test]
    fn test_tuned_thresholds_are_labelled_and_never_worse_on_test() {
        let mut m = au_rows();
        let fixed = get(&m.finish(), "f1").pooled;
        m.from = ThresholdFrom::TestTuned;
        let out = m.finish();
        let tuned = get(&out, "f1_test_tuned");
        assert!(tuned.pooled >= fixed);
        assert!(tuned.how.contains("TEST-TUNED"));
        assert!(out.iter().all(|v| v.name.contains("test_tuned")));
    }

    #[test]
    fn inner_val_thresholds_come_from_calibration_rows_only() {
        let mut m = au_rows();
        m.from = ThresholdFrom::InnerVal;
        // Without calibration rows the fixed threshold is used, and said.
        assert!(get(&m.finish(), "f1[0]")
            .how
            .contains("without inner-validation predictions"));
        let t = |v: Vec<f32>| Tensor::from_vec(v, (2, 2), &Device::Cpu).unwrap();
        // Calibration says AU0 positives score around -1 (sigmoid 0.27).
        m.calibrate(
            "A",
            &ids(2, "v"),
            &t(vec![-1., 0., -3., 0.]),
            &t(vec![1., 0., 0., 0.]),
        )
        .unwrap();
        let (th, how) = m.threshold_for(Some("A"), 0);
        assert!(th < 0.27 && th > 0.05 + 0.04, "{th} {how}");
    }

    #[test]
    fn auc_by_ranks() {
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.1], &[true, true]), None);
    }
}
