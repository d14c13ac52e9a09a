//! Paper-style reports from the run store: deterministic Markdown (sorted,
//! fixed precision, no timestamps or absolute paths) that reviewers diff.

use crate::runner::{StoredMetric, VariantResult};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

/// Every `metrics.json` under `dir`, sorted by (experiment, variant, seed).
pub fn load_results(dir: &Path) -> Result<Vec<VariantResult>, String> {
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
                out.push(serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))?);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no finished runs (metrics.json) here",
            dir.display()
        ));
    }
    out.sort_by(|a: &VariantResult, b| {
        (&a.experiment, a.variant != "base", &a.variant, a.seed).cmp(&(
            &b.experiment,
            b.variant != "base",
            &b.variant,
            b.seed,
        ))
    });
    Ok(out)
}

fn fmt(m: &StoredMetric, v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if m.name.starts_with("confusion") => format!("{x:.0}"),
        Some(x) if m.kind == "metric.mae" => format!("{x:.4}"),
        Some(x) => format!("{:.2}", x * 100.0),
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

/// One table per headline metric: variants × folds, then the per-fold
/// mean, so a reviewer sees how much of a difference one fold makes.
fn per_fold_tables(o: &mut String, rs: &[&VariantResult], heads: &[String]) {
    let folds: Vec<&String> = {
        let mut v: Vec<&String> = Vec::new();
        for r in rs {
            for f in &r.folds {
                if !v.contains(&f) {
                    v.push(f);
                }
            }
        }
        v
    };
    if folds.len() < 2 {
        return;
    }
    for h in heads.iter().filter(|h| !h.starts_with("confusion")) {
        let _ = writeln!(o, "## Per fold: {h}\n");
        let names: Vec<&str> = folds.iter().map(|f| f.as_str()).collect();
        let _ = writeln!(
            o,
            "| variant | seed | {} | mean |\n|---|---|{}---|",
            names.join(" | "),
            "---|".repeat(folds.len())
        );
        for r in rs {
            let Some(m) = r.metrics.iter().find(|m| &m.name == h) else {
                continue;
            };
            let cells: Vec<String> = folds
                .iter()
                .map(|f| {
                    m.per_fold
                        .iter()
                        .find(|(n, _)| n == *f)
                        .map(|(_, v)| fmt(m, *v))
                        .unwrap_or_else(|| "–".into())
                })
                .collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                r.variant,
                r.seed,
                cells.join(" | "),
                fmt(m, m.per_fold_mean)
            );
        }
        let _ = writeln!(o);
    }
}

/// Renders results as Markdown.
pub fn markdown(results: &[VariantResult]) -> String {
    let mut o = String::new();
    let experiments: BTreeSet<&String> = results.iter().map(|r| &r.experiment).collect();
    for exp in experiments {
        let rs: Vec<&VariantResult> = results.iter().filter(|r| &r.experiment == exp).collect();
        let _ = writeln!(o, "# {exp}\n");
        let first = rs[0];
        let seeds: BTreeSet<i64> = rs.iter().map(|r| r.seed).collect();
        let _ = writeln!(
            o,
            "Protocol `{}` over {} samples; seeds {}. Scores ×100 (MAE raw).\n",
            first.protocol,
            first.samples,
            seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Variants × headline metrics, pooled.
        let heads: Vec<String> = {
            let mut seen = Vec::new();
            for r in &rs {
                for m in headline(&r.metrics) {
                    if !seen.contains(&m.name) {
                        seen.push(m.name.clone());
                    }
                }
            }
            seen
        };
        if !heads.is_empty() {
            let _ = writeln!(o, "## Variants (pooled over folds)\n");
            let _ = writeln!(
                o,
                "| variant | seed | recipe | folds | {} |",
                heads.join(" | ")
            );
            let _ = writeln!(o, "|---|---|---|---|{}", "---|".repeat(heads.len()));
            for r in &rs {
                let cells: Vec<String> = heads
                    .iter()
                    .map(|h| {
                        r.metrics
                            .iter()
                            .find(|m| &m.name == h)
                            .map(|m| {
                                let v = fmt(m, m.pooled);
                                if m.test_tuned {
                                    format!("{v}†")
                                } else {
                                    v
                                }
                            })
                            .unwrap_or_else(|| "–".into())
                    })
                    .collect();
                let folds = if r.complete {
                    r.folds.len().to_string()
                } else {
                    format!("{} (incomplete)", r.folds.len())
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | `{}` | {} | {} |",
                    r.variant,
                    r.seed,
                    r.recipe_hash.get(..8).unwrap_or(&r.recipe_hash),
                    folds,
                    cells.join(" | ")
                );
            }
            let paper = &first.reported;
            if paper.iter().any(|(k, _)| heads.contains(k)) {
                let cells: Vec<String> = heads
                    .iter()
                    .map(|h| {
                        paper
                            .iter()
                            .find(|(k, _)| k == h)
                            .map(|(_, v)| format!("{v}‡"))
                            .unwrap_or_else(|| "–".into())
                    })
                    .collect();
                let _ = writeln!(
                    o,
                    "| reported by paper | – | – | – | {} |",
                    cells.join(" | ")
                );
            }
            if !paper.is_empty() {
                let source = paper
                    .iter()
                    .find(|(k, _)| k == "source")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("the paper");
                let _ = writeln!(o, "\n‡ reported by {source}, copied from the recipe's `reported` map; not computed by mer (the paper's folds, preprocessing and selection may differ).");
            }
            if rs.iter().any(|r| r.metrics.iter().any(|m| m.test_tuned)) {
                let _ = writeln!(o, "\n† test-tuned: a choice was made on the test predictions; shown to reproduce published numbers, not as an estimate.");
            }
            let _ = writeln!(o);
        }
        per_fold_tables(&mut o, &rs, &heads);
        for r in &rs {
            let _ = writeln!(o, "## {} (seed {})\n", r.variant, r.seed);
            let _ = writeln!(o, "- recipe hash `{}`", r.recipe_hash);
            let _ = writeln!(o, "- model selection: {}", selection_words(&r.select));
            let _ = writeln!(
                o,
                "- folds finished: {}{}",
                r.folds.len(),
                if r.complete {
                    ""
                } else {
                    " (INCOMPLETE: pooled values cover only these)"
                }
            );
            for (node, note) in &r.data_notes {
                let _ = writeln!(o, "- data `{node}`: {note}");
            }
            for (f, why) in &r.failed {
                let _ = writeln!(o, "- fold {f} FAILED: {why}");
            }
            let _ = writeln!(
                o,
                "\n| metric | pooled | per-fold mean | folds counted |\n|---|---|---|---|"
            );
            for m in r
                .metrics
                .iter()
                .filter(|m| !m.name.starts_with("confusion"))
            {
                let tag = if m.test_tuned { " †" } else { "" };
                let _ = writeln!(
                    o,
                    "| {}{tag} | {} | {} | {} |",
                    m.name,
                    fmt(m, m.pooled),
                    fmt(m, m.per_fold_mean),
                    m.folds_counted
                );
            }
            let hows: BTreeSet<(&String, &String)> = r
                .metrics
                .iter()
                .filter(|m| !m.name.contains('['))
                .map(|m| (&m.name, &m.how))
                .collect();
            let _ = writeln!(o, "\nHow each number was computed:\n");
            for (n, h) in hows {
                let _ = writeln!(o, "- `{n}`: {h}.");
            }
            let conf: Vec<&StoredMetric> = r
                .metrics
                .iter()
                .filter(|m| m.name.starts_with("confusion["))
                .collect();
            if !conf.is_empty() {
                let _ = writeln!(
                    o,
                    "\nConfusion matrix (pooled counts; rows truth, columns prediction):\n"
                );
                let mut rows: Vec<String> = Vec::new();
                let mut cols: Vec<String> = Vec::new();
                for m in &conf {
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
                let _ = writeln!(
                    o,
                    "| truth \\ pred | {} |\n|---|{}",
                    cols.join(" | "),
                    "---|".repeat(cols.len())
                );
                for t in &rows {
                    let cells: Vec<String> = cols
                        .iter()
                        .map(|p| {
                            conf.iter()
                                .find(|m| m.name == format!("confusion[{t},{p}]"))
                                .map(|m| fmt(m, m.pooled))
                                .unwrap_or_default()
                        })
                        .collect();
                    let _ = writeln!(o, "| {t} | {} |", cells.join(" | "));
                }
            }
            let _ = writeln!(o);
        }
    }
    o
}
