//! Resolution: `extends`, statement application, ablations, sweeps and
//! `--set` overrides, producing one value tree per variant.
//!
//! Merge rules (documented in the README, tested below):
//! * maps merge key by key, recursively;
//! * lists and scalars replace;
//! * a component replaced by one of the same kind keeps its parameters and
//!   merges the new ones in; inputs are replaced only when the new one lists
//!   inputs;
//! * a component replaced by one of a *different* kind starts from scratch,
//!   so no stale parameter survives a change of kind;
//! * `~key` deletes; deleting something that is not set is an error;
//! * references (`cnn.mid`) stay symbolic until the graph is lowered, so an
//!   ablation that swaps a node is seen by everything that reads from it.
//!
//! Application order for one variant: bases left to right, the block's own
//! body, the ablation, the sweep point, then `--set` overrides.
//!
//! Sweeps and what else writes their keys:
//! * an ablation that sets a swept key keeps its value and its variants do
//!   not sweep that key (a warning says so): otherwise every sweep point
//!   would overwrite it under the ablation's name;
//! * a `--set` that changes a swept key is an error at the override, since
//!   every point would run at one value; `--set '~sweep.KEY'` drops the
//!   axis first, `--set '~sweep'` the whole grid, `--set 'sweep.KEY=[..]'`
//!   replaces one axis's values;
//! * `~sweep` / `~sweep.KEY` at the top of a block drops inherited axes;
//! * variant names are read back from the resolved tree, so a name always
//!   says what the variant runs.

use crate::ast::{self, Base, BlockKind, Expr, ExprKind, Ident, Stmt};
use crate::diag::{did_you_mean, Diagnostic};
use crate::parse::{parse_file, parse_override};
use crate::source::{join_relative, normalize, FileId, SourceMap, Span};
use crate::value::{CallValue, InputValue, Value, WeightedCall};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How a value came to be set.
#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    Recipe,
    Override,
    /// Filled from a kind's schema default.
    Default(String),
    /// Read from an environment variable.
    Env(String),
    /// The default of `env("VAR", default)`: the variable was not set. A
    /// misspelled variable lands here, so `mer explain` and `mer run` say so.
    EnvDefault(String),
    /// Filled from mer's own experiment schema.
    FrameworkDefault,
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The key's span (`epochs` in `epochs = 5`), when a key wrote it.
    pub key: Option<Span>,
    /// The value's span.
    pub value: Span,
    pub via: Via,
}

/// A value with its provenance.
#[derive(Debug, Clone)]
pub struct Node {
    pub val: Val,
    pub origin: Origin,
    /// Earlier settings this one replaced, oldest first.
    pub history: Vec<Origin>,
}

#[derive(Debug, Clone)]
pub enum Val {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(BTreeMap<String, Node>),
    Ref(String),
    Call(Box<CallNode>),
    Sum(Vec<(f64, Node)>),
}

#[derive(Debug, Clone)]
pub struct CallNode {
    pub kind: String,
    pub kind_span: Span,
    pub inputs: Vec<InputNode>,
    pub params: BTreeMap<String, Node>,
    /// Whether the recipe wrote `(...)`; without it a same-kind merge keeps
    /// the previous inputs.
    pub explicit_inputs: bool,
}

#[derive(Debug, Clone)]
pub struct InputNode {
    pub name: Option<Ident>,
    pub value: Node,
}

pub type Tree = BTreeMap<String, Node>;

impl Node {
    pub fn new(val: Val, origin: Origin) -> Self {
        Node {
            val,
            origin,
            history: Vec::new(),
        }
    }

    pub fn span(&self) -> Span {
        self.origin.value
    }

    /// The span to point at when the *key* is wrong.
    pub fn key_span(&self) -> Span {
        self.origin.key.unwrap_or(self.origin.value)
    }

    /// Strips provenance.
    pub fn to_value(&self) -> Value {
        match &self.val {
            Val::None => Value::None,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::Int(*i),
            Val::Float(f) => Value::Float(*f),
            Val::Str(s) => Value::Str(s.clone()),
            Val::List(l) => Value::List(l.iter().map(Node::to_value).collect()),
            Val::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()),
            Val::Ref(r) => Value::Ref(r.clone()),
            Val::Call(c) => Value::Call(c.to_value()),
            Val::Sum(terms) => Value::Sum(
                terms
                    .iter()
                    .map(|(w, n)| WeightedCall {
                        weight: *w,
                        call: match &n.val {
                            Val::Call(c) => c.to_value(),
                            _ => CallValue {
                                kind: String::new(),
                                inputs: Vec::new(),
                                params: BTreeMap::new(),
                            },
                        },
                    })
                    .collect(),
            ),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.val {
            Val::None => "none",
            Val::Bool(_) => "a bool",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Str(_) => "a string",
            Val::List(_) => "a list",
            Val::Map(_) => "a map",
            Val::Ref(_) => "a reference",
            Val::Call(_) => "a component",
            Val::Sum(_) => "a weighted sum",
        }
    }
}

impl CallNode {
    pub fn to_value(&self) -> CallValue {
        CallValue {
            kind: self.kind.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|i| InputValue {
                    name: i.name.as_ref().map(|n| n.name.clone()),
                    value: i.value.to_value(),
                })
                .collect(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
        }
    }
}

/// An ablation as written: applied lazily on the final base tree.
#[derive(Debug, Clone)]
pub struct AblationDef {
    pub name: String,
    pub name_span: Span,
    pub body: Vec<Stmt>,
}

/// One axis of a sweep grid.
#[derive(Debug, Clone)]
pub struct SweepAxis {
    pub path: ast::Path,
    pub values: Expr,
}

/// A block after `extends` and its own body, before variants.
#[derive(Debug, Clone, Default)]
pub struct BlockTree {
    pub tree: Tree,
    pub ablations: Vec<AblationDef>,
    pub sweep: Vec<SweepAxis>,
    /// `use` statements of every file involved.
    pub uses: Vec<Ident>,
}

/// One runnable variant of an experiment.
#[derive(Debug, Clone)]
pub struct Variant {
    /// `base`, an ablation name, and/or a sweep point (`base/optimizer.lr=0.001`).
    pub name: String,
    pub ablation: Option<String>,
    pub sweep_point: Vec<(String, Value)>,
    pub tree: Tree,
}

/// Top-level keys of an experiment; the checker validates their values.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "data",
    "description",
    "device",
    "loss",
    "metrics",
    "model",
    "optimizer",
    "protocol",
    "reported",
    "scheduler",
    "seed",
    "seeds",
    "tags",
    "title",
    "train",
];

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// The top of an experiment/fragment body.
    Top,
    /// The top of an ablation body: bare node names mean `model.<name>`.
    Ablation,
    /// Inside a section, map or parameter block.
    Nested,
}

type EnvFn = Box<dyn Fn(&str) -> Option<String>>;

/// Holds every source seen and every diagnostic raised while resolving.
pub struct Session {
    pub sources: SourceMap,
    pub diags: Vec<Diagnostic>,
    asts: HashMap<FileId, Rc<ast::File>>,
    env: EnvFn,
    via: Via,
    stack: Vec<(FileId, String)>,
    reported_cycles: std::collections::HashSet<Vec<(FileId, String)>>,
    override_count: usize,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session that reads environment variables from the process.
    pub fn new() -> Self {
        Self::with_env(Box::new(|k| std::env::var(k).ok()))
    }

    /// A session with an injected environment (tests, fuzzing).
    pub fn with_env(env: EnvFn) -> Self {
        Session {
            sources: SourceMap::new(),
            diags: Vec::new(),
            asts: HashMap::new(),
            env,
            via: Via::Recipe,
            stack: Vec::new(),
            reported_cycles: Default::default(),
            override_count: 0,
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.is_error())
    }

    pub fn ast(&self, file: FileId) -> Option<Rc<ast::File>> {
        self.asts.get(&file).cloned()
    }

    /// Reads and parses a recipe file. `from` is the `extends` string that
    /// asked for it, so a missing file is reported there.
    pub fn load(&mut self, path: &Path, from: Option<Span>) -> Option<FileId> {
        let path = normalize(path);
        if let Some(id) = self.sources.find_path(&path) {
            return self.asts.contains_key(&id).then_some(id);
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let name = path.display().to_string();
                Some(self.load_text(name, Some(path), text)).filter(|id| self.asts.contains_key(id))
            }
            Err(e) => {
                let mut d = Diagnostic::error(
                    "mer::io",
                    format!("cannot read `{}`: {}", path.display(), io_reason(&e)),
                );
                if let Some(sp) = from {
                    d = d.at(sp, "this file cannot be read");
                    if let Some(s) = sibling_suggestion(&path) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// Parses text as a recipe file (the file need not exist on disk).
    pub fn load_text(&mut self, name: String, path: Option<PathBuf>, text: String) -> FileId {
        let id = self.sources.add(name, path, text);
        let text = self.sources.get(id).text.clone();
        match parse_file(id, &text) {
            Ok(f) => {
                self.check_header(&f);
                self.asts.insert(id, Rc::new(f));
            }
            Err(errs) => self.diags.extend(errs),
        }
        id
    }

    fn check_header(&mut self, f: &ast::File) {
        if f.version != "0.1" {
            self.diags.push(
                Diagnostic::error(
                    "mer::version",
                    format!(
                        "this mer reads recipe version 0.1, the file says {}",
                        f.version
                    ),
                )
                .at(f.version_span, "unsupported version")
                .help("write `mer 0.1` on the first line"),
            );
        }
    }

    /// Every `use` of every file loaded so far (the file itself and any
    /// `extends`-ed one), in load order.
    pub fn all_uses(&self) -> Vec<Ident> {
        let mut ids: Vec<&FileId> = self.asts.keys().collect();
        ids.sort();
        ids.into_iter()
            .flat_map(|id| self.asts[id].uses.iter().cloned())
            .collect()
    }

    /// Names and kinds of the blocks in a file, in order.
    pub fn blocks(&self, file: FileId) -> Vec<(String, BlockKind, Span)> {
        self.asts
            .get(&file)
            .map(|f| {
                f.blocks
                    .iter()
                    .map(|b| (b.name.name.clone(), b.kind, b.name.span))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resolves `extends` and the body of block `name` in `file`.
    pub fn resolve_block(&mut self, file: FileId, name: &str) -> Option<BlockTree> {
        let ast = self.asts.get(&file)?.clone();
        let block = ast.blocks.iter().find(|b| b.name.name == name)?;
        if let Some(pos) = self.stack.iter().position(|(f, n)| *f == file && n == name) {
            let mut chain: Vec<String> = self.stack[pos..].iter().map(|(_, n)| n.clone()).collect();
            chain.push(name.to_string());
            // The same cycle is met again from each of its members.
            let mut members: Vec<(FileId, String)> = self.stack[pos..].to_vec();
            members.sort();
            if !self.reported_cycles.insert(members) {
                return None;
            }
            self.diags.push(
                Diagnostic::error(
                    "mer::extends-cycle",
                    format!("`extends` cycle: {}", chain.join(" → ")),
                )
                .at(
                    block.name.span,
                    "this block extends itself through the chain",
                )
                .help("remove one of the `extends` links"),
            );
            return None;
        }
        self.stack.push((file, name.to_string()));
        let mut out = BlockTree::default();
        // Duplicate-name checks across blocks of the same file.
        let dups: Vec<_> = ast.blocks.iter().filter(|b| b.name.name == name).collect();
        if dups.len() > 1 && dups[0].span == block.span {
            self.diags.push(
                Diagnostic::error(
                    "mer::duplicate",
                    format!("`{name}` is defined {} times in this file", dups.len()),
                )
                .at(dups[1].name.span, "defined again here")
                .also(dups[0].name.span, "first defined here"),
            );
        }
        for base in &block.bases {
            if let Some(bt) = self.resolve_base(file, &ast, base) {
                self.merge_block(&mut out, bt);
            }
        }
        out.uses.extend(ast.uses.iter().cloned());
        let mut seen = HashMap::new();
        let mut own_ablations = Vec::new();
        let mut own_sweep = Vec::new();
        let mut rest = Vec::new();
        for s in &block.body {
            match s {
                Stmt::Ablation { name, body, .. } => {
                    if let Some(prev) = own_ablations
                        .iter()
                        .find(|a: &&AblationDef| a.name == name.name)
                    {
                        self.diags.push(
                            Diagnostic::error(
                                "mer::duplicate",
                                format!("ablation `{}` is defined twice", name.name),
                            )
                            .at(name.span, "defined again here")
                            .also(prev.name_span, "first defined here"),
                        );
                        continue;
                    }
                    own_ablations.push(AblationDef {
                        name: name.name.clone(),
                        name_span: name.span,
                        body: body.clone(),
                    });
                }
                Stmt::Sweep { entries, span } => {
                    if !own_sweep.is_empty() {
                        self.diags.push(
                            Diagnostic::error("mer::duplicate", "a block has at most one `sweep`")
                                .at(*span, "second sweep")
                                .help("put every axis of the grid in one `sweep { ... }`"),
                        );
                        continue;
                    }
                    for (p, v) in entries {
                        own_sweep.push(SweepAxis {
                            path: p.clone(),
                            values: v.clone(),
                        });
                    }
                    if entries.is_empty() {
                        own_sweep.push(SweepAxis {
                            path: ast::Path {
                                segments: Vec::new(),
                                span: *span,
                            },
                            values: Expr {
                                kind: ExprKind::List(Vec::new()),
                                span: *span,
                            },
                        });
                    }
                }
                // Removes what the bases swept; the block's own `sweep`
                // (wherever it is written) is kept.
                Stmt::DeleteSweep { axis, span } => {
                    self.delete_sweep(&mut out.sweep, axis.as_ref(), *span)
                }
                other => rest.push(other.clone()),
            }
        }
        own_sweep.retain(|a| !a.path.segments.is_empty());
        self.apply(&mut out.tree, &rest, &[], &mut seen, Ctx::Top);
        for a in own_ablations {
            out.ablations.retain(|b| b.name != a.name);
            out.ablations.push(a);
        }
        for ax in own_sweep {
            out.sweep.retain(|b| b.path.dotted() != ax.path.dotted());
            out.sweep.push(ax);
        }
        self.stack.pop();
        Some(out)
    }

    fn resolve_base(&mut self, file: FileId, ast: &ast::File, base: &Base) -> Option<BlockTree> {
        match base {
            Base::Local(id) => {
                if ast.blocks.iter().any(|b| b.name.name == id.name) {
                    self.resolve_block(file, &id.name)
                } else {
                    let names: Vec<&str> =
                        ast.blocks.iter().map(|b| b.name.name.as_str()).collect();
                    self.diags.push(
                        Diagnostic::error(
                            "mer::unknown-base",
                            format!("no block named `{}` in this file", id.name),
                        )
                        .at(id.span, "extends an unknown block")
                        .suggest(&id.name, names),
                    );
                    None
                }
            }
            Base::File {
                path,
                path_span,
                name,
            } => {
                let from = self
                    .sources
                    .get(file)
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("recipe.mer"));
                let target = join_relative(&from, path);
                let id = self.load(&target, Some(*path_span))?;
                let blocks = self.blocks(id);
                let chosen = match name {
                    Some(n) => {
                        if blocks.iter().any(|(b, _, _)| *b == n.name) {
                            n.name.clone()
                        } else {
                            self.diags.push(
                                Diagnostic::error(
                                    "mer::unknown-base",
                                    format!(
                                        "`{}` has no block named `{}`",
                                        target.display(),
                                        n.name
                                    ),
                                )
                                .at(n.span, "not defined in that file")
                                .suggest(&n.name, blocks.iter().map(|(b, _, _)| b.as_str())),
                            );
                            return None;
                        }
                    }
                    None => {
                        if blocks.len() == 1 {
                            blocks[0].0.clone()
                        } else {
                            let names: Vec<String> =
                                blocks.iter().map(|(b, _, _)| format!("`{b}`")).collect();
                            self.diags.push(
                                Diagnostic::error(
                                    "mer::ambiguous-base",
                                    format!(
                                        "`{}` has {} blocks; say which one to extend",
                                        target.display(),
                                        blocks.len()
                                    ),
                                )
                                .at(*path_span, "which block of this file?")
                                .help(format!(
                                    "write \"{path}\"::NAME with NAME one of {}",
                                    if names.is_empty() {
                                        "(none)".into()
                                    } else {
                                        names.join(", ")
                                    }
                                )),
                            );
                            return None;
                        }
                    }
                };
                self.resolve_block(id, &chosen)
            }
        }
    }

    fn merge_block(&mut self, into: &mut BlockTree, from: BlockTree) {
        for (k, v) in from.tree {
            match into.tree.get_mut(&k) {
                Some(slot) => merge(slot, v),
                None => {
                    into.tree.insert(k, v);
                }
            }
        }
        for a in from.ablations {
            into.ablations.retain(|b| b.name != a.name);
            into.ablations.push(a);
        }
        for ax in from.sweep {
            into.sweep.retain(|b| b.path.dotted() != ax.path.dotted());
            into.sweep.push(ax);
        }
        into.uses.extend(from.uses);
    }

    /// Parses `--set` overrides; each becomes its own pseudo-file so that
    /// diagnostics and `mer explain` can point at it.
    pub fn parse_overrides(&mut self, sets: &[String]) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in sets {
            self.override_count += 1;
            let name = format!("--set #{}", self.override_count);
            let id = self.sources.add(name, None, s.clone());
            match parse_override(id, s) {
                Ok(mut st) => {
                    match &mut st {
                        Stmt::Assign { value, .. } => self.lowercase_keywords(value),
                        Stmt::Sweep { entries, .. } => {
                            for (_, v) in entries {
                                self.lowercase_keywords(v);
                            }
                        }
                        _ => {}
                    }
                    out.push(st)
                }
                Err(d) => self.diags.push(d),
            }
        }
        out
    }

    /// On the command line `True`, `FALSE` or `None` (Python's spelling) mean
    /// the keyword: they are read as such, with a warning, instead of as a
    /// reference that fails the type check.
    fn lowercase_keywords(&mut self, e: &mut Expr) {
        match &mut e.kind {
            ExprKind::Ref(p) if p.segments.len() == 1 => {
                let written = p.segments[0].name.clone();
                let kind = match written.to_ascii_lowercase().as_str() {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    "none" => ExprKind::None,
                    _ => return,
                };
                let read = written.to_ascii_lowercase();
                self.diags.push(
                    Diagnostic::warning("mer::override", format!("read `{written}` as `{read}`"))
                        .at(e.span, format!("taken as `{read}`"))
                        .help("recipes write `true`, `false` and `none` in lower case"),
                );
                e.kind = kind;
            }
            ExprKind::List(items) => {
                for i in items {
                    self.lowercase_keywords(i);
                }
            }
            _ => {}
        }
    }

    /// Applies `--set` edits of the sweep (`~sweep`, `~sweep.AXIS`,
    /// `sweep.AXIS=[...]`) to a copy of the block's axes.
    fn edit_sweep(&mut self, sweep: &mut Vec<SweepAxis>, edits: &[&Stmt]) {
        for st in edits {
            match st {
                Stmt::DeleteSweep { axis, span } => self.delete_sweep(sweep, axis.as_ref(), *span),
                Stmt::Sweep { entries, span } => {
                    if entries.is_empty() {
                        self.diags.push(
                            Diagnostic::error("mer::sweep", "`sweep=` names no axis")
                                .at(*span, "which key to sweep?")
                                .help("write --set 'sweep.optimizer.lr=[1e-4, 1e-3]'"),
                        );
                    }
                    for (p, v) in entries {
                        let ax = SweepAxis {
                            path: p.clone(),
                            values: v.clone(),
                        };
                        match sweep.iter_mut().find(|a| same_axis(&a.path, p)) {
                            Some(a) => *a = ax,
                            None => sweep.push(ax),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `~sweep` removes every axis, `~sweep.AXIS` one; removing what is not
    /// there is an error, like `~key`.
    fn delete_sweep(&mut self, sweep: &mut Vec<SweepAxis>, axis: Option<&ast::Path>, span: Span) {
        match axis {
            None if sweep.is_empty() => self.diags.push(
                Diagnostic::error(
                    "mer::delete-missing",
                    "nothing to delete: there is no sweep",
                )
                .at(span, "no sweep at this point"),
            ),
            None => sweep.clear(),
            Some(p) => {
                let before = sweep.len();
                sweep.retain(|a| !same_axis(&a.path, p));
                if sweep.len() == before {
                    let names: Vec<String> = sweep.iter().map(|a| a.path.dotted()).collect();
                    let mut d = Diagnostic::error(
                        "mer::delete-missing",
                        format!("nothing to delete: `{}` is not a sweep axis", p.dotted()),
                    )
                    .at(p.span, "not swept at this point")
                    .suggest(&p.dotted(), names.iter().map(String::as_str));
                    if d.help.is_none() {
                        d = d.help(if names.is_empty() {
                            "there is no sweep".to_string()
                        } else {
                            format!("sweep axes: {}", names.join(", "))
                        });
                    }
                    self.diags.push(d);
                }
            }
        }
    }

    /// Expands a block into its variants: the base, each ablation, each
    /// crossed with every sweep point, each with the overrides applied.
    pub fn variants(&mut self, bt: &BlockTree, overrides: &[Stmt]) -> Vec<Variant> {
        // `--set` edits of the sweep change the grid itself; every other
        // override is applied to each variant's tree.
        let (sweep_edits, overrides): (Vec<&Stmt>, Vec<&Stmt>) = overrides
            .iter()
            .partition(|s| matches!(s, Stmt::Sweep { .. } | Stmt::DeleteSweep { .. }));
        let overrides: Vec<Stmt> = overrides.into_iter().cloned().collect();
        let mut sweep = bt.sweep.clone();
        self.edit_sweep(&mut sweep, &sweep_edits);
        // Each base tree with the sweep axes its ablation fixes.
        let mut bases = vec![(None, bt.tree.clone(), Vec::new())];
        for ab in &bt.ablations {
            let mut t = bt.tree.clone();
            let mut seen = HashMap::new();
            self.apply(&mut t, &ab.body, &[], &mut seen, Ctx::Ablation);
            let fixed = self.axes_fixed_by(ab, &bt.tree, &t, &sweep);
            bases.push((Some(ab.name.clone()), t, fixed));
        }
        // Sweep axes: each must be a list of alternatives.
        let mut axes: Vec<(ast::Path, Vec<Node>)> = Vec::new();
        for ax in &sweep {
            let saved = self.via.clone();
            if self.is_override_file(ax.values.span) {
                self.via = Via::Override;
            }
            let n = self.eval(&ax.values, Some(ax.path.span));
            self.via = saved;
            match n.val {
                Val::List(items) if !items.is_empty() => axes.push((ax.path.clone(), items)),
                _ => self.diags.push(
                    Diagnostic::error(
                        "mer::sweep",
                        format!(
                            "sweep axis `{}` needs a non-empty list of values",
                            ax.path.dotted()
                        ),
                    )
                    .at(ax.values.span, format!("got {}", n.type_name()))
                    .help(format!("write `{} = [a, b, c]`", ax.path.dotted())),
                ),
            }
        }
        let mut reported: std::collections::HashSet<String> = Default::default();
        let mut out = Vec::new();
        for (ablation, tree, fixed) in bases {
            let swept: Vec<(ast::Path, Vec<Node>)> = axes
                .iter()
                .filter(|(p, _)| !fixed.contains(&p.dotted()))
                .cloned()
                .collect();
            for point in &grid(&swept) {
                let mut t = tree.clone();
                let mut written = Vec::new();
                for (path, node) in point {
                    if let Some(segs) = self.rewrite(&t, path, Ctx::Ablation) {
                        self.set(&mut t, &segs, node.clone(), Ctx::Ablation);
                        written.push((path, segs, node));
                    }
                }
                let saved = std::mem::replace(&mut self.via, Via::Override);
                let mut seen = HashMap::new();
                self.apply(&mut t, &overrides, &[], &mut seen, Ctx::Ablation);
                self.via = saved;
                // The name says what the variant runs: the resolved value of
                // each axis, read back after the overrides.
                let mut label = Vec::new();
                for (path, segs, node) in written {
                    let dotted = dotted(&segs);
                    let resolved = lookup(&t, &dotted);
                    if resolved.map(Node::to_value) != Some(node.to_value())
                        && reported.insert(dotted.clone())
                    {
                        self.report_override_vs_sweep(path, &dotted, resolved, &overrides, &t);
                    }
                    label.push((
                        path.dotted(),
                        resolved.map_or_else(|| node.to_value(), Node::to_value),
                    ));
                }
                let mut name = ablation.clone().unwrap_or_else(|| "base".to_string());
                if !label.is_empty() {
                    let pts: Vec<String> = label.iter().map(|(p, v)| format!("{p}={v}")).collect();
                    name = format!("{name}/{}", pts.join(","));
                }
                out.push(Variant {
                    name,
                    ablation: ablation.clone(),
                    sweep_point: label,
                    tree: t,
                });
            }
        }
        out
    }

    /// Whether a span lies in a `--set` pseudo-file.
    fn is_override_file(&self, span: Span) -> bool {
        let f = self.sources.get(span.file);
        f.path.is_none() && f.name.starts_with("--set #")
    }

    /// The sweep axes an ablation writes (the axis itself or something
    /// inside it). Applied after the ablation, the sweep would overwrite its
    /// change at every point, under the ablation's name; instead the
    /// ablation keeps its value and its variants do not sweep that axis
    /// (`no-dropout` with a dropout sweep runs once per other point, with no
    /// dropout). A warning says so, since the grid shrinks.
    fn axes_fixed_by(
        &mut self,
        ab: &AblationDef,
        base: &Tree,
        t: &Tree,
        sweep: &[SweepAxis],
    ) -> Vec<String> {
        let mut fixed = Vec::new();
        for ax in sweep {
            let path = dotted(&quiet_rewrite(t, &ax.path));
            let Some(mine) = lookup(t, &path) else {
                continue;
            };
            let theirs = lookup(base, &path);
            if theirs.map(Node::to_value) == Some(mine.to_value()) {
                continue;
            }
            // The ablation wrote the axis itself, or something inside it.
            let at = if theirs.is_none_or(|b| b.origin != mine.origin) {
                mine.key_span()
            } else {
                ab.body
                    .iter()
                    .filter_map(stmt_path)
                    .find(|p| overlaps(&dotted(&quiet_rewrite(t, p)), &path))
                    .map_or(ab.name_span, |p| p.span)
            };
            let axis = ax.path.dotted();
            self.diags.push(
                Diagnostic::warning(
                    "mer::sweep",
                    format!(
                        "ablation `{}` sets `{axis}`, a sweep axis: its variants keep this value and do not sweep `{axis}`",
                        ab.name
                    ),
                )
                .at(at, format!("fixes `{axis}` for this ablation"))
                .also(ax.path.span, "swept for the other variants")
                .help(format!(
                    "to sweep `{axis}` in this ablation too, remove it from the ablation"
                )),
            );
            fixed.push(axis);
        }
        fixed
    }

    /// An override that changes a sweep axis would run every point at the
    /// override's value under names that say otherwise.
    fn report_override_vs_sweep(
        &mut self,
        axis: &ast::Path,
        path: &str,
        resolved: Option<&Node>,
        overrides: &[Stmt],
        t: &Tree,
    ) {
        let written_by_override = resolved
            .filter(|n| n.origin.via == Via::Override)
            .map(Node::key_span);
        let at = written_by_override.or_else(|| {
            overrides
                .iter()
                .filter_map(stmt_path)
                .find(|p| overlaps(&dotted(&quiet_rewrite(t, p)), path))
                .map(|p| p.span)
        });
        let name = axis.dotted();
        let mut d = Diagnostic::error(
            "mer::sweep",
            format!("`--set` changes `{name}`, a sweep axis: every point would run at one value"),
        );
        let mut help = format!(
            "to change the grid: --set 'sweep.{name}=[a, b]'; to drop the axis: --set '~sweep.{name}'"
        );
        match at {
            Some(sp) => {
                let text = self.sources.get(sp.file).text.trim().to_string();
                help = format!(
                    "to run only this value, drop the axis too: --set '~sweep.{name}' --set '{text}'; to change the grid: --set 'sweep.{name}=[a, b]'"
                );
                d = d
                    .at(sp, "overrides every sweep point")
                    .also(axis.span, format!("`{name}` is swept here"));
            }
            None => d = d.at(axis.span, format!("`{name}` is swept here")),
        }
        self.diags.push(d.help(help));
    }

    fn apply(
        &mut self,
        target: &mut BTreeMap<String, Node>,
        stmts: &[Stmt],
        prefix: &[String],
        seen: &mut HashMap<String, Span>,
        ctx: Ctx,
    ) {
        for s in stmts {
            match s {
                Stmt::Assign { path, value } => {
                    let segs = self.rewrite(target, path, ctx);
                    let Some(segs) = segs else { continue };
                    if !self.note_seen(seen, prefix, &segs, path.span) {
                        continue;
                    }
                    let node = self.eval(value, Some(path.span));
                    self.set(target, &segs, node, ctx);
                }
                Stmt::Data { name, value } => {
                    if ctx != Ctx::Top && ctx != Ctx::Ablation {
                        self.diags.push(
                            Diagnostic::error(
                                "mer::misplaced",
                                "`data` declarations belong at the top of an experiment",
                            )
                            .at(name.span, "inside a nested block"),
                        );
                        continue;
                    }
                    let segs = vec![
                        Ident {
                            name: "data".into(),
                            span: name.span,
                        },
                        name.clone(),
                    ];
                    if !self.note_seen(seen, prefix, &segs, name.span) {
                        continue;
                    }
                    let node = self.eval(value, Some(name.span));
                    self.set(target, &segs, node, ctx);
                }
                Stmt::Section { path, body, span } => {
                    let Some(segs) = self.rewrite(target, path, ctx) else {
                        continue;
                    };
                    let mut full: Vec<String> = prefix.to_vec();
                    full.extend(segs.iter().map(|s| s.name.clone()));
                    let origin = Origin {
                        key: Some(path.span),
                        value: *span,
                        via: self.via.clone(),
                    };
                    match navigate(target, &segs, true, &origin) {
                        Ok(map) => self.apply(map, body, &full, seen, Ctx::Nested),
                        Err(d) => self.diags.push(d),
                    }
                }
                Stmt::Delete { path } => {
                    let Some(segs) = self.rewrite(target, path, ctx) else {
                        continue;
                    };
                    let origin = Origin {
                        key: Some(path.span),
                        value: path.span,
                        via: self.via.clone(),
                    };
                    let (last, parents) = segs.split_last().expect("paths have ≥1 segment");
                    match navigate(target, parents, false, &origin) {
                        Ok(map) => {
                            if map.remove(&last.name).is_none() {
                                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                                let d = Diagnostic::error(
                                    "mer::delete-missing",
                                    format!("nothing to delete: `{}` is not set", path.dotted()),
                                )
                                .at(path.span, "not set at this point")
                                .suggest(&last.name, keys);
                                self.diags.push(d);
                            }
                        }
                        Err(d) => self.diags.push(d.help("`~key` deletes a key that is set")),
                    }
                }
                Stmt::Ablation { name, .. } => self.diags.push(
                    Diagnostic::error(
                        "mer::misplaced",
                        "`ablation` belongs at the top of an experiment",
                    )
                    .at(name.span, "nested ablation"),
                ),
                Stmt::Sweep { span, .. } => self.diags.push(
                    Diagnostic::error(
                        "mer::misplaced",
                        "`sweep` belongs at the top of an experiment",
                    )
                    .at(*span, "nested sweep"),
                ),
                Stmt::DeleteSweep { span, .. } => self.diags.push(
                    Diagnostic::error(
                        "mer::misplaced",
                        "`~sweep` belongs at the top of an experiment",
                    )
                    .at(*span, "not at the top of an experiment")
                    .help(
                        "an ablation that sets a swept key is already not swept on it; to leave an axis out of every variant, write `~sweep.AXIS` at the top of an experiment that extends this one",
                    ),
                ),
            }
        }
    }

    /// Records a path as written in this layer; a second write is an error.
    fn note_seen(
        &mut self,
        seen: &mut HashMap<String, Span>,
        prefix: &[String],
        segs: &[Ident],
        span: Span,
    ) -> bool {
        let mut full: Vec<&str> = prefix.iter().map(String::as_str).collect();
        full.extend(segs.iter().map(|s| s.name.as_str()));
        let key = full.join(".");
        if let Some(prev) = seen.get(&key) {
            let (code, what) = if self.via == Via::Override {
                ("mer::conflicting-override", "set twice by `--set`")
            } else {
                ("mer::duplicate", "set twice in the same block")
            };
            self.diags.push(
                Diagnostic::error(code, format!("`{key}` is {what}"))
                    .at(span, "set again here")
                    .also(*prev, "first set here")
                    .help("keep one of the two"),
            );
            return false;
        }
        seen.insert(key, span);
        true
    }

    /// In an ablation or override, a path that starts with a model or data
    /// node name means that node (`token = ...` is `model.token = ...`).
    fn rewrite(&mut self, target: &Tree, path: &ast::Path, ctx: Ctx) -> Option<Vec<Ident>> {
        let segs = path.segments.clone();
        if ctx != Ctx::Ablation {
            return Some(segs);
        }
        let first = &segs[0];
        if let Some(out) = qualify(target, &segs) {
            return Some(out);
        }
        let mut candidates: Vec<String> = TOP_LEVEL_KEYS.iter().map(|s| s.to_string()).collect();
        for section in ["model", "data"] {
            if let Some(Node {
                val: Val::Map(m), ..
            }) = target.get(section)
            {
                candidates.extend(m.keys().cloned());
            }
        }
        self.diags.push(
            Diagnostic::error(
                "mer::unknown-key",
                format!(
                    "`{}` is neither a top-level key nor a model or data node",
                    first.name
                ),
            )
            .at(first.span, "unknown name")
            .suggest(&first.name, candidates.iter().map(String::as_str))
            .help_if_none("to add a new node, write `model.NAME = kind(...)`"),
        );
        None
    }

    fn set(&mut self, target: &mut Tree, segs: &[Ident], node: Node, _ctx: Ctx) {
        let (last, parents) = segs.split_last().expect("paths have ≥1 segment");
        let origin = node.origin.clone();
        match navigate(target, parents, true, &origin) {
            Ok(map) => match map.get_mut(&last.name) {
                Some(slot) => merge(slot, node),
                None => {
                    map.insert(last.name.clone(), node);
                }
            },
            Err(d) => self.diags.push(d),
        }
    }

    fn origin(&self, key: Option<Span>, value: Span) -> Origin {
        Origin {
            key,
            value,
            via: self.via.clone(),
        }
    }

    /// Evaluates an expression into a value tree node.
    pub(crate) fn eval(&mut self, e: &Expr, key: Option<Span>) -> Node {
        let origin = self.origin(key, e.span);
        let val = match &e.kind {
            ExprKind::None => Val::None,
            ExprKind::Bool(b) => Val::Bool(*b),
            ExprKind::Int(i) => Val::Int(*i),
            ExprKind::Float(f) => Val::Float(*f),
            ExprKind::Str(s) => Val::Str(s.clone()),
            ExprKind::List(items) => Val::List(items.iter().map(|i| self.eval(i, None)).collect()),
            ExprKind::Map(stmts) => {
                let mut m = BTreeMap::new();
                let mut seen = HashMap::new();
                self.apply(&mut m, stmts, &[], &mut seen, Ctx::Nested);
                Val::Map(m)
            }
            ExprKind::Ref(p) => Val::Ref(p.dotted()),
            ExprKind::Env { var, default } => {
                match (self.env)(var) {
                    Some(v) => {
                        return Node::new(
                            Val::Str(v),
                            Origin {
                                key,
                                value: e.span,
                                via: Via::Env(var.clone()),
                            },
                        )
                    }
                    None => match default {
                        Some(d) => {
                            let mut n = self.eval(d, key);
                            n.origin.via = Via::EnvDefault(var.clone());
                            return n;
                        }
                        None => {
                            self.diags.push(
                            Diagnostic::error(
                                "mer::env-unset",
                                format!("environment variable `{var}` is not set and has no default"),
                            )
                            .at(e.span, "needs a value")
                            .help(format!("set {var}, or give a default: env(\"{var}\", \"...\")")),
                        );
                            // An empty string keeps later checks quiet: the
                            // unset variable is the one thing to fix.
                            Val::Str(String::new())
                        }
                    },
                }
            }
            ExprKind::Call { kind, args, params } => {
                let inputs = args
                    .as_ref()
                    .map(|a| {
                        a.iter()
                            .map(|arg| InputNode {
                                name: arg.name.clone(),
                                value: self.eval(&arg.value, None),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut pm = BTreeMap::new();
                if let Some(ps) = params {
                    let mut seen = HashMap::new();
                    self.apply(&mut pm, ps, &[], &mut seen, Ctx::Nested);
                }
                Val::Call(Box::new(CallNode {
                    kind: kind.dotted(),
                    kind_span: kind.span,
                    inputs,
                    params: pm,
                    explicit_inputs: args.is_some(),
                }))
            }
            ExprKind::Sum(terms) => Val::Sum(
                terms
                    .iter()
                    .map(|t| {
                        (
                            t.weight.map(|w| w.0).unwrap_or(1.0),
                            self.eval(&t.expr, None),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(val, origin)
    }
}

trait HelpIfNone {
    fn help_if_none(self, help: &str) -> Self;
}
impl HelpIfNone for Diagnostic {
    fn help_if_none(self, help: &str) -> Self {
        if self.help.is_none() {
            self.help(help)
        } else {
            self
        }
    }
}

/// Walks (and with `create`, builds) the maps along `segs`. A component on
/// the way is entered through its parameters, so `model.cnn.dropout`
/// addresses the `dropout` parameter of node `cnn`.
fn navigate<'t>(
    mut cur: &'t mut BTreeMap<String, Node>,
    segs: &[Ident],
    create: bool,
    origin: &Origin,
) -> Result<&'t mut BTreeMap<String, Node>, Diagnostic> {
    let mut walked: Vec<&str> = Vec::new();
    for seg in segs {
        walked.push(&seg.name);
        if !cur.contains_key(&seg.name) {
            if !create {
                let keys: Vec<&str> = cur.keys().map(String::as_str).collect();
                return Err(Diagnostic::error(
                    "mer::unknown-key",
                    format!("`{}` is not set", walked.join(".")),
                )
                .at(seg.span, "no such key here")
                .suggest(&seg.name, keys));
            }
            cur.insert(
                seg.name.clone(),
                Node::new(
                    Val::Map(BTreeMap::new()),
                    Origin {
                        key: Some(seg.span),
                        value: origin.value,
                        via: origin.via.clone(),
                    },
                ),
            );
        }
        let node = cur.get_mut(&seg.name).expect("inserted above");
        let tname = node.type_name();
        let at = node.origin.clone();
        cur = match &mut node.val {
            Val::Map(m) => m,
            Val::Call(c) => &mut c.params,
            _ => {
                return Err(Diagnostic::error(
                    "mer::not-a-map",
                    format!(
                        "cannot set inside `{}`: it is {tname}, not a map",
                        walked.join(".")
                    ),
                )
                .at(seg.span, format!("`{}` is {tname}", seg.name))
                .also(at.key.unwrap_or(at.value), "set here"))
            }
        };
    }
    Ok(cur)
}

/// Merges `new` into `slot` following the rules in the module docs.
pub fn merge(slot: &mut Node, new: Node) {
    match (&mut slot.val, new.val) {
        (Val::Map(a), Val::Map(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(e) => merge(e, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            let old = std::mem::replace(&mut slot.origin, new.origin);
            slot.history.push(old);
        }
        (Val::Call(a), Val::Call(b)) if a.kind == b.kind => {
            let b = *b;
            if b.explicit_inputs {
                a.inputs = b.inputs;
                a.explicit_inputs = true;
            }
            a.kind_span = b.kind_span;
            for (k, v) in b.params {
                match a.params.get_mut(&k) {
                    Some(e) => merge(e, v),
                    None => {
                        a.params.insert(k, v);
                    }
                }
            }
            let old = std::mem::replace(&mut slot.origin, new.origin);
            slot.history.push(old);
        }
        (_, val) => {
            let mut history = std::mem::take(&mut slot.history);
            history.push(slot.origin.clone());
            *slot = Node {
                val,
                origin: new.origin,
                history,
            };
        }
    }
}

fn dotted(segs: &[Ident]) -> String {
    segs.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether two dotted paths address the same value or one contains the
/// other (`optimizer` and `optimizer.lr`).
fn overlaps(a: &str, b: &str) -> bool {
    let within = |long: &str, short: &str| {
        long == short || long.strip_prefix(short).is_some_and(|r| r.starts_with('.'))
    };
    within(a, b) || within(b, a)
}

/// The key a statement writes or deletes.
fn stmt_path(s: &Stmt) -> Option<&ast::Path> {
    match s {
        Stmt::Assign { path, .. } | Stmt::Section { path, .. } | Stmt::Delete { path } => {
            Some(path)
        }
        _ => None,
    }
}

/// `rewrite` without diagnostics: a path that starts with a model or data
/// node's name is read under `model.` or `data.`.
fn quiet_rewrite(target: &Tree, path: &ast::Path) -> Vec<Ident> {
    let segs = path.segments.clone();
    qualify(target, &segs).unwrap_or(segs)
}

/// `segs` as written when they start with a top-level key, under `model.`
/// or `data.` when they start with a node of that section, else `None`.
fn qualify(target: &Tree, segs: &[Ident]) -> Option<Vec<Ident>> {
    let first = segs.first()?;
    if TOP_LEVEL_KEYS.contains(&first.name.as_str()) {
        return Some(segs.to_vec());
    }
    for section in ["model", "data"] {
        if let Some(Node {
            val: Val::Map(m), ..
        }) = target.get(section)
        {
            if m.contains_key(&first.name) {
                let mut out = vec![Ident {
                    name: section.into(),
                    span: first.span,
                }];
                out.extend(segs.iter().cloned());
                return Some(out);
            }
        }
    }
    None
}

/// Whether two axis paths name the same axis, one written with its
/// `model.`/`data.` section and the other without (`drop.p`, `model.drop.p`).
fn same_axis(a: &ast::Path, b: &ast::Path) -> bool {
    let (a, b) = (a.dotted(), b.dotted());
    let bare = |s: &str| {
        s.strip_prefix("model.")
            .or_else(|| s.strip_prefix("data."))
            .map(str::to_string)
            .unwrap_or_else(|| s.to_string())
    };
    a == b || bare(&a) == b || a == bare(&b)
}

fn grid(axes: &[(ast::Path, Vec<Node>)]) -> Vec<Vec<(ast::Path, Node)>> {
    let mut points: Vec<Vec<(ast::Path, Node)>> = vec![Vec::new()];
    for (path, values) in axes {
        let mut next = Vec::new();
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push((path.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    points
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A `.mer` file next to a missing one whose name is close.
fn sibling_suggestion(path: &Path) -> Option<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let want = path.file_name()?.to_str()?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".mer"))
        .collect();
    names.sort();
    did_you_mean(want, names.iter().map(String::as_str)).map(|n| dir.join(n).display().to_string())
}

/// The folder a dataset reads, and where that path came from; what `mer
/// run` prints before it starts, so a misspelled variable is seen at once.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRoot {
    /// The dataset's name in the recipe (`clips` of `data clips = ...`).
    pub name: String,
    /// Its kind (`me.casme2`).
    pub kind: String,
    /// The resolved `root` parameter.
    pub root: String,
    pub via: Via,
}

impl DataRoot {
    /// One line for a terminal: `clips (me.casme2): /data/CASME2, from
    /// CASME2_ROOT` or `..., the default: CASME2_ROOT is not set`.
    pub fn describe(&self) -> String {
        let whence = match &self.via {
            Via::Env(var) => format!("from {var}"),
            Via::EnvDefault(var) => format!("the recipe's default: {var} is not set"),
            Via::Override => "set by --set".into(),
            Via::Default(_) | Via::FrameworkDefault => "the kind's default".into(),
            Via::Recipe => "written in the recipe".into(),
        };
        format!("{} ({}): {}, {whence}", self.name, self.kind, self.root)
    }
}

/// Every dataset's `root` in a variant's tree, in name order. Datasets
/// without a `root` (generated ones) are left out.
pub fn data_roots(tree: &Tree) -> Vec<DataRoot> {
    let Some(Node {
        val: Val::Map(data),
        ..
    }) = tree.get("data")
    else {
        return Vec::new();
    };
    data.iter()
        .filter_map(|(name, n)| {
            let Val::Call(c) = &n.val else { return None };
            let root = c.params.get("root")?;
            let Val::Str(path) = &root.val else {
                return None;
            };
            Some(DataRoot {
                name: name.clone(),
                kind: c.kind.clone(),
                root: path.clone(),
                via: root.origin.via.clone(),
            })
        })
        .collect()
}

/// Finds a node by dotted path, entering components through their params.
pub fn lookup<'t>(tree: &'t Tree, path: &str) -> Option<&'t Node> {
    let mut segs = path.split('.');
    let mut cur = tree.get(segs.next()?)?;
    for s in segs {
        cur = match &cur.val {
            Val::Map(m) => m.get(s)?,
            Val::Call(c) => c.params.get(s)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variants(src: &str, sets: &[&str]) -> (Session, Vec<Variant>) {
        let mut s = Session::with_env(Box::new(|k| {
            (k == "HOME_DATA").then(|| "/data".to_string())
        }));
        let f = s.load_text("t.mer".into(), None, src.to_string());
        let name = s.blocks(f).last().expect("a block").0.clone();
        let bt = s.resolve_block(f, &name).expect("resolves");
        let sets: Vec<String> = sets.iter().map(|x| x.to_string()).collect();
        let ov = s.parse_overrides(&sets);
        let v = s.variants(&bt, &ov);
        (s, v)
    }

    fn get(v: &Variant, path: &str) -> Option<Value> {
        lookup(&v.tree, path).map(Node::to_value)
    }

    const BASE: &str = r#"mer 0.1
fragment base {
  train { epochs = 10, batch = 4 }
  tags = { a = "1", b = "2" }
  sizes = [1, 2, 3]
  model {
    enc  = nn.linear(x) { out = 8, bias = false }
    head = nn.linear(enc) { out = 2 }
  }
}
"#;

    #[test]
    fn maps_merge_lists_replace() {
        let src = format!("{BASE}experiment e extends base {{ train {{ epochs = 3 }}\n tags = {{ b = \"3\" }}\n sizes = [9] }}");
        let (s, v) = variants(&src, &[]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(get(&v[0], "train.epochs"), Some(Value::Int(3)));
        assert_eq!(get(&v[0], "train.batch"), Some(Value::Int(4)));
        assert_eq!(get(&v[0], "tags.a"), Some(Value::Str("1".into())));
        assert_eq!(get(&v[0], "tags.b"), Some(Value::Str("3".into())));
        assert_eq!(get(&v[0], "sizes"), Some(Value::List(vec![Value::Int(9)])));
    }

    #[test]
    fn same_kind_merges_params_other_kind_resets() {
        let src = format!(
            "{BASE}experiment e extends base {{\n model.enc = nn.linear {{ out = 16 }}\n model.head = nn.mlp(enc) {{ out = 2 }} }}"
        );
        let (_, v) = variants(&src, &[]);
        // Same kind, no inputs written: inputs kept, params merged.
        match get(&v[0], "model.enc") {
            Some(Value::Call(c)) => {
                assert_eq!(c.params.get("out"), Some(&Value::Int(16)));
                assert_eq!(c.params.get("bias"), Some(&Value::Bool(false)));
                assert_eq!(c.inputs.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // Different kind: nothing of nn.linear survives.
        match get(&v[0], "model.head") {
            Some(Value::Call(c)) => {
                assert_eq!(c.kind, "nn.mlp");
                assert_eq!(c.params.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delete_and_delete_missing() {
        let src = format!("{BASE}experiment e extends base {{ ~tags.a\n ~train.nope }}");
        let (s, v) = variants(&src, &[]);
        assert_eq!(get(&v[0], "tags.a"), None);
        assert_eq!(s.diags.len(), 1);
        assert_eq!(s.diags[0].code, "mer::delete-missing");
    }

    #[test]
    fn ablations_see_the_final_base_and_overrides_win() {
        let src = format!(
            "{BASE}experiment e extends base {{\n train.epochs = 5\n ablation \"small\" {{ enc.out = 4 }}\n}}"
        );
        let (s, v) = variants(&src, &["train.epochs=7", "head.out=3"]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].name, "small");
        for x in &v {
            assert_eq!(get(x, "train.epochs"), Some(Value::Int(7)));
            assert_eq!(get(x, "model.head.out"), Some(Value::Int(3)));
        }
        assert_eq!(get(&v[0], "model.enc.out"), Some(Value::Int(8)));
        assert_eq!(get(&v[1], "model.enc.out"), Some(Value::Int(4)));
        // Provenance: the override replaced the body, which replaced the base.
        let n = lookup(&v[0].tree, "train.epochs").expect("set");
        assert_eq!(n.origin.via, Via::Override);
        assert_eq!(n.history.len(), 2);
    }

    #[test]
    fn sweep_is_a_grid() {
        let src = format!("{BASE}experiment e extends base {{ sweep {{ train.batch = [1, 2]\n enc.out = [4, 8, 16] }} }}");
        let (s, v) = variants(&src, &[]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v.len(), 6);
        assert_eq!(v[0].name, "base/train.batch=1,enc.out=4");
        assert_eq!(get(&v[5], "model.enc.out"), Some(Value::Int(16)));
    }

    #[test]
    fn env_with_default_and_provenance() {
        let src =
            "mer 0.1\nexperiment e { root = env(\"HOME_DATA\")\n other = env(\"NOPE_X\", \"d\") }";
        let (s, v) = variants(src, &[]);
        assert!(s.diags.is_empty());
        assert_eq!(get(&v[0], "root"), Some(Value::Str("/data".into())));
        assert_eq!(
            lookup(&v[0].tree, "root").map(|n| n.origin.via.clone()),
            Some(Via::Env("HOME_DATA".into()))
        );
        assert_eq!(get(&v[0], "other"), Some(Value::Str("d".into())));
        // The default of an unset variable says which variable was read.
        assert_eq!(
            lookup(&v[0].tree, "other").map(|n| n.origin.via.clone()),
            Some(Via::EnvDefault("NOPE_X".into()))
        );
    }

    #[test]
    fn data_roots_say_where_each_path_came_from() {
        let src = "mer 0.1\nexperiment e {\n data a = me.casme2 { root = env(\"HOME_DATA\") }\n data b = me.samm { root = env(\"SAMM_ROOOT\", \"data/SAMM\") }\n data c = synth.me { subjects = 2 }\n data d = me.smic { root = \"/smic\" } }";
        let (s, v) = variants(src, &[]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        let roots = data_roots(&v[0].tree);
        let lines: Vec<String> = roots.iter().map(DataRoot::describe).collect();
        assert_eq!(
            lines,
            [
                "a (me.casme2): /data, from HOME_DATA",
                "b (me.samm): data/SAMM, the recipe's default: SAMM_ROOOT is not set",
                "d (me.smic): /smic, written in the recipe",
            ]
        );
    }

    const SWEPT: &str =
        "experiment e extends base {\n sweep { train.batch = [1, 2]\n enc.out = [4, 8] }\n}";

    fn codes(s: &Session) -> Vec<&'static str> {
        s.diags.iter().map(|d| d.code).collect()
    }

    #[test]
    fn an_override_of_a_sweep_axis_is_an_error_at_the_override() {
        let src = format!("{BASE}{SWEPT}");
        let (s, v) = variants(&src, &["train.batch=7"]);
        // One error, however many points it hits.
        assert_eq!(codes(&s), ["mer::sweep"], "{:?}", s.diags);
        let d = &s.diags[0];
        let at = d.primary.as_ref().expect("located");
        assert_eq!(s.sources.get(at.span.file).name, "--set #1");
        let help = d.help.as_deref().unwrap_or("");
        assert!(help.contains("--set '~sweep.train.batch'"), "{help}");
        // Names come from the resolved values, never from the grid alone.
        assert!(
            v.iter().all(|x| x.name.contains("train.batch=7")),
            "{:?}",
            v.iter().map(|x| &x.name).collect::<Vec<_>>()
        );
        // Deleting a swept key, or writing inside one, is the same mistake.
        let (s, _) = variants(&src, &["~train.batch"]);
        assert_eq!(codes(&s), ["mer::sweep"]);
        let (s, _) = variants(&src, &["model.enc=nn.mlp(x) { out = 3 }"]);
        assert_eq!(codes(&s), ["mer::sweep"]);
        // An override elsewhere, or one that keeps the axis, is fine.
        let (s, v) = variants(
            &src,
            &["train.epochs=1", "model.enc=nn.linear { bias = true }"],
        );
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v[0].name, "base/train.batch=1,enc.out=4");
    }

    #[test]
    fn an_ablation_that_writes_a_sweep_axis_keeps_its_value_and_drops_the_axis() {
        let src = format!(
            "{BASE}experiment e extends base {{\n sweep {{ train.batch = [1, 2]\n enc.out = [4, 8] }}\n ablation \"big\" {{ train {{ batch = 64 }} }}\n ablation \"ok\" {{ train.epochs = 1 }}\n}}"
        );
        let (s, v) = variants(&src, &[]);
        assert_eq!(codes(&s), ["mer::sweep"], "{:?}", s.diags);
        let d = &s.diags[0];
        assert!(!d.is_error());
        assert!(
            d.message.contains("ablation `big` sets `train.batch`"),
            "{}",
            d.message
        );
        let at = d.primary.as_ref().expect("located").span;
        assert_eq!(&src[at.start..at.end], "batch");
        assert_eq!(d.secondary.len(), 1, "points at the axis too");
        let names: Vec<&str> = v.iter().map(|x| x.name.as_str()).collect();
        // base 4 points, `big` only the other axis, `ok` 4 points.
        assert_eq!(v.len(), 10, "{names:?}");
        let big: Vec<&Variant> = v
            .iter()
            .filter(|x| x.ablation.as_deref() == Some("big"))
            .collect();
        assert_eq!(big.len(), 2, "{names:?}");
        assert_eq!(big[0].name, "big/enc.out=4");
        assert!(big
            .iter()
            .all(|x| get(x, "train.batch") == Some(Value::Int(64))));
    }

    #[test]
    fn tilde_sweep_deletes_the_grid_or_one_axis() {
        let src = format!("{BASE}{SWEPT}");
        let (s, v) = variants(&src, &["~sweep"]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "base");
        // One axis, written with or without the `model.` section.
        for axis in ["~sweep.enc.out", "~sweep.model.enc.out"] {
            let (s, v) = variants(&src, &[axis]);
            assert!(s.diags.is_empty(), "{axis}: {:?}", s.diags);
            assert_eq!(v.len(), 2, "{axis}");
            assert_eq!(v[1].name, "base/train.batch=2");
        }
        // Dropping the axis makes the override legal: that is the fix the
        // error suggests.
        let (s, v) = variants(&src, &["~sweep.train.batch", "train.batch=7"]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert!(v
            .iter()
            .all(|x| get(x, "train.batch") == Some(Value::Int(7))));
        // A new grid for one axis.
        let (s, v) = variants(&src, &["sweep.train.batch=[5, 6, 7]"]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v.len(), 6);
        assert_eq!(get(&v[5], "train.batch"), Some(Value::Int(7)));
        // Deleting what is not swept is an error with a suggestion.
        let (s, _) = variants(&src, &["~sweep.train.bach"]);
        assert_eq!(codes(&s), ["mer::delete-missing"]);
        assert_eq!(
            s.diags[0].help.as_deref(),
            Some("did you mean `train.batch`?")
        );
        let (s, _) = variants(BASE.replace("fragment", "experiment").as_str(), &["~sweep"]);
        assert_eq!(codes(&s), ["mer::delete-missing"]);
    }

    #[test]
    fn tilde_sweep_in_a_recipe_drops_inherited_axes() {
        let src = format!(
            "{BASE}fragment swept extends base {{ sweep {{ train.batch = [1, 2]\n enc.out = [4, 8] }} }}\nexperiment e extends swept {{ ~sweep.train.batch\n train.batch = 3 }}"
        );
        let (s, v) = variants(&src, &[]);
        assert!(s.diags.is_empty(), "{:?}", s.diags);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "base/enc.out=4");
        assert_eq!(get(&v[0], "train.batch"), Some(Value::Int(3)));
        // In an ablation it is misplaced: every ablation runs every point.
        let src = format!("{BASE}experiment e extends base {{ sweep {{ train.batch = [1] }}\n ablation \"a\" {{ ~sweep }} }}");
        let (s, _) = variants(&src, &[]);
        assert_eq!(codes(&s), ["mer::misplaced"]);
    }

    #[test]
    fn overrides_read_keywords_case_insensitively_with_a_warning() {
        let src = BASE.replace("fragment", "experiment");
        let (s, v) = variants(
            &src,
            &["enc.bias=True", "head.bias=FALSE", "train.note=None"],
        );
        assert_eq!(get(&v[0], "model.enc.bias"), Some(Value::Bool(true)));
        assert_eq!(get(&v[0], "model.head.bias"), Some(Value::Bool(false)));
        assert_eq!(get(&v[0], "train.note"), Some(Value::None));
        assert_eq!(s.diags.len(), 3);
        assert!(s
            .diags
            .iter()
            .all(|d| !d.is_error() && d.code == "mer::override"));
        assert_eq!(s.diags[0].message, "read `True` as `true`");
        // A name that only looks like one stays a name.
        let (s, v) = variants(&src, &["enc.bias=Truth"]);
        assert!(s.diags.is_empty());
        assert_eq!(
            get(&v[0], "model.enc.bias"),
            Some(Value::Ref("Truth".into()))
        );
    }

    #[test]
    fn an_unparsable_override_value_shows_the_quoting() {
        let mut s = Session::with_env(Box::new(|_| None));
        s.parse_overrides(&["data.root=/x/y".to_string(), "title=two words".to_string()]);
        let helps: Vec<&str> = s.diags.iter().filter_map(|d| d.help.as_deref()).collect();
        assert_eq!(helps.len(), 2, "{:?}", s.diags);
        assert!(
            helps[0].ends_with("--set 'data.root=\"/x/y\"'"),
            "{}",
            helps[0]
        );
        assert!(
            helps[1].ends_with("--set 'title=\"two words\"'"),
            "{}",
            helps[1]
        );
        // A broken key keeps the general help.
        let mut s = Session::with_env(Box::new(|_| None));
        s.parse_overrides(&["train..epochs=3".to_string()]);
        assert!(s.diags[0]
            .help
            .as_deref()
            .unwrap_or("")
            .contains("`key.path=value`"));
    }

    #[test]
    fn conflicting_overrides() {
        let (s, _) = variants(
            BASE.replace("fragment", "experiment").as_str(),
            &["train.epochs=1", "train.epochs=2"],
        );
        assert!(s
            .diags
            .iter()
            .any(|d| d.code == "mer::conflicting-override"));
    }
}
