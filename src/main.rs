//! The `mer` command line: argument parsing, output and exit codes only.
//! Exit codes: 0 success, 1 recipe errors, 2 usage errors.

use clap::{Parser, Subcommand, ValueEnum};
use mer_dsl::ast::BlockKind;
use mer_dsl::diag::{did_you_mean, render, render_short};
use mer_dsl::resolve::{lookup, Node, Origin, Session, Val, Via};
use mer_dsl::{check_file, CheckedExperiment, CheckedVariant, FileCheck};
use mer_registry::{describe_kind, Catalog, Registry};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mer",
    version,
    about = "Declarative experiments for facial expression research"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum DiagFormat {
    /// Caret snippets with help (default).
    Full,
    /// One line per diagnostic: file:line:col: error[code]: message.
    Short,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Ron,
}

#[derive(clap::Args, Clone)]
struct Select {
    /// The experiment to use when the file holds several.
    #[arg(long, short = 'e')]
    experiment: Option<String>,
    /// The variant: `base`, an ablation name, or a sweep point as `mer plan`
    /// lists it. Default: the first variant (`base`, or its first sweep point).
    #[arg(long, short = 'v')]
    variant: Option<String>,
    /// Override a value with recipe syntax, e.g. `--set train.epochs=5` or `--set ~scheduler`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check recipes: syntax, names, types, graph; no compute. Exit 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, value_enum, default_value = "full")]
        format: DiagFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print the resolved recipe of a variant as canonical RON, every default explicit.
    Render {
        file: PathBuf,
        #[command(flatten)]
        select: Select,
    },
    /// Print the compute graph of a variant.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        #[command(flatten)]
        select: Select,
    },
    /// Print the run matrix: variants × seeds × folds, each with a stable run id.
    Plan {
        file: PathBuf,
        #[arg(long, short = 'e')]
        experiment: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Show a value and which file, line or override set it.
    Explain {
        file: PathBuf,
        /// Dotted key, e.g. `optimizer.lr` or `model.cnn` (a subtree lists every leaf).
        key: String,
        #[command(flatten)]
        select: Select,
    },
    /// Inspect the kinds mer knows.
    Plugins {
        #[command(subcommand)]
        cmd: PluginsCmd,
    },
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// List every kind, grouped by namespace.
    List,
    /// Show one kind's inputs, ports and parameters with defaults and docs.
    Describe { kind: String },
}

fn registry() -> Registry {
    mer_engine::builtin_registry()
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints diagnostics; returns whether any is an error.
fn report(session: &Session, format: DiagFormat) -> bool {
    if !session.diags.is_empty() {
        let text = match format {
            DiagFormat::Full => render(&session.diags, &session.sources, color()),
            DiagFormat::Short => render_short(&session.diags, &session.sources),
        };
        eprint!("{text}");
    }
    session.has_errors()
}

fn usage(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check {
            files,
            sets,
            format,
            deny_warnings,
        } => cmd_check(&files, &sets, format, deny_warnings),
        Cmd::Render { file, select } => with_variant(&file, &select, |_, v| {
            println!(
                "// mer render {} --variant {}",
                file.display(),
                v.variant.name
            );
            println!("// blake3 {}", v.hash);
            println!("{}", v.recipe.to_ron());
            ExitCode::SUCCESS
        }),
        Cmd::Graph {
            file,
            format,
            select,
        } => with_variant(&file, &select, |_, v| {
            match format {
                GraphFormat::Dot => println!("{}", v.graph.to_dot()),
                GraphFormat::Ron => println!("{}", v.graph.to_ron()),
            }
            ExitCode::SUCCESS
        }),
        Cmd::Plan {
            file,
            experiment,
            sets,
        } => {
            let select = Select {
                experiment,
                variant: None,
                sets,
            };
            with_experiment(&file, &select, |reg, _, e| {
                print!("{}", mer_dsl::plan::plan(e, reg).to_table());
                ExitCode::SUCCESS
            })
        }
        Cmd::Explain { file, key, select } => {
            with_variant(&file, &select, |s, v| explain(s, v, &key))
        }
        Cmd::Plugins { cmd } => plugins(cmd),
    }
}

fn cmd_check(
    files: &[PathBuf],
    sets: &[String],
    format: DiagFormat,
    deny_warnings: bool,
) -> ExitCode {
    let reg = registry();
    let mut failed = false;
    for f in files {
        let t0 = Instant::now();
        let mut session = Session::new();
        let fc = check_file(&mut session, &reg, f, sets, None);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let errors = report(&session, format);
        let warnings = session.diags.iter().any(|d| !d.is_error());
        if errors || (deny_warnings && warnings) {
            failed = true;
            let n = session.diags.iter().filter(|d| d.is_error()).count();
            println!("FAIL  {}  ({n} error(s))", f.display());
        } else {
            let exps = fc
                .experiments
                .iter()
                .filter(|e| e.kind == BlockKind::Experiment)
                .count();
            let vars: usize = fc.experiments.iter().map(|e| e.variants.len()).sum();
            println!(
                "ok    {}  ({exps} experiment(s), {vars} variant(s), {ms:.1} ms)",
                f.display()
            );
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks a file and hands the selected experiment to `f`.
fn with_experiment(
    file: &Path,
    select: &Select,
    f: impl FnOnce(&Registry, &Session, &CheckedExperiment) -> ExitCode,
) -> ExitCode {
    let reg = registry();
    let mut session = Session::new();
    let fc: FileCheck = check_file(
        &mut session,
        &reg,
        file,
        &select.sets,
        select.experiment.as_deref(),
    );
    if report(&session, DiagFormat::Full) {
        return ExitCode::from(1);
    }
    let exps: Vec<&CheckedExperiment> = fc
        .experiments
        .iter()
        .filter(|e| e.kind == BlockKind::Experiment)
        .collect();
    let names: Vec<&str> = exps.iter().map(|e| e.name.as_str()).collect();
    let chosen = match (&select.experiment, exps.len()) {
        (Some(n), _) => match exps.iter().find(|e| &e.name == n) {
            Some(e) => *e,
            None => {
                let hint = did_you_mean(n, names.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return usage(format!(
                    "no experiment `{n}` in {}{hint}; experiments: {}",
                    file.display(),
                    names.join(", ")
                ));
            }
        },
        (None, 1) => exps[0],
        (None, 0) => {
            return usage(format!(
                "{} has no experiment (only fragments)",
                file.display()
            ))
        }
        (None, _) => {
            return usage(format!(
                "{} has several experiments; pick one with --experiment: {}",
                file.display(),
                names.join(", ")
            ))
        }
    };
    f(&reg, &session, chosen)
}

fn with_variant(
    file: &Path,
    select: &Select,
    f: impl FnOnce(&Session, &CheckedVariant) -> ExitCode,
) -> ExitCode {
    let want = select.variant.clone();
    with_experiment(file, select, |_, session, e| {
        match want.as_deref().map_or(e.variants.first(), |w| e.variant(w)) {
            Some(v) => f(session, v),
            None => {
                let want = want.unwrap_or_default();
                let names: Vec<&str> = e.variants.iter().map(|v| v.variant.name.as_str()).collect();
                let hint = did_you_mean(&want, names.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                usage(format!(
                    "experiment `{}` has no variant `{want}`{hint}; variants: {}",
                    e.name,
                    names.join(", ")
                ))
            }
        }
    })
}

fn describe_origin(o: &Origin, sources: &mer_dsl::source::SourceMap) -> String {
    let loc = sources.location(o.key.unwrap_or(o.value));
    match &o.via {
        Via::Recipe => format!("set at {loc}"),
        Via::Override => format!("set by {}", sources.get(o.value.file).text.trim()),
        Via::Default(kind) if kind.contains('.') => {
            format!("default of `{kind}` (see `mer plugins describe {kind}`)")
        }
        Via::Default(block) => format!("mer default of the `{block}` block"),
        Via::Env(var) => format!("from environment variable {var} ({loc})"),
        Via::FrameworkDefault => "mer default".to_string(),
    }
}

fn explain(session: &Session, v: &CheckedVariant, key: &str) -> ExitCode {
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
        return usage(format!(
            "`{key}` is not set in variant `{}`{hint}",
            v.variant.name
        ));
    };
    let sources = &session.sources;
    let mut lines = Vec::new();
    explain_node(key, node, sources, &mut lines);
    for l in lines {
        println!("{l}");
    }
    ExitCode::SUCCESS
}

fn explain_node(path: &str, n: &Node, sources: &mer_dsl::source::SourceMap, out: &mut Vec<String>) {
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

fn plugins(cmd: PluginsCmd) -> ExitCode {
    let reg = registry();
    match cmd {
        PluginsCmd::List => {
            let mut ns = String::new();
            for k in reg.kinds() {
                let this = k.name.split('.').next().unwrap_or("").to_string();
                if this != ns {
                    let origin = if reg.namespace(&this) == mer_registry::Namespace::Plugin {
                        "plugin"
                    } else {
                        "builtin"
                    };
                    println!("\n{this}  ({origin})");
                    ns = this;
                }
                let first = k.doc.split(". ").next().unwrap_or("");
                println!(
                    "  {:<28} {:<20} {}",
                    k.name,
                    k.role.describe(),
                    first.trim_end_matches('.')
                );
            }
            let plugins: Vec<String> = reg
                .plugins()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect();
            println!(
                "\nplugins loaded: {}",
                if plugins.is_empty() {
                    "none".into()
                } else {
                    plugins.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        PluginsCmd::Describe { kind } => match reg.kind_schema(&kind) {
            Some(k) => {
                print!("{}", describe_kind(k));
                ExitCode::SUCCESS
            }
            None => {
                let hint = did_you_mean(&kind, reg.kind_names())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                usage(format!(
                    "unknown kind `{kind}`{hint}; `mer plugins list` shows all"
                ))
            }
        },
    }
}
