//! Runs one recipe text through the whole front end: parse, resolve
//! (including `extends` relative to `path`), check, lower, plan, and every
//! renderer. Shared by the property tests and the mutation fuzzer.

use mer_dsl::diag::render;
use mer_dsl::resolve::Session;
use std::path::Path;

pub fn exercise(reg: &mer_registry::Registry, path: &Path, text: &str, sets: &[String]) {
    let mut s = Session::with_env(Box::new(|_| None));
    let f = s.load_text(
        path.display().to_string(),
        Some(path.to_path_buf()),
        text.to_string(),
    );
    let fc = mer_dsl::check_loaded(&mut s, reg, f, sets, None);
    let _ = render(&s.diags, &s.sources, false);
    for e in &fc.experiments {
        let _ = mer_dsl::plan::plan(e, reg).to_table();
        for v in &e.variants {
            let _ = v.recipe.to_ron();
            let _ = v.graph.to_dot();
            let ron = v.graph.to_ron();
            assert!(
                mer_dsl::graph::GraphIr::from_ron(&ron).is_ok(),
                "graph RON must parse back"
            );
        }
    }
}

/// Fragments the mutation fuzzers splice into recipes: syntax, keywords,
/// edge-case numbers, and pieces of real statements.
pub const MUTATION_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ";",
    "~",
    ".",
    "::",
    "\"",
    "*",
    "+",
    "-",
    "1e-",
    "1e400",
    "-0.0",
    "99999999999999999999",
    "\n",
    "//",
    "/*",
    "*/",
    "extends",
    "extends \"../common/casme2.mer\"",
    "ablation \"a\" {",
    "sweep {",
    "data d = ",
    "env(\"X\")",
    "env(\"X\", 1)",
    "nn.linear(",
    "nn.concat(",
    "model.",
    "~model.",
    "none",
    "true",
    "fragment f {",
    "experiment e {",
    "use au_llm\n",
    "é",
    "\\",
    "\t",
    "loss.mse(a, b)",
    "0.5 *",
];
