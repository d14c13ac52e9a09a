//! `mer-report`: paper-style reports from the run store, MLflow tracking,
//! HTTP and pretrained-file fetching; no candle.
//!
//! Paper-style reports from the run store. A report is first built as
//! [`Block`]s (sections, text, tables with captions, figures), then rendered
//! as Markdown or LaTeX, so both formats hold the same numbers. Output is
//! deterministic: sorted, fixed precision, no timestamps or absolute paths.
//!
//! Every table's caption says how its numbers were computed: pooled over
//! folds or per fold, the metric's definition (binary or macro …), whether
//! anything was test-tuned, the seeds and the recipe hashes.

#![warn(missing_docs)]

pub mod artefacts;
pub mod figures;
pub mod net;
mod render;
pub mod tracking;

use mer_dsl::value::Value;
use mer_store::notes::{class_floor, floor_words, COLLAPSED, FLOOR, ONE_CLASS};
use mer_store::{StoredMetric, VariantResult};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use render::{latex, markdown_of};

/// A table: a caption that says how the numbers were computed, a header and
/// rows of already formatted cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Says how the numbers were computed; shown above the table.
    pub caption: String,
    /// Header cells, one per column.
    pub columns: Vec<String>,
    /// Body rows, each with one formatted cell per column.
    pub rows: Vec<Vec<String>>,
}

/// One piece of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// An experiment (level 1).
    Title(String),
    /// A section (level 2).
    Section(String),
    /// A paragraph of plain text (escaped for LaTeX).
    Text(String),
    /// A bulleted list, one item per string; omitted when empty.
    List(Vec<String>),
    /// A captioned table.
    Table(Table),
    /// A figure file, relative to the report.
    Figure {
        /// The SVG path relative to the report; LaTeX includes the `.png` beside it.
        path: String,
        /// The text shown under the figure.
        caption: String,
    },
}

/// A variant's results and the folder they were read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The variant's `metrics.json`, parsed.
    pub result: VariantResult,
    /// The folder that held `metrics.json` (the seed's folder in the run store).
    pub dir: PathBuf,
}

/// Every `metrics.json` under `dir` with its folder, sorted by
/// (experiment, base first, variant, seed).
pub fn load_runs(dir: &Path) -> Result<Vec<Loaded>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                // `folds/` holds no variant results; the store's `cache/`
                // holds tower features, thousands of files.
                if p.file_name().is_some_and(|n| n != "folds") && p != dir.join("cache") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n == "metrics.json") {
                let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let mut result: VariantResult =
                    serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))?;
                if result.store_hash.is_empty() {
                    // Older stores: `<experiment>/<hash[..12]>/<variant>/seed<n>/`.
                    if let Some(h) = d.parent().and_then(Path::parent).and_then(Path::file_name) {
                        result.store_hash = h.to_string_lossy().into_owned();
                    }
                }
                result.recipe_keys = recipe_keys(&d.join("recipe.ron"));
                out.push(Loaded {
                    result,
                    dir: d.clone(),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no finished runs (metrics.json) here",
            dir.display()
        ));
    }
    out.sort_by(|a, b| {
        let (a, b) = (&a.result, &b.result);
        (&a.experiment, a.variant != "base", &a.variant, a.seed).cmp(&(
            &b.experiment,
            b.variant != "base",
            &b.variant,
            b.seed,
        ))
    });
    Ok(out)
}

/// `recipe.ron` flattened to `key = value` (a component is its kind, then
/// its parameters); empty when the file is absent or unreadable (older
/// stores, fixtures), and the report then names fewer differences.
fn recipe_keys(path: &Path) -> Vec<(String, String)> {
    fn flatten(key: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Map(m) => {
                for (k, x) in m {
                    flatten(&format!("{key}.{k}"), x, out);
                }
            }
            Value::Call(c) => {
                out.push((key.to_string(), c.kind.clone()));
                for (k, x) in &c.params {
                    flatten(&format!("{key}.{k}"), x, out);
                }
            }
            other => out.push((key.to_string(), other.to_string())),
        }
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    let Ok(recipe) = ron::from_str::<mer_dsl::check::ResolvedRecipe>(&text) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (k, v) in &recipe.config {
        flatten(k, v, &mut out);
    }
    out
}

/// The run-store folder a result came from: the experiment hash's first
/// 12 characters (empty when unknown).
pub(crate) fn store_key(r: &VariantResult) -> &str {
    r.store_hash.get(..12).unwrap_or(&r.store_hash)
}

fn short(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

/// Every `metrics.json` under `dir`, sorted by (experiment, variant, seed).
pub fn load_results(dir: &Path) -> Result<Vec<VariantResult>, String> {
    Ok(load_runs(dir)?.into_iter().map(|l| l.result).collect())
}

/// Renders results as Markdown.
pub fn markdown(results: &[VariantResult]) -> String {
    markdown_of(&build(results, &[]))
}

fn fmt(m: &StoredMetric, v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if m.name.starts_with("confusion") => format!("{x:.0}"),
        Some(x) if m.own_units => format!("{x:.4}"),
        Some(x) => format!("{:.2}", x * 100.0),
    }
}

/// A pooled cell, marked † when it saw the test set.
fn pooled_cell(m: &StoredMetric) -> String {
    let v = fmt(m, m.pooled);
    if m.test_tuned {
        format!("{v}†")
    } else {
        v
    }
}

/// The metrics a summary shows: aggregates, not per-label columns.
fn headline(ms: &[StoredMetric]) -> Vec<&StoredMetric> {
    ms.iter().filter(|m| !m.name.contains('[')).collect()
}

fn selection_words(s: &str) -> &'static str {
    match s {
        "inner_val" => "best epoch by loss on an inner validation split of the training subjects",
        "test_best_epoch" => "TEST-TUNED: best epoch chosen on the test fold (reproduces papers; not a fair estimate)",
        _ => "last epoch (fixed budget)",
    }
}

pub(crate) fn unique<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v = Vec::new();
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v
}

/// A metric's definition up to its first `;` outside parentheses (the
/// rest lists per-fold details that the variant section spells out).
fn first_clause(how: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in how.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ';' if depth <= 0 => return how[..i].trim(),
            _ => {}
        }
    }
    how.trim()
}

/// Which classification notes a caption adds: floors and collapsed
/// predictions belong to pooled numbers, one-class folds to per-fold ones.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Notes {
    None,
    Pooled,
    PerFold,
    Both,
}

/// A `how` split at its top-level `;` (the clauses `metrics.rs` writes).
fn clauses(how: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in how.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ';' if depth <= 0 => {
                out.push(how[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(how[start..].trim());
    out
}

/// Class counts read back from a stored confusion matrix.
struct Tally {
    names: Vec<String>,
    /// Test samples per class (row sums), over every class.
    truth: Vec<usize>,
    /// Predictions per class (column sums), aligned with `names`.
    pred: Vec<usize>,
    /// Folds whose test set holds one class.
    one_class: Vec<String>,
}

fn tally(r: &VariantResult) -> Option<Tally> {
    // `confusion[t,p]@node` cuts cover part of the test set: not these.
    let conf: Vec<&StoredMetric> = r
        .metrics
        .iter()
        .filter(|m| m.name.starts_with("confusion[") && m.name.ends_with(']'))
        .collect();
    let (names, preds) = confusion_axes(&conf)?;
    let cell = |t: &str, p: &str| {
        conf.iter()
            .find(|m| m.name == format!("confusion[{t},{p}]"))
            .copied()
    };
    let count = |v: Option<f64>| v.unwrap_or(0.0).round().max(0.0) as usize;
    let truth = names
        .iter()
        .map(|t| {
            preds
                .iter()
                .map(|p| count(cell(t, p).and_then(|m| m.pooled)))
                .sum()
        })
        .collect();
    let pred = names
        .iter()
        .map(|p| {
            names
                .iter()
                .map(|t| count(cell(t, p).and_then(|m| m.pooled)))
                .sum()
        })
        .collect();
    let one_class = r
        .folds
        .iter()
        .filter(|f| {
            let in_fold = |m: &StoredMetric| {
                count(
                    m.per_fold
                        .iter()
                        .find(|(n, _)| n == *f)
                        .and_then(|(_, v)| *v),
                )
            };
            names
                .iter()
                .filter(|t| {
                    preds
                        .iter()
                        .any(|p| cell(t, p).is_some_and(|m| in_fold(m) > 0))
                })
                .count()
                == 1
        })
        .cloned()
        .collect();
    Some(Tally {
        names,
        truth,
        pred,
        one_class,
    })
}

/// What a classification metric's reader needs beside its value.
struct ClassFacts {
    /// `always `x` 57.00, chance 33.33`; `None` when the run kept nothing
    /// to derive it from.
    floor: Option<String>,
    /// The one class every pooled prediction is.
    collapsed: Option<String>,
    one_class: Vec<String>,
}

/// Derived from the stored confusion matrix where there is one (every
/// store, old or new), else quoted from the clauses `metrics.rs` writes
/// into `how`. `None` for metrics other than accuracy, UAR and UF1.
fn class_facts(r: &VariantResult, m: &StoredMetric) -> Option<ClassFacts> {
    let stat = m.kind.strip_prefix("metric.")?;
    if !["accuracy", "uar", "uf1"].contains(&stat) || m.name.contains('[') {
        return None;
    }
    let one_class_matters = stat != "accuracy";
    if let Some(t) = tally(r).filter(|_| !m.name.contains('@')) {
        let predicted: Vec<usize> = (0..t.pred.len()).filter(|&i| t.pred[i] > 0).collect();
        return Some(ClassFacts {
            floor: class_floor(stat, &t.truth)
                .map(|(maj, always, chance)| floor_words(&t.names[maj], always, chance)),
            collapsed: (t.pred.iter().sum::<usize>() > 1 && predicted.len() == 1)
                .then(|| t.names[predicted[0]].clone()),
            one_class: if one_class_matters {
                t.one_class
            } else {
                vec![]
            },
        });
    }
    let cs = clauses(&m.how);
    let after = |prefix: &str| cs.iter().find_map(|c| c.strip_prefix(prefix));
    Some(ClassFacts {
        floor: after(FLOOR).map(str::to_string),
        collapsed: after(COLLAPSED).map(|c| c.trim_matches('`').to_string()),
        one_class: after(ONE_CLASS)
            .and_then(|c| c.split(" (").next())
            .map(|l| l.split(", ").map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

/// The caption's sentences on floors, collapsed predictions and one-class
/// folds for the classification metrics among `metrics`.
fn class_notes(rs: &[&VariantResult], metrics: &[&str], notes: Notes) -> String {
    if notes == Notes::None {
        return String::new();
    }
    let seeds: BTreeSet<i64> = rs.iter().map(|r| r.seed).collect();
    let who = |r: &VariantResult| {
        if seeds.len() > 1 {
            format!("{} seed {}", r.variant, r.seed)
        } else {
            r.variant.clone()
        }
    };
    let (mut floors, mut collapsed, mut one) = (Vec::new(), Vec::new(), Vec::new());
    for name in metrics {
        let facts: Vec<(&VariantResult, &StoredMetric, ClassFacts)> = rs
            .iter()
            .filter_map(|r| {
                let m = r.metrics.iter().find(|m| m.name == *name)?;
                Some((*r, m, class_facts(r, m)?))
            })
            .collect();
        if facts.is_empty() {
            continue;
        }
        let words = |f: &ClassFacts| {
            f.floor
                .clone()
                .unwrap_or_else(|| "unknown (the run kept no class counts)".into())
        };
        let all: Vec<String> = unique(facts.iter().map(|(_, _, f)| words(f)));
        if all.len() == 1 {
            floors.push(format!("`{name}` {}", all[0]));
        } else {
            let each: Vec<String> = facts
                .iter()
                .map(|(r, _, f)| format!("{}: {}", who(r), words(f)))
                .collect();
            floors.push(format!("`{name}` {}", each.join(", ")));
        }
        for (r, _, f) in &facts {
            if let Some(c) = &f.collapsed {
                collapsed.push(format!("{} predicts only `{c}`", who(r)));
            }
        }
        let with_one: Vec<&(&VariantResult, &StoredMetric, ClassFacts)> = facts
            .iter()
            .filter(|(_, _, f)| !f.one_class.is_empty())
            .collect();
        if !with_one.is_empty() {
            let lists: Vec<String> =
                unique(with_one.iter().map(|(_, _, f)| f.one_class.join(", ")));
            let folds = if lists.len() == 1 {
                lists[0].clone()
            } else {
                with_one
                    .iter()
                    .map(|(r, _, f)| format!("{}: {}", who(r), f.one_class.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            // The per-fold mean again without those folds, so a reader sees
            // how much they lift it.
            let without: Vec<String> = with_one
                .iter()
                .map(|(r, m, f)| {
                    let vs: Vec<f64> = m
                        .per_fold
                        .iter()
                        .filter(|(n, _)| !f.one_class.contains(n))
                        .filter_map(|(_, v)| *v)
                        .collect();
                    let v = (!vs.is_empty()).then(|| vs.iter().sum::<f64>() / vs.len() as f64);
                    format!("{} ({})", fmt(m, v), who(r))
                })
                .collect();
            one.push(format!(
                "Folds whose test set holds one class ({folds}): there `{name}` is that class's {} alone, 100 when every sample is right; they count like any other fold in the per-fold mean, which without them is {}",
                if name.starts_with("uar") { "recall" } else { "F1" },
                without.join(", ")
            ));
        }
    }
    let mut out = String::new();
    if matches!(notes, Notes::Pooled | Notes::Both) {
        if !floors.is_empty() {
            out.push_str(&format!(
                "Floors on the same pooled test labels (always predicting the majority class; uniform random guessing, from expected counts): {}. ",
                floors.join("; ")
            ));
        }
        let collapsed = unique(collapsed);
        if !collapsed.is_empty() {
            out.push_str(&format!(
                "Predictions collapse to one class: {}. ",
                collapsed.join(", ")
            ));
        }
    }
    if matches!(notes, Notes::PerFold | Notes::Both) {
        for o in one {
            out.push_str(&o);
            out.push_str(". ");
        }
    }
    out
}

/// The caption every table carries: aggregation, metric definitions,
/// floors of classification metrics, selection and test-tuning, seeds,
/// recipe hashes.
fn caption(aggregate: &str, rs: &[&VariantResult], metrics: &[&str], notes: Notes) -> String {
    let seeds: BTreeSet<i64> = rs.iter().map(|r| r.seed).collect();
    let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    let several = rs.iter().any(|r| r.experiment != rs[0].experiment);
    let recipes: Vec<String> = unique(rs.iter().map(|r| {
        let hash = r.recipe_hash.get(..8).unwrap_or(&r.recipe_hash);
        if several {
            format!("{}/{} `{hash}`", r.experiment, r.variant)
        } else {
            format!("{} `{hash}`", r.variant)
        }
    }));
    let selections: Vec<&str> = unique(rs.iter().map(|r| selection_words(&r.select)));
    let mut defs = Vec::new();
    for name in metrics {
        if let Some(m) = rs
            .iter()
            .flat_map(|r| r.metrics.iter())
            .find(|m| m.name == *name)
        {
            let short = first_clause(&m.how);
            defs.push(format!("`{name}` = {short}"));
        }
    }
    let tuned = rs.iter().any(|r| {
        r.metrics
            .iter()
            .any(|m| metrics.contains(&m.name.as_str()) && m.test_tuned)
    });
    let mut c = format!(
        "{aggregate}. {}{}Model selection: {}. {}. Seeds {}; recipes {}.",
        if defs.is_empty() {
            String::new()
        } else {
            format!("{}. ", defs.join("; "))
        },
        class_notes(rs, metrics, notes),
        selections.join(" / "),
        if tuned {
            "† marks test-tuned numbers (a choice was made on test predictions)"
        } else {
            "Nothing here is test-tuned"
        },
        seeds.join(", "),
        recipes.join(", ")
    );
    c = c.replace(".. ", ". ");
    c
}

const POOLED: &str = "Pooled over folds (every test prediction in one set), ×100";

/// One table per headline metric: variants × folds, then the per-fold
/// mean, so a reviewer sees how much of a difference one fold makes.
fn per_fold_tables(out: &mut Vec<Block>, rs: &[&VariantResult], heads: &[String]) {
    let folds: Vec<&String> = unique(rs.iter().flat_map(|r| r.folds.iter()));
    if folds.len() < 2 {
        return;
    }
    for h in heads.iter().filter(|h| !h.starts_with("confusion")) {
        out.push(Block::Section(format!("Per fold: {h}")));
        // The recipe hash beside the variant: a row names exactly one run.
        let mut columns = vec![
            "variant".to_string(),
            "seed".to_string(),
            "recipe".to_string(),
        ];
        columns.extend(folds.iter().map(|f| f.to_string()));
        columns.push("mean".into());
        let mut rows = Vec::new();
        for r in rs {
            let Some(m) = r.metrics.iter().find(|m| &m.name == h) else {
                continue;
            };
            let mut row = vec![
                r.variant.clone(),
                r.seed.to_string(),
                format!("`{}`", short(&r.recipe_hash)),
            ];
            row.extend(folds.iter().map(|f| {
                m.per_fold
                    .iter()
                    .find(|(n, _)| n == *f)
                    .map(|(_, v)| fmt(m, *v))
                    .unwrap_or_else(|| "–".into())
            }));
            row.push(fmt(m, m.per_fold_mean));
            rows.push(row);
        }
        out.push(Block::Table(Table {
            caption: caption(
                "Per fold (each fold's test set alone), then the unweighted mean over folds, ×100",
                rs,
                &[h.as_str()],
                Notes::PerFold,
            ),
            columns,
            rows,
        }));
    }
}

/// Per-label families (`f1[AU1]`, `f1[AU4]` … → `f1`), in first-seen order.
fn label_families(rs: &[&VariantResult]) -> Vec<(String, Vec<String>)> {
    let mut fams: Vec<(String, Vec<String>)> = Vec::new();
    for r in rs {
        for m in &r.metrics {
            let Some((fam, rest)) = m.name.split_once('[') else {
                continue;
            };
            if fam.starts_with("confusion") || fam.ends_with("per_class") {
                continue;
            }
            // `f1[AU1]@other` (a cut to one data node's samples) belongs
            // to the family `f1@other`, label `AU1`.
            let (label, cut) = rest.split_once(']').unwrap_or((rest, ""));
            let (fam, label) = (format!("{fam}{cut}"), label.to_string());
            match fams.iter_mut().find(|(f, _)| *f == fam) {
                Some((_, ls)) => {
                    if !ls.contains(&label) {
                        ls.push(label)
                    }
                }
                None => fams.push((fam, vec![label])),
            }
        }
    }
    fams
}

/// The metric name of one label of a family: `f1[AU1]`, or `f1[AU1]@other`
/// for the cut family `f1@other`.
pub(crate) fn label_metric(fam: &str, label: &str) -> String {
    match fam.split_once('@') {
        Some((base, cut)) => format!("{base}[{label}]@{cut}"),
        None => format!("{fam}[{label}]"),
    }
}

/// AU-LLM Table 1's layout: variants × labels (AUs or classes) and the mean.
fn per_label_tables(out: &mut Vec<Block>, rs: &[&VariantResult]) {
    let paper = &rs[0].reported;
    for (fam, labels) in label_families(rs) {
        out.push(Block::Section(format!("Per label: {fam}")));
        let mut columns = vec!["variant".to_string(), "seed".to_string()];
        columns.extend(labels.iter().cloned());
        columns.push("mean".into());
        let mut rows = Vec::new();
        for r in rs {
            let cell = |name: &str| {
                r.metrics
                    .iter()
                    .find(|m| m.name == name)
                    .map(pooled_cell)
                    .unwrap_or_else(|| "–".into())
            };
            let mut row = vec![r.variant.clone(), r.seed.to_string()];
            row.extend(labels.iter().map(|l| cell(&label_metric(&fam, l))));
            row.push(cell(&fam));
            rows.push(row);
        }
        let from_paper = |k: &str| {
            paper
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| format!("{v}‡"))
        };
        if labels
            .iter()
            .any(|l| from_paper(&label_metric(&fam, l)).is_some())
        {
            let mut row = vec!["reported by paper".to_string(), "–".into()];
            row.extend(
                labels
                    .iter()
                    .map(|l| from_paper(&label_metric(&fam, l)).unwrap_or_else(|| "–".into())),
            );
            row.push(from_paper(&fam).unwrap_or_else(|| "–".into()));
            rows.push(row);
        }
        out.push(Block::Table(Table {
            caption: caption(
                &format!("{POOLED}; one column per label, `mean` is the family's aggregate"),
                rs,
                &[fam.as_str()],
                Notes::None,
            ),
            columns,
            rows,
        }));
    }
}

/// `ours`, with the paper's figure for `metric` beside it when the
/// variant's recipe reports one: `41.18 / 78.80‡`.
fn with_paper(ours: String, r: &VariantResult, metric: &str) -> (String, bool) {
    match r.reported.iter().find(|(k, _)| k == metric) {
        Some((_, v)) => (format!("{ours} / {v}‡"), true),
        None => (ours, false),
    }
}

/// The paper's source line, when the recipe has a `reported` map.
fn paper_note(paper: &[(String, String)]) -> Option<String> {
    if paper.is_empty() {
        return None;
    }
    let source = paper
        .iter()
        .find(|(k, _)| k == "source")
        .map(|(_, v)| v.as_str())
        .unwrap_or("the paper");
    Some(format!("‡ reported by {source}, copied from the recipe's `reported` map; not computed by mer (the paper's folds, preprocessing and selection may differ)."))
}

/// One experiment, or one of its recipes when `split` holds the note that
/// says why the folder's runs are reported apart.
fn experiment_blocks(
    out: &mut Vec<Block>,
    rs: &[&VariantResult],
    figures: &[figures::FigureRef],
    split: Option<String>,
) {
    let first = rs[0];
    match split {
        Some(note) => {
            out.push(Block::Title(format!(
                "{} (experiment hash `{}`)",
                first.experiment,
                short(store_key(first))
            )));
            out.push(Block::Text(note));
        }
        None => out.push(Block::Title(first.experiment.clone())),
    }
    let seeds: BTreeSet<i64> = rs.iter().map(|r| r.seed).collect();
    // Ablations may change the data: one count per variant then.
    let samples: Vec<usize> = unique(rs.iter().map(|r| r.samples));
    let samples = if samples.len() == 1 {
        samples[0].to_string()
    } else {
        rs.iter()
            .map(|r| format!("{} ({})", r.samples, r.variant))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    out.push(Block::Text(format!(
        "Protocol `{}` over {samples} samples; seeds {}. Scores ×100 (MAE raw).",
        first.protocol,
        seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )));
    let heads: Vec<String> = unique(
        rs.iter()
            .flat_map(|r| headline(&r.metrics).into_iter().map(|m| m.name.clone())),
    );
    if !heads.is_empty() {
        out.push(Block::Section("Variants (pooled over folds)".into()));
        let mut columns: Vec<String> = ["variant", "seed", "recipe", "folds"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        columns.extend(heads.iter().cloned());
        let mut rows = Vec::new();
        for r in rs {
            let folds = if r.complete {
                r.folds.len().to_string()
            } else {
                format!("{} (incomplete)", r.folds.len())
            };
            let mut row = vec![
                r.variant.clone(),
                r.seed.to_string(),
                format!("`{}`", r.recipe_hash.get(..8).unwrap_or(&r.recipe_hash)),
                folds,
            ];
            row.extend(heads.iter().map(|h| {
                r.metrics
                    .iter()
                    .find(|m| &m.name == h)
                    .map(pooled_cell)
                    .unwrap_or_else(|| "–".into())
            }));
            rows.push(row);
        }
        let paper = &first.reported;
        if paper.iter().any(|(k, _)| heads.contains(k)) {
            let mut row: Vec<String> = ["reported by paper", "–", "–", "–"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.extend(heads.iter().map(|h| {
                paper
                    .iter()
                    .find(|(k, _)| k == h)
                    .map(|(_, v)| format!("{v}‡"))
                    .unwrap_or_else(|| "–".into())
            }));
            rows.push(row);
        }
        let names: Vec<&str> = heads.iter().map(String::as_str).collect();
        out.push(Block::Table(Table {
            caption: caption(POOLED, rs, &names, Notes::Pooled),
            columns,
            rows,
        }));
        if let Some(n) = paper_note(paper) {
            out.push(Block::Text(n));
        }
    }
    per_label_tables(out, rs);
    per_fold_tables(out, rs, &heads);
    for r in rs {
        variant_blocks(out, r);
    }
    let exp_figs: Vec<&figures::FigureRef> = figures
        .iter()
        .filter(|f| {
            f.experiment == first.experiment && (f.store.is_empty() || f.store == store_key(first))
        })
        .collect();
    if !exp_figs.is_empty() {
        out.push(Block::Section("Figures".into()));
        for f in exp_figs {
            out.push(Block::Figure {
                path: f.path.clone(),
                caption: f.caption.clone(),
            });
        }
    }
}

fn variant_blocks(out: &mut Vec<Block>, r: &VariantResult) {
    out.push(Block::Section(format!("{} (seed {})", r.variant, r.seed)));
    let mut facts = vec![
        format!("recipe hash `{}`", r.recipe_hash),
        format!("model selection: {}", selection_words(&r.select)),
        format!(
            "folds finished: {}{}",
            r.folds.len(),
            if r.complete {
                ""
            } else {
                " (INCOMPLETE: pooled values cover only these)"
            }
        ),
    ];
    facts.extend(
        r.data_notes
            .iter()
            .map(|(n, note)| format!("data `{n}`: {note}")),
    );
    facts.extend(
        r.failed
            .iter()
            .map(|(f, why)| format!("fold {f} FAILED: {why}")),
    );
    out.push(Block::List(facts));
    let rows: Vec<Vec<String>> = r
        .metrics
        .iter()
        .filter(|m| !m.name.starts_with("confusion"))
        .map(|m| {
            let tag = if m.test_tuned { " †" } else { "" };
            vec![
                format!("{}{tag}", m.name),
                fmt(m, m.pooled),
                fmt(m, m.per_fold_mean),
                m.folds_counted.to_string(),
            ]
        })
        .collect();
    let names: Vec<&str> = headline(&r.metrics)
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !n.starts_with("confusion"))
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "Pooled over folds and unweighted mean of per-fold values, ×100; `folds counted` is how many folds had the metric defined",
            &[r],
            &names,
            Notes::Both,
        ),
        columns: ["metric", "pooled", "per-fold mean", "folds counted"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows,
    }));
    let hows: BTreeSet<(&String, &String)> = r
        .metrics
        .iter()
        .filter(|m| !m.name.contains('['))
        .map(|m| (&m.name, &m.how))
        .collect();
    out.push(Block::Text("How each number was computed:".into()));
    out.push(Block::List(
        hows.into_iter()
            .map(|(n, h)| format!("`{n}`: {h}."))
            .collect(),
    ));
    answer_block(out, r);
    let conf: Vec<&StoredMetric> = r
        .metrics
        .iter()
        .filter(|m| m.name.starts_with("confusion["))
        .collect();
    if let Some((truths, preds)) = confusion_axes(&conf) {
        let mut columns = vec!["truth \\ pred".to_string()];
        columns.extend(preds.iter().cloned());
        let rows = truths
            .iter()
            .map(|t| {
                let mut row = vec![t.clone()];
                row.extend(preds.iter().map(|p| {
                    conf.iter()
                        .find(|m| m.name == format!("confusion[{t},{p}]"))
                        .map(|m| fmt(m, m.pooled))
                        .unwrap_or_default()
                }));
                row
            })
            .collect();
        out.push(Block::Table(Table {
            caption: format!(
                "Confusion matrix, pooled counts over folds; rows truth, columns prediction. Seed {}; recipe `{}`.",
                r.seed,
                r.recipe_hash.get(..8).unwrap_or(&r.recipe_hash)
            ),
            columns,
            rows,
        }));
    }
}

/// Generated answers: what the model said, beside what it was read as.
fn answer_block(out: &mut Vec<Block>, r: &VariantResult) {
    let a = &r.answers;
    if a.is_empty() {
        return;
    }
    let one_line = |s: &str| {
        let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut t: String = flat.chars().take(160).collect();
        if t.len() < flat.len() {
            t.push('…');
        }
        t
    };
    out.push(Block::Table(Table {
        caption: format!(
            "Sample answers: up to two per gold label and two unparseable ones, in fold order. {} answers were generated over the finished folds; {} gave no reading for the task (unparseable): each metric's `how` says how it counts them.",
            a.total, a.unparseable
        ),
        columns: ["sample", "gold", "read as", "answer"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows: a
            .samples
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.gold.clone(),
                    s.reading.clone(),
                    one_line(&s.answer),
                ]
            })
            .collect(),
    }));
}

/// The class names of a confusion matrix, rows (truth) and columns.
pub(crate) fn confusion_axes(conf: &[&StoredMetric]) -> Option<(Vec<String>, Vec<String>)> {
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    for m in conf {
        if let Some((t, p)) = m
            .name
            .trim_start_matches("confusion[")
            .trim_end_matches(']')
            .split_once(',')
        {
            if !rows.contains(&t.to_string()) {
                rows.push(t.to_string());
            }
            if !cols.contains(&p.to_string()) {
                cols.push(p.to_string());
            }
        }
    }
    (!rows.is_empty()).then_some((rows, cols))
}

/// The experiment's name, with its hash when `all` holds runs of several
/// hashes of it (so tables across experiments keep them apart).
fn exp_label(all: &[&VariantResult], r: &VariantResult) -> String {
    let several = all
        .iter()
        .any(|o| o.experiment == r.experiment && store_key(o) != store_key(r));
    if several {
        format!("{} `{}`", r.experiment, short(store_key(r)))
    } else {
        r.experiment.clone()
    }
}

/// AU-LLM Table 3's layout: variants × datasets (experiments that share
/// variant names), one table per shared headline metric.
fn ablation_tables(out: &mut Vec<Block>, all: &[&VariantResult]) {
    let within: Vec<&VariantResult> = all.iter().copied().filter(|r| !r.cross_dataset).collect();
    // An experiment with runs of several hashes gives a column per hash.
    let lab = |r: &VariantResult| exp_label(all, r);
    let exps: Vec<String> = unique(within.iter().map(|r| lab(r)));
    if exps.len() < 2 {
        return;
    }
    let variants: Vec<(&String, i64)> = unique(within.iter().map(|r| (&r.variant, r.seed)));
    let shared = |v: &(&String, i64)| {
        within
            .iter()
            .filter(|r| &r.variant == v.0 && r.seed == v.1)
            .count()
            >= 2
    };
    if !variants.iter().any(shared) {
        return;
    }
    let metric_names: Vec<String> = unique(
        within
            .iter()
            .flat_map(|r| headline(&r.metrics).into_iter().map(|m| m.name.clone())),
    )
    .into_iter()
    .filter(|n| {
        !n.starts_with("confusion")
            && within
                .iter()
                .filter(|r| r.metrics.iter().any(|m| &m.name == n))
                .map(|r| lab(r))
                .collect::<BTreeSet<_>>()
                .len()
                >= 2
    })
    .collect();
    for name in metric_names {
        let exps: Vec<&String> = exps
            .iter()
            .filter(|e| {
                within
                    .iter()
                    .any(|r| &lab(r) == *e && r.metrics.iter().any(|m| m.name == name))
            })
            .collect();
        let within: Vec<&VariantResult> = within
            .iter()
            .copied()
            .filter(|r| exps.contains(&&lab(r)))
            .collect();
        out.push(Block::Section(format!(
            "Ablation: variants × datasets, {name}"
        )));
        let mut columns = vec!["variant".to_string(), "seed".to_string()];
        columns.extend(exps.iter().map(|e| e.to_string()));
        let mut paper: Vec<&VariantResult> = Vec::new();
        let rows = variants
            .iter()
            .map(|(v, seed)| {
                let mut row = vec![v.to_string(), seed.to_string()];
                row.extend(exps.iter().map(|e| {
                    let Some(r) = within
                        .iter()
                        .find(|r| &lab(r) == *e && &r.variant == *v && r.seed == *seed)
                    else {
                        return "–".into();
                    };
                    let ours = r
                        .metrics
                        .iter()
                        .find(|m| m.name == name)
                        .map(pooled_cell)
                        .unwrap_or_else(|| "–".into());
                    let (cell, has) = with_paper(ours, r, &name);
                    if has {
                        paper.push(r);
                    }
                    cell
                }));
                row
            })
            .collect();
        out.push(Block::Table(Table {
            caption: caption(
                &format!("{POOLED}; one column per experiment (dataset); `ours / paper‡` where the recipe reports the paper's figure"),
                &within,
                &[name.as_str()],
                Notes::None,
            ),
            columns,
            rows,
        }));
        // One note per source: each dataset's figures come from its own table.
        for n in unique(paper.iter().filter_map(|r| paper_note(&r.reported))) {
            out.push(Block::Text(n));
        }
    }
}

/// Train → test matrix of cross-dataset runs (AU-LLM Table 4), per
/// variant and headline metric. Datasets are named by their kind
/// (`me.casme2`), or `kind:node` when two nodes share a kind.
fn cross_domain_tables(out: &mut Vec<Block>, all: &[&VariantResult]) {
    let cross: Vec<&VariantResult> = all.iter().copied().filter(|r| r.cross_dataset).collect();
    if cross.is_empty() {
        return;
    }
    // (variant, seed, metric, train, test) → cell
    let mut cells: Vec<(String, i64, String, String, String, String)> = Vec::new();
    for r in &cross {
        let label = |node: &str| {
            let kind = r
                .datasets
                .iter()
                .find(|(n, _)| n == node)
                .map(|(_, k)| k.as_str())
                .unwrap_or(node);
            let clash = r.datasets.iter().filter(|(_, k)| k == kind).count() > 1;
            if clash {
                format!("{kind}:{node}")
            } else {
                kind.to_string()
            }
        };
        for f in &r.folds {
            let Some((train, test)) = f.split_once("_to_") else {
                continue;
            };
            let train: Vec<String> = train.split('+').map(label).collect();
            let test: Vec<String> = test.split('+').map(label).collect();
            // Runs of another hash of the same experiment get their own row.
            let tag = match exp_label(&cross, r) {
                l if l == r.experiment => String::new(),
                _ => format!(" `{}`", short(store_key(r))),
            };
            for m in headline(&r.metrics) {
                // `uar@target` cuts repeat the one test set here.
                if m.name.starts_with("confusion") || m.name.contains('@') {
                    continue;
                }
                let v = m
                    .per_fold
                    .iter()
                    .find(|(n, _)| n == f)
                    .map(|(_, v)| fmt(m, *v))
                    .unwrap_or_else(|| "–".into());
                let v = if m.test_tuned { format!("{v}†") } else { v };
                let (v, _) = with_paper(v, r, &m.name);
                cells.push((
                    r.variant.clone(),
                    r.seed,
                    m.name.clone(),
                    format!("{}{tag}", train.join("+")),
                    test.join("+"),
                    v,
                ));
            }
        }
    }
    let keys: Vec<(String, i64, String)> =
        unique(cells.iter().map(|c| (c.0.clone(), c.1, c.2.clone())));
    for (variant, seed, metric) in keys {
        let mine: Vec<&(String, i64, String, String, String, String)> = cells
            .iter()
            .filter(|c| c.0 == variant && c.1 == seed && c.2 == metric)
            .collect();
        let mut trains: Vec<&String> = unique(mine.iter().map(|c| &c.3));
        let mut tests: Vec<&String> = unique(mine.iter().map(|c| &c.4));
        trains.sort();
        tests.sort();
        out.push(Block::Section(format!(
            "Cross-domain: {metric}, {variant} (seed {seed})"
        )));
        let mut columns = vec!["train \\ test".to_string()];
        columns.extend(tests.iter().map(|t| t.to_string()));
        let rows = trains
            .iter()
            .map(|tr| {
                let mut row = vec![tr.to_string()];
                row.extend(tests.iter().map(|te| {
                    mine.iter()
                        .find(|c| &c.3 == *tr && &c.4 == *te)
                        .map(|c| c.5.clone())
                        .unwrap_or_else(|| "–".into())
                }));
                row
            })
            .collect();
        let rs: Vec<&VariantResult> = cross
            .iter()
            .copied()
            .filter(|r| r.variant == variant && r.seed == seed)
            .collect();
        out.push(Block::Table(Table {
            caption: caption(
                "Trained on the row's data, tested once on the column's (one fold per cell), ×100; `ours / paper‡` where the recipe reports the paper's figure",
                &rs,
                &[metric.as_str()],
                Notes::None,
            ),
            columns,
            rows,
        }));
        if let Some(n) = rs
            .iter()
            .find(|r| r.reported.iter().any(|(k, _)| k == &metric))
            .and_then(|r| paper_note(&r.reported))
        {
            out.push(Block::Text(n));
        }
    }
}

/// Why one experiment's runs are reported apart, and what differs between
/// its recipes: the stored facts and, where `recipe.ron` was kept, the
/// recipe keys (compared on a variant and seed every recipe has, so that
/// ablations do not show up as differences).
fn split_note(rs: &[&VariantResult], stores: &BTreeSet<&str>) -> String {
    let groups: Vec<Vec<&VariantResult>> = stores
        .iter()
        .map(|s| rs.iter().copied().filter(|r| store_key(r) == *s).collect())
        .collect();
    let common = groups[0].iter().find(|a| {
        groups
            .iter()
            .all(|g| g.iter().any(|b| b.variant == a.variant && b.seed == a.seed))
    });
    let reps: Vec<&VariantResult> = groups
        .iter()
        .map(|g| {
            common
                .and_then(|a| {
                    g.iter()
                        .find(|b| b.variant == a.variant && b.seed == a.seed)
                })
                .unwrap_or(&g[0])
        })
        .copied()
        .collect();
    let mut diffs = Vec::new();
    let mut fact = |name: &str, v: &dyn Fn(&VariantResult) -> String| {
        let vs: Vec<String> = reps.iter().map(|r| v(r)).collect();
        if unique(vs.iter()).len() > 1 {
            diffs.push(format!("{name} {}", vs.join(" / ")));
        }
    };
    fact("samples", &|r| r.samples.to_string());
    fact("folds", &|r| r.folds.len().to_string());
    fact("protocol", &|r| format!("`{}`", r.protocol));
    fact("selection", &|r| r.select.clone());
    let keys: BTreeSet<&String> = reps
        .iter()
        .flat_map(|r| r.recipe_keys.iter().map(|(k, _)| k))
        .collect();
    let value = |r: &VariantResult, k: &String| {
        let v = r
            .recipe_keys
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("–");
        // Long values (paths) cut to their end, which usually differs.
        match v.char_indices().rev().nth(31) {
            Some((i, _)) => format!("…{}", &v[i..]),
            None => v.to_string(),
        }
    };
    let differing: Vec<String> = keys
        .iter()
        .filter(|k| unique(reps.iter().map(|r| value(r, k))).len() > 1)
        .map(|k| {
            let vs: Vec<String> = reps.iter().map(|r| value(r, k)).collect();
            format!("`{k}` {}", vs.join(" / "))
        })
        .collect();
    const SHOWN: usize = 8;
    let more = differing.len().saturating_sub(SHOWN);
    diffs.extend(differing.into_iter().take(SHOWN));
    if more > 0 {
        diffs.push(format!("{more} more keys"));
    }
    let hashes: Vec<String> = stores.iter().map(|s| format!("`{}`", short(s))).collect();
    let recipes_kept = reps.iter().all(|r| !r.recipe_keys.is_empty());
    format!(
        "This folder holds runs of {} different recipes of `{}` (experiment hashes {}), reported in a section each and never pooled or ranked together. They differ in{}: {}.",
        stores.len(),
        rs[0].experiment,
        hashes.join(", "),
        if recipes_kept {
            format!(" (compared on {} seed {})", reps[0].variant, reps[0].seed)
        } else {
            " (recipe.ron not kept, so only the stored facts are compared)".into()
        },
        if diffs.is_empty() {
            "nothing the store records; `mer render` of each recipe shows the rest".to_string()
        } else {
            diffs.join("; ")
        }
    )
}

/// The whole report: each experiment, then the tables across experiments.
pub fn build(results: &[VariantResult], figures: &[figures::FigureRef]) -> Vec<Block> {
    let mut out = Vec::new();
    let experiments: BTreeSet<&String> = results.iter().map(|r| &r.experiment).collect();
    for exp in experiments {
        let rs: Vec<&VariantResult> = results.iter().filter(|r| &r.experiment == exp).collect();
        // Runs of different experiment hashes (another data root, subject
        // count, epoch budget …) are different experiments: one section each.
        let stores: BTreeSet<&str> = rs.iter().map(|r| store_key(r)).collect();
        if stores.len() < 2 {
            experiment_blocks(&mut out, &rs, figures, None);
            continue;
        }
        let note = split_note(&rs, &stores);
        for store in &stores {
            let group: Vec<&VariantResult> = rs
                .iter()
                .copied()
                .filter(|r| store_key(r) == *store)
                .collect();
            experiment_blocks(&mut out, &group, figures, Some(note.clone()));
        }
    }
    let all: Vec<&VariantResult> = results.iter().collect();
    let before = out.len();
    ablation_tables(&mut out, &all);
    cross_domain_tables(&mut out, &all);
    if out.len() > before {
        out.insert(before, Block::Title("Across experiments".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(kind: &str, name: &str, per_fold: &[(&str, f64)], how: &str) -> StoredMetric {
        let vals: Vec<f64> = per_fold.iter().map(|(_, v)| *v).collect();
        StoredMetric {
            node: "metrics[0]".into(),
            kind: kind.into(),
            name: name.into(),
            pooled: None,
            per_fold_mean: (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64),
            folds_counted: vals.len(),
            per_fold: per_fold
                .iter()
                .map(|(f, v)| (f.to_string(), Some(*v)))
                .collect(),
            how: how.into(),
            test_tuned: false,
            lower_is_better: false,
            own_units: false,
        }
    }

    fn pooled(mut m: StoredMetric, v: f64) -> StoredMetric {
        m.pooled = Some(v);
        m
    }

    fn result(variant: &str, store: &str, hash: &str, metrics: Vec<StoredMetric>) -> VariantResult {
        VariantResult {
            experiment: "e".into(),
            variant: variant.into(),
            recipe_hash: hash.into(),
            seed: 1,
            protocol: "protocol.loso".into(),
            cross_dataset: false,
            folds: vec!["f1".into(), "f2".into()],
            failed: vec![],
            complete: true,
            select: "last".into(),
            data_notes: vec![],
            samples: 7,
            datasets: vec![],
            metrics,
            reported: vec![],
            store_hash: store.into(),
            recipe_keys: vec![],
            answers: Default::default(),
        }
    }

    /// Two runs of one experiment under one folder, of different hashes
    /// (another epoch budget and subject count): never one table.
    #[test]
    fn runs_of_different_hashes_are_reported_apart() {
        let acc = |a: f64, b: f64| {
            pooled(
                metric(
                    "metric.accuracy",
                    "accuracy",
                    &[("f1", a), ("f2", b)],
                    "accuracy (WAR): correct / samples",
                ),
                (a + b) / 2.0,
            )
        };
        let mut long = result("base", "aaaaaaaa1111", "1111111122", vec![acc(0.5, 0.7)]);
        long.recipe_keys = vec![
            ("train.epochs".into(), "20".into()),
            ("data.clips.subjects".into(), "6".into()),
            ("seed".into(), "1".into()),
        ];
        let mut short_run = result("base", "bbbbbbbb2222", "3333333344", vec![acc(0.25, 1.0)]);
        short_run.samples = 4;
        short_run.recipe_keys = vec![
            ("train.epochs".into(), "1".into()),
            ("data.clips.subjects".into(), "2".into()),
            ("seed".into(), "1".into()),
        ];
        let md = markdown_of(&build(&[long, short_run], &[]));
        assert!(md.contains("# e (experiment hash `aaaaaaaa`)"), "{md}");
        assert!(md.contains("# e (experiment hash `bbbbbbbb`)"), "{md}");
        assert!(
            md.contains("They differ in (compared on base seed 1): samples 7 / 4; `data.clips.subjects` 6 / 2; `train.epochs` 20 / 1."),
            "{md}"
        );
        assert!(
            !md.contains("`seed` 1 / 1"),
            "equal keys are not differences: {md}"
        );
        assert!(
            md.contains("Protocol `protocol.loso` over 7 samples"),
            "{md}"
        );
        assert!(
            md.contains("Protocol `protocol.loso` over 4 samples"),
            "{md}"
        );
        // A per-fold table each, every row naming its recipe.
        assert_eq!(md.matches("## Per fold: accuracy").count(), 2, "{md}");
        assert!(
            md.contains("| base | 1 | `11111111` | 50.00 | 70.00 | 60.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| base | 1 | `33333333` | 25.00 | 100.00 | 62.50 |"),
            "{md}"
        );
        for table in md.split("\n\n").filter(|t| t.starts_with("| variant")) {
            assert!(
                !(table.contains("`11111111`") && table.contains("`33333333`")),
                "one table mixes hashes:\n{table}"
            );
        }
    }

    #[test]
    fn one_hash_keeps_the_plain_title() {
        let m = pooled(
            metric("metric.accuracy", "accuracy", &[("f1", 0.5)], "accuracy"),
            0.5,
        );
        let md = markdown_of(&build(
            &[result("base", "aaaaaaaa1111", "11", vec![m])],
            &[],
        ));
        assert!(md.starts_with("# e\n"), "{md}");
        assert!(!md.contains("experiment hash"), "{md}");
    }

    /// Truth a a b b c | a a over folds f1 | f2; every prediction is `a`.
    fn collapsed_run(with_confusion: bool) -> VariantResult {
        let mut ms = vec![
            pooled(
                metric(
                    "metric.accuracy",
                    "accuracy",
                    &[("f1", 0.4), ("f2", 1.0)],
                    "accuracy (WAR): correct / samples",
                ),
                4.0 / 7.0,
            ),
            pooled(
                metric(
                    "metric.uar",
                    "uar",
                    &[("f1", 1.0 / 3.0), ("f2", 1.0)],
                    "UAR: mean over classes of recall TP/N, classes with no samples left out",
                ),
                1.0 / 3.0,
            ),
            pooled(
                metric(
                    "metric.uf1",
                    "uf1",
                    &[("f1", 4.0 / 21.0), ("f2", 1.0)],
                    "UF1: mean over classes of F1",
                ),
                8.0 / 33.0,
            ),
        ];
        if with_confusion {
            for t in ["a", "b", "c"] {
                for p in ["a", "b", "c"] {
                    let (f1, f2) = match (t, p) {
                        ("a", "a") => (2.0, 2.0),
                        ("b", "a") => (2.0, 0.0),
                        ("c", "a") => (1.0, 0.0),
                        _ => (0.0, 0.0),
                    };
                    ms.push(pooled(
                        metric(
                            "metric.confusion",
                            &format!("confusion[{t},{p}]"),
                            &[("f1", f1), ("f2", f2)],
                            "count",
                        ),
                        f1 + f2,
                    ));
                }
            }
        }
        result("base", "aaaaaaaa1111", "11111111", ms)
    }

    #[test]
    fn classification_captions_give_floors_collapse_and_one_class_folds() {
        let md = markdown_of(&build(&[collapsed_run(true)], &[]));
        let pooled_caption = md
            .lines()
            .find(|l| l.starts_with("*Pooled over folds (every test prediction"))
            .unwrap_or_default();
        // Majority `a` is 4 of 7; chance is 1/3; UF1's floor 2·4/(7+4)/3.
        assert!(
            pooled_caption.contains("Floors on the same pooled test labels (always predicting the majority class; uniform random guessing, from expected counts): `accuracy` always `a` 57.14, chance 33.33; `uar` always `a` 33.33, chance 33.33; `uf1` always `a` 24.24, chance 30.96."),
            "{pooled_caption}"
        );
        assert!(
            pooled_caption.contains("Predictions collapse to one class: base predicts only `a`."),
            "{pooled_caption}"
        );
        let per_fold_uf1 = md
            .split("## Per fold: uf1")
            .nth(1)
            .and_then(|s| s.lines().find(|l| l.starts_with('*')))
            .unwrap_or_default();
        assert!(
            per_fold_uf1.contains("Folds whose test set holds one class (f2): there `uf1` is that class's F1 alone, 100 when every sample is right; they count like any other fold in the per-fold mean, which without them is 19.05 (base)."),
            "{per_fold_uf1}"
        );
        let per_fold_acc = md
            .split("## Per fold: accuracy")
            .nth(1)
            .and_then(|s| s.lines().find(|l| l.starts_with('*')))
            .unwrap_or_default();
        assert!(
            !per_fold_acc.contains("holds one class"),
            "accuracy is not lifted: {per_fold_acc}"
        );
    }

    /// Without a stored confusion matrix the clauses `metrics.rs` writes
    /// into `how` are quoted; with neither, the floor is said to be unknown.
    #[test]
    fn floors_come_from_how_without_a_confusion_matrix() {
        let mut r = collapsed_run(false);
        r.metrics[0].how = format!(
            "accuracy (WAR): correct / samples; {FLOOR}{}; {COLLAPSED}`a`",
            floor_words("a", 4.0 / 7.0, 1.0 / 3.0)
        );
        r.metrics[1].how =
            format!("UAR: mean; {ONE_CLASS}f2 (there it is that class's recall alone)");
        let md = markdown_of(&build(&[r], &[]));
        assert!(
            md.contains("`accuracy` always `a` 57.14, chance 33.33"),
            "{md}"
        );
        assert!(
            md.contains("`uar` unknown (the run kept no class counts)"),
            "{md}"
        );
        assert!(md.contains("base predicts only `a`"), "{md}");
        assert!(
            md.contains("Folds whose test set holds one class (f2): there `uar`"),
            "{md}"
        );
    }

    #[test]
    fn load_runs_reads_the_hash_from_the_folder_and_the_recipe_keys() {
        let root = std::env::temp_dir().join(format!("mer-report-load-{}", std::process::id()));
        let dir = root.join("e/cccccccc3333/base/seed1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = collapsed_run(true);
        r.store_hash = String::new();
        std::fs::write(dir.join("metrics.json"), serde_json::to_string(&r).unwrap()).unwrap();
        std::fs::write(
            dir.join("recipe.ron"),
            r#"ResolvedRecipe(mer: "0.1", experiment: "e", variant: "base", plugins: [],
  config: {
    "data": Map({"clips": Call(CallValue(kind: "synth.me", inputs: [], params: {"subjects": Int(4)}))}),
    "train": Map({"epochs": Int(2)}),
  })"#,
        )
        .unwrap();
        let runs = load_runs(&root).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(runs[0].result.store_hash, "cccccccc3333");
        assert_eq!(
            runs[0].result.recipe_keys,
            vec![
                ("data.clips".to_string(), "synth.me".to_string()),
                ("data.clips.subjects".to_string(), "4".to_string()),
                ("train.epochs".to_string(), "2".to_string()),
            ]
        );
    }
}
