//! The recipe AST: what one file says, with a span on every node.
//!
//! The AST is deliberately close to the text: statements keep their dotted
//! paths and their order, so that resolution can report duplicates and
//! provenance against the exact line that wrote them.

use crate::source::Span;

/// An identifier or dotted path segment with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A dotted path such as `train.epochs` or `cnn.mid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl Path {
    pub fn dotted(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// One parsed `.mer` file.
#[derive(Debug, Clone)]
pub struct File {
    pub version: String,
    pub version_span: Span,
    pub uses: Vec<Ident>,
    pub blocks: Vec<Block>,
}

/// Whether a block is a runnable experiment or a reusable fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Experiment,
    Fragment,
}

/// An `experiment` or `fragment` block.
#[derive(Debug, Clone)]
pub struct Block {
    pub kind: BlockKind,
    pub name: Ident,
    pub bases: Vec<Base>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// One entry of an `extends` list.
#[derive(Debug, Clone)]
pub enum Base {
    /// Another block of the same file.
    Local(Ident),
    /// A block of another file: `"path.mer"` or `"path.mer"::name`.
    File {
        path: String,
        path_span: Span,
        name: Option<Ident>,
    },
}

/// A statement inside a block, a section or a call's parameter block.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `path = expr`
    Assign { path: Path, value: Expr },
    /// `path { stmts }`: sugar for assigning a map, merged like one.
    Section {
        path: Path,
        body: Vec<Stmt>,
        span: Span,
    },
    /// `~path`: explicit delete.
    Delete { path: Path },
    /// `data name = expr`
    Data { name: Ident, value: Expr },
    /// `ablation "name" { stmts }`
    Ablation {
        name: Ident,
        body: Vec<Stmt>,
        span: Span,
    },
    /// `sweep { path = [values], ... }`; an override `sweep.path=[values]`
    /// is one entry.
    Sweep {
        entries: Vec<(Path, Expr)>,
        span: Span,
    },
    /// `~sweep` (every axis, when `axis` is `None`) or `~sweep.path` (one).
    DeleteSweep { axis: Option<Path>, span: Span },
}

/// A weighted term of a sum (`0.5 * loss.mse(...)`).
#[derive(Debug, Clone)]
pub struct Term {
    pub weight: Option<(f64, Span)>,
    pub expr: Expr,
}

/// One argument of a call's input list.
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

/// A value expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Expr>),
    Map(Vec<Stmt>),
    Ref(Path),
    Env {
        var: String,
        default: Option<Box<Expr>>,
    },
    Call {
        kind: Path,
        args: Option<Vec<Arg>>,
        params: Option<Vec<Stmt>>,
    },
    Sum(Vec<Term>),
}
