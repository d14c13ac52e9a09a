//! Symbolic tensor types, so `mer check` can follow every port's shape and
//! meaning through the graph without loading a weight or running an op.
//!
//! A dimension is either a known size or a symbol (`B` for the batch, `T`
//! for time, `D_llm` for a width only the weights know). Each kind's
//! [`ShapeFn`] maps its input types to its output types, or explains why it
//! cannot; the registry runs them in graph order.

use crate::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One dimension of a symbolic shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Known at check time.
    Size(usize),
    /// Known only at run time (the batch `B`) or from weights (`D_llm`).
    Sym(String),
}

impl Dim {
    /// A symbolic dimension.
    pub fn sym(s: &str) -> Dim {
        Dim::Sym(s.to_string())
    }
    /// The size, if known.
    pub fn size(&self) -> Option<usize> {
        match self {
            Dim::Size(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
    /// Product of two dimensions; symbolic if either is.
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Size(a), Dim::Size(b)) => Dim::Size(a * b),
            (Dim::Size(1), d) | (d, Dim::Size(1)) => d.clone(),
            (a, b) => Dim::Sym(format!("{a}·{b}")),
        }
    }
    /// Sum of two dimensions; symbolic if either is.
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Size(a), Dim::Size(b)) => Dim::Size(a + b),
            (a, b) => Dim::Sym(format!("{a}+{b}")),
        }
    }
    /// Whether two dimensions can be the same at run time: equal sizes, or
    /// at least one symbol.
    pub fn compatible(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Size(a), Dim::Size(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Size(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// Element type of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit floats: features, images, scores and multi-label targets.
    F32,
    /// 64-bit integers, such as class indices.
    I64,
    /// Generated or tokenised text, not a numeric tensor.
    Text,
}

/// What a port's values mean; losses and metrics check their targets by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Semantic {
    /// Clips `[B, C, T, H, W]`.
    Video,
    /// Images `[B, C, H, W]`.
    Image,
    /// Optical flow `[B, 2, H, W]`.
    Flow,
    /// Landmark coordinates.
    Landmarks,
    /// Face boxes.
    Boxes,
    /// A token sequence `[B, N, D]`.
    Tokens,
    /// Learned features (any layout).
    Features,
    /// Multi-label 0/1 targets `[B, K]` (AUs).
    MultiLabel,
    /// Class indices `[B]`, with the number of classes when known.
    ClassIndex {
        /// How many classes, when the data says.
        classes: Option<usize>,
    },
    /// Group ids (subjects) used by protocols.
    GroupId,
    /// A scalar (losses).
    Scalar,
}

impl Semantic {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Semantic::Video => "video".into(),
            Semantic::Image => "images".into(),
            Semantic::Flow => "optical flow".into(),
            Semantic::Landmarks => "landmarks".into(),
            Semantic::Boxes => "face boxes".into(),
            Semantic::Tokens => "tokens".into(),
            Semantic::Features => "features".into(),
            Semantic::MultiLabel => "multi-label targets".into(),
            Semantic::ClassIndex { classes: Some(n) } => format!("class indices ({n} classes)"),
            Semantic::ClassIndex { classes: None } => "class indices".into(),
            Semantic::GroupId => "group ids".into(),
            Semantic::Scalar => "a scalar".into(),
        }
    }
}

/// The checked type of a port.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    /// The dimensions, batch first where the port has one; each a known size
    /// or a symbol.
    pub dims: Vec<Dim>,
    /// The element type the port carries at run time.
    pub dtype: DType,
    /// What the values mean; losses and metrics check their targets by it.
    pub semantic: Semantic,
}

impl TensorType {
    /// A float tensor of the given dims and meaning.
    pub fn f32(dims: Vec<Dim>, semantic: Semantic) -> Self {
        TensorType {
            dims,
            dtype: DType::F32,
            semantic,
        }
    }
    /// Float features `[dims...]`.
    pub fn features(dims: Vec<Dim>) -> Self {
        Self::f32(dims, Semantic::Features)
    }
    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// The last dimension, if any.
    pub fn last(&self) -> Option<&Dim> {
        self.dims.last()
    }
    /// Product of all dimensions after the batch one, if all are known.
    pub fn per_sample(&self) -> Option<usize> {
        self.dims.iter().skip(1).map(Dim::size).product()
    }
    /// The same type with another last dimension.
    pub fn with_last(&self, d: Dim) -> Self {
        let mut t = self.clone();
        if let Some(l) = t.dims.last_mut() {
            *l = d;
        }
        t.semantic = Semantic::Features;
        t
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Everything a shape function may look at.
#[derive(Debug)]
pub struct ShapeCtx<'a> {
    /// The node's kind (`nn.linear`), for messages.
    pub kind: &'a str,
    /// The node's parameters after defaults; read them with the typed getters
    /// such as [`ShapeCtx::int`].
    pub params: &'a BTreeMap<String, Value>,
    /// Input types in slot order (a variadic slot contributes each input).
    pub inputs: &'a [TensorType],
    /// For each input, the reference that feeds it (`cnn.mid`), for messages.
    pub sources: &'a [String],
}

impl ShapeCtx<'_> {
    /// An integer parameter (after defaults).
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.params.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    /// A size parameter (non-negative integer).
    pub fn usize(&self, name: &str) -> Option<usize> {
        self.int(name).and_then(|i| usize::try_from(i).ok())
    }
    /// A list of integers.
    pub fn ints(&self, name: &str) -> Vec<i64> {
        match self.params.get(name) {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
    /// A string parameter.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.params.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    /// A bool parameter.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.params.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    /// Input `i`, or an error naming the slot.
    pub fn input(&self, i: usize) -> Result<&TensorType, ShapeError> {
        self.inputs
            .get(i)
            .ok_or_else(|| ShapeError::new(format!("`{}` is missing input {}", self.kind, i + 1)))
    }
    /// The reference feeding input `i`, for messages.
    pub fn source(&self, i: usize) -> &str {
        self.sources.get(i).map(String::as_str).unwrap_or("?")
    }
    /// Requires input `i` to have `rank` dimensions; `layout` names them.
    pub fn expect_rank(
        &self,
        i: usize,
        rank: usize,
        layout: &str,
    ) -> Result<&TensorType, ShapeError> {
        let t = self.input(i)?;
        if t.rank() != rank {
            return Err(ShapeError::new(format!(
                "`{}` expects {layout} ({rank} dims), but `{}` is {t} ({} dims)",
                self.kind,
                self.source(i),
                t.rank()
            ))
            .at_input(i));
        }
        Ok(t)
    }
}

/// Why a kind cannot accept its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeError {
    /// What is wrong, in words; the headline of the `mer check` diagnostic.
    pub message: String,
    /// The input to point at, when one is to blame.
    pub input: Option<usize>,
    /// An optional hint on how to fix the recipe, shown as the diagnostic's
    /// help.
    pub help: Option<String>,
}

impl ShapeError {
    /// An error about the node as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        ShapeError {
            message: message.into(),
            input: None,
            help: None,
        }
    }
    /// Blames input `i`.
    pub fn at_input(mut self, i: usize) -> Self {
        self.input = Some(i);
        self
    }
    /// Adds a hint.
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

/// Maps a kind's input types to its output types (one per output port, in
/// declaration order).
pub type ShapeFn = fn(&ShapeCtx) -> Result<Vec<TensorType>, ShapeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_compose() {
        let b = Dim::sym("B");
        assert_eq!(Dim::Size(3).mul(&Dim::Size(4)), Dim::Size(12));
        assert_eq!(Dim::Size(1).mul(&b), b);
        assert!(b.compatible(&Dim::Size(7)));
        assert!(!Dim::Size(3).compatible(&Dim::Size(4)));
        let t = TensorType::features(vec![b, Dim::Size(2), Dim::Size(5)]);
        assert_eq!(t.per_sample(), Some(10));
        assert_eq!(t.to_string(), "[B, 2, 5]");
    }
}
