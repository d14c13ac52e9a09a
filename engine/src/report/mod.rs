//! Paper-style reports from the run store. A report is first built as
//! [`Block`]s (sections, text, tables with captions, figures), then rendered
//! as Markdown or LaTeX, so both formats hold the same numbers. Output is
//! deterministic: sorted, fixed precision, no timestamps or absolute paths.
//!
//! Every table's caption says how its numbers were computed: pooled over
//! folds or per fold, the metric's definition (binary or macro …), whether
//! anything was test-tuned, the seeds and the recipe hashes.

pub mod figures;
mod render;

use crate::runner::{StoredMetric, VariantResult};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use render::{latex, markdown_of};

/// A table: a caption that says how the numbers were computed, a header and
/// rows of already formatted cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One piece of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// An experiment (level 1).
    Title(String),
    /// A section (level 2).
    Section(String),
    Text(String),
    List(Vec<String>),
    Table(Table),
    /// A figure file, relative to the report.
    Figure {
        path: String,
        caption: String,
    },
}

/// A variant's results and the folder they were read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub result: VariantResult,
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
                if p.file_name().is_some_and(|n| n != "folds") {
                    stack.push(p);
                }
            } else if p.file_name().is_some_and(|n| n == "metrics.json") {
                let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                out.push(Loaded {
                    result: serde_json::from_str(&s)
                        .map_err(|e| format!("{}: {e}", p.display()))?,
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
        Some(x) if m.kind == "metric.mae" => format!("{x:.4}"),
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

fn unique<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
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

/// The caption every table carries: aggregation, metric definitions,
/// selection and test-tuning, seeds, recipe hashes.
fn caption(aggregate: &str, rs: &[&VariantResult], metrics: &[&str]) -> String {
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
        "{aggregate}. {}Model selection: {}. {}. Seeds {}; recipes {}.",
        if defs.is_empty() {
            String::new()
        } else {
            format!("{}. ", defs.join("; "))
        },
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
        let mut columns = vec!["variant".to_string(), "seed".to_string()];
        columns.extend(folds.iter().map(|f| f.to_string()));
        columns.push("mean".into());
        let mut rows = Vec::new();
        for r in rs {
            let Some(m) = r.metrics.iter().find(|m| &m.name == h) else {
                continue;
            };
            let mut row = vec![r.variant.clone(), r.seed.to_string()];
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
            let label = rest.trim_end_matches(']').to_string();
            match fams.iter_mut().find(|(f, _)| f == fam) {
                Some((_, ls)) => {
                    if !ls.contains(&label) {
                        ls.push(label)
                    }
                }
                None => fams.push((fam.to_string(), vec![label])),
            }
        }
    }
    fams
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
            row.extend(labels.iter().map(|l| cell(&format!("{fam}[{l}]"))));
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
            .any(|l| from_paper(&format!("{fam}[{l}]")).is_some())
        {
            let mut row = vec!["reported by paper".to_string(), "–".into()];
            row.extend(
                labels
                    .iter()
                    .map(|l| from_paper(&format!("{fam}[{l}]")).unwrap_or_else(|| "–".into())),
            );
            row.push(from_paper(&fam).unwrap_or_else(|| "–".into()));
            rows.push(row);
        }
        out.push(Block::Table(Table {
            caption: caption(
                &format!("{POOLED}; one column per label, `mean` is the family's aggregate"),
                rs,
                &[fam.as_str()],
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

fn experiment_blocks(out: &mut Vec<Block>, rs: &[&VariantResult], figures: &[figures::FigureRef]) {
    let first = rs[0];
    out.push(Block::Title(first.experiment.clone()));
    let seeds: BTreeSet<i64> = rs.iter().map(|r| r.seed).collect();
    out.push(Block::Text(format!(
        "Protocol `{}` over {} samples; seeds {}. Scores ×100 (MAE raw).",
        first.protocol,
        first.samples,
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
            caption: caption(POOLED, rs, &names),
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
        .filter(|f| f.experiment == first.experiment)
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

/// AU-LLM Table 3's layout: variants × datasets (experiments that share
/// variant names), one table per shared headline metric.
fn ablation_tables(out: &mut Vec<Block>, all: &[&VariantResult]) {
    let within: Vec<&VariantResult> = all
        .iter()
        .copied()
        .filter(|r| r.protocol != "protocol.cross_dataset")
        .collect();
    let exps: Vec<&String> = unique(within.iter().map(|r| &r.experiment));
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
                .map(|r| &r.experiment)
                .collect::<BTreeSet<_>>()
                .len()
                >= 2
    })
    .collect();
    for name in metric_names {
        let exps: Vec<&String> = exps
            .iter()
            .copied()
            .filter(|e| {
                within
                    .iter()
                    .any(|r| &r.experiment == *e && r.metrics.iter().any(|m| m.name == name))
            })
            .collect();
        let within: Vec<&VariantResult> = within
            .iter()
            .copied()
            .filter(|r| exps.contains(&&r.experiment))
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
                        .find(|r| &r.experiment == *e && &r.variant == *v && r.seed == *seed)
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
    let cross: Vec<&VariantResult> = all
        .iter()
        .copied()
        .filter(|r| r.protocol == "protocol.cross_dataset")
        .collect();
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
                    train.join("+"),
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

/// The whole report: each experiment, then the tables across experiments.
pub fn build(results: &[VariantResult], figures: &[figures::FigureRef]) -> Vec<Block> {
    let mut out = Vec::new();
    let experiments: BTreeSet<&String> = results.iter().map(|r| &r.experiment).collect();
    for exp in experiments {
        let rs: Vec<&VariantResult> = results.iter().filter(|r| &r.experiment == exp).collect();
        experiment_blocks(&mut out, &rs, figures);
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
