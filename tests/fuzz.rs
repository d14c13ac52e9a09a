//! Property tests: the parser, resolver, checker, graph lowering and the
//! diagnostic renderer never panic, whatever the input. The long-running
//! mutation fuzzer is `cargo run --release --example fuzz_recipes`.

use proptest::prelude::*;

#[path = "common/frontend.rs"]
mod frontend;

fn run(text: &str, sets: &[String]) {
    let reg = mer_engine::builtin_registry();
    let path = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/recipes/demo/fuzzed.mer"
    ));
    frontend::exercise(&reg, &path, text, sets);
}

const DEMO: &str = include_str!("../recipes/demo/synth_me_au.mer");

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        run(&s, &[]);
        run(&format!("mer 0.1\nexperiment e {{ {s} }}"), &[]);
    }

    #[test]
    fn mutated_recipes_never_panic(
        edits in proptest::collection::vec((0usize..4000, 0usize..frontend::MUTATION_TOKENS.len(), 0usize..40), 1..6),
        set in proptest::option::of("[a-z._~]{1,20}=[a-z0-9\\[\\](){}\".,]{0,20}"),
    ) {
        let mut text = DEMO.to_string();
        for (pos, tok, del) in edits {
            let mut p = pos % (text.len() + 1);
            while !text.is_char_boundary(p) { p -= 1; }
            let mut e = (p + del).min(text.len());
            while !text.is_char_boundary(e) { e -= 1; }
            text.replace_range(p..e, frontend::MUTATION_TOKENS[tok]);
        }
        let sets: Vec<String> = set.into_iter().collect();
        run(&text, &sets);
    }
}
