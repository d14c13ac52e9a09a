//! `mer run`: datasets → protocol folds → train → predict → metrics, with
//! every step written to the run store so a killed run resumes exactly.
//!
//! Determinism: every random draw comes from a stream derived from the run
//! seed and a name (`shuffle/<fold>/<epoch>`, `aug/<fold>/<epoch>/<batch>`,
//! …), never from a stream's position, so resuming at an epoch boundary
//! replays the same numbers as an uninterrupted run.

use crate::exec::{ExecError, FeatureCache, Model};
use crate::optim::{Optimizer, Schedule};
use mer_registry::candle::{DType, Device, Tensor};
use mer_registry::dsl::graph::GraphIr;
use mer_registry::dsl::schema::Role;
use mer_registry::dsl::{CheckedExperiment, CheckedVariant};
use mer_registry::{
    verify_folds, Dataset, Fold, Metric, MetricValue, Mode, Registry, SampleMeta, SeededRng, Value,
};
use mer_store::{self as store, EpochRecord, FoldStatus, PlanId, Predictions};
pub use mer_store::{StoredMetric, VariantResult};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The recipe, its data or its folds cannot be set up as written (no
    /// protocol, unknown kind or fold, ...), or a fold's loss became
    /// non-finite; the message says which.
    #[error("{0}")]
    Setup(String),
    /// A dataset failed to index or load its samples.
    #[error("data: {0}")]
    Data(#[from] mer_registry::DataError),
    /// The model could not be built, or a forward pass failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A file or folder of the run store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned, as displayed.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A tensor operation outside the executor failed (normalisation
    /// statistics, checkpoints, predictions).
    #[error("{0}")]
    Tensor(#[from] mer_registry::candle::Error),
    /// Stopped on request (Ctrl-C): the fold's last checkpoint is after
    /// `epochs_done` epochs, and `--resume` continues from there.
    #[error("interrupted after epoch {epochs_done} of {epochs} of fold {fold}; rerun with --resume to continue from there")]
    Interrupted {
        /// The name of the fold that was stopped.
        fold: String,
        /// Epochs finished and checkpointed before the stop.
        epochs_done: usize,
        /// Epochs the fold is configured to train in all.
        epochs: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Callbacks for progress display; the CLI draws bars, tests stay quiet.
pub trait Progress {
    /// Called once before training with the number of chosen folds (reused ones
    /// included).
    fn folds(&self, _total: usize) {}
    /// A fold starts training: its 0-based position among the chosen folds, its
    /// name, its epochs and its training batches per epoch.
    fn fold_start(&self, _index: usize, _name: &str, _epochs: usize, _batches: usize) {}
    /// One training batch (forward and backward pass) is done.
    fn batch(&self) {}
    /// An epoch ended: its 1-based number and the mean training loss over its
    /// batches.
    fn epoch_end(&self, _epoch: usize, _loss: f64) {}
    /// A fold ended in `state`: `finished`, `reused`, `failed` or
    /// `interrupted`.
    fn fold_end(&self, _name: &str, _state: &str) {}
    /// An informational line: dataset notes, reused folds, a fold's failure.
    fn note(&self, _message: &str) {}
    /// Whether the user asked to stop (Ctrl-C). Checked after every batch:
    /// the fold stops, keeps its last epoch checkpoint, and is marked
    /// `interrupted`.
    fn interrupted(&self) -> bool {
        false
    }
}

/// No output.
pub struct Quiet;
impl Progress for Quiet {}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run store's root (`runs/`).
    pub root: PathBuf,
    /// Only these folds (1-based positions or names); all when empty.
    pub folds: Vec<String>,
    /// Continue finished and interrupted folds instead of refusing.
    pub resume: bool,
    /// Discard earlier results of this variant and start over.
    pub restart: bool,
    /// The device the model is built and trained on.
    pub device: Device,
}

/// One data node, built.
struct Source {
    name: String,
    kind: String,
    dataset: Box<dyn Dataset>,
}

/// The combined index: `(source, position in that source)` per sample.
struct Data {
    sources: Vec<Source>,
    index: Vec<SampleMeta>,
    at: Vec<(usize, usize)>,
    /// `train.normalize`: per-port `(mean, std)` shaped to broadcast over
    /// a batch, fitted on the current fold's training samples only.
    norm: std::cell::RefCell<BTreeMap<String, (Tensor, Tensor)>>,
}

/// One port's standardisation statistics, as `normalization.json` stores them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortStats {
    /// Training samples the statistics come from.
    pub samples: usize,
    /// Per-channel mean over those samples, every other axis pooled.
    pub mean: Vec<f64>,
    /// Per-channel population standard deviation, floored at 1e-6 so that
    /// dividing by it is safe.
    pub std: Vec<f64>,
}

impl Data {
    fn build(graph: &GraphIr, reg: &Registry) -> Result<Data, RunError> {
        let mut sources = Vec::new();
        let mut index = Vec::new();
        let mut at = Vec::new();
        for idx in graph.topo_order() {
            let n = &graph.graph[idx];
            if n.role != Role::Data {
                continue;
            }
            let kind = reg.get(&n.kind).ok_or_else(|| {
                RunError::Setup(format!("data `{}`: unknown kind `{}`", n.name, n.kind))
            })?;
            let factory = kind.factory.dataset().ok_or_else(|| {
                RunError::Setup(format!(
                    "data `{}`: `{}` has no loader in this build yet (use a synth.* dataset)",
                    n.name, n.kind
                ))
            })?;
            let ds = factory(&n.params)
                .map_err(|e| RunError::Setup(format!("data `{}`: {}", n.name, e.0)))?;
            let s = sources.len();
            for (i, mut meta) in ds.index()?.into_iter().enumerate() {
                meta.dataset = n.name.clone();
                index.push(meta);
                at.push((s, i));
            }
            sources.push(Source {
                name: n.name.clone(),
                kind: n.kind.clone(),
                dataset: ds,
            });
        }
        if index.is_empty() {
            return Err(RunError::Setup("the recipe's data has no samples".into()));
        }
        let mut seen = BTreeSet::new();
        for m in &index {
            if !seen.insert((&m.dataset, &m.id)) {
                return Err(RunError::Setup(format!(
                    "data `{}`: sample id `{}` occurs twice",
                    m.dataset, m.id
                )));
            }
        }
        Ok(Data {
            sources,
            index,
            at,
            norm: Default::default(),
        })
    }

    /// Loads global positions, which may span several sources, as one
    /// batch (ports concatenated in position order). Every data node of
    /// the graph is fed the same ports.
    fn load(
        &self,
        positions: &[usize],
        mut aug: Option<&mut SeededRng>,
    ) -> Result<(Vec<String>, BTreeMap<String, Tensor>), RunError> {
        let mut parts: Vec<(usize, Vec<usize>)> = Vec::new();
        for p in positions {
            let (s, i) = self.at[*p];
            match parts.last_mut() {
                Some((ls, v)) if *ls == s => v.push(i),
                _ => parts.push((s, vec![i])),
            }
        }
        let mut ids = Vec::new();
        let mut ports: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
        for (s, local) in &parts {
            let b = self.sources[*s].dataset.load(local, aug.as_deref_mut())?;
            ids.extend(
                b.ids
                    .into_iter()
                    .map(|id| format!("{}:{id}", self.sources[*s].name)),
            );
            for (k, t) in b.ports {
                ports.entry(k).or_default().push(t);
            }
        }
        let mut out = BTreeMap::new();
        let norm = self.norm.borrow();
        for (k, ts) in ports {
            let mut t = match <[Tensor; 1]>::try_from(ts) {
                Ok([one]) => one,
                Err(ts) => Tensor::cat(&ts, 0)?,
            };
            if let Some((m, sd)) = norm.get(&k) {
                t = t
                    .to_dtype(DType::F32)?
                    .broadcast_sub(m)?
                    .broadcast_div(sd)?;
            }
            out.insert(k, t);
        }
        Ok((ids, out))
    }

    /// Fits `train.normalize`: per-channel (axis 1) mean and standard
    /// deviation of each named port over `positions` (the fold's training
    /// samples, never its test or inner-validation ones), applied to every
    /// later load until [`Data::clear_norm`].
    fn fit_norm(
        &self,
        positions: &[usize],
        ports: &[String],
        batch: usize,
    ) -> Result<BTreeMap<String, PortStats>, RunError> {
        self.clear_norm();
        // port → (sum, sum of squares, count) per channel
        let mut acc: BTreeMap<String, (Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
        let mut ranks: BTreeMap<String, usize> = BTreeMap::new();
        for chunk in positions.chunks(batch.max(1)) {
            let (_, loaded) = self.load(chunk, None)?;
            for name in ports {
                let t = loaded.get(name).ok_or_else(|| {
                    RunError::Setup(format!(
                        "train.normalize names `{name}`, which the data does not provide (ports: {})",
                        loaded.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let dims = t.dims().to_vec();
                if dims.len() < 2 {
                    return Err(RunError::Setup(format!(
                        "train.normalize: `{name}` is {dims:?}; it needs a channel axis [B, C, …]"
                    )));
                }
                ranks.insert(name.clone(), dims.len());
                let c = dims[1];
                let v = t
                    .to_dtype(DType::F64)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((c, ()))?
                    .to_vec2::<f64>()?;
                let e = acc
                    .entry(name.clone())
                    .or_insert_with(|| (vec![0.0; c], vec![0.0; c], 0));
                for (ch, row) in v.iter().enumerate() {
                    e.0[ch] += row.iter().sum::<f64>();
                    e.1[ch] += row.iter().map(|x| x * x).sum::<f64>();
                }
                e.2 += v.first().map_or(0, Vec::len);
            }
        }
        let mut stats = BTreeMap::new();
        let mut norm = BTreeMap::new();
        for (name, (sum, sq, n)) in acc {
            let n = n.max(1) as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let std: Vec<f64> = sq
                .iter()
                .zip(&mean)
                .map(|(q, m)| (q / n - m * m).max(0.0).sqrt().max(1e-6))
                .collect();
            let mut shape = vec![1, mean.len()];
            shape.resize(ranks[&name], 1);
            let as_t = |v: &[f64]| {
                Tensor::from_vec(
                    v.iter().map(|x| *x as f32).collect::<Vec<_>>(),
                    shape.clone(),
                    &Device::Cpu,
                )
            };
            norm.insert(name.clone(), (as_t(&mean)?, as_t(&std)?));
            stats.insert(
                name,
                PortStats {
                    samples: positions.len(),
                    mean,
                    std,
                },
            );
        }
        *self.norm.borrow_mut() = norm;
        Ok(stats)
    }

    fn clear_norm(&self) {
        self.norm.borrow_mut().clear();
    }

    fn feed(&self, ports: BTreeMap<String, Tensor>) -> BTreeMap<String, BTreeMap<String, Tensor>> {
        self.sources
            .iter()
            .map(|s| (s.name.clone(), ports.clone()))
            .collect()
    }

    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        self.sources
            .first()
            .and_then(|s| s.dataset.label_names(port))
    }
}

/// Where a metric input comes from.
#[derive(Debug, Clone)]
struct Ref {
    /// `node` or `node.port`: also the predictions column name.
    name: String,
    node: String,
    port: String,
    position: usize,
    data: bool,
}

struct MetricNode {
    name: String,
    kind: String,
    params: BTreeMap<String, Value>,
    pred: Ref,
    target: Ref,
}

/// One line per node whose `dtype` asks for half-precision weights on a
/// device that holds everything in f32 (the CPU): the recipe still runs,
/// and the log says in which precision.
fn half_precision_on_cpu(graph: &GraphIr, device: &Device) -> Vec<String> {
    if !device.is_cpu() {
        return vec![];
    }
    graph
        .topo_order()
        .into_iter()
        .filter_map(|idx| {
            let n = &graph.graph[idx];
            match n.params.get("dtype") {
                Some(Value::Str(d)) if d != "f32" => Some(format!(
                    "`{}`: dtype = \"{d}\" holds its frozen weights in f32 on the CPU (half precision is a GPU setting)",
                    n.name
                )),
                _ => None,
            }
        })
        .collect()
}

fn metric_nodes(graph: &GraphIr, reg: &Registry) -> Result<Vec<MetricNode>, RunError> {
    let mut out = Vec::new();
    for idx in graph.topo_order() {
        let n = &graph.graph[idx];
        if n.role != Role::Metric {
            continue;
        }
        let mut edges: Vec<_> = graph
            .graph
            .edges_directed(idx, petgraph::Direction::Incoming)
            .collect();
        edges.sort_by_key(|e| e.weight().position);
        let refs: Vec<Ref> = edges
            .iter()
            .map(|e| {
                let src = &graph.graph[e.source()];
                let port = e.weight().port.clone();
                let position = reg
                    .get(&src.kind)
                    .and_then(|k| k.schema.outputs.iter().position(|p| p.name == port))
                    .unwrap_or(0);
                let single = reg
                    .get(&src.kind)
                    .is_some_and(|k| k.schema.outputs.len() <= 1);
                Ref {
                    name: if single && src.role != Role::Data {
                        src.name.clone()
                    } else {
                        format!("{}.{port}", src.name)
                    },
                    node: src.name.clone(),
                    port,
                    position,
                    data: src.role == Role::Data,
                }
            })
            .collect();
        let [pred, target] = <[Ref; 2]>::try_from(refs).map_err(|_| {
            RunError::Setup(format!("metric `{}` needs exactly (pred, target)", n.name))
        })?;
        out.push(MetricNode {
            name: n.name.clone(),
            kind: n.kind.clone(),
            params: n.params.clone(),
            pred,
            target,
        });
    }
    Ok(out)
}

/// The `train { … }` block.
#[derive(Debug, Clone)]
struct TrainCfg {
    epochs: usize,
    batch: usize,
    select: String,
    val_fraction: f64,
    eval_every: usize,
    accumulate: usize,
    clip: Option<f64>,
    /// Data ports standardised with the fold's training statistics.
    normalize: Vec<String>,
}

/// The `train` block, typed. The checker filled its defaults from
/// `train_schema` (the one place they live): a missing key is an error.
fn train_cfg(config: &BTreeMap<String, Value>) -> Result<TrainCfg, RunError> {
    let t = match config.get("train") {
        Some(Value::Map(m)) => m,
        _ => return Err(RunError::Setup("the recipe has no `train` block".into())),
    };
    let q = mer_registry::Params::new("train", t);
    let setup = |e: mer_registry::BuildError| RunError::Setup(e.0);
    let count = |k: &str| q.usize(k).map(|n| n.max(1)).map_err(setup);
    Ok(TrainCfg {
        epochs: count("epochs")?,
        batch: count("batch")?,
        select: q.str("select").map_err(setup)?.to_string(),
        val_fraction: q.float("val_fraction").map_err(setup)?,
        eval_every: count("eval_every")?,
        accumulate: count("accumulate")?,
        clip: q.opt_float("clip_grad_norm").map_err(setup)?,
        normalize: t
            .get("normalize")
            .and_then(Value::as_strings)
            .ok_or_else(|| {
                RunError::Setup("`train.normalize` must be a list of port names".into())
            })?,
    })
}

fn call(config: &BTreeMap<String, Value>, key: &str) -> Option<(String, BTreeMap<String, Value>)> {
    match config.get(key) {
        Some(Value::Call(c)) => Some((c.kind.clone(), c.params.clone())),
        _ => None,
    }
}

/// What a fold's checkpoint carries besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    optimizer_t: i32,
    best_epoch: Option<usize>,
    best_score: Option<f64>,
    history: Vec<EpochRecord>,
}

/// The recipe's `reported = { source = "…", uar = 82.73, … }`, as text,
/// for `variant`:
/// - a nested map gives per-label values: `f1 = { AU1 = 92.2, mean = 81.4 }`
///   is `f1[AU1]` and `f1` (the family's aggregate);
/// - `ablations = [{ variant = "F_high", f1 = 80.1 }, …]` gives an
///   ablation's own figures (the paper's ablation table). The top-level
///   values belong to the base variant only; `source` to every variant.
fn reported(config: &BTreeMap<String, Value>, variant: &str) -> Vec<(String, String)> {
    fn text(v: &Value) -> String {
        match v {
            Value::Str(s) => s.clone(),
            Value::Int(i) => format!("{i}.00"),
            Value::Float(f) => format!("{f:.2}"),
            other => other.to_string(),
        }
    }
    fn values(m: &BTreeMap<String, Value>, out: &mut Vec<(String, String)>) {
        for (k, v) in m {
            match v {
                Value::Map(labels) => {
                    for (label, x) in labels {
                        let key = if label == "mean" {
                            k.clone()
                        } else {
                            format!("{k}[{label}]")
                        };
                        out.push((key, text(x)));
                    }
                }
                Value::List(_) => {}
                _ if k == "variant" || k == "source" => {}
                _ => out.push((k.clone(), text(v))),
            }
        }
    }
    let mut out = Vec::new();
    let Some(Value::Map(m)) = config.get("reported") else {
        return out;
    };
    if let Some(Value::Str(s)) = m.get("source") {
        out.push(("source".to_string(), s.clone()));
    }
    if variant == "base" {
        values(m, &mut out);
    }
    if let Some(Value::List(entries)) = m.get("ablations") {
        for e in entries {
            if let Value::Map(e) = e {
                if e.get("variant") == Some(&Value::Str(variant.to_string())) {
                    values(e, &mut out);
                }
            }
        }
    }
    if out.len() == 1 {
        out.clear(); // only a source: nothing reported for this variant
    }
    out
}

fn fnum(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The folder of one variant and seed.
pub fn variant_dir(root: &Path, exp: &CheckedExperiment, variant: &str, seed: i64) -> PathBuf {
    store::RunStore::new(root).variant_dir(exp, variant, seed)
}

/// Writes `plan.json`: the plan's ids for this variant and seed, by fold
/// name. A plan that could not count the folds (one per subject, known only
/// once data is indexed) has one id for all of them.
fn write_plan_ids(
    exp: &CheckedExperiment,
    v: &CheckedVariant,
    seed: i64,
    reg: &Registry,
    folds: &[Fold],
    dir: &Path,
) -> Result<(), RunError> {
    let plan = mer_registry::dsl::plan::plan(exp, reg);
    let mine: Vec<_> = plan
        .runs
        .iter()
        .filter(|r| r.variant == v.variant.name && r.seed == seed)
        .collect();
    let ids: Vec<PlanId> = folds
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let pos = (i + 1).to_string();
            mine.iter()
                .find(|r| r.fold == pos || r.fold == "*")
                .map(|r| PlanId {
                    fold: f.name.clone(),
                    id: r.id.clone(),
                })
        })
        .collect();
    let path = dir.join("plan.json");
    store::write_json(&path, &ids).map_err(io(&path))
}

/// The names of a variant's protocol folds, in order, without training:
/// a cluster executor makes one task per fold, and LOSO folds are known
/// only once the data is indexed.
pub fn fold_names(v: &CheckedVariant, reg: &Registry) -> Result<Vec<String>, RunError> {
    let data = Data::build(&v.graph, reg)?;
    let (pkind, pparams) = call(&v.recipe.config, "protocol")
        .ok_or_else(|| RunError::Setup("the recipe has no protocol".into()))?;
    let protocol = reg
        .get(&pkind)
        .and_then(|k| k.factory.protocol())
        .ok_or_else(|| RunError::Setup(format!("`{pkind}` has no implementation in this build")))?;
    let folds = protocol(&pparams)
        .map_err(|e| RunError::Setup(format!("protocol: {}", e.0)))?
        .folds(&data.index)
        .map_err(|e| RunError::Setup(format!("protocol `{pkind}`: {e}")))?;
    Ok(folds.into_iter().map(|f| f.name).collect())
}

/// Runs one variant with one seed over its protocol's folds.
pub fn run_variant(
    exp: &CheckedExperiment,
    v: &CheckedVariant,
    seed: i64,
    reg: &Registry,
    opts: &RunOptions,
    cache: &mut FeatureCache,
    progress: &dyn Progress,
) -> Result<VariantResult, RunError> {
    let config = &v.recipe.config;
    let cfg = train_cfg(config)?;
    let dir = variant_dir(&opts.root, exp, &v.variant.name, seed);
    if opts.restart && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    if !opts.resume && dir.join("folds").exists() {
        return Err(RunError::Setup(format!(
            "{} already holds results of this recipe; pass --resume to continue it or --restart to start over",
            dir.display()
        )));
    }
    store::write_atomic(&dir.join("recipe.ron"), v.recipe.to_ron().as_bytes()).map_err(io(&dir))?;
    store::write_atomic(&dir.join("graph.ron"), v.graph.to_ron().as_bytes()).map_err(io(&dir))?;

    let data = Data::build(&v.graph, reg)?;
    let (pkind, pparams) = call(config, "protocol")
        .ok_or_else(|| RunError::Setup("the recipe has no protocol".into()))?;
    let protocol = reg
        .get(&pkind)
        .and_then(|k| k.factory.protocol())
        .ok_or_else(|| RunError::Setup(format!("`{pkind}` has no implementation in this build")))?;
    let protocol = protocol(&pparams).map_err(|e| RunError::Setup(format!("protocol: {}", e.0)))?;
    let all_folds = protocol
        .folds(&data.index)
        .map_err(|e| RunError::Setup(format!("protocol `{pkind}`: {e}")))?;
    verify_folds(&data.index, &all_folds)
        .map_err(|e| RunError::Setup(format!("protocol `{pkind}` leaks: {e}")))?;
    let folds: Vec<&Fold> = if opts.folds.is_empty() {
        all_folds.iter().collect()
    } else {
        let mut pick = Vec::new();
        for f in &opts.folds {
            let hit = f
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| all_folds.get(i))
                .or_else(|| all_folds.iter().find(|x| &x.name == f));
            match hit {
                Some(x) => pick.push(x),
                None => {
                    let names: Vec<&str> = all_folds.iter().map(|x| x.name.as_str()).collect();
                    return Err(RunError::Setup(format!(
                        "no fold `{f}`; folds are 1..{} ({})",
                        all_folds.len(),
                        names.join(", ")
                    )));
                }
            }
        }
        pick
    };
    write_plan_ids(exp, v, seed, reg, &all_folds, &dir)?;
    let metrics = metric_nodes(&v.graph, reg)?;
    let mut outputs: Vec<Ref> = Vec::new();
    for m in &metrics {
        for r in [&m.pred, &m.target] {
            if !outputs.iter().any(|o| o.name == r.name) {
                outputs.push(r.clone());
            }
        }
    }

    for s in &data.sources {
        for n in s.dataset.notes() {
            progress.note(&format!("data `{}`: {n}", s.name));
        }
    }
    for n in half_precision_on_cpu(&v.graph, &opts.device) {
        progress.note(&n);
    }
    progress.folds(folds.len());
    let mut failed = Vec::new();
    for (fi, fold) in folds.iter().enumerate() {
        let fdir = store::RunStore::fold_dir(&dir, &fold.name);
        let status: Option<FoldStatus> =
            store::read_json(&fdir.join("status.json")).map_err(io(&fdir))?;
        if status.as_ref().is_some_and(|s| s.state == "finished") {
            progress.note(&format!(
                "fold {}: finished earlier, reusing its predictions",
                fold.name
            ));
            progress.fold_end(&fold.name, "reused");
            continue;
        }
        let batches = fold.train.len().div_ceil(cfg.batch);
        progress.fold_start(fi, &fold.name, cfg.epochs, batches);
        match run_fold(
            &data,
            v,
            seed,
            fold,
            &cfg,
            &outputs,
            &metrics,
            reg,
            &opts.device,
            &fdir,
            cache,
            progress,
        ) {
            Ok(()) => progress.fold_end(&fold.name, "finished"),
            Err(RunError::Interrupted {
                fold: name,
                epochs_done,
                epochs,
            }) => {
                store::write_json(
                    &fdir.join("status.json"),
                    &FoldStatus {
                        state: "interrupted".into(),
                        epochs_done,
                        epochs,
                        message: Some("stopped by the user; `--resume` continues it".into()),
                    },
                )
                .map_err(io(&fdir))?;
                progress.fold_end(&name, "interrupted");
                return Err(RunError::Interrupted {
                    fold: name,
                    epochs_done,
                    epochs,
                });
            }
            Err(e) => {
                let msg = e.to_string();
                store::write_json(
                    &fdir.join("status.json"),
                    &FoldStatus {
                        state: "failed".into(),
                        epochs_done: 0,
                        epochs: cfg.epochs,
                        message: Some(msg.clone()),
                    },
                )
                .map_err(io(&fdir))?;
                progress.fold_end(&fold.name, "failed");
                progress.note(&format!("fold {} failed: {msg}", fold.name));
                failed.push((fold.name.clone(), msg));
            }
        }
    }

    // Metrics always come from the stored predictions, so a resumed run and
    // an uninterrupted one compute them from the same bytes.
    let finished: Vec<&Fold> = all_folds
        .iter()
        .filter(|f| {
            store::read_json::<FoldStatus>(
                &store::RunStore::fold_dir(&dir, &f.name).join("status.json"),
            )
            .ok()
            .flatten()
            .is_some_and(|s| s.state == "finished")
        })
        .collect();
    let stored = compute_metrics(&dir, &finished, &metrics, &data, reg)?;
    let mut answers = Vec::new();
    for f in &finished {
        let path = store::RunStore::fold_dir(&dir, &f.name).join("answers.csv");
        answers.extend(mer_store::read_answers(&path).map_err(RunError::Setup)?);
    }
    let result = VariantResult {
        answers: mer_store::Answers::pick(&answers, 2),
        store_hash: exp.hash.clone(),
        recipe_keys: Vec::new(),
        experiment: exp.name.clone(),
        variant: v.variant.name.clone(),
        recipe_hash: v.hash.clone(),
        seed,
        protocol: pkind,
        cross_dataset: protocol.across_datasets(),
        folds: finished.iter().map(|f| f.name.clone()).collect(),
        failed,
        complete: finished.len() == all_folds.len(),
        select: cfg.select.clone(),
        data_notes: data
            .sources
            .iter()
            .flat_map(|s| s.dataset.notes().into_iter().map(|n| (s.name.clone(), n)))
            .chain((!cfg.normalize.is_empty()).then(|| {
                (
                    "train.normalize".to_string(),
                    format!(
                        "{} standardised per channel with the mean and std of each fold's training samples only (test and inner-validation samples excluded); folds/<fold>/normalization.json holds them",
                        cfg.normalize.join(", ")
                    ),
                )
            }))
            .collect(),
        samples: data.index.len(),
        datasets: data
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.kind.clone()))
            .collect(),
        metrics: stored,
        reported: reported(config, &v.variant.name),
    };
    store::write_json(&dir.join("metrics.json"), &result).map_err(io(&dir))?;
    Ok(result)
}

fn compute_metrics(
    dir: &Path,
    folds: &[&Fold],
    metrics: &[MetricNode],
    data: &Data,
    reg: &Registry,
) -> Result<Vec<StoredMetric>, RunError> {
    // With several datasets (MEGC composite, cross-dataset), each metric is
    // also cut per dataset from the same pooled predictions, as MEGC reports.
    let mut cuts: Vec<Option<&str>> = vec![None];
    if data.sources.len() > 1 {
        cuts.extend(data.sources.iter().map(|s| Some(s.name.as_str())));
    }
    // Each fold's files are read once, then fed to every metric and cut.
    let mut stored_preds: Vec<(&str, PathBuf, Predictions, bool)> = Vec::new();
    for f in folds {
        let fdir = store::RunStore::fold_dir(dir, &f.name);
        for (file, calib) in [("predictions.csv", false), ("val_predictions.csv", true)] {
            let path = fdir.join(file);
            if calib && !path.exists() {
                continue;
            }
            let p = Predictions::read(&path).map_err(RunError::Setup)?;
            stored_preds.push((&f.name, path, p, calib));
        }
    }
    let mut out = Vec::new();
    for m in metrics {
        for cut in &cuts {
            let mut metric = make_metric(reg, m, data)?;
            for (fold, path, all, calib) in &stored_preds {
                let keep: Vec<usize> = match cut {
                    Some(ds) => {
                        let prefix = format!("{ds}:");
                        (0..all.ids.len())
                            .filter(|i| all.ids[*i].starts_with(&prefix))
                            .collect()
                    }
                    None => (0..all.ids.len()).collect(),
                };
                if keep.is_empty() {
                    continue;
                }
                let p = Predictions {
                    ids: keep.iter().map(|i| all.ids[*i].clone()).collect(),
                    columns: all.columns.clone(),
                    rows: keep.iter().map(|i| all.rows[*i].clone()).collect(),
                };
                let (pred, target) = (
                    column_tensor(&p, &m.pred.name, path)?,
                    column_tensor(&p, &m.target.name, path)?,
                );
                if *calib {
                    metric.calibrate(fold, &p.ids, &pred, &target)?;
                } else {
                    metric.update(fold, &p.ids, &pred, &target)?;
                }
            }
            let test_tuned_param =
                matches!(m.params.get("threshold_from"), Some(Value::Str(s)) if s == "test_tuned");
            for mv in metric.finish() {
                let mut sm = stored(m, mv, test_tuned_param, metric.as_ref());
                if let Some(ds) = cut {
                    sm.name = format!("{}@{ds}", sm.name);
                    sm.how = format!(
                        "{} (only the `{ds}` samples of the pooled predictions)",
                        sm.how
                    );
                }
                out.push(sm);
            }
        }
    }
    Ok(out)
}

/// Builds a metric node's implementation. Column indices in its names
/// refer to the target port's labels (AUs, or class names), which it gets
/// as the `labels` parameter.
fn make_metric(reg: &Registry, m: &MetricNode, data: &Data) -> Result<Box<dyn Metric>, RunError> {
    let f = reg
        .get(&m.kind)
        .and_then(|k| k.factory.metric())
        .ok_or_else(|| {
            RunError::Setup(format!(
                "metric `{}` has no implementation in this build",
                m.kind
            ))
        })?;
    let mut params = m.params.clone();
    if let Some(l) = data.label_names(&m.target.port) {
        params.insert(
            "labels".into(),
            Value::List(l.into_iter().map(Value::Str).collect()),
        );
    }
    f(&params).map_err(|e| RunError::Setup(format!("{}: {}", m.name, e.0)))
}

/// A metric value as `metrics.json` stores it.
fn stored(m: &MetricNode, mv: MetricValue, tuned_param: bool, metric: &dyn Metric) -> StoredMetric {
    StoredMetric {
        lower_is_better: !metric.higher_is_better(),
        own_units: !metric.percent(),
        node: m.name.clone(),
        kind: m.kind.clone(),
        name: mv.name,
        pooled: fnum(mv.pooled),
        per_fold_mean: fnum(mv.per_fold_mean),
        folds_counted: mv.folds_counted,
        per_fold: mv
            .per_fold
            .into_iter()
            .map(|(f, v)| (f, v.and_then(fnum)))
            .collect(),
        test_tuned: tuned_param || mv.how.contains("TEST-TUNED"),
        how: mv.how,
    }
}

fn column_tensor(p: &Predictions, name: &str, path: &Path) -> Result<Tensor, RunError> {
    let (w, v) = p
        .column(name)
        .ok_or_else(|| RunError::Setup(format!("{}: no column `{name}`", path.display())))?;
    Ok(Tensor::from_vec(v, (p.ids.len(), w), &Device::Cpu)?)
}

/// What one evaluation pass produced.
struct Evaluated {
    preds: Predictions,
    /// Mean loss over the samples, where the loss could be computed.
    loss: Option<f64>,
    /// `(sample id, node, answer)` of every answer generated in words.
    texts: Vec<(String, String, mer_registry::GeneratedText)>,
}

/// Evaluates `positions` in eval mode: predictions, mean loss and the
/// generated answers.
fn predict(
    model: &Model,
    data: &Data,
    positions: &[usize],
    batch: usize,
    outputs: &[Ref],
    cache: &mut FeatureCache,
) -> Result<Evaluated, RunError> {
    let mut texts = Vec::new();
    let mut p = Predictions::default();
    let mut loss_sum = 0f64;
    let mut loss_n = 0usize;
    let mut rng = SeededRng::new(0);
    for chunk in positions.chunks(batch.max(1)) {
        let (ids, ports) = data.load(chunk, None)?;
        let f = model.forward_cached(&data.feed(ports.clone()), Mode::Eval, &mut rng, cache)?;
        for (node, answers) in model.take_texts() {
            if answers.len() != ids.len() {
                return Err(RunError::Setup(format!(
                    "`{node}` generated {} answers for a batch of {} samples",
                    answers.len(),
                    ids.len()
                )));
            }
            for (id, a) in ids.iter().zip(answers) {
                texts.push((id.clone(), node.clone(), a));
            }
        }
        if let Some(l) = &f.loss {
            loss_sum += l.to_dtype(DType::F64)?.to_scalar::<f64>()? * chunk.len() as f64;
            loss_n += chunk.len();
        }
        let mut cols: Vec<Vec<Vec<f32>>> = Vec::new();
        let mut widths = Vec::new();
        for r in outputs {
            let t = if r.data {
                ports
                    .get(&r.port)
                    .cloned()
                    .ok_or_else(|| RunError::Setup(format!("data port `{}` missing", r.port)))?
            } else {
                f.outputs
                    .get(&r.node)
                    .and_then(|o| o.get(r.position))
                    .cloned()
                    .ok_or_else(|| RunError::Setup(format!("no output `{}`", r.name)))?
            };
            let t = t.to_dtype(DType::F32)?;
            let b = t.dim(0)?;
            let rows = t.reshape((b, ()))?.to_vec2::<f32>()?;
            widths.push(rows.first().map(|r| r.len()).unwrap_or(0));
            cols.push(rows);
        }
        if p.columns.is_empty() {
            p.columns = outputs.iter().map(|r| r.name.clone()).zip(widths).collect();
        }
        for (i, id) in ids.into_iter().enumerate() {
            p.ids.push(id);
            p.rows
                .push(cols.iter().flat_map(|c| c[i].iter().copied()).collect());
        }
    }
    Ok(Evaluated {
        preds: p,
        loss: (loss_n > 0).then(|| loss_sum / loss_n as f64),
        texts,
    })
}

/// The generated answers of a fold with the gold class each is compared
/// with: the target of a metric that reads the generating node.
fn answer_rows(e: &Evaluated, metrics: &[MetricNode], data: &Data) -> Vec<mer_store::AnswerRow> {
    let row_of: HashMap<&str, usize> = e
        .preds
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    e.texts
        .iter()
        .map(|(id, node, a)| {
            let gold = metrics
                .iter()
                .find(|m| m.pred.node == *node && m.target.data)
                .and_then(|m| {
                    let (w, col) = e.preds.column(&m.target.name)?;
                    let i = *row_of.get(id.as_str())?;
                    let row = col.get(i * w..(i + 1) * w)?;
                    let names = data.label_names(&m.target.port).unwrap_or_default();
                    Some(gold_words(row, &names))
                })
                .unwrap_or_default();
            mer_store::AnswerRow {
                id: id.clone(),
                node: node.clone(),
                gold,
                reading: a.reading.clone(),
                answer: a.text.clone(),
            }
        })
        .collect()
}

/// A gold label in words: a class index by its name, a multi-label row
/// by the names that are on (`none` when none is), else the number.
fn gold_words(row: &[f32], names: &[String]) -> String {
    match row {
        [v] if *v >= 0.0 && v.fract() == 0.0 && (*v as usize) < names.len() => {
            names[*v as usize].clone()
        }
        [v] => format!("{v}"),
        many => {
            let on: Vec<&str> = many
                .iter()
                .zip(names)
                .filter(|(v, _)| **v > 0.5)
                .map(|(_, n)| n.as_str())
                .collect();
            if on.is_empty() {
                "none".into()
            } else {
                on.join(", ")
            }
        }
    }
}

/// Splits training positions into (train, inner validation) by group,
/// seeded per fold.
fn inner_split(
    data: &Data,
    train: &[usize],
    fraction: f64,
    seed: i64,
    fold: &str,
) -> (Vec<usize>, Vec<usize>) {
    let groups: BTreeSet<(String, String)> = train
        .iter()
        .map(|p| (data.index[*p].dataset.clone(), data.index[*p].group.clone()))
        .collect();
    let mut gs: Vec<_> = groups.into_iter().collect();
    SeededRng::derive(seed as u64, &format!("val/{fold}")).shuffle(&mut gs);
    let n_val =
        ((gs.len() as f64 * fraction).round() as usize).clamp(1, gs.len().saturating_sub(1).max(1));
    let val: BTreeSet<_> = gs[..n_val.min(gs.len())].iter().cloned().collect();
    train.iter().partition(|p| {
        let s = &data.index[**p];
        !val.contains(&(s.dataset.clone(), s.group.clone()))
    })
}

#[allow(clippy::too_many_arguments)]
fn run_fold(
    data: &Data,
    v: &CheckedVariant,
    seed: i64,
    fold: &Fold,
    cfg: &TrainCfg,
    outputs: &[Ref],
    metrics: &[MetricNode],
    reg: &Registry,
    device: &Device,
    fdir: &Path,
    cache: &mut FeatureCache,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    let config = &v.recipe.config;
    let useed = seed as u64;
    let mut model = Model::build(&v.graph, reg, useed, device)?;
    let (okind, oparams) = call(config, "optimizer")
        .ok_or_else(|| RunError::Setup("the recipe has no optimizer".into()))?;
    let mut opt = Optimizer::new(
        reg,
        &okind,
        &oparams,
        &model.params,
        &model.component_names(),
        cfg.clip,
    )
    .map_err(|e| RunError::Setup(format!("optimizer: {}", e.0)))?;
    let sched = match call(config, "scheduler") {
        Some((k, p)) => Schedule::new(reg, &k, &p, opt.lr()),
        None => Ok(Schedule::constant()),
    }
    .map_err(|e| RunError::Setup(format!("scheduler: {}", e.0)))?;

    let (train, val) = if cfg.select == "inner_val" {
        inner_split(data, &fold.train, cfg.val_fraction, seed, &fold.name)
    } else {
        (fold.train.clone(), vec![])
    };
    if train.is_empty() {
        return Err(RunError::Setup(format!(
            "fold `{}` has no training samples",
            fold.name
        )));
    }
    if cfg.normalize.is_empty() {
        data.clear_norm();
    } else {
        let stats = data.fit_norm(&train, &cfg.normalize, cfg.batch)?;
        let path = fdir.join("normalization.json");
        store::write_json(&path, &stats).map_err(io(&path))?;
    }
    if model.fits() {
        // What components learn from data before training (prototypes)
        // comes from the training samples alone, in a seeded order and
        // without augmentation; a resumed fold repeats this pass exactly.
        let mut order = train.clone();
        SeededRng::derive(useed, &format!("fit/{}", fold.name)).shuffle(&mut order);
        let fit = model.fit_nodes();
        for chunk in order.chunks(cfg.batch) {
            let (_, ports) = data.load(chunk, None)?;
            model.fit_batch(&fit, &data.feed(ports), cache)?;
        }
    }
    let steps_per_epoch = train.len().div_ceil(cfg.batch * cfg.accumulate);
    let total_steps = steps_per_epoch * cfg.epochs;

    // A kill between writing a temporary file and renaming it leaves the
    // temporary behind; it was never the real file, so it goes.
    if let Ok(entries) = std::fs::read_dir(fdir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Resume from the last completed epoch, if any.
    let ckpt = fdir.join("checkpoint.safetensors");
    let meta_path = fdir.join("checkpoint.json");
    let mut meta = CheckpointMeta {
        epochs_done: 0,
        optimizer_t: 0,
        best_epoch: None,
        best_score: None,
        history: vec![],
    };
    let mut best: Option<HashMap<String, Tensor>> = None;
    if let Some(m) = store::read_json::<CheckpointMeta>(&meta_path).map_err(io(&meta_path))? {
        let tensors = mer_nn::checkpoint::load_tensors(&ckpt, device).map_err(io(&ckpt))?;
        for (name, var) in model.params.vars() {
            let t = tensors.get(&format!("p/{name}")).ok_or_else(|| {
                RunError::Setup(format!("{}: no parameter `{name}`", ckpt.display()))
            })?;
            var.set(t)?;
        }
        opt.load_state(m.optimizer_t, &tensors);
        let b: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("best/").map(|n| (n.to_string(), t.clone())))
            .collect();
        best = (!b.is_empty()).then_some(b);
        progress.note(&format!(
            "fold {}: resuming after epoch {}",
            fold.name, m.epochs_done
        ));
        meta = m;
    }
    let mut frozen = frozen_nodes(&oparams);
    frozen.extend(untrained_towers(&v.graph, reg, &model));
    model.set_frozen(&frozen)?;
    store::write_json(
        &fdir.join("status.json"),
        &FoldStatus {
            state: "running".into(),
            epochs_done: meta.epochs_done,
            epochs: cfg.epochs,
            message: None,
        },
    )
    .map_err(io(fdir))?;

    let mut step = meta.epochs_done * steps_per_epoch;
    for epoch in meta.epochs_done..cfg.epochs {
        let mut order = train.clone();
        SeededRng::derive(useed, &format!("shuffle/{}/{epoch}", fold.name)).shuffle(&mut order);
        let (mut loss_sum, mut n_batches, mut gnorm) = (0f64, 0usize, 0f64);
        let mut terms: BTreeMap<String, f64> = BTreeMap::new();
        let mut lr_factor = 1.0;
        // sched.plateau watches the inner-validation loss when the run has
        // one, else the training loss (never the test fold).
        let monitored: Vec<f64> = if meta.history.iter().any(|r| r.val_loss.is_some()) {
            meta.history.iter().filter_map(|r| r.val_loss).collect()
        } else {
            meta.history.iter().map(|r| r.train_loss).collect()
        };
        let plateau = sched.history_factor(&monitored);
        for (si, group) in order.chunks(cfg.batch * cfg.accumulate).enumerate() {
            let mut grads: Option<mer_registry::candle::backprop::GradStore> = None;
            for (bi, chunk) in group.chunks(cfg.batch).enumerate() {
                let name = format!("{}/{epoch}/{si}/{bi}", fold.name);
                let mut aug = SeededRng::derive(useed, &format!("aug/{name}"));
                let (_, ports) = data.load(chunk, Some(&mut aug))?;
                let mut rng = SeededRng::derive(useed, &format!("fwd/{name}"));
                let f = model.forward_cached(&data.feed(ports), Mode::Train, &mut rng, cache).map_err(|e| match e {
                    ExecError::NonFinite(v) => RunError::Setup(format!(
                        "epoch {}, batch {}: the loss is {v}; this fold stopped (lower the learning rate or set train.clip_grad_norm)",
                        epoch + 1,
                        si * cfg.accumulate + bi + 1
                    )),
                    other => other.into(),
                })?;
                let loss = f
                    .loss
                    .ok_or_else(|| RunError::Setup("the recipe's loss produced nothing".into()))?;
                loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                n_batches += 1;
                for (t, x) in f.terms {
                    *terms.entry(t).or_default() += x as f64;
                }
                let scaled = if cfg.accumulate > 1 {
                    (loss / cfg.accumulate as f64)?
                } else {
                    loss
                };
                let g = scaled.backward()?;
                grads = Some(match grads {
                    None => g,
                    Some(mut acc) => {
                        for (_, var) in model.params.vars() {
                            if let Some(x) = g.get(var.as_tensor()) {
                                let sum = match acc.get(var.as_tensor()) {
                                    Some(a) => (a + x)?,
                                    None => x.clone(),
                                };
                                acc.insert(var.as_tensor(), sum);
                            }
                        }
                        acc
                    }
                });
                progress.batch();
                if progress.interrupted() {
                    // The epoch in flight is dropped; resuming retrains it
                    // from the last checkpoint with the same random draws.
                    return Err(RunError::Interrupted {
                        fold: fold.name.clone(),
                        epochs_done: meta.epochs_done,
                        epochs: cfg.epochs,
                    });
                }
            }
            lr_factor = sched.factor(step, total_steps, epoch) * plateau;
            if let Some(g) = grads {
                gnorm += opt.step(&g, epoch, lr_factor)?.grad_norm;
            }
            step += 1;
        }
        let mean_loss = loss_sum / n_batches.max(1) as f64;
        let mut rec = EpochRecord {
            epoch: epoch + 1,
            train_loss: mean_loss,
            terms: terms
                .into_iter()
                .map(|(k, s)| (k, s / n_batches.max(1) as f64))
                .collect(),
            grad_norm: gnorm / steps_per_epoch.max(1) as f64,
            lr_factor,
            val_loss: None,
            test_score: None,
        };
        let last = epoch + 1 == cfg.epochs;
        if (epoch + 1) % cfg.eval_every == 0 || last {
            let score = match cfg.select.as_str() {
                "inner_val" => {
                    let vl = predict(&model, data, &val, cfg.batch, outputs, cache)?.loss;
                    rec.val_loss = vl;
                    vl.map(|l| -l)
                }
                "test_best_epoch" => {
                    let s =
                        test_score(&model, data, fold, cfg.batch, outputs, metrics, reg, cache)?;
                    rec.test_score = s;
                    s
                }
                _ => None,
            };
            if let Some(s) = score {
                if meta.best_score.is_none_or(|b| s > b) {
                    meta.best_score = Some(s);
                    meta.best_epoch = Some(epoch + 1);
                    best = Some(
                        model
                            .params
                            .vars()
                            .map(|(n, v)| v.as_tensor().copy().map(|t| (n.clone(), t)))
                            .collect::<Result<_, _>>()?,
                    );
                }
            }
        }
        meta.history.push(rec);
        meta.epochs_done = epoch + 1;
        meta.optimizer_t = opt.state().0;
        progress.epoch_end(epoch + 1, mean_loss);
        let mut tensors: HashMap<String, Tensor> = model
            .params
            .vars()
            .map(|(n, v)| (format!("p/{n}"), v.as_tensor().clone()))
            .collect();
        for (n, t) in opt.state().1 {
            tensors.insert(n, t);
        }
        if let Some(b) = &best {
            for (n, t) in b {
                tensors.insert(format!("best/{n}"), t.clone());
            }
        }
        // Tensors first, then the metadata that points at them: a kill in
        // between resumes from the previous epoch's metadata and retrains
        // this epoch identically.
        mer_nn::checkpoint::save_tensors(&ckpt, &tensors).map_err(io(&ckpt))?;
        store::write_json(&meta_path, &meta).map_err(io(&meta_path))?;
        store::write_json(&fdir.join("epochs.json"), &meta.history).map_err(io(fdir))?;
    }

    if let Some(b) = &best {
        for (name, var) in model.params.vars() {
            if let Some(t) = b.get(name) {
                var.set(t)?;
            }
        }
    }
    // What components export (an LLM's LoRA adapters in PEFT's layout), as
    // the selected epoch left them.
    let params = model.tensors();
    let exports = fdir.join("adapters");
    model.export(&exports, &params).map_err(io(&exports))?;
    let test = predict(&model, data, &fold.test, cfg.batch, outputs, cache)?;
    test.preds
        .write(&fdir.join("predictions.csv"))
        .map_err(io(fdir))?;
    if !test.texts.is_empty() {
        let path = fdir.join("answers.csv");
        mer_store::write_answers(&path, &answer_rows(&test, metrics, data)).map_err(io(&path))?;
    }
    if !val.is_empty() {
        let vp = predict(&model, data, &val, cfg.batch, outputs, cache)?.preds;
        vp.write(&fdir.join("val_predictions.csv"))
            .map_err(io(fdir))?;
    }
    // A finished fold keeps the weights its predictions came from
    // (`model.safetensors`) and drops the resumable checkpoint: optimiser
    // moments and the best-epoch copy triple a large model's size on disk
    // (AU-LLM's projector: 0.8 GB a fold), and a finished fold never
    // resumes. Written before `finished`, so a kill in between only
    // repeats this step.
    let model_path = fdir.join("model.safetensors");
    mer_nn::checkpoint::save_tensors(&model_path, &params).map_err(io(&model_path))?;
    store::write_json(
        &fdir.join("status.json"),
        &FoldStatus {
            state: "finished".into(),
            epochs_done: cfg.epochs,
            epochs: cfg.epochs,
            message: None,
        },
    )
    .map_err(io(fdir))?;
    for stale in [&ckpt, &meta_path] {
        match std::fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(fdir)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Model nodes the optimiser's groups freeze (`groups = { enc = { freeze = true } }`).
/// Pretrained towers ([`mer_registry::KindBuilder::pretrained`]) that hold
/// no trainable parameter in this variant: frozen without an optimiser
/// group saying so, so their features are computed once per sample.
fn untrained_towers(graph: &GraphIr, reg: &Registry, model: &Model) -> BTreeSet<String> {
    graph
        .topo_order()
        .into_iter()
        .map(|idx| &graph.graph[idx])
        .filter(|n| n.role == Role::Component && reg.get(&n.kind).is_some_and(|k| k.pretrained))
        .filter(|n| {
            let prefix = format!("{}.", n.name);
            !model
                .params
                .vars()
                .any(|(name, _)| name.starts_with(&prefix))
        })
        .map(|n| n.name.clone())
        .collect()
}

fn frozen_nodes(oparams: &BTreeMap<String, Value>) -> BTreeSet<String> {
    match oparams.get("groups") {
        Some(Value::Map(g)) => g
            .iter()
            .filter(|(_, v)| matches!(v, Value::Map(m) if matches!(m.get("freeze"), Some(Value::Bool(true)))))
            .map(|(k, _)| k.clone())
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The first metric's aggregate on this fold's test samples (test-tuned
/// selection only); lower-is-better metrics are negated.
#[allow(clippy::too_many_arguments)]
fn test_score(
    model: &Model,
    data: &Data,
    fold: &Fold,
    batch: usize,
    outputs: &[Ref],
    metrics: &[MetricNode],
    reg: &Registry,
    cache: &mut FeatureCache,
) -> Result<Option<f64>, RunError> {
    let Some(m) = metrics.first() else {
        return Ok(None);
    };
    let p = predict(model, data, &fold.test, batch, outputs, cache)?.preds;
    let mut metric = make_metric(reg, m, data)?;
    let path = Path::new("<memory>");
    metric.update(
        &fold.name,
        &p.ids,
        &column_tensor(&p, &m.pred.name, path)?,
        &column_tensor(&p, &m.target.name, path)?,
    )?;
    let vals = metric.finish();
    let head = vals
        .iter()
        .rev()
        .find(|v| !v.name.contains('['))
        .or(vals.last());
    Ok(head
        .and_then(|v| fnum(v.pooled))
        .map(|x| if metric.higher_is_better() { x } else { -x }))
}

/// Parses `--device`: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when this
/// build has it and a GPU answers, else CPU with a note).
pub fn device(spec: &str) -> Result<(Device, Option<String>), String> {
    match spec {
        "cpu" => Ok((Device::Cpu, None)),
        "auto" => {
            if mer_registry::candle::utils::cuda_is_available() {
                match Device::new_cuda(0) {
                    Ok(d) => Ok((d, Some("device auto: using cuda:0".into()))),
                    Err(e) => Ok((
                        Device::Cpu,
                        Some(format!("device auto: CUDA failed ({e}); using the CPU")),
                    )),
                }
            } else {
                Ok((
                    Device::Cpu,
                    Some(
                        "device auto: this build has no CUDA (cargo feature `cuda`); using the CPU"
                            .into(),
                    ),
                ))
            }
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let n: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("`{s}`: expected cuda:N with N a GPU number"))?,
                None => 0,
            };
            if !mer_registry::candle::utils::cuda_is_available() {
                return Err(format!("`{s}`: this mer was built without CUDA; build one with `eval \"$(scripts/cuda-toolkit.sh)\" && cargo build --release --workspace --features cuda` (README, \"The GPU build\"), or use --device cpu or auto"));
            }
            Device::new_cuda(n)
                .map(|d| (d, None))
                .map_err(|e| format!("`{s}`: {e}"))
        }
        other => Err(format!(
            "unknown device `{other}`; expected cpu, cuda, cuda:N or auto"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::gold_words;

    #[test]
    fn gold_labels_read_as_words_per_task() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            gold_words(&[2.0], &names(&["happy", "sad", "fear"])),
            "fear"
        );
        assert_eq!(gold_words(&[1.0], &names(&["no", "yes"])), "yes");
        assert_eq!(gold_words(&[34.0], &names(&["value"])), "34");
        assert_eq!(
            gold_words(&[0.0, 1.0, 1.0], &names(&["AU1", "AU2", "AU4"])),
            "AU2, AU4"
        );
        assert_eq!(gold_words(&[0.0, 0.0], &names(&["AU1", "AU2"])), "none");
    }
}
