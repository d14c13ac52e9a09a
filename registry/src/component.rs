//! The component contract: how a kind becomes something that computes.
//!
//! A kind's [`Factory`] receives a [`BuildCtx`] (its parameters after
//! defaults, the checked types of its inputs, a seeded parameter store and
//! the device) and returns a [`Component`]. The executor calls
//! [`Component::forward`] in graph order.

use crate::rng::SeededRng;
use crate::shape::TensorType;
use crate::Value;
use candle_core::{Device, Tensor, Var};
use std::collections::BTreeMap;

/// Training or evaluation: dropout and batch norm behave differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout draws its masks from the step's RNG, and batch norm
    /// normalises with batch statistics and updates its running ones.
    Train,
    /// Evaluation and inference: dropout is the identity and batch norm uses its
    /// running statistics, so outputs depend on the inputs alone.
    Eval,
}

/// A built node of the compute graph.
///
/// `Send + Sync` so executors may hold components across threads; they are
/// immutable during forward (parameters are candle `Var`s owned by the
/// [`ParamStore`], updated in place by the optimiser).
pub trait Component: Send + Sync {
    /// Computes the output ports from the inputs, which arrive in the kind's
    /// slot order (a variadic slot contributes each of its tensors in order).
    /// `rng` drives dropout masks; it is seeded per step by the executor.
    fn forward(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        rng: &mut SeededRng,
    ) -> candle_core::Result<Vec<Tensor>>;

    /// Writes files that other tools read, after a fold has trained, into
    /// `dir` (the fold's `adapters/<node>/`, created by the component when it
    /// has something to write): an LLM's LoRA adapters in PEFT's layout, so
    /// `transformers` loads them as they are. `params` holds every trained
    /// tensor of the model, by name (`<node>.<param>`), as the selected
    /// epoch left them. The default writes nothing.
    fn export(
        &self,
        params: &std::collections::HashMap<String, Tensor>,
        dir: &std::path::Path,
    ) -> std::io::Result<()> {
        let _ = (params, dir);
        Ok(())
    }

    /// Whether this component answers in words (an LLM that generates at
    /// evaluation). Such a component always runs: its outputs are never
    /// served from the frozen-feature cache, so every answer is generated
    /// and handed over by [`Component::take_texts`]. The default: no.
    fn writes_text(&self) -> bool {
        false
    }

    /// The answers generated in the last forward pass, one per sample row
    /// of that batch, handed over once (a second call returns none). The
    /// runner stores each beside the id of its sample and the number it
    /// was read as (`answers.csv`), and the report shows some of them, so
    /// a reviewer sees what the model said, not only what a parser made of
    /// it. The default generates nothing.
    fn take_texts(&self) -> Vec<GeneratedText> {
        Vec::new()
    }

    /// Whether this component learns something from the fold's training
    /// samples before the first epoch: class prototypes from a frozen
    /// encoder's features, say. The runner then makes one pass over the
    /// fold's training samples (never its test or inner-validation ones),
    /// without augmentation, in eval mode, computing only what this
    /// component reads, and hands each batch to [`Component::fit`]. The
    /// component is built afresh for every fold, and a resumed fold fits
    /// again (the pass is deterministic), so what it learns needs no saving.
    /// The default: no.
    fn fits(&self) -> bool {
        false
    }

    /// One batch of the fit pass ([`Component::fits`]): the component's
    /// inputs, in slot order, for training samples only. Whatever it keeps
    /// lives behind interior mutability (components are shared immutably)
    /// and is data, not a parameter: nothing the optimiser sees. The order
    /// of samples is shuffled by the run's seed, the same on every run, so
    /// a component that keeps only the first N of a class keeps a seeded
    /// random subset. The default ignores the batch.
    fn fit(&self, inputs: &[Tensor]) -> candle_core::Result<()> {
        let _ = inputs;
        Ok(())
    }
}

/// One generated answer and how it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedText {
    /// The answer as generated (special tokens removed).
    pub text: String,
    /// What it was read as: a class name, or `unparseable: <reason>`.
    pub reading: String,
}

/// Input `i` of a forward call, or an error naming the kind (inputs are
/// checked before anything runs; this guards a misuse by a caller).
pub fn input<'a>(inputs: &'a [Tensor], i: usize, kind: &str) -> candle_core::Result<&'a Tensor> {
    inputs
        .get(i)
        .ok_or_else(|| candle_core::Error::Msg(format!("{kind}: missing input {}", i + 1)))
}

/// Builds a component; `Err` explains a problem with the recipe's values
/// that the schema could not express (the executor shows it at the node).
pub type Factory = fn(&mut BuildCtx) -> Result<Box<dyn Component>, BuildError>;

/// An error raised while building a component.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl From<candle_core::Error> for BuildError {
    fn from(e: candle_core::Error) -> Self {
        BuildError(e.to_string())
    }
}

/// How a new parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Every entry 0 (the usual choice for biases).
    Zeros,
    /// Every entry 1 (the usual choice for normalisation scales).
    Ones,
    /// Uniform in `[-bound, bound]`.
    Uniform(f32),
    /// Normal with this standard deviation.
    Normal(f32),
    /// PyTorch's default for linear/conv weights: U(±1/√fan_in).
    KaimingUniform {
        /// Number of inputs feeding each output unit (`in_features`, or input
        /// channels times kernel area for a convolution); 0 is treated as 1.
        fan_in: usize,
    },
}

/// Largest single parameter tensor a store creates (2³² elements, 16 GiB
/// in f32).
pub const MAX_PARAM_ELEMENTS: usize = 1 << 32;

/// Trainable parameters by full name (`node.weight`), created with
/// deterministic per-name random streams.
#[derive(Debug)]
pub struct ParamStore {
    seed: u64,
    device: Device,
    vars: BTreeMap<String, Var>,
}

impl ParamStore {
    /// An empty store; `seed` is the run seed.
    pub fn new(seed: u64, device: Device) -> Self {
        ParamStore {
            seed,
            device,
            vars: BTreeMap::new(),
        }
    }

    /// The run seed (for deterministic non-trainable initialisation).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Creates (or returns the existing) parameter `name` as f32.
    pub fn get(&mut self, name: &str, shape: &[usize], init: Init) -> candle_core::Result<Tensor> {
        if let Some(v) = self.vars.get(name) {
            if v.dims() != shape {
                candle_core::bail!(
                    "parameter `{name}` exists with shape {:?}, asked for {shape:?}",
                    v.dims()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        // An absurd size from a recipe would make the allocator abort the
        // process; refuse it as an error instead.
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_PARAM_ELEMENTS)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "parameter `{name}` of shape {shape:?} exceeds {MAX_PARAM_ELEMENTS} elements"
                ))
            })?;
        let mut rng = SeededRng::derive(self.seed, name);
        let data: Vec<f32> = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Uniform(b) => (0..n).map(|_| rng.uniform_range(-b, b)).collect(),
            Init::Normal(s) => (0..n).map(|_| rng.normal() * s).collect(),
            Init::KaimingUniform { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| rng.uniform_range(-b, b)).collect()
            }
        };
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, &self.device)?)?;
        let t = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(t)
    }

    /// Creates parameter `name` from given values (pretrained weights), as
    /// f32. An existing parameter of that name must have the same shape and
    /// is overwritten, so loading after a seeded build is also allowed.
    pub fn set(&mut self, name: &str, value: &Tensor) -> candle_core::Result<Tensor> {
        let value = value
            .to_dtype(candle_core::DType::F32)?
            .to_device(&self.device)?;
        if let Some(v) = self.vars.get(name) {
            if v.dims() != value.dims() {
                candle_core::bail!(
                    "parameter `{name}` has shape {:?}, the given weights {:?}",
                    v.dims(),
                    value.dims()
                );
            }
            v.set(&value)?;
            return Ok(v.as_tensor().clone());
        }
        let var = Var::from_tensor(&value)?;
        let t = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(t)
    }

    /// Every parameter, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

/// What a factory sees.
pub struct BuildCtx<'a> {
    /// The node's name in the recipe; parameter names are prefixed by it.
    pub node: &'a str,
    /// The kind (`nn.linear`).
    pub kind: &'a str,
    /// Parameters after defaults.
    pub params: &'a BTreeMap<String, Value>,
    /// Checked types of the inputs, in slot order.
    pub inputs: &'a [TensorType],
    /// The run's parameter store. Prefer [`BuildCtx::param`] and
    /// [`BuildCtx::param_from`], which prefix names with the node; every tensor
    /// created here is seeded by its name, trained and saved with the run.
    pub vars: &'a mut ParamStore,
}

impl BuildCtx<'_> {
    fn missing(&self, name: &str, what: &str) -> BuildError {
        BuildError(format!("`{}` needs {what} parameter `{name}`", self.kind))
    }
    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<i64, BuildError> {
        match self.params.get(name) {
            Some(Value::Int(i)) => Ok(*i),
            _ => Err(self.missing(name, "an integer")),
        }
    }
    /// A non-negative integer parameter.
    pub fn usize(&self, name: &str) -> Result<usize, BuildError> {
        usize::try_from(self.int(name)?).map_err(|_| self.missing(name, "a non-negative"))
    }
    /// A real parameter.
    pub fn float(&self, name: &str) -> Result<f64, BuildError> {
        self.params
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.missing(name, "a number"))
    }
    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Result<bool, BuildError> {
        match self.params.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(self.missing(name, "a bool")),
        }
    }
    /// A string parameter.
    pub fn str(&self, name: &str) -> Result<&str, BuildError> {
        match self.params.get(name) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(self.missing(name, "a string")),
        }
    }
    /// The known size of the last dimension of input `i` (widths flow from
    /// the producer, so recipes do not repeat them).
    pub fn input_width(&self, i: usize) -> Result<usize, BuildError> {
        self.inputs
            .get(i)
            .and_then(|t| t.last())
            .and_then(|d| d.size())
            .ok_or_else(|| {
                BuildError(format!(
                    "`{}` needs a known width on input {}",
                    self.kind,
                    i + 1
                ))
            })
    }
    /// Creates the parameter `<node>.<name>`.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, BuildError> {
        let full = format!("{}.{name}", self.node);
        Ok(self.vars.get(&full, shape, init)?)
    }
    /// Creates the parameter `<node>.<name>` from given values (pretrained
    /// weights). It stays a trainable variable; recipes freeze it with an
    /// optimiser group (`freeze = true`).
    pub fn param_from(&mut self, name: &str, value: &Tensor) -> Result<Tensor, BuildError> {
        let full = format!("{}.{name}", self.node);
        Ok(self.vars.set(&full, value)?)
    }

    /// The device to build on.
    pub fn device(&self) -> Device {
        self.vars.device().clone()
    }
}
