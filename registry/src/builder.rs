//! A builder so that declaring a kind reads like its documentation.

use crate::contracts::{DatasetFactory, MetricFactory, ProtocolFactory, VerifyFn, WriteLayoutFn};
use crate::optim::{OptimizerFactory, SchedulerFactory};
use crate::ExampleInput;
use crate::{
    Build, Example, Factory, FoldRule, InputSpec, Kind, KindSchema, ParamSpec, ParamType,
    PortCondition, PortSpec, Role, ShapeFn, Value,
};

/// Builds a [`KindSchema`]. Parameter helpers take `None` as the default to
/// mean "required".
#[derive(Debug, Clone)]
pub struct KindBuilder {
    schema: KindSchema,
    shapes: Option<ShapeFn>,
    factory: Build,
    example: Option<Example>,
    verify: Option<VerifyFn>,
    write_layout: Option<WriteLayoutFn>,
    pretrained: bool,
}

impl KindBuilder {
    /// Starts a kind with its full name (`namespace.name`) and role.
    pub fn new(name: &str, role: Role) -> Self {
        KindBuilder {
            schema: KindSchema {
                name: name.to_string(),
                role,
                doc: String::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                params: Vec::new(),
                folds: None,
            },
            shapes: None,
            factory: Build::None,
            example: None,
            verify: None,
            write_layout: None,
            pretrained: false,
        }
    }

    /// One-paragraph description shown by `mer plugins describe`.
    pub fn doc(mut self, doc: &str) -> Self {
        self.schema.doc = doc.to_string();
        self
    }

    /// A required input slot.
    pub fn input(mut self, name: &str, doc: &str) -> Self {
        self.schema.inputs.push(InputSpec {
            name: name.into(),
            variadic: false,
            optional: false,
            doc: doc.into(),
        });
        self
    }

    /// An input slot that may be left unconnected.
    pub fn optional_input(mut self, name: &str, doc: &str) -> Self {
        self.schema.inputs.push(InputSpec {
            name: name.into(),
            variadic: false,
            optional: true,
            doc: doc.into(),
        });
        self
    }

    /// A slot taking one or more inputs (`concat(a, b, c)`).
    pub fn variadic_input(mut self, name: &str, doc: &str) -> Self {
        self.schema.inputs.push(InputSpec {
            name: name.into(),
            variadic: true,
            optional: false,
            doc: doc.into(),
        });
        self
    }

    /// An output port. The first one declared is the default port.
    pub fn output(mut self, name: &str, doc: &str) -> Self {
        self.schema.outputs.push(PortSpec {
            name: name.into(),
            doc: doc.into(),
            when: None,
        });
        self
    }

    /// Makes the already declared output `port` exist only while parameter
    /// `param` equals `value`: `.port_when("flow", "flow", Value::Bool(true))`
    /// for a dataset whose `flow = false` skips computing optical flow.
    /// `mer check` then rejects a recipe that reads the port while it is
    /// off, at the reference, instead of every fold failing at run time.
    ///
    /// # Panics
    /// When no output `port` is declared yet (a mistake in the kind's
    /// declaration, seen the first time the kind is built).
    pub fn port_when(mut self, port: &str, param: &str, value: Value) -> Self {
        let Some(p) = self.schema.outputs.iter_mut().find(|p| p.name == port) else {
            panic!(
                "kind `{}`: port_when(\"{port}\") before .output(\"{port}\", ..)",
                self.schema.name
            );
        };
        p.when = Some(PortCondition {
            param: param.into(),
            equals: value,
        });
        self
    }

    /// A parameter of any type.
    pub fn param(mut self, name: &str, ty: ParamType, default: Option<Value>, doc: &str) -> Self {
        self.schema.params.push(ParamSpec {
            name: name.into(),
            ty,
            default,
            doc: doc.into(),
        });
        self
    }

    /// An integer parameter with an optional lower bound.
    pub fn int(self, name: &str, default: Option<i64>, min: Option<i64>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::Int { min, max: None },
            default.map(Value::Int),
            doc,
        )
    }

    /// A real parameter within `[min, max]` (either bound optional).
    pub fn float(
        self,
        name: &str,
        default: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        doc: &str,
    ) -> Self {
        self.param(
            name,
            ParamType::Float { min, max },
            default.map(Value::Float),
            doc,
        )
    }

    /// A boolean flag.
    pub fn bool(self, name: &str, default: bool, doc: &str) -> Self {
        self.param(name, ParamType::Bool, Some(Value::Bool(default)), doc)
    }

    /// A free string.
    pub fn string(self, name: &str, default: Option<&str>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::Str { choices: vec![] },
            default.map(|s| Value::Str(s.into())),
            doc,
        )
    }

    /// A string restricted to `choices`.
    pub fn choice(self, name: &str, choices: &[&str], default: Option<&str>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::Str {
                choices: choices.iter().map(|c| c.to_string()).collect(),
            },
            default.map(|s| Value::Str(s.into())),
            doc,
        )
    }

    /// A filesystem path (checked for existence at run time, not by `check`).
    pub fn path(self, name: &str, default: Option<&str>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::Path,
            default.map(|s| Value::Str(s.into())),
            doc,
        )
    }

    /// A list of integers.
    pub fn ints(self, name: &str, default: Option<&[i64]>, min: Option<i64>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::List(Box::new(ParamType::Int { min, max: None })),
            default.map(|d| Value::List(d.iter().map(|i| Value::Int(*i)).collect())),
            doc,
        )
    }

    /// A list of strings.
    pub fn strings(self, name: &str, default: Option<&[&str]>, doc: &str) -> Self {
        self.param(
            name,
            ParamType::List(Box::new(ParamType::Str { choices: vec![] })),
            default.map(|d| Value::List(d.iter().map(|s| Value::Str(s.to_string())).collect())),
            doc,
        )
    }

    /// How a protocol forms folds (protocols only).
    pub fn folds(mut self, rule: FoldRule) -> Self {
        self.schema.folds = Some(rule);
        self
    }

    /// How output types follow from input types (checked by `mer check`).
    pub fn shapes(mut self, f: ShapeFn) -> Self {
        self.shapes = Some(f);
        self
    }

    /// How the component is built (roles `Component` and `Loss`; used by
    /// `mer run`). A kind has one factory: the last one given wins, and the
    /// registry refuses one that does not fit the kind's role.
    pub fn factory(mut self, f: Factory) -> Self {
        self.factory = Build::Component(f);
        self
    }

    /// How the dataset is built (role `Data`).
    pub fn dataset(mut self, f: DatasetFactory) -> Self {
        self.factory = Build::Dataset(f);
        self
    }

    /// How `mer data verify ROOT --dataset <this kind>` checks a folder as
    /// distributed (role `Data`).
    pub fn verify(mut self, f: VerifyFn) -> Self {
        self.verify = Some(f);
        self
    }

    /// How `mer data synth --layout <this kind>` writes generated samples in
    /// the kind's distributed layout (role `Data`).
    pub fn write_layout(mut self, f: WriteLayoutFn) -> Self {
        self.write_layout = Some(f);
        self
    }

    /// How the metric is built (role `Metric`).
    pub fn metric(mut self, f: MetricFactory) -> Self {
        self.factory = Build::Metric(f);
        self
    }

    /// How the protocol is built (role `Protocol`).
    pub fn protocol(mut self, f: ProtocolFactory) -> Self {
        self.factory = Build::Protocol(f);
        self
    }

    /// How the optimiser's update rule is built (role `Optimizer`; start
    /// the kind with [`crate::optim::optimizer_kind`]).
    pub fn optimizer(mut self, f: OptimizerFactory) -> Self {
        self.factory = Build::Optimizer(f);
        self
    }

    /// How the learning-rate schedule is built (role `Scheduler`).
    pub fn scheduler(mut self, f: SchedulerFactory) -> Self {
        self.factory = Build::Scheduler(f);
        self
    }

    /// A runnable example: explicit parameters and input dims. Kinds with
    /// a factory and an example are gradient-checked by mer's test suite.
    pub fn example(mut self, params: &[(&str, Value)], inputs: &[&[usize]]) -> Self {
        self.example = Some(Example {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            inputs: inputs
                .iter()
                .map(|d| ExampleInput::Features(d.to_vec()))
                .collect(),
        });
        self
    }

    /// A runnable example whose inputs include fixed targets (losses and
    /// metrics): only `Features` inputs are differentiated.
    pub fn example_inputs(mut self, params: &[(&str, Value)], inputs: Vec<ExampleInput>) -> Self {
        self.example = Some(Example {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            inputs,
        });
        self
    }

    /// Marks a pretrained tower (a CLIP or SigLIP encoder, a frozen LLM
    /// body): its outputs depend only on its inputs and on the parameters
    /// it trains, never on the mode or on randomness. When a recipe trains
    /// none of its parameters, the runner treats the node as frozen without
    /// an optimiser group saying so, and caches its outputs per sample on
    /// disk across runs.
    pub fn pretrained(mut self) -> Self {
        self.pretrained = true;
        self
    }

    /// The finished kind.
    pub fn build(self) -> Kind {
        Kind {
            schema: self.schema,
            shapes: self.shapes,
            factory: self.factory,
            example: self.example,
            verify: self.verify,
            write_layout: self.write_layout,
            pretrained: self.pretrained,
        }
    }
}
