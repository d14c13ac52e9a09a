//! The graph IR: one node per component (datasets, model nodes, anonymous
//! nested components, loss terms, metrics), one edge per port connection.
//! Lowering reports dangling references and cycles at their recipe spans.

use crate::diag::Diagnostic;
use crate::resolve::{CallNode, InputNode, Node, Session, Tree, Val, Via};
use crate::schema::{Catalog, KindSchema, Role};
use crate::source::Span;
use crate::value::Value;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Where a node was written, as plain data (survives RON round trips).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loc {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IrNode {
    pub name: String,
    pub kind: String,
    pub role: Role,
    pub params: BTreeMap<String, Value>,
    /// The weight of a loss term.
    pub weight: Option<f64>,
    pub at: Loc,
}

/// `port` of the source node feeds input slot `input` of the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IrEdge {
    pub port: String,
    pub input: String,
    /// Position among the target's inputs (order matters for `concat`).
    pub position: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphIr {
    pub graph: DiGraph<IrNode, IrEdge>,
    /// Recipe spans of nodes, for diagnostics raised after lowering (shape
    /// inference). Not serialised: spans index the in-memory sources.
    #[serde(skip)]
    pub spans: HashMap<NodeIndex, Span>,
    /// Recipe spans of the references behind edges (not serialised).
    #[serde(skip)]
    pub edge_spans: HashMap<petgraph::graph::EdgeIndex, Span>,
}

impl PartialEq for GraphIr {
    fn eq(&self, other: &Self) -> bool {
        let nodes = |g: &GraphIr| g.graph.node_weights().cloned().collect::<Vec<_>>();
        let edges = |g: &GraphIr| {
            g.graph
                .edge_references()
                .map(|e| (e.source(), e.target(), e.weight().clone()))
                .collect::<Vec<_>>()
        };
        nodes(self) == nodes(other) && edges(self) == edges(other)
    }
}

impl GraphIr {
    pub fn node(&self, name: &str) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|i| self.graph[*i].name == name)
    }

    pub fn to_ron(&self) -> String {
        crate::value::to_ron(self).unwrap_or_else(|e| format!("/* cannot serialise: {e} */"))
    }

    pub fn from_ron(s: &str) -> Result<Self, ron::error::SpannedError> {
        ron::from_str(s)
    }

    /// Graphviz DOT; renders with `dot -Tsvg`.
    pub fn to_dot(&self) -> String {
        self.to_dot_with(&std::collections::BTreeMap::new())
    }

    /// DOT with edges labelled by the inferred type of the port they carry
    /// (`port_types[(node, port)]`, e.g. `[B, 8]`).
    pub fn to_dot_with(&self, port_types: &BTreeMap<(String, String), String>) -> String {
        use petgraph::dot::{Config, Dot};
        let edge_attrs = |_, e: petgraph::graph::EdgeReference<'_, IrEdge>| {
            let w = e.weight();
            let src = &self.graph[e.source()].name;
            let ty = port_types
                .get(&(src.clone(), w.port.clone()))
                .map(|t| format!("\\n{}", esc(t)))
                .unwrap_or_default();
            format!("label = \"{} → {}{ty}\"", esc(&w.port), esc(&w.input))
        };
        let node_attrs = |_, (_, n): (NodeIndex, &IrNode)| {
            let shape = match n.role {
                Role::Data => "cylinder",
                Role::Loss => "diamond",
                Role::Metric => "note",
                _ => "box",
            };
            let w = n.weight.map(|w| format!(" × {w}")).unwrap_or_default();
            format!(
                "label = \"{}\\n{}{}\", shape = {shape}",
                esc(&n.name),
                esc(&n.kind),
                w
            )
        };
        let dot = Dot::with_attr_getters(
            &self.graph,
            &[Config::EdgeNoLabel, Config::NodeNoLabel],
            &edge_attrs,
            &node_attrs,
        );
        format!("{dot:?}").replacen("digraph {", "digraph mer {\n    rankdir = LR", 1)
    }

    /// Nodes in an order where every input comes before its reader.
    pub fn topo_order(&self) -> Vec<NodeIndex> {
        petgraph::algo::toposort(&self.graph, None).unwrap_or_default()
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

struct Pending {
    idx: NodeIndex,
    kind: String,
    inputs: Vec<InputNode>,
    span: Span,
}

/// Lowers a checked variant tree to the graph IR.
pub fn lower(session: &mut Session, catalog: &dyn Catalog, tree: &Tree) -> Option<GraphIr> {
    let errors_before = session.diags.iter().filter(|d| d.is_error()).count();
    let mut g = GraphIr {
        graph: DiGraph::new(),
        spans: HashMap::new(),
        edge_spans: HashMap::new(),
    };
    let mut names: BTreeMap<String, (NodeIndex, Span)> = BTreeMap::new();
    let mut pending: Vec<Pending> = Vec::new();

    let add = |g: &mut GraphIr,
               session: &Session,
               name: String,
               c: &CallNode,
               role: Role,
               weight: Option<f64>,
               span: Span| {
        let (line, col) = session.sources.line_col(span.file, span.start);
        let idx = g.graph.add_node(IrNode {
            name,
            kind: c.kind.clone(),
            role,
            params: c
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
            weight,
            at: Loc {
                file: session.sources.get(span.file).name.clone(),
                line,
                col,
            },
        });
        g.spans.insert(idx, span);
        idx
    };

    for (section, role) in [("data", Role::Data), ("model", Role::Component)] {
        let Some(Node {
            val: Val::Map(m), ..
        }) = tree.get(section)
        else {
            continue;
        };
        for (name, node) in m {
            let Val::Call(c) = &node.val else { continue };
            let span = node.key_span();
            if let Some((_, prev)) = names.get(name) {
                session.diags.push(
                    Diagnostic::error("mer::duplicate", format!("`{name}` names both a dataset and a model node"))
                        .at(span, "second use of the name")
                        .also(*prev, "first use")
                        .help("rename one of them; data and model nodes share one namespace for references"),
                );
                continue;
            }
            let idx = add(&mut g, session, name.clone(), c, role, None, span);
            names.insert(name.clone(), (idx, span));
            pending.push(Pending {
                idx,
                kind: c.kind.clone(),
                inputs: c.inputs.clone(),
                span,
            });
        }
    }
    if let Some(n) = tree.get("loss") {
        let terms: Vec<(Option<f64>, &Node)> = match &n.val {
            Val::Sum(t) => t.iter().map(|(w, n)| (Some(*w), n)).collect(),
            _ => vec![(None, n)],
        };
        let many = terms.len() > 1;
        for (i, (w, t)) in terms.into_iter().enumerate() {
            let Val::Call(c) = &t.val else { continue };
            let name = if many {
                format!("loss[{i}]")
            } else {
                "loss".to_string()
            };
            let idx = add(
                &mut g,
                session,
                name,
                c,
                Role::Loss,
                Some(w.unwrap_or(1.0)),
                t.span(),
            );
            pending.push(Pending {
                idx,
                kind: c.kind.clone(),
                inputs: c.inputs.clone(),
                span: t.span(),
            });
        }
    }
    if let Some(Node {
        val: Val::List(ms), ..
    }) = tree.get("metrics")
    {
        for (i, m) in ms.iter().enumerate() {
            let Val::Call(c) = &m.val else { continue };
            let idx = add(
                &mut g,
                session,
                format!("metrics[{i}]"),
                c,
                Role::Metric,
                None,
                m.span(),
            );
            pending.push(Pending {
                idx,
                kind: c.kind.clone(),
                inputs: c.inputs.clone(),
                span: m.span(),
            });
        }
    }

    // Connect inputs; nested components become anonymous nodes `owner#k`.
    let mut counters: HashMap<NodeIndex, usize> = HashMap::new();
    while let Some(p) = pending.pop() {
        let schema = catalog.kind(&p.kind).cloned();
        let slots = assign_slots(session, schema.as_ref(), &p);
        for (pos, (inp, slot)) in p.inputs.iter().zip(slots).enumerate() {
            let Some(slot) = slot else { continue };
            match &inp.value.val {
                Val::Ref(r) => {
                    if let Some((src, port)) =
                        resolve_ref(session, catalog, &g, &names, tree, r, inp.value.span())
                    {
                        let e = g.graph.add_edge(
                            src,
                            p.idx,
                            IrEdge {
                                port,
                                input: slot,
                                position: pos,
                            },
                        );
                        g.edge_spans.insert(e, inp.value.span());
                    }
                }
                Val::Call(c) => {
                    let k = counters.entry(p.idx).or_insert(0);
                    *k += 1;
                    let owner = g.graph[p.idx].name.clone();
                    let name = format!("{owner}#{k}");
                    let span = inp.value.span();
                    let idx = add(&mut g, session, name, c, Role::Component, None, span);
                    let port = catalog
                        .kind(&c.kind)
                        .and_then(|s| s.default_port().map(str::to_string))
                        .unwrap_or_else(|| "out".into());
                    let e = g.graph.add_edge(
                        idx,
                        p.idx,
                        IrEdge {
                            port,
                            input: slot,
                            position: pos,
                        },
                    );
                    g.edge_spans.insert(e, span);
                    pending.push(Pending {
                        idx,
                        kind: c.kind.clone(),
                        inputs: c.inputs.clone(),
                        span,
                    });
                }
                _ => {}
            }
        }
    }

    report_cycles(session, &g);
    // Unused nodes are usually the echo of an error above; report them only
    // on an otherwise clean graph.
    if !session.has_errors() {
        report_unused(session, &g);
    }
    let errors_now = session.diags.iter().filter(|d| d.is_error()).count();
    (errors_now == errors_before).then_some(g)
}

/// Matches a node's inputs to its kind's input slots. Returns one slot name
/// per input (None where an error was reported).
fn assign_slots(
    session: &mut Session,
    schema: Option<&KindSchema>,
    p: &Pending,
) -> Vec<Option<String>> {
    let Some(schema) = schema else {
        // Unknown kind (its plugin is missing): keep edges, name by position.
        return (0..p.inputs.len())
            .map(|i| Some(format!("in{i}")))
            .collect();
    };
    let mut out = Vec::new();
    let mut suggested: Vec<String> = Vec::new();
    let mut filled: Vec<usize> = vec![0; schema.inputs.len()];
    let mut next_positional = 0usize;
    for inp in &p.inputs {
        match &inp.name {
            Some(n) => match schema.inputs.iter().position(|s| s.name == n.name) {
                Some(i) => {
                    if filled[i] > 0 && !schema.inputs[i].variadic {
                        session.diags.push(
                            Diagnostic::error(
                                "mer::bad-input",
                                format!("input `{}` of `{}` is given twice", n.name, schema.name),
                            )
                            .at(n.span, "given again"),
                        );
                        out.push(None);
                    } else {
                        filled[i] += 1;
                        out.push(Some(n.name.clone()));
                    }
                }
                None => {
                    let names: Vec<&str> = schema.inputs.iter().map(|s| s.name.as_str()).collect();
                    if let Some(s) = crate::diag::did_you_mean(&n.name, names.iter().copied()) {
                        suggested.push(s);
                    }
                    let d = Diagnostic::error(
                        "mer::bad-input",
                        format!("`{}` has no input `{}`", schema.name, n.name),
                    )
                    .at(n.span, "unknown input")
                    .suggest(&n.name, names.iter().copied());
                    let d = if d.help.is_none() {
                        d.help(format!(
                            "inputs of `{}`: {}",
                            schema.name,
                            list_or_none(&names)
                        ))
                    } else {
                        d
                    };
                    session.diags.push(d);
                    out.push(None);
                }
            },
            None => {
                while next_positional < schema.inputs.len()
                    && filled[next_positional] > 0
                    && !schema.inputs[next_positional].variadic
                {
                    next_positional += 1;
                }
                if next_positional < schema.inputs.len() {
                    filled[next_positional] += 1;
                    out.push(Some(schema.inputs[next_positional].name.clone()));
                    if !schema.inputs[next_positional].variadic {
                        next_positional += 1;
                    }
                } else {
                    let names: Vec<&str> = schema.inputs.iter().map(|s| s.name.as_str()).collect();
                    session.diags.push(
                        Diagnostic::error(
                            "mer::bad-input",
                            format!(
                                "`{}` takes {} input(s), got more",
                                schema.name,
                                schema.inputs.len()
                            ),
                        )
                        .at(inp.value.span(), "one input too many")
                        .help(format!(
                            "inputs of `{}`: {}",
                            schema.name,
                            list_or_none(&names)
                        )),
                    );
                    out.push(None);
                }
            }
        }
    }
    for (i, s) in schema.inputs.iter().enumerate() {
        if filled[i] == 0 && !s.optional && !suggested.contains(&s.name) {
            session.diags.push(
                Diagnostic::error(
                    "mer::missing-input",
                    format!("`{}` needs input `{}`", schema.name, s.name),
                )
                .at(p.span, format!("missing input `{}`", s.name))
                .help(format!("`{}`: {}", s.name, s.doc)),
            );
        }
    }
    out
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn resolve_ref(
    session: &mut Session,
    catalog: &dyn Catalog,
    g: &GraphIr,
    names: &BTreeMap<String, (NodeIndex, Span)>,
    tree: &Tree,
    r: &str,
    span: Span,
) -> Option<(NodeIndex, String)> {
    let (node, port) = match r.split_once('.') {
        Some((n, p)) => (n, Some(p)),
        None => (r, None),
    };
    let Some((idx, _)) = names.get(node) else {
        let d = Diagnostic::error("mer::undefined-node", format!("no node named `{node}`"))
            .at(
                Span::new(span.file, span.start, span.start + node.len()),
                "undefined",
            )
            .suggest(node, names.keys().map(String::as_str));
        let d = if d.help.is_none() {
            d.help(format!(
                "nodes: {}",
                names.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        } else {
            d
        };
        session.diags.push(d);
        return None;
    };
    let kind = &g.graph[*idx].kind;
    let Some(schema) = catalog.kind(kind) else {
        return Some((*idx, port.unwrap_or("out").to_string()));
    };
    let ports: Vec<&str> = schema.outputs.iter().map(|p| p.name.as_str()).collect();
    let found = match port {
        None => match schema.default_port() {
            Some(p) => Some((*idx, p.to_string())),
            None => {
                session.diags.push(
                    Diagnostic::error(
                        "mer::undefined-port",
                        format!("`{node}` ({kind}) has no output"),
                    )
                    .at(span, "nothing to read here"),
                );
                None
            }
        },
        Some(p) if ports.contains(&p) => Some((*idx, p.to_string())),
        Some(p) => {
            let start = span.start + node.len() + 1;
            let d = Diagnostic::error(
                "mer::undefined-port",
                format!("`{node}` ({kind}) has no port `{p}`"),
            )
            .at(Span::new(span.file, start, span.end), "unknown port")
            .suggest(p, ports.iter().copied());
            let d = if d.help.is_none() {
                d.help(format!("ports of `{kind}`: {}", list_or_none(&ports)))
            } else {
                d
            };
            session.diags.push(d);
            None
        }
    };
    let (idx, p) = found?;
    let spec = schema.outputs.iter().find(|s| s.name == p)?;
    let params = &g.graph[idx].params;
    if spec.enabled(params, schema) {
        return Some((idx, p));
    }
    // The port is declared but switched off by a parameter: reading it
    // would fail every fold at run time, so it is an error here.
    let cond = spec.when.as_ref()?;
    let current = params
        .get(&cond.param)
        .or_else(|| schema.param(&cond.param).and_then(|s| s.default.as_ref()))
        .map(Value::to_string)
        .unwrap_or_else(|| "unset".into());
    let port_span = match port {
        Some(_) => Span::new(span.file, span.start + node.len() + 1, span.end),
        None => span,
    };
    let mut d = Diagnostic::error(
        "mer::disabled-port",
        format!(
            "`{node}.{p}` is off: `{node}` ({kind}) has `{} = {current}`",
            cond.param
        ),
    )
    .at(port_span, "reads a port that is not computed");
    // Point at the setting that turned it off when the recipe wrote it (a
    // kind's default has no span of its own).
    let setting = ["data", "model"]
        .iter()
        .find_map(|s| crate::resolve::lookup(tree, &format!("{s}.{node}.{}", cond.param)));
    if let Some(n) = setting.filter(|n| !matches!(n.origin.via, Via::Default(_))) {
        d = d.also(n.key_span(), "turned off here");
    }
    session.diags.push(d.help(format!(
        "set `{} = {}` on `{node}` to compute it, or read another port",
        cond.param, cond.equals
    )));
    None
}

fn report_cycles(session: &mut Session, g: &GraphIr) {
    for scc in petgraph::algo::tarjan_scc(&g.graph) {
        let self_loop = scc.len() == 1 && g.graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let mut members: Vec<NodeIndex> = scc.clone();
        members.sort_by_key(|i| g.graph[*i].name.clone());
        // Walk the cycle from its first member (by name) for a stable message.
        let start = members[0];
        let mut path = vec![g.graph[start].name.clone()];
        let mut cur = start;
        for _ in 0..members.len() {
            let next = g
                .graph
                .neighbors(cur)
                .filter(|n| scc.contains(n))
                .min_by_key(|n| g.graph[*n].name.clone());
            match next {
                Some(n) => {
                    path.push(g.graph[n].name.clone());
                    if n == start {
                        break;
                    }
                    cur = n;
                }
                None => break,
            }
        }
        let mut d = Diagnostic::error(
            "mer::cycle",
            format!("the model graph has a cycle: {}", path.join(" → ")),
        );
        if let Some(sp) = g.spans.get(&start) {
            d = d.at(*sp, "this node reads, through the cycle, its own output");
        }
        for m in &members[1..] {
            if let Some(sp) = g.spans.get(m) {
                d = d.also(*sp, "part of the cycle");
            }
        }
        session.diags.push(d.help(
            "a model is a directed acyclic graph; break the loop by reading an earlier port",
        ));
    }
}

/// Model nodes from which no loss or metric can be reached, by name.
fn dead_nodes(g: &GraphIr) -> Vec<NodeIndex> {
    let sinks: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|i| matches!(g.graph[*i].role, Role::Loss | Role::Metric))
        .collect();
    let mut live = std::collections::HashSet::new();
    let mut stack = sinks;
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(g.graph.neighbors_directed(n, petgraph::Direction::Incoming));
        }
    }
    let mut dead: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|i| g.graph[*i].role == Role::Component && !live.contains(i))
        .collect();
    dead.sort_by_key(|i| g.graph[*i].name.clone());
    dead
}

/// Removes the model nodes that feed no loss or metric (what an ablation
/// that swaps a branch leaves behind) and returns their names and spans,
/// in recipe order. The graph keeps its other nodes, edges and spans.
pub fn prune_dead(g: &mut GraphIr) -> Vec<(String, Option<Span>)> {
    let dead = dead_nodes(g);
    if dead.is_empty() {
        return Vec::new();
    }
    let mut pruned: Vec<(String, Option<Span>)> = dead
        .iter()
        .map(|i| (g.graph[*i].name.clone(), g.spans.get(i).copied()))
        .collect();
    // In recipe order, so the note reads like the model block.
    pruned.sort_by_key(|(n, sp)| (sp.map(|s| (s.file, s.start)), n.clone()));
    let gone: std::collections::HashSet<NodeIndex> = dead.into_iter().collect();
    let mut kept = DiGraph::new();
    let mut map = HashMap::new();
    for i in g.graph.node_indices() {
        if !gone.contains(&i) {
            map.insert(i, kept.add_node(g.graph[i].clone()));
        }
    }
    let mut spans = HashMap::new();
    for (old, new) in &map {
        if let Some(sp) = g.spans.get(old) {
            spans.insert(*new, *sp);
        }
    }
    let mut edge_spans = HashMap::new();
    for e in g.graph.edge_references() {
        if let (Some(a), Some(b)) = (map.get(&e.source()), map.get(&e.target())) {
            let ne = kept.add_edge(*a, *b, e.weight().clone());
            if let Some(sp) = g.edge_spans.get(&e.id()) {
                edge_spans.insert(ne, *sp);
            }
        }
    }
    *g = GraphIr {
        graph: kept,
        spans,
        edge_spans,
    };
    pruned
}

fn report_unused(session: &mut Session, g: &GraphIr) {
    // A model node from which no loss or metric can be reached trains and
    // reports nothing: in the base recipe, almost always a mistake (an
    // ablation's leftovers are pruned with a note instead, in `check`).
    for i in dead_nodes(g) {
        let mut d = Diagnostic::warning(
            "mer::unused-node",
            format!("model node `{}` feeds no loss or metric", g.graph[i].name),
        );
        if let Some(sp) = g.spans.get(&i) {
            d = d.at(*sp, "computed but never used");
        }
        session
            .diags
            .push(d.help("remove it (`~model.NAME` in an ablation) or connect it"));
    }
}
