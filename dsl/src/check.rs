//! Validation of one resolved variant: top-level keys, the `train` block,
//! and every component against its kind's schema. Defaults are filled into
//! the tree (marked as defaults) so the rendered recipe is fully explicit and
//! `mer explain` can say where each value came from.

use crate::diag::{did_you_mean, Diagnostic};
use crate::resolve::{CallNode, Node, Origin, Session, Tree, Val, Variant, Via, TOP_LEVEL_KEYS};
use crate::schema::{Catalog, Namespace, ParamSpec, ParamType, Role};
use crate::source::Span;
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The canonical, fully explicit form of one variant. Its RON is hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedRecipe {
    pub mer: String,
    pub experiment: String,
    pub variant: String,
    /// Plugin namespaces the recipe `use`s, sorted.
    pub plugins: Vec<String>,
    pub config: BTreeMap<String, Value>,
}

impl ResolvedRecipe {
    pub fn to_ron(&self) -> String {
        crate::value::to_ron(self).unwrap_or_else(|e| format!("/* cannot serialise: {e} */"))
    }
    /// BLAKE3 of the canonical RON: the variant's identity.
    pub fn hash(&self) -> String {
        crate::value::hash_hex(&self.to_ron())
    }
}

/// The selection policies `train.select` accepts. Only the last one looks
/// at test data, and everything it produces is labelled test-tuned.
pub const SELECT_POLICIES: &[&str] = &["last", "inner_val", "test_best_epoch"];

/// The `train` block's schema (mer's own, not a plugin's).
pub fn train_schema() -> Vec<ParamSpec> {
    let int = |min| ParamType::Int {
        min: Some(min),
        max: None,
    };
    vec![
        spec("epochs", int(1), None, "Number of training epochs."),
        spec("batch", int(1), None, "Mini-batch size."),
        spec(
            "select",
            ParamType::Str {
                choices: SELECT_POLICIES.iter().map(|s| s.to_string()).collect(),
            },
            Some(Value::Str("last".into())),
            "Model selection: `last` epoch, best on an `inner_val` split of the training subjects, or `test_best_epoch` (test-tuned; reproduces papers only).",
        ),
        spec(
            "val_fraction",
            ParamType::Float { min: Some(0.0), max: Some(0.9) },
            Some(Value::Float(0.2)),
            "Fraction of training subjects held out when select = \"inner_val\".",
        ),
        spec("eval_every", int(1), Some(Value::Int(1)), "Evaluate every N epochs."),
        spec("accumulate", int(1), Some(Value::Int(1)), "Gradient accumulation steps."),
        spec(
            "normalize",
            ParamType::List(Box::new(ParamType::Str { choices: vec![] })),
            Some(Value::List(vec![])),
            "Data ports (e.g. [\"video\"]) standardised per channel with the mean and std of each fold's training samples only.",
        ),
        spec(
            "clip_grad_norm",
            ParamType::Optional(Box::new(ParamType::Float { min: Some(0.0), max: None })),
            Some(Value::None),
            "Clip the global gradient norm to this value; none disables clipping.",
        ),
    ]
}

fn spec(name: &str, ty: ParamType, default: Option<Value>, doc: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        ty,
        default,
        doc: doc.into(),
    }
}

const REQUIRED: &[&str] = &[
    "data",
    "model",
    "loss",
    "optimizer",
    "train",
    "protocol",
    "metrics",
];

/// Checks a variant in place and returns its canonical form when clean.
pub struct Checker<'a> {
    pub session: &'a mut Session,
    pub catalog: &'a dyn Catalog,
    /// Namespaces named by `use` whose plugin is missing: their kinds are
    /// not checked (the `use` line already carries the error).
    missing: BTreeSet<String>,
    used: BTreeSet<String>,
    errors_before: usize,
}

impl<'a> Checker<'a> {
    pub fn new(
        session: &'a mut Session,
        catalog: &'a dyn Catalog,
        uses: &[crate::ast::Ident],
    ) -> Self {
        let mut missing = BTreeSet::new();
        let mut used = BTreeSet::new();
        for u in uses {
            used.insert(u.name.clone());
            if catalog.namespace(&u.name) == Namespace::Plugin {
                continue;
            }
            if missing.insert(u.name.clone()) {
                let avail = catalog.plugin_names();
                // A library that exists but was refused (handshake, panic)
                // is a different problem from a missing one.
                let not_found = format!("plugin `{}` not found", u.name);
                if let Some(problem) = catalog
                    .plugin_problem(&u.name)
                    .filter(|p| !p.starts_with(&not_found))
                {
                    session.diags.push(
                        Diagnostic::error(
                            "mer::plugin-refused",
                            format!("plugin `{}` was refused", u.name),
                        )
                        .at(u.span, "its library did not pass the load checks")
                        .help(problem),
                    );
                    continue;
                }
                let found = if avail.is_empty() {
                    "no plugins found on the search path".to_string()
                } else {
                    format!("plugins found: {}", avail.join(", "))
                };
                let help = match did_you_mean(&u.name, avail.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`? {found}"),
                    None => format!(
                        "{found}; build it with `cargo build -p mer-plugin-{}` or put its library on MER_PLUGIN_PATH",
                        u.name.replace('_', "-")
                    ),
                };
                let d = Diagnostic::error(
                    "mer::unknown-plugin",
                    format!("plugin `{}` is not available", u.name),
                )
                .at(u.span, "no plugin by this name")
                .help(help);
                session.diags.push(d);
            }
        }
        let errors_before = session.diags.iter().filter(|d| d.is_error()).count();
        Checker {
            session,
            catalog,
            missing,
            used,
            errors_before,
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.session.diags.push(d);
    }

    /// Validates and fills `variant.tree`. Returns the canonical recipe if no
    /// new error was raised.
    pub fn check(
        &mut self,
        variant: &mut Variant,
        experiment: &str,
        name_span: Span,
        complete: bool,
    ) -> Option<ResolvedRecipe> {
        let tree = &mut variant.tree;
        let keys: Vec<String> = tree.keys().cloned().collect();
        for k in &keys {
            if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
                let sp = tree[k].key_span();
                self.err(
                    Diagnostic::error("mer::unknown-key", format!("unknown top-level key `{k}`"))
                        .at(sp, "not an experiment key")
                        .suggest(k, TOP_LEVEL_KEYS.iter().copied()),
                );
            }
        }
        if complete {
            for r in REQUIRED {
                if !tree.contains_key(*r) {
                    self.err(
                        Diagnostic::error(
                            "mer::missing-key",
                            format!("experiment `{experiment}` has no `{r}`"),
                        )
                        .at(name_span, format!("`{r}` is required"))
                        .help(missing_help(r)),
                    );
                }
            }
        }
        let framework = Origin {
            key: None,
            value: name_span,
            via: Via::FrameworkDefault,
        };
        // Scalars with framework defaults, written out so the rendered
        // recipe is explicit.
        let mut defaults = vec![
            ("title", Val::Str(experiment.to_string())),
            ("description", Val::Str(String::new())),
            ("seed", Val::Int(0)),
            ("device", Val::Str("cpu".into())),
            ("reported", Val::Map(BTreeMap::new())),
            ("tags", Val::Map(BTreeMap::new())),
        ];
        if complete {
            defaults.push(("scheduler", Val::None));
        }
        for (key, val) in defaults {
            fill(tree, key, val, framework.clone());
        }
        self.check_scalar(tree, "title", &ParamType::Str { choices: vec![] });
        self.check_scalar(tree, "description", &ParamType::Str { choices: vec![] });
        self.check_scalar(
            tree,
            "seed",
            &ParamType::Int {
                min: Some(0),
                max: None,
            },
        );
        let seed = match tree.get("seed").map(|n| &n.val) {
            Some(Val::Int(s)) => *s,
            _ => 0,
        };
        let seed_origin = tree
            .get("seed")
            .map(|n| n.origin.clone())
            .unwrap_or_else(|| framework.clone());
        fill(
            tree,
            "seeds",
            Val::List(vec![Node::new(Val::Int(seed), seed_origin.clone())]),
            Origin {
                via: Via::FrameworkDefault,
                ..seed_origin
            },
        );
        self.check_scalar(
            tree,
            "seeds",
            &ParamType::List(Box::new(ParamType::Int {
                min: Some(0),
                max: None,
            })),
        );
        if let Some(Node {
            val: Val::List(l),
            origin,
            ..
        }) = tree.get("seeds")
        {
            if l.is_empty() {
                let sp = origin.value;
                self.err(
                    Diagnostic::error("mer::bad-value", "`seeds` is empty")
                        .at(sp, "no seed to run")
                        .help("write `seeds = [1]` or remove the key"),
                );
            }
        }
        self.check_device(tree);
        self.check_scalar(
            tree,
            "reported",
            &ParamType::MapOf(Box::new(ParamType::Any)),
        );
        self.check_scalar(
            tree,
            "tags",
            &ParamType::MapOf(Box::new(ParamType::Str { choices: vec![] })),
        );

        if let Some(n) = tree.get_mut("train") {
            let owner = n.span();
            match &mut n.val {
                Val::Map(m) => self.check_params(m, &train_schema(), "train", owner, "train"),
                _ => {
                    let t = n.type_name();
                    let sp = n.span();
                    self.err(
                        Diagnostic::error("mer::type", format!("`train` must be a block, got {t}"))
                            .at(sp, "expected `train { epochs = ..., batch = ... }`"),
                    );
                }
            }
        }
        self.check_selection(tree);

        for (section, role) in [("data", Role::Data), ("model", Role::Component)] {
            if let Some(n) = tree.get_mut(section) {
                let sp = n.span();
                match &mut n.val {
                    Val::Map(m) => {
                        if m.is_empty() && complete {
                            self.err(
                                Diagnostic::error(
                                    "mer::missing-key",
                                    format!("`{section}` is empty"),
                                )
                                .at(sp, format!("declare at least one {}", role.describe())),
                            );
                        }
                        for (_, node) in m.iter_mut() {
                            self.check_slot(node, role);
                        }
                    }
                    _ => {
                        let t = n.type_name();
                        let sp = n.span();
                        self.err(
                            Diagnostic::error(
                                "mer::type",
                                format!("`{section}` must be a block of named nodes, got {t}"),
                            )
                            .at(sp, "not a block"),
                        );
                    }
                }
            }
        }
        if let Some(n) = tree.get_mut("loss") {
            self.check_loss(n);
        }
        for (key, role) in [("optimizer", Role::Optimizer), ("protocol", Role::Protocol)] {
            if let Some(n) = tree.get_mut(key) {
                self.check_slot(n, role);
            }
        }
        if let Some(n) = tree.get_mut("scheduler") {
            if !matches!(n.val, Val::None) {
                self.check_slot(n, Role::Scheduler);
            }
        }
        if let Some(n) = tree.get_mut("metrics") {
            let sp = n.span();
            match &mut n.val {
                Val::List(items) => {
                    if items.is_empty() && complete {
                        self.err(
                            Diagnostic::error("mer::missing-key", "`metrics` is empty")
                                .at(sp, "list at least one metric"),
                        );
                    }
                    for it in items.iter_mut() {
                        self.check_slot(it, Role::Metric);
                    }
                }
                Val::Call(_) | Val::Ref(_) => {
                    self.check_slot(n, Role::Metric);
                    let single = n.clone();
                    n.val = Val::List(vec![single]);
                }
                _ => {
                    let t = n.type_name();
                    self.err(
                        Diagnostic::error(
                            "mer::type",
                            format!("`metrics` must be a list of metrics, got {t}"),
                        )
                        .at(sp, "expected `[metric.x(...), ...]`"),
                    );
                }
            }
        }

        self.check_metric_tuning(&variant.tree);

        let errors_now = self.session.diags.iter().filter(|d| d.is_error()).count();
        if errors_now > self.errors_before {
            return None;
        }
        Some(ResolvedRecipe {
            mer: "0.1".into(),
            experiment: experiment.to_string(),
            variant: variant.name.clone(),
            plugins: self.used.iter().cloned().collect(),
            config: variant
                .tree
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
        })
    }

    fn check_scalar(&mut self, tree: &mut Tree, key: &str, ty: &ParamType) {
        if let Some(n) = tree.get_mut(key) {
            self.check_type(n, ty, key);
        }
    }

    fn check_device(&mut self, tree: &mut Tree) {
        let Some(n) = tree.get("device") else { return };
        let ok = match &n.val {
            Val::Str(s) => {
                s == "cpu"
                    || s == "auto"
                    || s.strip_prefix("cuda:")
                        .is_some_and(|i| i.parse::<u32>().is_ok())
                    || s == "cuda"
            }
            _ => false,
        };
        if !ok {
            let sp = n.span();
            let got = n.to_value().to_string();
            self.err(
                Diagnostic::error("mer::bad-value", format!("`device` must be \"cpu\", \"auto\" or \"cuda:N\", got {got}"))
                    .at(sp, "unknown device")
                    .help("\"auto\" uses CUDA when mer was built with `--features cuda` and a GPU is present, else the CPU"),
            );
        }
    }

    fn check_selection(&mut self, tree: &Tree) {
        let Some(Node {
            val: Val::Map(train),
            ..
        }) = tree.get("train")
        else {
            return;
        };
        if let Some(
            n @ Node {
                val: Val::Str(s), ..
            },
        ) = train.get("select")
        {
            if s == "test_best_epoch" {
                self.session.diags.push(
                    Diagnostic::warning(
                        "mer::test-tuned",
                        "model selection on the test fold: every number of this run is reported as test-tuned",
                    )
                    .at(n.span(), "selects the epoch on test data")
                    .help("use select = \"inner_val\" (a validation split of the training subjects) for honest numbers"),
                );
            }
        }
    }

    /// Thresholds tuned on test data are allowed only by name and flagged.
    fn check_metric_tuning(&mut self, tree: &Tree) {
        let Some(Node {
            val: Val::List(ms), ..
        }) = tree.get("metrics")
        else {
            return;
        };
        for m in ms {
            let Val::Call(c) = &m.val else { continue };
            if let Some(
                n @ Node {
                    val: Val::Str(s), ..
                },
            ) = c.params.get("threshold_from")
            {
                if s == "test_tuned" {
                    self.session.diags.push(
                        Diagnostic::warning(
                            "mer::test-tuned",
                            format!(
                                "`{}` tunes its threshold on the test fold: reported as test-tuned",
                                c.kind
                            ),
                        )
                        .at(n.span(), "threshold chosen on test data")
                        .help("threshold_from = \"inner_val\" picks it on training subjects only"),
                    );
                }
            }
        }
    }

    fn check_loss(&mut self, n: &mut Node) {
        match &mut n.val {
            Val::Sum(terms) => {
                for (w, t) in terms.iter_mut() {
                    if !w.is_finite() || *w < 0.0 {
                        let sp = t.span();
                        self.err(
                            Diagnostic::error(
                                "mer::bad-value",
                                format!("loss weight {w} must be a finite number ≥ 0"),
                            )
                            .at(sp, "this term"),
                        );
                    }
                    self.check_slot(t, Role::Loss);
                }
            }
            _ => self.check_slot(n, Role::Loss),
        }
    }

    /// A slot that must hold a component of `role`. A bare kind name (a
    /// reference such as `protocol.loso`) is read as that kind with defaults.
    fn check_slot(&mut self, n: &mut Node, role: Role) {
        if let Val::Ref(r) = &n.val {
            let kind = r.clone();
            let sp = n.span();
            n.val = Val::Call(Box::new(CallNode {
                kind,
                kind_span: sp,
                inputs: Vec::new(),
                params: BTreeMap::new(),
                explicit_inputs: false,
            }));
        }
        match &mut n.val {
            Val::Call(c) => self.check_call(c, n.origin.value, role),
            _ => {
                let t = n.type_name();
                let sp = n.span();
                self.err(
                    Diagnostic::error(
                        "mer::type",
                        format!("expected {}, got {t}", role.describe()),
                    )
                    .at(
                        sp,
                        format!("write a component here, e.g. {}", role_example(role)),
                    ),
                );
            }
        }
    }

    fn check_call(&mut self, c: &mut CallNode, span: Span, role: Role) {
        // Nested components in inputs are anonymous model nodes.
        for inp in c.inputs.iter_mut() {
            match &inp.value.val {
                Val::Ref(_) => {}
                Val::Call(_) => self.check_slot(&mut inp.value, Role::Component),
                _ => {
                    let t = inp.value.type_name();
                    let sp = inp.value.span();
                    self.err(
                        Diagnostic::error("mer::bad-input", format!("an input must be a port reference or a component, got {t}"))
                            .at(sp, "not a port")
                            .help("inputs name ports (`cnn.mid`, `casme2.video`); settings go in the `{ ... }` block"),
                    );
                }
            }
        }
        let ns = c.kind.split('.').next().unwrap_or("").to_string();
        if self.missing.contains(&ns) {
            return;
        }
        let Some(schema) = self.catalog.kind(&c.kind).cloned() else {
            let names = self.catalog.kind_names();
            let status = self.catalog.namespace(&ns);
            let (code, msg, label) = if status == Namespace::Unknown && c.kind.contains('.') {
                if self.used.contains(&ns) {
                    (
                        "mer::unknown-kind",
                        format!("unknown kind `{}`", c.kind),
                        "not provided by the plugin",
                    )
                } else {
                    (
                        "mer::unknown-namespace",
                        format!("unknown namespace `{ns}` in `{}`", c.kind),
                        "no builtin or plugin namespace by this name",
                    )
                }
            } else {
                (
                    "mer::unknown-kind",
                    format!("unknown kind `{}`", c.kind),
                    "no such kind",
                )
            };
            // Prefer suggestions of the role this slot needs.
            let same_role: Vec<&str> = names
                .iter()
                .copied()
                .filter(|k| self.catalog.kind(k).is_some_and(|s| s.role == role))
                .collect();
            let suggestion = did_you_mean(&c.kind, same_role.iter().copied())
                .or_else(|| did_you_mean(&c.kind, names.iter().copied()));
            let mut d = Diagnostic::error(code, msg).at(c.kind_span, label);
            d = match suggestion {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if code == "mer::unknown-namespace" => d.help(format!(
                    "if `{ns}` is a plugin, add `use {ns}` at the top of the recipe"
                )),
                None => d.help(format!(
                    "`mer plugins list` shows every kind; {} kinds here: {}",
                    role.describe(),
                    preview(&same_role)
                )),
            };
            self.err(d);
            return;
        };
        if schema.role != role {
            self.err(
                Diagnostic::error(
                    "mer::wrong-role",
                    format!(
                        "`{}` is {}, but this slot needs {}",
                        c.kind,
                        schema.role.describe(),
                        role.describe()
                    ),
                )
                .at(c.kind_span, format!("{} here", schema.role.describe())),
            );
            return;
        }
        let kind = c.kind.clone();
        self.check_params(&mut c.params, &schema.params, &kind, span, &kind);
    }

    /// Checks a parameter map against specs: unknown keys, types, ranges,
    /// missing required values; fills defaults.
    fn check_params(
        &mut self,
        m: &mut BTreeMap<String, Node>,
        specs: &[ParamSpec],
        owner: &str,
        owner_span: Span,
        default_via: &str,
    ) {
        let keys: Vec<String> = m.keys().cloned().collect();
        // A misspelt key that suggests a missing required one is a single
        // mistake: report the typo, not also the absence.
        let mut suggested: Vec<String> = Vec::new();
        for k in keys {
            if !specs.iter().any(|s| s.name == k) {
                let sp = m[&k].key_span();
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                if let Some(s) = did_you_mean(&k, names.iter().copied()) {
                    suggested.push(s);
                }
                let mut d = Diagnostic::error(
                    "mer::unknown-key",
                    format!("`{owner}` has no parameter `{k}`"),
                )
                .at(sp, "unknown parameter")
                .suggest(&k, names.iter().copied());
                if d.help.is_none() {
                    d = d.help(if names.is_empty() {
                        format!("`{owner}` takes no parameters")
                    } else {
                        format!("parameters of `{owner}`: {}", names.join(", "))
                    });
                }
                self.err(d);
                m.remove(&k);
            }
        }
        for s in specs {
            match m.get_mut(&s.name) {
                Some(n) => {
                    let ctx = format!("{owner}.{}", s.name);
                    self.check_type(n, &s.ty, &ctx);
                }
                None => match &s.default {
                    Some(v) => {
                        m.insert(
                            s.name.clone(),
                            node_from_value(
                                v,
                                &Origin {
                                    key: None,
                                    value: owner_span,
                                    via: Via::Default(default_via.to_string()),
                                },
                            ),
                        );
                    }
                    None if suggested.contains(&s.name) => {}
                    None => self.err(
                        Diagnostic::error(
                            "mer::missing-param",
                            format!("`{owner}` needs `{}`", s.name),
                        )
                        .at(owner_span, format!("missing `{}`", s.name))
                        .help(format!(
                            "`{}`: {} — {}",
                            s.name,
                            s.ty.describe(),
                            s.doc
                        )),
                    ),
                },
            }
        }
    }

    fn check_type(&mut self, n: &mut Node, ty: &ParamType, ctx: &str) {
        let sp = n.span();
        let bad = |me: &mut Self, n: &Node, extra: Option<String>| {
            let got = match &n.val {
                Val::Str(s) => format!("the string \"{s}\""),
                Val::Int(i) => format!("{i}"),
                Val::Float(f) => Value::Float(*f).to_string(),
                Val::Bool(b) => format!("{b}"),
                _ => n.type_name().to_string(),
            };
            let mut d = Diagnostic::error(
                "mer::type",
                format!("`{ctx}` expects {}, got {got}", ty.describe()),
            )
            .at(sp, "wrong value");
            if let Some(h) = extra {
                d = d.help(h);
            }
            me.err(d);
        };
        match (ty, &mut n.val) {
            (ParamType::Any, v) => {
                if contains_component(v) {
                    self.err(Diagnostic::error("mer::bad-value", format!("`{ctx}` is a setting; components and port references cannot appear here")).at(sp, "not a setting"));
                }
            }
            (ParamType::Optional(_), Val::None) => {}
            (ParamType::Optional(inner), _) => self.check_type(n, inner, ctx),
            (ParamType::Bool, Val::Bool(_)) => {}
            (ParamType::Int { min, max }, Val::Int(i)) => {
                if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) {
                    bad(self, n, None);
                }
            }
            (ParamType::Float { min, max }, Val::Int(_) | Val::Float(_)) => {
                let x = match n.val {
                    Val::Int(i) => i as f64,
                    Val::Float(f) => f,
                    _ => unreachable!(),
                };
                if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) || !x.is_finite() {
                    bad(self, n, None);
                } else {
                    n.val = Val::Float(x);
                }
            }
            (ParamType::Str { choices }, Val::Str(s)) => {
                if !choices.is_empty() && !choices.contains(s) {
                    let s = s.clone();
                    let help =
                        choice_suggestion(&s, choices).map(|c| format!("did you mean \"{c}\"?"));
                    bad(self, n, help);
                }
            }
            (ParamType::Path, Val::Str(_)) => {}
            (ParamType::List(inner), Val::List(items)) => {
                for (i, it) in items.iter_mut().enumerate() {
                    self.check_type(it, inner, &format!("{ctx}[{i}]"));
                }
            }
            (ParamType::MapOf(inner), Val::Map(m)) => {
                for (k, v) in m.iter_mut() {
                    self.check_type(v, inner, &format!("{ctx}.{k}"));
                }
            }
            (ParamType::Record(specs), Val::Map(m)) => {
                let specs = specs.clone();
                self.check_params(m, &specs, ctx, sp, ctx);
            }
            _ => {
                let hint = match (&n.val, ty) {
                    (Val::Ref(r), ParamType::Float { .. } | ParamType::Int { .. } | ParamType::Bool) => Some(format!(
                        "`{r}` is read as a name; write a {}",
                        if matches!(ty, ParamType::Bool) { "bool: true or false" } else { "number" }
                    )),
                    (Val::Str(s), ParamType::Float { .. } | ParamType::Int { .. }) if s.parse::<f64>().is_ok() => Some(format!("write the number without quotes: {s}")),
                    (Val::Float(f), ParamType::Int { .. }) if f.fract() == 0.0 => Some(format!("write an integer: {}", *f as i64)),
                    // On the command line the shell ate the quotes: say how to keep them.
                    (Val::Ref(r), ParamType::Str { .. } | ParamType::Path) if n.origin.via == Via::Override => {
                        let text = &self.session.sources.get(sp.file).text;
                        let key = text.split_once('=').map_or(ctx, |(k, _)| k.trim());
                        Some(format!("strings need double quotes, which the shell removes unless the whole override is in single quotes: --set '{key}=\"{r}\"'"))
                    }
                    (Val::Ref(r), ParamType::Str { .. } | ParamType::Path) => Some(format!("strings need quotes: \"{r}\"")),
                    (Val::Ref(_) | Val::Call(_), _) => Some("components and port references go in the input list `( ... )`, not in settings".into()),
                    _ => None,
                };
                bad(self, n, hint);
            }
        }
    }
}

/// The choice a mistyped value most likely meant. A value that is part of
/// exactly one choice (`3class` of `3class_megc`, `megc`) wins over edit
/// distance, which would offer `5class` for `3class`.
fn choice_suggestion(s: &str, choices: &[String]) -> Option<String> {
    let low = s.to_lowercase();
    if !low.is_empty() {
        let containing: Vec<&String> = choices
            .iter()
            .filter(|c| c.to_lowercase().contains(&low))
            .collect();
        if let [only] = containing.as_slice() {
            return Some(only.to_string());
        }
    }
    did_you_mean(s, choices.iter().map(String::as_str))
}

fn contains_component(v: &Val) -> bool {
    match v {
        Val::Ref(_) | Val::Call(_) | Val::Sum(_) => true,
        Val::List(l) => l.iter().any(|n| contains_component(&n.val)),
        Val::Map(m) => m.values().any(|n| contains_component(&n.val)),
        _ => false,
    }
}

fn fill(tree: &mut Tree, key: &str, val: Val, origin: Origin) {
    tree.entry(key.to_string())
        .or_insert_with(|| Node::new(val, origin));
}

/// Builds a provenance node from a plain value (schema defaults).
pub fn node_from_value(v: &Value, origin: &Origin) -> Node {
    let val = match v {
        Value::None => Val::None,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int(i) => Val::Int(*i),
        Value::Float(f) => Val::Float(*f),
        Value::Str(s) => Val::Str(s.clone()),
        Value::List(l) => Val::List(l.iter().map(|x| node_from_value(x, origin)).collect()),
        Value::Map(m) => Val::Map(
            m.iter()
                .map(|(k, x)| (k.clone(), node_from_value(x, origin)))
                .collect(),
        ),
        Value::Ref(r) => Val::Ref(r.clone()),
        Value::Call(_) | Value::Sum(_) => Val::None,
    };
    Node::new(val, origin.clone())
}

fn missing_help(key: &str) -> &'static str {
    match key {
        "data" => "declare a dataset: `data clips = synth.me { subjects = 8 }`",
        "model" => "add a `model { ... }` block of named components",
        "loss" => "add `loss = loss.cross_entropy(head, clips.emotion)`",
        "optimizer" => "add `optimizer = optim.adam { lr = 1e-3 }`",
        "train" => "add `train { epochs = 10, batch = 16 }`",
        "protocol" => "add `protocol = protocol.loso { group = \"subject\" }`",
        "metrics" => "add `metrics = [metric.uf1(head, clips.emotion)]`",
        _ => "",
    }
}

fn role_example(role: Role) -> &'static str {
    match role {
        Role::Data => "`synth.me { subjects = 8 }`",
        Role::Component => "`nn.linear(x) { out = 8 }`",
        Role::Loss => "`loss.cross_entropy(head, clips.emotion)`",
        Role::Metric => "`metric.uf1(head, clips.emotion)`",
        Role::Optimizer => "`optim.adam { lr = 1e-3 }`",
        Role::Scheduler => "`sched.cosine { warmup = 0.03 }`",
        Role::Protocol => "`protocol.loso { group = \"subject\" }`",
    }
}

fn preview(names: &[&str]) -> String {
    let mut v: Vec<&str> = names.to_vec();
    v.sort();
    if v.len() > 8 {
        format!("{}, ...", v[..8].join(", "))
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::choice_suggestion;

    #[test]
    fn a_choice_containing_the_value_beats_edit_distance() {
        let choices: Vec<String> = ["5class", "3class_megc", "7class"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Edit distance alone offers `5class` for `3class`.
        assert_eq!(
            choice_suggestion("3class", &choices).as_deref(),
            Some("3class_megc")
        );
        assert_eq!(
            choice_suggestion("MEGC", &choices).as_deref(),
            Some("3class_megc")
        );
        // Part of several choices: back to edit distance.
        assert_eq!(
            choice_suggestion("clas", &choices),
            crate::diag::did_you_mean("clas", choices.iter().map(String::as_str))
        );
        assert_eq!(
            choice_suggestion("5clas", &choices).as_deref(),
            Some("5class")
        );
    }
}
