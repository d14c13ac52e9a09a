//! What a component kind accepts: its role, inputs, output ports and
//! parameters. The registry (`mer-registry`) builds these; the checker reads
//! them through [`Catalog`] so that the language crate never depends on the
//! engine or on candle.

use crate::diag::Diagnostic;
use crate::graph::GraphIr;
use crate::source::SourceMap;
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// Where in a recipe a kind may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `data name = kind {...}`: a dataset, a source of ports.
    Data,
    /// A node of the `model` graph.
    Component,
    /// A term of `loss`.
    Loss,
    /// An entry of `metrics`.
    Metric,
    /// `optimizer`.
    Optimizer,
    /// `scheduler`.
    Scheduler,
    /// `protocol`.
    Protocol,
}

impl Role {
    pub fn describe(self) -> &'static str {
        match self {
            Role::Data => "a dataset",
            Role::Component => "a model component",
            Role::Loss => "a loss",
            Role::Metric => "a metric",
            Role::Optimizer => "an optimizer",
            Role::Scheduler => "a scheduler",
            Role::Protocol => "a protocol",
        }
    }
}

/// The type of a parameter, checked before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Bool,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// A string; when `choices` is non-empty it must be one of them.
    Str {
        choices: Vec<String>,
    },
    /// A filesystem path (a string; existence is checked at run time).
    Path,
    List(Box<ParamType>),
    /// A map whose keys are free (e.g. optimiser groups by node name).
    MapOf(Box<ParamType>),
    /// A nested record with its own fields (e.g. `lora = { rank = 16 }`).
    Record(Vec<ParamSpec>),
    /// `none` or the inner type.
    Optional(Box<ParamType>),
    /// Anything; used sparingly for pass-through settings.
    Any,
}

impl ParamType {
    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "a bool".into(),
            ParamType::Int { min, max } => format!(
                "an integer{}",
                range_text(min.map(|v| v as f64), max.map(|v| v as f64))
            ),
            ParamType::Float { min, max } => format!("a number{}", range_text(*min, *max)),
            ParamType::Str { choices } if choices.is_empty() => "a string".into(),
            ParamType::Str { choices } => format!(
                "one of {}",
                choices
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ParamType::Path => "a path string".into(),
            ParamType::List(t) => format!("a list of {}", t.describe_plural()),
            ParamType::MapOf(t) => format!("a map of {}", t.describe_plural()),
            ParamType::Record(_) => "a map".into(),
            ParamType::Optional(t) => format!("none or {}", t.describe()),
            ParamType::Any => "any value".into(),
        }
    }
    fn describe_plural(&self) -> String {
        match self {
            ParamType::Bool => "bools".into(),
            ParamType::Int { .. } => "integers".into(),
            ParamType::Float { .. } => "numbers".into(),
            ParamType::Str { .. } | ParamType::Path => "strings".into(),
            ParamType::Record(_) | ParamType::MapOf(_) => "maps".into(),
            ParamType::List(_) => "lists".into(),
            ParamType::Optional(t) => t.describe_plural(),
            ParamType::Any => "values".into(),
        }
    }
}

fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!(" in [{a}, {b}]"),
        (Some(a), None) => format!(" ≥ {a}"),
        (None, Some(b)) => format!(" ≤ {b}"),
        (None, None) => String::new(),
    }
}

/// One parameter of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: ParamType,
    /// `None` means required.
    pub default: Option<Value>,
    pub doc: String,
}

/// One input slot of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    /// Takes any number ≥ 1 of inputs (e.g. `concat`).
    pub variadic: bool,
    pub optional: bool,
    pub doc: String,
}

/// One output port of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub name: String,
    pub doc: String,
    /// The port exists only while a parameter has a given value (the `flow`
    /// port of a dataset whose `flow = false` turns the computation off);
    /// `None`: always. `mer check` rejects a read of a disabled port, which
    /// would otherwise fail every fold at run time.
    pub when: Option<PortCondition>,
}

/// The parameter value a conditional port needs (see [`PortSpec::when`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PortCondition {
    /// A parameter of the same kind.
    pub param: String,
    /// The value under which the port exists.
    pub equals: Value,
}

impl PortSpec {
    /// Whether the port exists under these parameters. A parameter that is
    /// not set takes the kind's default (`params` of a checked recipe
    /// already hold every default).
    pub fn enabled(
        &self,
        params: &std::collections::BTreeMap<String, Value>,
        kind: &KindSchema,
    ) -> bool {
        let Some(c) = &self.when else { return true };
        let current = params
            .get(&c.param)
            .or_else(|| kind.param(&c.param).and_then(|p| p.default.as_ref()));
        current.is_none_or(|v| *v == c.equals)
    }
}

/// How a protocol splits data into folds, so `mer plan` can count runs
/// before any data is read.
#[derive(Debug, Clone, PartialEq)]
pub enum FoldRule {
    /// A fixed number of folds.
    Fixed(usize),
    /// The number of folds is the integer parameter of this name.
    FromParam(String),
    /// One fold per distinct value of a data column (e.g. LOSO): known only
    /// once the dataset is indexed.
    PerGroup(String),
}

/// Everything the checker needs to know about one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSchema {
    /// Full name with namespace, e.g. `nn.linear`.
    pub name: String,
    pub role: Role,
    pub doc: String,
    pub inputs: Vec<InputSpec>,
    /// Output ports; the first one is the default when a recipe names the
    /// node without a port.
    pub outputs: Vec<PortSpec>,
    pub params: Vec<ParamSpec>,
    pub folds: Option<FoldRule>,
}

impl KindSchema {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
    pub fn default_port(&self) -> Option<&str> {
        self.outputs.first().map(|p| p.name.as_str())
    }
}

/// Whether a namespace can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Part of mer itself (`nn`, `loss`, ...).
    Builtin,
    /// Supplied by a plugin that is loaded.
    Plugin,
    /// Not known at all.
    Unknown,
}

/// The checker's view of the registry.
pub trait Catalog {
    fn kind(&self, name: &str) -> Option<&KindSchema>;
    /// All kind names, for "did you mean".
    fn kind_names(&self) -> Vec<&str>;
    fn namespace(&self, ns: &str) -> Namespace;
    /// Names of plugin namespaces that `use` may load.
    fn plugin_names(&self) -> Vec<String>;
    /// Why plugin `name` could not be loaded, if a load was attempted.
    fn plugin_problem(&self, _name: &str) -> Option<String> {
        None
    }
    /// Shape and dtype inference over the lowered graph. The registry fills
    /// this in from component signatures; the default checks nothing.
    fn check_shapes(&self, _graph: &GraphIr, _sources: &SourceMap) -> Vec<Diagnostic> {
        Vec::new()
    }
}
