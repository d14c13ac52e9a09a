//! `mer explain` and `mer render --diff`: a resolved variant's values with
//! where each came from. In the library, so the CLI only prints the lines.

use crate::diag::did_you_mean;
use crate::resolve::{lookup, Node, Origin, Session, Val, Via};
use crate::source::SourceMap;
use crate::CheckedVariant;

/// Where a value came from, in words: a recipe line, an override, an
/// environment variable (or its default when unset), a kind's default.
pub fn describe_origin(o: &Origin, sources: &SourceMap) -> String {
    let loc = sources.location(o.key.unwrap_or(o.value));
    match &o.via {
        Via::Recipe => format!("set at {loc}"),
        Via::Override => format!("set by {}", sources.get(o.value.file).text.trim()),
        Via::Default(kind) if kind.contains('.') => {
            format!("default of `{kind}` (see `mer plugins describe {kind}`)")
        }
        Via::Default(block) => format!("mer default of the `{block}` block"),
        Via::Env(var) => format!("from environment variable {var} ({loc})"),
        // Says the variable's name: a misspelt one is unset and silently
        // falls back to the default otherwise.
        Via::EnvDefault(var) => {
            format!("default of env(\"{var}\") at {loc}: environment variable {var} is not set")
        }
        Via::FrameworkDefault => "mer default".to_string(),
    }
}

/// `mer explain KEY`: where each value under `key` came from (recipe line,
/// override, environment, default) and what it replaced, one line each.
/// An unknown key is an error with a "did you mean" among its siblings.
pub fn explain(session: &Session, v: &CheckedVariant, key: &str) -> Result<Vec<String>, String> {
    let tree = &v.variant.tree;
    let Some(node) = lookup(tree, key) else {
        let (parent, last) = match key.rsplit_once('.') {
            Some((p, l)) => (Some(p), l),
            None => (None, key),
        };
        let siblings: Vec<String> = match parent.and_then(|p| lookup(tree, p)) {
            Some(Node {
                val: Val::Map(m), ..
            }) => m.keys().cloned().collect(),
            Some(Node {
                val: Val::Call(c), ..
            }) => c.params.keys().cloned().collect(),
            _ if parent.is_none() => tree.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let hint = did_you_mean(last, siblings.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "`{key}` is not set in variant `{}`{hint}",
            v.variant.name
        ));
    };
    let sources = &session.sources;
    let mut lines = Vec::new();
    explain_node(key, node, sources, &mut lines);
    Ok(lines)
}

/// `mer render --diff`: every value a recipe, an ablation, a sweep point,
/// an override or the environment set, not the defaults around them.
pub fn render_diff(session: &Session, v: &CheckedVariant) -> Vec<String> {
    fn walk<'a>(path: String, n: &'a Node, out: &mut Vec<(String, &'a Node)>) {
        match &n.val {
            Val::Map(m) if !m.is_empty() => {
                for (k, c) in m {
                    walk(format!("{path}.{k}"), c, out);
                }
            }
            Val::Call(c) => {
                out.push((path.clone(), n));
                for (k, p) in &c.params {
                    walk(format!("{path}.{k}"), p, out);
                }
            }
            _ => out.push((path, n)),
        }
    }
    let mut leaves = Vec::new();
    for (k, n) in &v.variant.tree {
        walk(k.clone(), n, &mut leaves);
    }
    let mut out = vec![
        format!(
            "// mer render --diff --variant {}: values not from defaults",
            v.variant.name
        ),
        format!("// blake3 {}", v.hash),
    ];
    for (path, n) in leaves {
        if matches!(n.origin.via, Via::Default(_) | Via::FrameworkDefault) {
            continue;
        }
        let shown = match &n.val {
            Val::Call(c) => {
                let inputs: Vec<String> = c
                    .inputs
                    .iter()
                    .map(|i| i.value.to_value().to_string())
                    .collect();
                format!("{}({})", c.kind, inputs.join(", "))
            }
            _ => n.to_value().to_string(),
        };
        out.push(format!(
            "{path} = {shown}    // {}",
            describe_origin(&n.origin, &session.sources)
        ));
    }
    out
}

fn explain_node(path: &str, n: &Node, sources: &SourceMap, out: &mut Vec<String>) {
    let mut leaf = |path: &str, n: &Node, shown: String| {
        out.push(format!("{path} = {shown}"));
        out.push(format!("    {}", describe_origin(&n.origin, sources)));
        for h in n.history.iter().rev() {
            out.push(format!("    replaces: {}", describe_origin(h, sources)));
        }
    };
    match &n.val {
        Val::Map(m) if !m.is_empty() => {
            for (k, c) in m {
                explain_node(&format!("{path}.{k}"), c, sources, out);
            }
        }
        Val::Call(c) => {
            let inputs: Vec<String> = c
                .inputs
                .iter()
                .map(|i| i.value.to_value().to_string())
                .collect();
            leaf(path, n, format!("{}({})", c.kind, inputs.join(", ")));
            for (k, p) in &c.params {
                explain_node(&format!("{path}.{k}"), p, sources, out);
            }
        }
        _ => leaf(path, n, n.to_value().to_string()),
    }
}
