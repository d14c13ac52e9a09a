//! The executor: turns a checked graph IR into components on a device and
//! runs them in topological order.
//!
//! Data nodes are fed from outside (a batch per data node and port);
//! component and loss nodes are built through their kinds' factories with
//! the input types `mer check` inferred, so widths flow from producers.
//! Metrics are computed by the runner from the outputs, not here.

use mer_registry::candle::{DType, Device, Tensor};
use mer_registry::dsl::graph::GraphIr;
use mer_registry::dsl::schema::Role;
use mer_registry::{
    Component, Mode, ParamStore, ParamType, Registry, SeededRng, TensorType, Value,
};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, HashMap};

/// Why a graph cannot be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// A node's component or loss could not be built (unknown kind, bad
    /// parameters or input types); a graph cycle is reported with node and kind
    /// `?`.
    #[error("node `{node}` ({kind}): {message}")]
    Build {
        /// The node's name in the graph.
        node: String,
        /// The node's registered kind.
        kind: String,
        /// What the kind's factory (or the graph check) reported.
        message: String,
    },
    /// A node failed during a forward pass (a tensor operation or the component
    /// itself).
    #[error("node `{node}` ({kind}) failed: {message}")]
    Run {
        /// The failing node's name in the graph.
        node: String,
        /// The failing node's registered kind.
        kind: String,
        /// The underlying error's text.
        message: String,
    },
    /// No tensor was given for a data node's port that some node reads: `(data
    /// node, port)`.
    #[error("no batch for data node `{0}` port `{1}`")]
    MissingData(String, String),
    /// The weighted total loss was NaN or infinite; carries its value.
    #[error("the loss is {0}: training stopped")]
    NonFinite(f32),
}

struct Built {
    idx: NodeIndex,
    name: String,
    kind: String,
    role: Role,
    component: Option<Box<dyn Component>>,
    /// `(source, output position)` in input order.
    inputs: Vec<(NodeIndex, usize)>,
    weight: f64,
    /// Kind, parameters and input wiring: the node's part of a cache key.
    desc: String,
}

/// A built model: components, parameters and the order to run them.
pub struct Model {
    nodes: Vec<Built>,
    ports: HashMap<NodeIndex, Vec<String>>,
    /// Every component's trainable parameters, named `<node>.<parameter>` and
    /// initialised from the build seed: what the optimiser updates and
    /// checkpoints save.
    pub params: ParamStore,
    device: Device,
    /// Frozen nodes fed by data only (directly or through other such
    /// nodes), with the BLAKE3 of their sub-graph and weights.
    frozen: HashMap<NodeIndex, blake3::Hash>,
    /// The frozen nodes that something outside the frozen set reads: the
    /// only ones a forward pass asks the cache for.
    frontier: std::collections::HashSet<NodeIndex>,
}

/// Outputs of frozen, data-only sub-graphs per sample, keyed by the
/// sub-graph's description and weights and by the sample's input bytes, so
/// folds, epochs and variants that feed the same sample to the same frozen
/// encoder share one computation.
///
/// Frozen sub-graphs always run one sample at a time in eval mode, cache on
/// or off: a sample's features then never depend on which batch it came in
/// or which variant computed it first, and turning the cache off (for the
/// benchmark) changes the time, not the numbers.
///
/// With a folder ([`FeatureCache::persistent`], `<runs>/cache/features` for
/// `mer run`) each sample's features are also written there, one
/// safetensors file per key, and later invocations read them instead of
/// running the tower: an ablation sweep or a rerun pays for a frozen
/// encoder once. The key covers the weights files (size and modification
/// time), the sub-graph, its parameters, the device and the sample's bytes,
/// so a changed checkpoint or input is a miss, never stale features.
#[derive(Default)]
pub struct FeatureCache {
    map: HashMap<[u8; 32], Vec<Tensor>>,
    /// Off: every lookup misses and nothing is kept.
    pub disabled: bool,
    /// Samples whose features were served from the cache instead of computed.
    pub hits: u64,
    /// Of `hits`, those read from the folder (computed by an earlier run).
    pub disk_hits: u64,
    /// Samples whose frozen sub-graph was run (every sample while the cache is
    /// disabled).
    pub misses: u64,
    dir: Option<std::path::PathBuf>,
}

impl FeatureCache {
    /// A cache that also keeps features in `dir` across invocations.
    pub fn persistent(dir: std::path::PathBuf) -> FeatureCache {
        FeatureCache {
            dir: Some(dir),
            ..Default::default()
        }
    }

    fn file(&self, key: &[u8; 32]) -> Option<std::path::PathBuf> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir
            .as_ref()
            .map(|d| d.join(&hex[..2]).join(format!("{hex}.safetensors")))
    }

    /// Features an earlier run stored; anything unreadable is a miss.
    fn load(&self, key: &[u8; 32], device: &Device) -> Option<Vec<Tensor>> {
        let f = self.file(key)?;
        let mut t = mer_registry::candle::safetensors::load(&f, device).ok()?;
        (0..t.len())
            .map(|i| t.remove(&i.to_string()))
            .collect::<Option<Vec<_>>>()
    }

    /// Writes a sample's features atomically (a temporary file renamed), so
    /// concurrent runs and a crash leave whole files or none. A failure
    /// only costs the next run time.
    fn store(&self, key: &[u8; 32], outs: &[Tensor]) {
        let Some(f) = self.file(key) else { return };
        let Some(parent) = f.parent() else { return };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        let named: HashMap<String, Tensor> = outs
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), t.clone()))
            .collect();
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if mer_registry::candle::safetensors::save(&named, &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, &f);
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether no sample's features are held, as when the cache is disabled.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The result of one forward pass.
pub struct Forward {
    /// Every component's outputs, by node name.
    pub outputs: BTreeMap<String, Vec<Tensor>>,
    /// The weighted total loss, if the graph has loss terms.
    pub loss: Option<Tensor>,
    /// Each loss term's unweighted value.
    pub terms: Vec<(String, f32)>,
}

fn build_error(name: &str, kind: &str, message: impl Into<String>) -> ExecError {
    ExecError::Build {
        node: name.to_string(),
        kind: kind.to_string(),
        message: message.into(),
    }
}

/// Size and modification time of every file behind the kind's path
/// parameters (a checkpoint folder's files included): part of the feature
/// cache's key, so features of a rewritten checkpoint are never reused.
fn files_fingerprint(kind: &mer_registry::Kind, params: &BTreeMap<String, Value>) -> String {
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else if let Ok(m) = std::fs::metadata(p) {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.push(format!("{}:{}:{t}", p.display(), m.len()));
        }
    }
    let mut out = Vec::new();
    for p in &kind.schema.params {
        let is_path = matches!(&p.ty, ParamType::Path)
            || matches!(&p.ty, ParamType::Optional(t) if **t == ParamType::Path);
        if let (true, Some(Value::Str(v))) = (is_path, params.get(&p.name)) {
            walk(std::path::Path::new(v), &mut out);
        }
    }
    out.join(";")
}

impl Model {
    /// Builds every component and loss of `graph` with parameters seeded
    /// from `seed` on `device`.
    pub fn build(
        graph: &GraphIr,
        reg: &Registry,
        seed: u64,
        device: &Device,
    ) -> Result<Model, ExecError> {
        let types = reg.node_types(graph);
        let order = petgraph::algo::toposort(&graph.graph, None)
            .map_err(|_| build_error("?", "?", "the graph has a cycle"))?;
        let mut params = ParamStore::new(seed, device.clone());
        let mut nodes = Vec::new();
        let mut ports = HashMap::new();
        for idx in order {
            let n = &graph.graph[idx];
            let kind = reg.get(&n.kind).ok_or_else(|| {
                build_error(&n.name, &n.kind, "unknown kind (is its plugin loaded?)")
            })?;
            ports.insert(
                idx,
                kind.schema
                    .outputs
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>(),
            );
            let mut edges: Vec<_> = graph
                .graph
                .edges_directed(idx, petgraph::Direction::Incoming)
                .collect();
            edges.sort_by_key(|e| e.weight().position);
            let mut inputs = Vec::new();
            let mut in_types: Vec<TensorType> = Vec::new();
            for e in &edges {
                let src = e.source();
                let src_kind = reg.get(&graph.graph[src].kind).ok_or_else(|| {
                    build_error(
                        &n.name,
                        &n.kind,
                        format!("input from unknown kind `{}`", graph.graph[src].kind),
                    )
                })?;
                let pos = src_kind
                    .schema
                    .outputs
                    .iter()
                    .position(|p| p.name == e.weight().port)
                    .unwrap_or(0);
                inputs.push((src, pos));
                if let Some(t) = types.get(&src).and_then(|ts| ts.get(pos)) {
                    in_types.push(t.clone());
                }
            }
            let component = match n.role {
                Role::Component | Role::Loss => Some(
                    kind.build(&n.name, &n.params, &in_types, &mut params)
                        .map_err(|e| build_error(&n.name, &n.kind, e.0))?,
                ),
                _ => None,
            };
            nodes.push(Built {
                idx,
                name: n.name.clone(),
                kind: n.kind.clone(),
                role: n.role,
                component,
                desc: format!(
                    "{}|{}|{:?}|{}|{:?}|{:?}",
                    n.name,
                    n.kind,
                    n.params,
                    files_fingerprint(kind, &n.params),
                    device.location(),
                    edges
                        .iter()
                        .map(|e| (
                            graph.graph[e.source()].name.clone(),
                            e.weight().port.clone()
                        ))
                        .collect::<Vec<_>>()
                ),
                inputs,
                weight: n.weight.unwrap_or(1.0),
            });
        }
        Ok(Model {
            nodes,
            ports,
            params,
            device: device.clone(),
            frozen: HashMap::new(),
            frontier: Default::default(),
        })
    }

    /// Declares which model nodes the optimiser never updates. Those whose
    /// inputs are data only (directly or through other frozen nodes) become
    /// cacheable; call again after loading weights.
    pub fn set_frozen(
        &mut self,
        frozen: &std::collections::BTreeSet<String>,
    ) -> Result<(), ExecError> {
        self.frozen.clear();
        let mut sub: HashMap<NodeIndex, blake3::Hash> = HashMap::new();
        for n in &self.nodes {
            let writes_text = n.component.as_ref().is_some_and(|c| c.writes_text());
            if n.role != Role::Component || !frozen.contains(&n.name) || writes_text {
                continue;
            }
            // A node without inputs has no per-sample outputs to cache.
            let data_only = !n.inputs.is_empty()
                && n.inputs.iter().all(|(s, _)| {
                    sub.contains_key(s)
                        || self
                            .nodes
                            .iter()
                            .any(|m| m.idx == *s && m.role == Role::Data)
                });
            if !data_only {
                continue;
            }
            let mut h = blake3::Hasher::new();
            h.update(n.desc.as_bytes());
            for (s, _) in &n.inputs {
                if let Some(up) = sub.get(s) {
                    h.update(up.as_bytes());
                }
            }
            let prefix = format!("{}.", n.name);
            for (name, var) in self.params.vars() {
                if name.starts_with(&prefix) {
                    h.update(name.as_bytes());
                    let v = var
                        .as_tensor()
                        .flatten_all()
                        .and_then(|t| t.to_dtype(DType::F32))
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(|e| build_error(&n.name, &n.kind, e.to_string()))?;
                    for x in v {
                        h.update(&x.to_le_bytes());
                    }
                }
            }
            sub.insert(n.idx, h.finalize());
        }
        self.frontier = sub
            .keys()
            .copied()
            .filter(|f| {
                self.nodes
                    .iter()
                    .any(|m| !sub.contains_key(&m.idx) && m.inputs.iter().any(|(s, _)| s == f))
            })
            .collect();
        self.frozen = sub;
        Ok(())
    }

    /// Names of the cacheable (frozen, data-only) nodes.
    pub fn cacheable(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.frozen.contains_key(&n.idx))
            .map(|n| n.name.clone())
            .collect()
    }

    /// Runs every component and loss. `data[node][port]` feeds data nodes.
    pub fn forward(
        &self,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
        mode: Mode,
        rng: &mut SeededRng,
    ) -> Result<Forward, ExecError> {
        self.forward_cached(data, mode, rng, &mut FeatureCache::default())
    }

    /// The outputs of the frozen node `target` for every sample of `data`,
    /// one sample at a time, through the cache.
    fn frozen_outputs(
        &self,
        target: NodeIndex,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
        cache: &mut FeatureCache,
    ) -> Result<Vec<Tensor>, ExecError> {
        let node = self.nodes.iter().find(|n| n.idx == target);
        let (name, kind) = node
            .map(|n| (n.name.clone(), n.kind.clone()))
            .unwrap_or_default();
        let err = |e: mer_registry::candle::Error| ExecError::Run {
            node: name.clone(),
            kind: kind.clone(),
            message: e.to_string(),
        };
        let batch = data
            .values()
            .flat_map(|m| m.values())
            .find_map(|t| t.dims().first().copied())
            .unwrap_or(0);
        let sub = self
            .frozen
            .get(&target)
            .copied()
            .unwrap_or_else(|| blake3::hash(b""));
        let mut per_sample: Vec<Vec<Tensor>> = Vec::with_capacity(batch);
        for i in 0..batch {
            let mut h = blake3::Hasher::new();
            h.update(sub.as_bytes());
            let mut slice: BTreeMap<String, BTreeMap<String, Tensor>> = BTreeMap::new();
            for (dn, ports) in data {
                for (port, t) in ports {
                    if t.rank() == 0 {
                        continue;
                    }
                    let one = t.narrow(0, i, 1).map_err(err)?;
                    h.update(dn.as_bytes());
                    h.update(port.as_bytes());
                    let bytes = one
                        .flatten_all()
                        .and_then(|x| x.to_dtype(DType::F32))
                        .and_then(|x| x.to_vec1::<f32>())
                        .map_err(err)?;
                    for x in bytes {
                        h.update(&x.to_le_bytes());
                    }
                    slice
                        .entry(dn.clone())
                        .or_default()
                        .insert(port.clone(), one);
                }
            }
            let key = *h.finalize().as_bytes();
            if !cache.disabled {
                if let Some(v) = cache.map.get(&key) {
                    cache.hits += 1;
                    per_sample.push(v.clone());
                    continue;
                }
                if let Some(v) = cache.load(&key, &self.device) {
                    cache.hits += 1;
                    cache.disk_hits += 1;
                    cache.map.insert(key, v.clone());
                    per_sample.push(v);
                    continue;
                }
            }
            cache.misses += 1;
            let outs = self.run_frozen(target, &slice)?;
            if !cache.disabled {
                cache.store(&key, &outs);
                cache.map.insert(key, outs.clone());
            }
            per_sample.push(outs);
        }
        let n_out = per_sample.first().map(|v| v.len()).unwrap_or(0);
        (0..n_out)
            .map(|o| {
                let parts: Vec<Tensor> = per_sample.iter().map(|v| v[o].clone()).collect();
                Tensor::cat(&parts, 0).map_err(err)
            })
            .collect()
    }

    /// Runs `target` and its frozen ancestors on one sample, eval mode,
    /// detached.
    fn run_frozen(
        &self,
        target: NodeIndex,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
    ) -> Result<Vec<Tensor>, ExecError> {
        let mut values: HashMap<NodeIndex, Vec<Tensor>> = HashMap::new();
        let mut rng = SeededRng::new(0);
        for n in &self.nodes {
            if n.role == Role::Data {
                let ports = self.ports.get(&n.idx).cloned().unwrap_or_default();
                let outs = ports
                    .iter()
                    .map(|p| {
                        data.get(&n.name)
                            .and_then(|g| g.get(p))
                            .cloned()
                            .map_or_else(|| Tensor::zeros((), DType::F32, &self.device), Ok)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ExecError::Run {
                        node: n.name.clone(),
                        kind: n.kind.clone(),
                        message: e.to_string(),
                    })?;
                values.insert(n.idx, outs);
                continue;
            }
            if !self.frozen.contains_key(&n.idx) {
                continue;
            }
            let Some(c) = n.component.as_ref() else {
                continue;
            };
            let xs: Vec<Tensor> = n
                .inputs
                .iter()
                .map(|(s, p)| values[s][*p].clone())
                .collect();
            let outs = c
                .forward(&xs, Mode::Eval, &mut rng)
                .map_err(|e| ExecError::Run {
                    node: n.name.clone(),
                    kind: n.kind.clone(),
                    message: e.to_string(),
                })?
                .into_iter()
                .map(|t| t.detach())
                .collect::<Vec<_>>();
            let done = n.idx == target;
            values.insert(n.idx, outs);
            if done {
                break;
            }
        }
        values.remove(&target).ok_or_else(|| ExecError::Run {
            node: "?".into(),
            kind: "?".into(),
            message: "frozen node was not reached".into(),
        })
    }

    /// [`Model::forward`] with frozen data-only nodes served per sample
    /// from `cache`.
    pub fn forward_cached(
        &self,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
        mode: Mode,
        rng: &mut SeededRng,
        cache: &mut FeatureCache,
    ) -> Result<Forward, ExecError> {
        self.walk(data, mode, rng, cache, None)
    }

    /// Whether some component learns from the training samples before
    /// training ([`Component::fits`]).
    pub fn fits(&self) -> bool {
        self.fitting().next().is_some()
    }

    fn fitting(&self) -> impl Iterator<Item = &Built> {
        self.nodes
            .iter()
            .filter(|n| n.component.as_ref().is_some_and(|c| c.fits()))
    }

    /// The nodes a fit pass runs: the fitting components and everything
    /// they read, found once per fold, not per batch.
    pub fn fit_nodes(&self) -> std::collections::HashSet<NodeIndex> {
        let mut needed = std::collections::HashSet::new();
        let mut stack: Vec<NodeIndex> = self.fitting().map(|n| n.idx).collect();
        while let Some(i) = stack.pop() {
            if needed.insert(i) {
                if let Some(n) = self.nodes.iter().find(|n| n.idx == i) {
                    stack.extend(n.inputs.iter().map(|(s, _)| *s));
                }
            }
        }
        needed
    }

    /// One batch of the fit pass: computes, in eval mode, only `nodes`
    /// ([`Model::fit_nodes`]), and hands the fitting components their
    /// inputs ([`Component::fit`]); they produce no outputs here.
    pub fn fit_batch(
        &self,
        nodes: &std::collections::HashSet<NodeIndex>,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
        cache: &mut FeatureCache,
    ) -> Result<(), ExecError> {
        let mut rng = SeededRng::new(0);
        self.walk(data, Mode::Eval, &mut rng, cache, Some(nodes))
            .map(|_| ())
    }

    /// Runs the graph in order. With `fit`, only those nodes run, and the
    /// fitting ones among them take their inputs instead of computing.
    fn walk(
        &self,
        data: &BTreeMap<String, BTreeMap<String, Tensor>>,
        mode: Mode,
        rng: &mut SeededRng,
        cache: &mut FeatureCache,
        fit: Option<&std::collections::HashSet<NodeIndex>>,
    ) -> Result<Forward, ExecError> {
        let mut values: HashMap<NodeIndex, Vec<Tensor>> = HashMap::new();
        let mut outputs = BTreeMap::new();
        let mut loss: Option<Tensor> = None;
        let mut terms = Vec::new();
        for n in &self.nodes {
            let run_err = |e: mer_registry::candle::Error| ExecError::Run {
                node: n.name.clone(),
                kind: n.kind.clone(),
                message: e.to_string(),
            };
            if fit.is_some_and(|f| !f.contains(&n.idx)) {
                continue;
            }
            match n.role {
                Role::Data => {
                    let ports = self.ports.get(&n.idx).cloned().unwrap_or_default();
                    let given = data.get(&n.name);
                    let read = self.readers_of(n.idx);
                    let mut outs = Vec::with_capacity(ports.len());
                    for (pos, port) in ports.iter().enumerate() {
                        match given.and_then(|g| g.get(port)) {
                            Some(t) => outs.push(t.clone()),
                            None if read.contains(&pos) => {
                                return Err(ExecError::MissingData(n.name.clone(), port.clone()))
                            }
                            // A port nothing reads may be absent; a scalar
                            // placeholder keeps positions aligned.
                            None => outs.push(
                                Tensor::zeros((), DType::F32, &self.device).map_err(run_err)?,
                            ),
                        }
                    }
                    values.insert(n.idx, outs);
                }
                // Only the frozen frontier is computed (through the cache);
                // the frozen nodes behind it are computed as its ancestors.
                Role::Component if self.frontier.contains(&n.idx) => {
                    let outs = self.frozen_outputs(n.idx, data, cache)?;
                    outputs.insert(n.name.clone(), outs.clone());
                    values.insert(n.idx, outs);
                }
                Role::Component if self.frozen.contains_key(&n.idx) => {}
                Role::Component | Role::Loss => {
                    let Some(c) = n.component.as_ref() else {
                        continue;
                    };
                    let xs: Vec<Tensor> = n
                        .inputs
                        .iter()
                        .map(|(s, p)| values[s][*p].clone())
                        .collect();
                    if fit.is_some() && c.fits() {
                        c.fit(&xs).map_err(run_err)?;
                        continue;
                    }
                    let outs = c.forward(&xs, mode, rng).map_err(run_err)?;
                    if n.role == Role::Loss {
                        let value = outs.first().cloned().ok_or_else(|| ExecError::Run {
                            node: n.name.clone(),
                            kind: n.kind.clone(),
                            message: "a loss returned nothing".into(),
                        })?;
                        let v = value
                            .to_dtype(DType::F32)
                            .and_then(|t| t.to_scalar::<f32>())
                            .map_err(run_err)?;
                        terms.push((n.name.clone(), v));
                        let weighted = (value * n.weight).map_err(run_err)?;
                        loss = Some(match loss {
                            Some(l) => (l + weighted).map_err(run_err)?,
                            None => weighted,
                        });
                    }
                    outputs.insert(n.name.clone(), outs.clone());
                    values.insert(n.idx, outs);
                }
                _ => {}
            }
        }
        if let Some(l) = &loss {
            let v = l
                .to_dtype(DType::F32)
                .and_then(|t| t.to_scalar::<f32>())
                .unwrap_or(f32::NAN);
            if !v.is_finite() {
                return Err(ExecError::NonFinite(v));
            }
        }
        Ok(Forward {
            outputs,
            loss,
            terms,
        })
    }

    /// Output positions of `idx` that some node reads.
    fn readers_of(&self, idx: NodeIndex) -> Vec<usize> {
        self.nodes
            .iter()
            .flat_map(|n| n.inputs.iter().filter(|(s, _)| *s == idx).map(|(_, p)| *p))
            .collect()
    }

    /// Names of the model's component nodes (for optimiser groups).
    pub fn component_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Component)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Every trained tensor by name, as it is now.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params
            .vars()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// The answers generated in the last forward pass, per node that
    /// writes text ([`Component::take_texts`]).
    pub fn take_texts(&self) -> Vec<(String, Vec<mer_registry::GeneratedText>)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let c = n.component.as_ref()?;
                c.writes_text().then(|| (n.name.clone(), c.take_texts()))
            })
            .collect()
    }

    /// Lets every component write what it exports (an LLM's adapters) into
    /// `root/<node>/`, from `params` ([`Model::tensors`]).
    pub fn export(
        &self,
        root: &std::path::Path,
        params: &HashMap<String, Tensor>,
    ) -> std::io::Result<()> {
        for n in &self.nodes {
            if let Some(c) = &n.component {
                c.export(params, &root.join(&n.name))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Optimizer;
    use mer_registry::dsl::resolve::Session;
    use mer_registry::Value;

    /// The demo recipe, checked and lowered exactly as `mer check` does.
    fn demo_graph() -> (GraphIr, Registry, BTreeMap<String, Value>) {
        let reg = crate::builtin_registry();
        let mut s = Session::new();
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../recipes/demo/synth_me_3dcnn.mer"
        ));
        let fc = mer_registry::dsl::check_file(&mut s, &reg, path, &[], None);
        assert!(!s.has_errors(), "{:?}", s.diags);
        let v = fc.experiments[0].variants[0].clone();
        let opt = match v.recipe.config.get("optimizer") {
            Some(Value::Call(c)) => c.params.clone(),
            _ => panic!("optimizer"),
        };
        (v.graph, reg, opt)
    }

    fn batch(seed: u64) -> BTreeMap<String, BTreeMap<String, Tensor>> {
        let mut r = SeededRng::new(seed);
        let dev = Device::Cpu;
        let n = 8 * 6 * 32 * 32;
        let video = Tensor::from_vec(
            (0..n).map(|_| r.uniform()).collect::<Vec<f32>>(),
            (8, 1, 6, 32, 32),
            &dev,
        )
        .unwrap();
        let aus = Tensor::from_vec(
            (0..32)
                .map(|_| if r.uniform() < 0.4 { 1.0f32 } else { 0.0 })
                .collect::<Vec<f32>>(),
            (8, 4),
            &dev,
        )
        .unwrap();
        BTreeMap::from([(
            "clips".to_string(),
            BTreeMap::from([("video".to_string(), video), ("aus".to_string(), aus)]),
        )])
    }

    /// Trains the demo graph on one fixed batch; returns every step's loss.
    fn train(seed: u64, steps: usize) -> Vec<f32> {
        let (g, reg, opt_params) = demo_graph();
        let model = Model::build(&g, &reg, seed, &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(
            &reg,
            "optim.adam",
            &opt_params,
            &model.params,
            &model.component_names(),
            None,
        )
        .unwrap();
        let data = batch(11);
        let mut losses = Vec::new();
        for step in 0..steps {
            let mut rng = SeededRng::derive(seed, &format!("step{step}"));
            let f = model.forward(&data, Mode::Train, &mut rng).unwrap();
            let loss = f.loss.unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            let stats = opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
            assert!(
                stats.without_grad.is_empty(),
                "no gradient reached {:?}",
                stats.without_grad
            );
        }
        losses
    }

    #[test]
    fn the_demo_graph_trains_and_is_deterministic() {
        let a = train(1, 15);
        assert!(
            a[14] < 0.9 * a[0],
            "loss should fall on a fixed batch: {a:?}"
        );
        let b = train(1, 15);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "same seed, same numbers"
        );
        let c = train(2, 3);
        assert_ne!(a[..3], c[..], "another seed, other numbers");
    }

    #[test]
    fn a_missing_batch_port_is_named() {
        let (g, reg, _) = demo_graph();
        let model = Model::build(&g, &reg, 1, &Device::Cpu).unwrap();
        let mut data = batch(1);
        data.get_mut("clips").unwrap().remove("aus");
        match model.forward(&data, Mode::Train, &mut SeededRng::new(0)) {
            Err(ExecError::MissingData(n, p)) => {
                assert_eq!((n.as_str(), p.as_str()), ("clips", "aus"))
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn frozen_data_only_nodes_are_cached_per_sample_with_identical_numbers() {
        let (g, reg, _) = demo_graph();
        let mut model = Model::build(&g, &reg, 1, &Device::Cpu).unwrap();
        // conv1 reads data only; act1 reads conv1; conv2 is not frozen.
        let frozen: std::collections::BTreeSet<String> = ["conv1", "act1", "pool1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        model.set_frozen(&frozen).unwrap();
        assert_eq!(model.cacheable(), vec!["conv1", "act1", "pool1"]);
        let data = batch(3);
        let mut cache = FeatureCache::default();
        let mut rng = SeededRng::new(0);
        let a = model
            .forward_cached(&data, Mode::Eval, &mut rng, &mut cache)
            .unwrap();
        assert_eq!((cache.hits, cache.misses, cache.len()), (0, 8, 8));
        let b = model
            .forward_cached(&data, Mode::Eval, &mut rng, &mut cache)
            .unwrap();
        assert_eq!(
            (cache.hits, cache.misses),
            (8, 8),
            "second pass is served from the cache"
        );
        let mut off = FeatureCache {
            disabled: true,
            ..Default::default()
        };
        let c = model
            .forward_cached(&data, Mode::Eval, &mut rng, &mut off)
            .unwrap();
        let bits = |f: &Forward| {
            f.outputs["aus"][0]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(bits(&a), bits(&c), "the cache changes time, not numbers");
        // Other inputs miss; changed frozen weights change every key.
        let _ = model
            .forward_cached(&batch(4), Mode::Eval, &mut rng, &mut cache)
            .unwrap();
        assert_eq!(cache.misses, 16);
        // Gradients do not reach frozen parameters.
        let f = model
            .forward_cached(&data, Mode::Train, &mut rng, &mut cache)
            .unwrap();
        let grads = f.loss.unwrap().backward().unwrap();
        for (name, var) in model.params.vars() {
            let frozen_param = name.starts_with("conv1.");
            assert_eq!(grads.get(var.as_tensor()).is_none(), frozen_param, "{name}");
        }
    }
}
