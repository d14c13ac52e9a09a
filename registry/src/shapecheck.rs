//! Shape and meaning inference over the graph IR, in topological order.

use crate::shape::{ShapeCtx, TensorType};
use crate::Registry;
use mer_dsl::diag::Diagnostic;
use mer_dsl::graph::GraphIr;
use mer_dsl::source::SourceMap;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use std::collections::HashMap;

/// Inferred output types per node, and the diagnostics raised.
pub(crate) fn check(
    reg: &Registry,
    g: &GraphIr,
    _sources: &SourceMap,
) -> (HashMap<NodeIndex, Vec<TensorType>>, Vec<Diagnostic>) {
    let mut types: HashMap<NodeIndex, Vec<TensorType>> = HashMap::new();
    let mut diags = Vec::new();
    // A cycle was already reported by lowering; there is no order to follow.
    let Ok(order) = petgraph::algo::toposort(&g.graph, None) else {
        return (types, diags);
    };
    for idx in order {
        let node = &g.graph[idx];
        let Some(kind) = reg.get(&node.kind) else {
            continue;
        };
        let Some(shape_fn) = kind.shapes else {
            continue;
        };
        let mut edges: Vec<_> = g
            .graph
            .edges_directed(idx, petgraph::Direction::Incoming)
            .collect();
        edges.sort_by_key(|e| e.weight().position);
        let mut inputs = Vec::with_capacity(edges.len());
        let mut sources = Vec::with_capacity(edges.len());
        let mut known = true;
        for e in &edges {
            let src = e.source();
            let src_node = &g.graph[src];
            let port_idx = reg.get(&src_node.kind).and_then(|k| {
                k.schema
                    .outputs
                    .iter()
                    .position(|p| p.name == e.weight().port)
            });
            match (types.get(&src), port_idx) {
                (Some(outs), Some(pi)) if pi < outs.len() => {
                    inputs.push(outs[pi].clone());
                    sources.push(format!("{}.{}", src_node.name, e.weight().port));
                }
                _ => known = false,
            }
        }
        // An unknown input (a missing plugin, a kind without a shape
        // function) leaves everything downstream unchecked, not wrong.
        if !known {
            continue;
        }
        let ctx = ShapeCtx {
            kind: &node.kind,
            params: &node.params,
            inputs: &inputs,
            sources: &sources,
        };
        match shape_fn(&ctx) {
            Ok(outs) => {
                if outs.len() != kind.schema.outputs.len() {
                    let mut d = Diagnostic::error(
                        "mer::shape",
                        format!(
                            "`{}`'s shape function returned {} type(s) for {} port(s) (a bug in the kind)",
                            node.kind,
                            outs.len(),
                            kind.schema.outputs.len()
                        ),
                    );
                    if let Some(sp) = g.spans.get(&idx) {
                        d = d.at(*sp, "here");
                    }
                    diags.push(d);
                    continue;
                }
                types.insert(idx, outs);
            }
            Err(e) => {
                let span = e
                    .input
                    .and_then(|i| edges.get(i))
                    .and_then(|edge| g.edge_spans.get(&edge.id()))
                    .or_else(|| g.spans.get(&idx));
                let mut d = Diagnostic::error("mer::shape", e.message.clone());
                if let Some(sp) = span {
                    let label = match e.input {
                        Some(i) => format!(
                            "{} is {}",
                            sources.get(i).map(String::as_str).unwrap_or("input"),
                            inputs.get(i).map(|t| t.to_string()).unwrap_or_default()
                        ),
                        None => format!("`{}` cannot take these inputs", node.name),
                    };
                    d = d.at(*sp, label);
                }
                if let Some(h) = e.help {
                    d = d.help(h);
                }
                diags.push(d);
            }
        }
    }
    (types, diags)
}

impl Registry {
    /// Inferred output types of every node the graph can type.
    pub fn node_types(&self, g: &GraphIr) -> HashMap<NodeIndex, Vec<TensorType>> {
        check(self, g, &SourceMap::new()).0
    }

    /// Inferred types of every port the graph can type, by node name and
    /// port name (for `mer graph` and tools).
    pub fn infer_types(&self, g: &GraphIr) -> Vec<(String, String, TensorType)> {
        let (types, _) = check(self, g, &SourceMap::new());
        let mut out = Vec::new();
        for (idx, ts) in types {
            let node = &g.graph[idx];
            if let Some(k) = self.get(&node.kind) {
                for (p, t) in k.schema.outputs.iter().zip(ts) {
                    out.push((node.name.clone(), p.name.clone(), t));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}
