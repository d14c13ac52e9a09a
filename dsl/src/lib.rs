//! `mer-dsl`: the `.mer` recipe language.
//!
//! recipe text ─pest→ [`ast`] ─[`resolve`]→ variant trees ─[`check`]→
//! canonical [`check::ResolvedRecipe`] (RON, BLAKE3) ─[`graph`]→ [`graph::GraphIr`]
//!
//! This crate never touches candle: it can check any recipe in milliseconds
//! against the kind schemas a [`schema::Catalog`] provides.

// Diagnostics are returned on the cold error path only; boxing them would
// cost every call site a deref for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod ast;
pub mod check;
pub mod diag;
pub mod explain;
pub mod graph;
pub mod parse;
pub mod plan;
pub mod resolve;
pub mod schema;
pub mod source;
pub mod value;

use ast::BlockKind;
use check::{Checker, ResolvedRecipe};
use graph::GraphIr;
use resolve::{Session, Variant};
use schema::Catalog;
use source::{FileId, Span};
use std::collections::HashSet;
use std::path::Path;

/// One variant that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedVariant {
    pub variant: Variant,
    pub recipe: ResolvedRecipe,
    /// BLAKE3 of the variant's canonical RON.
    pub hash: String,
    pub graph: GraphIr,
}

/// An experiment (or fragment) of a file, with its checked variants.
#[derive(Debug, Clone)]
pub struct CheckedExperiment {
    pub name: String,
    pub kind: BlockKind,
    pub name_span: Span,
    pub variants: Vec<CheckedVariant>,
    /// BLAKE3 over all variants: the experiment's identity in the run store.
    pub hash: String,
}

impl CheckedExperiment {
    pub fn variant(&self, name: &str) -> Option<&CheckedVariant> {
        self.variants.iter().find(|v| v.variant.name == name)
    }
}

/// Everything learned about one recipe file.
#[derive(Debug, Default)]
pub struct FileCheck {
    pub file: Option<FileId>,
    pub experiments: Vec<CheckedExperiment>,
}

/// Loads, resolves and checks every block of a recipe file (or only
/// `only`). Diagnostics accumulate in `session.diags`, deduplicated.
pub fn check_file(
    session: &mut Session,
    catalog: &dyn Catalog,
    path: &Path,
    sets: &[String],
    only: Option<&str>,
) -> FileCheck {
    let Some(file) = session.load(path, None) else {
        dedup(session);
        return FileCheck::default();
    };
    check_loaded(session, catalog, file, sets, only)
}

/// As [`check_file`], for text already loaded (tests, fuzzing, stdin).
pub fn check_loaded(
    session: &mut Session,
    catalog: &dyn Catalog,
    file: FileId,
    sets: &[String],
    only: Option<&str>,
) -> FileCheck {
    let overrides = session.parse_overrides(sets);
    let mut out = FileCheck {
        file: Some(file),
        experiments: Vec::new(),
    };
    for (name, kind, name_span) in session.blocks(file) {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let Some(bt) = session.resolve_block(file, &name) else {
            continue;
        };
        let complete = kind == BlockKind::Experiment;
        let variants = if complete {
            session.variants(&bt, &overrides)
        } else {
            vec![Variant {
                name: "base".into(),
                ablation: None,
                sweep_point: Vec::new(),
                tree: bt.tree.clone(),
            }]
        };
        let mut checked = Vec::new();
        // Diagnostics of the first variant (the base); a later variant
        // reports only what is new to it, tagged with its name.
        let mut base_keys: Option<HashSet<DiagKey>> = None;
        for mut v in variants {
            let start = session.diags.len();
            let label = v.ablation.clone().unwrap_or_else(|| v.name.clone());
            'variant: {
                let recipe = {
                    let mut c = Checker::new(session, catalog, &bt.uses);
                    c.check(&mut v, &name, name_span, complete)
                };
                if !complete {
                    break 'variant;
                }
                // Lower even when the checker found errors: dangling
                // references and cycles are independent mistakes and belong
                // in the same pass.
                let graph = graph::lower(session, catalog, &v.tree);
                let (Some(recipe), Some(mut graph)) = (recipe, graph) else {
                    break 'variant;
                };
                // An ablation that swaps a branch leaves its nodes feeding
                // nothing: they are pruned, with one note instead of a
                // `~` line (and a warning) per node.
                if v.ablation.is_some() {
                    let pruned = graph::prune_dead(&mut graph);
                    if !pruned.is_empty() {
                        let spans: HashSet<Span> =
                            pruned.iter().filter_map(|(_, sp)| *sp).collect();
                        let mut i = start;
                        while i < session.diags.len() {
                            let d = &session.diags[i];
                            if d.code == "mer::unused-node"
                                && d.primary.as_ref().is_some_and(|p| spans.contains(&p.span))
                            {
                                session.diags.remove(i);
                            } else {
                                i += 1;
                            }
                        }
                        let names: Vec<&str> = pruned.iter().map(|(n, _)| n.as_str()).collect();
                        let mut d = diag::Diagnostic::note(
                            "mer::pruned",
                            format!(
                                "{} model node(s) feed no loss or metric here and are left out: {}",
                                names.len(),
                                names.join(", ")
                            ),
                        );
                        if let Some(sp) = pruned.iter().find_map(|(_, sp)| *sp) {
                            d = d.at(sp, "from here on");
                        }
                        session.diags.push(d.help(
                            "nothing to do: write `~NAME` in the ablation to say so explicitly",
                        ));
                    }
                }
                let shape_diags = catalog.check_shapes(&graph, &session.sources);
                let shape_errors = shape_diags.iter().any(|d| d.is_error());
                session.diags.extend(shape_diags);
                if shape_errors {
                    break 'variant;
                }
                let hash = recipe.hash();
                checked.push(CheckedVariant {
                    variant: v,
                    recipe,
                    hash,
                    graph,
                });
            }
            let new: Vec<diag::Diagnostic> = session.diags.drain(start..).collect();
            match &base_keys {
                None => {
                    base_keys = Some(new.iter().map(key).collect());
                    session.diags.extend(new);
                }
                Some(base) => {
                    for mut d in new {
                        if base.contains(&key(&d)) {
                            continue;
                        }
                        d.message = format!("{} (in variant `{label}`)", d.message);
                        session.diags.push(d);
                    }
                }
            }
        }
        let mut h = blake3::Hasher::new();
        for v in &checked {
            h.update(v.variant.name.as_bytes());
            h.update(b"\n");
            h.update(v.hash.as_bytes());
            h.update(b"\n");
        }
        out.experiments.push(CheckedExperiment {
            name,
            kind,
            name_span,
            variants: checked,
            hash: h.finalize().to_hex().to_string(),
        });
    }
    dedup(session);
    out
}

type DiagKey = (&'static str, String, Option<(FileId, usize, usize)>);

fn key(d: &diag::Diagnostic) -> DiagKey {
    (
        d.code,
        d.message.clone(),
        d.primary
            .as_ref()
            .map(|p| (p.span.file, p.span.start, p.span.end)),
    )
}

/// Removes repeats (the same error seen through several variants).
pub fn dedup(session: &mut Session) {
    let mut seen = HashSet::new();
    session.diags.retain(|d| seen.insert(key(d)));
}
