//! # mer-registry: the SDK every component is written against
//!
//! A *kind* is a named thing a recipe can instantiate: a dataset
//! (`me.casme2`), a model component (`nn.linear`, `au_llm.efp`), a loss, a
//! metric, an optimiser, a scheduler or an evaluation protocol. Each kind
//! declares a [`KindSchema`]: its [`Role`], its inputs, its output ports and
//! its parameters with types, ranges, defaults and docs.
//!
//! `mer check` reads only these schemas, so a recipe is validated, with
//! "did you mean" suggestions and `file:line:col` carets, before any weight
//! is loaded or any tensor is allocated.
//!
//! Kinds live in namespaces (`nn`, `loss`, `au_llm`, ...). mer's own kinds
//! are registered under builtin namespaces; a plugin registers its kinds
//! under its own namespace, which recipes enable with `use NAME`.
//!
//! ```
//! use mer_registry::{Registry, KindBuilder, Role};
//!
//! let mut reg = Registry::new();
//! reg.add_builtin(
//!     KindBuilder::new("nn.linear", Role::Component)
//!         .doc("Affine map over the last dimension.")
//!         .input("x", "features [.., D]")
//!         .output("out", "features [.., out]")
//!         .int("out", None, Some(1), "Output width.")
//!         .bool("bias", true, "Learn an additive bias.")
//!         .build(),
//! ).unwrap();
//! assert!(reg.kind_schema("nn.linear").is_some());
//! ```
//!
//! Plugins declare themselves with [`export_plugin!`] and are loaded by
//! [`Registry::load_plugin`] after a handshake ([`plugin`], [`loader`]).
//! Components are built by a kind's [`Factory`] ([`component`]); shapes are
//! inferred by its [`ShapeFn`] ([`shape`]).

#![warn(missing_docs)]

pub use mer_dsl::schema::{
    Catalog, FoldRule, InputSpec, KindSchema, Namespace, ParamSpec, ParamType, PortCondition,
    PortSpec, Role,
};
pub use mer_dsl::value::Value;

/// The one copy of candle in the process. Plugins and the engine use these
/// re-exports, never a candle dependency of their own.
pub use candle_core as candle;
pub use candle_nn;
/// candle's ready-made models, with the SDK's `transformers` feature (off
/// by default: nothing in mer needs them, and they cost a minute of every
/// build).
#[cfg(feature = "transformers")]
pub use candle_transformers;
/// The recipe language (spans, diagnostics, graph IR), for tools built on mer.
pub use mer_dsl as dsl;

mod builder;
pub mod component;
pub mod contracts;
mod describe;
pub mod gradcheck;
pub mod layers;
pub mod loader;
pub mod optim;
pub mod params;
pub mod plugin;
pub mod rng;
pub mod scaffold;
pub mod shape;
mod shapecheck;
pub mod weights;

pub use builder::KindBuilder;
pub use component::{
    BuildCtx, BuildError, Component, Factory, GeneratedText, Init, Mode, ParamStore,
};
pub use contracts::{
    verify_folds, Batch, DataError, Dataset, Fold, LayoutRequest, Metric, MetricValue, Protocol,
    SampleMeta, VerifyFn, WriteLayoutFn,
};
pub use describe::{describe_kind, describe_params};
pub use loader::PluginError;
pub use optim::{OptimizerFactory, ScheduleRule, SchedulerFactory, StepCtx, UpdateRule};
pub use params::Params;
pub use rng::SeededRng;
pub use shape::{DType, Dim, Semantic, ShapeCtx, ShapeError, ShapeFn, TensorType};

use std::collections::{BTreeMap, BTreeSet};

/// Errors raised while registering kinds.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    /// Two registrations of the same full kind name.
    #[error("kind `{0}` is registered twice")]
    Duplicate(String),
    /// A kind name must be `namespace.name` with identifier segments.
    #[error("kind name `{0}` is not of the form `namespace.name`")]
    BadName(String),
    /// A plugin tried to register a kind outside its own namespace.
    #[error("plugin `{plugin}` may only register kinds under `{plugin}.`, not `{kind}`")]
    ForeignNamespace {
        /// The plugin's namespace.
        plugin: String,
        /// The kind it tried to register.
        kind: String,
    },
    /// A plugin's namespace collides with a builtin one.
    #[error("plugin `{0}` would shadow the builtin namespace of the same name")]
    BuiltinNamespace(String),
    /// A kind's factory does not build what its role needs (a metric
    /// declared with `.optimizer(..)`).
    #[error("kind `{kind}` is {role} but its factory builds {builds}")]
    WrongFactory {
        /// The kind.
        kind: String,
        /// Its role, in words.
        role: &'static str,
        /// What its factory builds, in words.
        builds: &'static str,
    },
}

/// Metadata of a loaded plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The namespace the plugin owns (its `use` name).
    pub name: String,
    /// The plugin crate's version as it declares it (`CARGO_PKG_VERSION` under
    /// [`export_plugin!`]); shown to users, never compared when loading.
    pub version: String,
}

/// A kind: its schema (what `mer check` validates), its shape function
/// (what `mer check` infers), and its factory (what `mer run` builds).
#[derive(Debug, Clone)]
pub struct Kind {
    /// Name, role, inputs, ports and parameters.
    pub schema: KindSchema,
    /// Output types from input types; `None` leaves outputs unchecked.
    pub shapes: Option<ShapeFn>,
    /// What `mer run` builds from the kind, one variant per role.
    pub factory: Build,
    /// A small runnable example (parameters, input dims) used by the
    /// gradient-check suite and shown by `mer plugins describe`.
    pub example: Option<Example>,
    /// A dataset kind's `mer data verify` check of a folder as distributed.
    pub verify: Option<contracts::VerifyFn>,
    /// A dataset kind's `mer data synth` writer of generated samples in its
    /// distributed layout.
    pub write_layout: Option<contracts::WriteLayoutFn>,
    /// A pretrained tower whose outputs depend only on its inputs and the
    /// parameters it trains (see [`KindBuilder::pretrained`]).
    pub pretrained: bool,
}

/// A kind's factory: one variant per role, so a kind builds exactly what
/// its role needs (checked when it is registered).
#[derive(Debug, Clone, Copy)]
pub enum Build {
    /// Nothing to run: `mer check` validates the kind, `mer run` refuses it.
    None,
    /// A model component or a loss (roles `Component`, `Loss`).
    Component(Factory),
    /// A dataset (role `Data`).
    Dataset(contracts::DatasetFactory),
    /// A metric (role `Metric`).
    Metric(contracts::MetricFactory),
    /// An evaluation protocol (role `Protocol`).
    Protocol(contracts::ProtocolFactory),
    /// An optimiser's update rule (role `Optimizer`).
    Optimizer(optim::OptimizerFactory),
    /// A learning-rate schedule (role `Scheduler`).
    Scheduler(optim::SchedulerFactory),
}

impl Build {
    /// Whether there is nothing to build.
    pub fn is_none(&self) -> bool {
        matches!(self, Build::None)
    }

    /// What this factory builds, in words (for messages).
    pub fn describe(&self) -> &'static str {
        match self {
            Build::None => "nothing",
            Build::Component(_) => "a component",
            Build::Dataset(_) => "a dataset",
            Build::Metric(_) => "a metric",
            Build::Protocol(_) => "a protocol",
            Build::Optimizer(_) => "an optimizer",
            Build::Scheduler(_) => "a scheduler",
        }
    }

    /// Whether this factory builds what a kind of `role` needs.
    pub fn fits(&self, role: Role) -> bool {
        matches!(
            (self, role),
            (Build::None, _)
                | (Build::Component(_), Role::Component | Role::Loss)
                | (Build::Dataset(_), Role::Data)
                | (Build::Metric(_), Role::Metric)
                | (Build::Protocol(_), Role::Protocol)
                | (Build::Optimizer(_), Role::Optimizer)
                | (Build::Scheduler(_), Role::Scheduler)
        )
    }

    /// The component factory, if this is one.
    pub fn component(&self) -> Option<Factory> {
        match *self {
            Build::Component(f) => Some(f),
            _ => None,
        }
    }

    /// The dataset factory, if this is one.
    pub fn dataset(&self) -> Option<contracts::DatasetFactory> {
        match *self {
            Build::Dataset(f) => Some(f),
            _ => None,
        }
    }

    /// The metric factory, if this is one.
    pub fn metric(&self) -> Option<contracts::MetricFactory> {
        match *self {
            Build::Metric(f) => Some(f),
            _ => None,
        }
    }

    /// The protocol factory, if this is one.
    pub fn protocol(&self) -> Option<contracts::ProtocolFactory> {
        match *self {
            Build::Protocol(f) => Some(f),
            _ => None,
        }
    }

    /// The optimiser factory, if this is one.
    pub fn optimizer(&self) -> Option<optim::OptimizerFactory> {
        match *self {
            Build::Optimizer(f) => Some(f),
            _ => None,
        }
    }

    /// The scheduler factory, if this is one.
    pub fn scheduler(&self) -> Option<optim::SchedulerFactory> {
        match *self {
            Build::Scheduler(f) => Some(f),
            _ => None,
        }
    }
}

/// A runnable example of a component kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Parameters set explicitly (the rest take their defaults).
    pub params: Vec<(String, Value)>,
    /// One entry per input.
    pub inputs: Vec<ExampleInput>,
}

/// One input of an [`Example`].
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleInput {
    /// Random normal floats; differentiated and checked.
    Features(Vec<usize>),
    /// Class indices in `0..classes` (i64); fixed, not differentiated.
    ClassIndex {
        /// The tensor's dimensions.
        dims: Vec<usize>,
        /// Indices are drawn from `0..classes`.
        classes: usize,
    },
    /// Random 0/1 targets (f32); fixed, not differentiated.
    Binary(Vec<usize>),
    /// Random normal floats the kind reads but never differentiates:
    /// features from a frozen encoder that a component learns statistics
    /// from (class prototypes). Fixed, not checked.
    Fixed(Vec<usize>),
}

impl ExampleInput {
    /// The dims of this input.
    pub fn dims(&self) -> &[usize] {
        match self {
            ExampleInput::Features(d) | ExampleInput::Binary(d) | ExampleInput::Fixed(d) => d,
            ExampleInput::ClassIndex { dims, .. } => dims,
        }
    }
}

impl Kind {
    /// `params` with the schema's defaults filled in where absent (also
    /// inside records), as `mer check` leaves a recipe's parameters.
    pub fn with_defaults(&self, params: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
        params::fill_defaults(&self.schema.params, params)
    }

    /// The example's parameters with every default filled in.
    pub fn example_params(&self) -> Option<BTreeMap<String, Value>> {
        let ex = self.example.as_ref()?;
        let mut m: BTreeMap<String, Value> = ex.params.iter().cloned().collect();
        for p in &self.schema.params {
            if !m.contains_key(&p.name) {
                m.insert(p.name.clone(), p.default.clone()?);
            }
        }
        Some(m)
    }
}

impl Kind {
    /// Builds this kind as node `node` with `params` (defaults already
    /// filled) for inputs of the given types, creating its parameters in
    /// `store`. Fails if the kind has no factory or the factory refuses.
    pub fn build(
        &self,
        node: &str,
        params: &BTreeMap<String, Value>,
        inputs: &[TensorType],
        store: &mut ParamStore,
    ) -> Result<Box<dyn Component>, BuildError> {
        let factory = self.factory.component().ok_or_else(|| {
            BuildError(format!(
                "`{}` has no factory (nothing to run)",
                self.schema.name
            ))
        })?;
        // Factories may rely on the schema (ranges, choices): callers that
        // did not go through `mer check` are held to it here.
        validate_params(&self.schema, params)?;
        let mut ctx = BuildCtx {
            node,
            kind: &self.schema.name,
            params,
            inputs,
            vars: store,
        };
        factory(&mut ctx)
    }
}

/// Checks `params` against a kind's schema: every parameter present, of
/// its type, in its range or among its choices.
pub fn validate_params(
    schema: &KindSchema,
    params: &BTreeMap<String, Value>,
) -> Result<(), BuildError> {
    for spec in &schema.params {
        let v = params
            .get(&spec.name)
            .ok_or_else(|| BuildError(format!("`{}` needs `{}`", schema.name, spec.name)))?;
        check_value(&spec.ty, v)
            .map_err(|why| BuildError(format!("`{}.{}`: {why}", schema.name, spec.name)))?;
    }
    Ok(())
}

fn check_value(ty: &ParamType, v: &Value) -> Result<(), String> {
    let bad = || Err(format!("expected {}, got {v}", ty.describe()));
    match (ty, v) {
        (ParamType::Any, _) => Ok(()),
        (ParamType::Optional(_), Value::None) => Ok(()),
        (ParamType::Optional(t), v) => check_value(t, v),
        (ParamType::Bool, Value::Bool(_)) => Ok(()),
        (ParamType::Int { min, max }, Value::Int(i)) => {
            if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) {
                bad()
            } else {
                Ok(())
            }
        }
        (ParamType::Float { min, max }, Value::Int(_) | Value::Float(_)) => {
            let x = v.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() || min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                bad()
            } else {
                Ok(())
            }
        }
        (ParamType::Str { choices }, Value::Str(s)) => {
            if choices.is_empty() || choices.contains(s) {
                Ok(())
            } else {
                bad()
            }
        }
        (ParamType::Path, Value::Str(_)) => Ok(()),
        (ParamType::List(t), Value::List(items)) => {
            items.iter().try_for_each(|x| check_value(t, x))
        }
        (ParamType::MapOf(t), Value::Map(m)) => m.values().try_for_each(|x| check_value(t, x)),
        (ParamType::Record(specs), Value::Map(m)) => {
            specs.iter().try_for_each(|s| match m.get(&s.name) {
                Some(x) => check_value(&s.ty, x).map_err(|e| format!("{}: {e}", s.name)),
                None if s.default.is_some() => Ok(()),
                None => Err(format!("missing `{}`", s.name)),
            })
        }
        _ => bad(),
    }
}

/// All kinds known to this process, by full name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Kind>,
    builtin_namespaces: BTreeSet<String>,
    plugins: BTreeMap<String, PluginInfo>,
    /// Why a `use`d plugin could not be loaded, by name.
    failures: BTreeMap<String, String>,
    /// Plugin libraries on the search path, scanned once per registry.
    found: std::sync::OnceLock<Vec<String>>,
}

fn valid_segment(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn check_name(name: &str) -> Result<String, RegistryError> {
    let mut parts = name.split('.');
    let ns = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    if !valid_segment(ns) || rest.is_empty() || !rest.iter().all(|s| valid_segment(s)) {
        return Err(RegistryError::BadName(name.to_string()));
    }
    Ok(ns.to_string())
}

fn check_factory(kind: &Kind) -> Result<(), RegistryError> {
    let data_tools = kind.verify.is_some() || kind.write_layout.is_some();
    if data_tools && kind.schema.role != Role::Data {
        return Err(RegistryError::WrongFactory {
            kind: kind.schema.name.clone(),
            role: kind.schema.role.describe(),
            builds: "a dataset verifier or layout writer",
        });
    }
    if kind.factory.fits(kind.schema.role) {
        Ok(())
    } else {
        Err(RegistryError::WrongFactory {
            kind: kind.schema.name.clone(),
            role: kind.schema.role.describe(),
            builds: kind.factory.describe(),
        })
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one of mer's own kinds. Its namespace becomes builtin.
    pub fn add_builtin(&mut self, kind: Kind) -> Result<(), RegistryError> {
        let ns = check_name(&kind.schema.name)?;
        check_factory(&kind)?;
        if self.kinds.contains_key(&kind.schema.name) {
            return Err(RegistryError::Duplicate(kind.schema.name));
        }
        self.builtin_namespaces.insert(ns);
        self.kinds.insert(kind.schema.name.clone(), kind);
        Ok(())
    }

    /// Registers a plugin and its kinds, all of which must live under the
    /// plugin's own namespace so two plugins can never collide.
    pub fn add_plugin(&mut self, info: PluginInfo, kinds: Vec<Kind>) -> Result<(), RegistryError> {
        if self.builtin_namespaces.contains(&info.name) {
            return Err(RegistryError::BuiltinNamespace(info.name));
        }
        for k in &kinds {
            let ns = check_name(&k.schema.name)?;
            check_factory(k)?;
            if ns != info.name {
                return Err(RegistryError::ForeignNamespace {
                    plugin: info.name.clone(),
                    kind: k.schema.name.clone(),
                });
            }
            if self.kinds.contains_key(&k.schema.name) {
                return Err(RegistryError::Duplicate(k.schema.name.clone()));
            }
        }
        for k in kinds {
            self.kinds.insert(k.schema.name.clone(), k);
        }
        self.failures.remove(&info.name);
        self.plugins.insert(info.name.clone(), info);
        Ok(())
    }

    /// Links a plugin statically (its crate is a dependency): same checks as
    /// a dynamic load, no library involved.
    pub fn add_static_plugin(
        &mut self,
        name: &str,
        version: &str,
        register: fn(&mut dyn plugin::Registrar),
    ) -> Result<(), RegistryError> {
        struct Collect(Vec<Kind>);
        impl plugin::Registrar for Collect {
            fn kind(&mut self, kind: Kind) {
                self.0.push(kind);
            }
            fn fail(&mut self, _message: String) {}
        }
        let mut c = Collect(Vec::new());
        register(&mut c);
        self.add_plugin(
            PluginInfo {
                name: name.into(),
                version: version.into(),
            },
            c.0,
        )
    }

    /// Loads plugin `name` from the search path (see [`loader`]). A failure
    /// is remembered so `mer check` can show it at the `use` line.
    pub fn load_plugin(&mut self, name: &str) -> Result<PluginInfo, PluginError> {
        if let Some(p) = self.plugins.get(name) {
            return Ok(p.clone());
        }
        let result = loader::find(name).and_then(|path| loader::load(&path, name, self));
        if let Err(e) = &result {
            self.failures.insert(name.to_string(), e.to_string());
        }
        result
    }

    /// Loads the library at `path` as plugin `name`.
    pub fn load_plugin_from(
        &mut self,
        path: &std::path::Path,
        name: &str,
    ) -> Result<PluginInfo, PluginError> {
        loader::load(path, name, self)
    }

    /// The schema of a kind by full name.
    pub fn kind_schema(&self, name: &str) -> Option<&KindSchema> {
        self.kinds.get(name).map(|k| &k.schema)
    }

    /// A kind by full name.
    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    /// Every kind's schema, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &KindSchema> {
        self.kinds.values().map(|k| &k.schema)
    }

    /// Loaded plugins, sorted by name.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.values()
    }
}

impl Catalog for Registry {
    fn kind(&self, name: &str) -> Option<&KindSchema> {
        self.kinds.get(name).map(|k| &k.schema)
    }
    fn kind_names(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }
    fn namespace(&self, ns: &str) -> Namespace {
        if self.plugins.contains_key(ns) {
            Namespace::Plugin
        } else if self.builtin_namespaces.contains(ns) {
            Namespace::Builtin
        } else {
            Namespace::Unknown
        }
    }
    fn plugin_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.plugins.keys().cloned().collect();
        v.extend(
            self.found
                .get_or_init(|| loader::available(&loader::search_path()))
                .iter()
                .cloned(),
        );
        v.sort();
        v.dedup();
        v
    }
    fn plugin_problem(&self, name: &str) -> Option<String> {
        self.failures.get(name).cloned()
    }
    fn check_shapes(
        &self,
        graph: &mer_dsl::graph::GraphIr,
        sources: &mer_dsl::source::SourceMap,
    ) -> Vec<mer_dsl::diag::Diagnostic> {
        shapecheck::check(self, graph, sources).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Kind {
        KindBuilder::new(name, Role::Component)
            .output("out", "")
            .build()
    }

    #[test]
    fn rejects_duplicates_and_bad_names() {
        let mut r = Registry::new();
        r.add_builtin(k("nn.linear")).unwrap();
        assert_eq!(
            r.add_builtin(k("nn.linear")),
            Err(RegistryError::Duplicate("nn.linear".into()))
        );
        assert!(matches!(
            r.add_builtin(k("linear")),
            Err(RegistryError::BadName(_))
        ));
        assert!(matches!(
            r.add_builtin(k("nn.9x")),
            Err(RegistryError::BadName(_))
        ));
    }

    #[test]
    fn a_factory_must_fit_the_role() {
        fn m(_: &BTreeMap<String, Value>) -> Result<Box<dyn Metric>, BuildError> {
            Err(BuildError("unused".into()))
        }
        let mut r = Registry::new();
        let bad = KindBuilder::new("optim.odd", Role::Optimizer)
            .metric(m)
            .build();
        assert!(matches!(
            r.add_builtin(bad),
            Err(RegistryError::WrongFactory { .. })
        ));
        let ok = KindBuilder::new("metric.odd", Role::Metric)
            .metric(m)
            .build();
        r.add_builtin(ok).unwrap();
        assert!(r.get("metric.odd").unwrap().factory.metric().is_some());
        assert!(r.get("metric.odd").unwrap().factory.optimizer().is_none());
    }

    #[test]
    fn plugins_own_their_namespace() {
        let mut r = Registry::new();
        let info = PluginInfo {
            name: "au_llm".into(),
            version: "0.1.0".into(),
        };
        assert!(matches!(
            r.add_plugin(info.clone(), vec![k("nn.evil")]),
            Err(RegistryError::ForeignNamespace { .. })
        ));
        r.add_plugin(info, vec![k("au_llm.efp")]).unwrap();
        assert_eq!(r.namespace("au_llm"), Namespace::Plugin);
        assert_eq!(r.namespace("nn"), Namespace::Unknown);
    }
}
