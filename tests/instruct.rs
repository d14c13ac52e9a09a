//! Instruction tuning end to end through the binary: a tiny random CLIP
//! and a tiny random LLaMA, generated FaceInstruct-layout conversations,
//! the shipped recipe `recipes/vl/instruct_tiny.mer`, and a report whose
//! emotion metrics come from answers the model generated and a parser
//! read, with the unparseable ones counted and sample answers shown.

#[path = "common/cli.rs"]
mod cli;

use cli::{ok, s, text};

#[test]
fn an_instruction_tuned_tiny_model_is_scored_from_its_generated_answers() {
    let dir = cli::scratch("instruct", "e2e");
    let mer = |args: &[&str]| cli::mer_at(args, &dir);
    let models = dir.join("models");
    ok(&mer(&[
        "models",
        "tiny",
        "--arch",
        "clip",
        "--out",
        s(&models),
    ]));
    ok(&mer(&[
        "models",
        "tiny",
        "--arch",
        "llama",
        "--hidden",
        "64",
        "--out",
        s(&models),
    ]));
    let data = dir.join("data");
    ok(&mer(&[
        "data",
        "synth",
        "--layout",
        "faceinstruct",
        "--out",
        s(&data),
        "--subjects",
        "5",
        "--clips-per-subject",
        "3",
        "--frames-per-clip",
        "4",
        "--size",
        "32",
        "--intensity",
        "1.0",
    ]));
    let llm = models.join("llama-hf");
    // Every record formats with the model's own template and tokenizer.
    let o = mer(&[
        "data",
        "verify",
        s(&data),
        "--dataset",
        "instruct.faceinstruct",
        "--param",
        &format!("weights={}", llm.display()),
    ]);
    ok(&o);
    assert!(
        text(&o).contains("records: 15 good, 0 with problems"),
        "{}",
        text(&o)
    );

    let runs = dir.join("runs");
    let json = data.join("instruct.json");
    let env = [
        ("MER_INSTRUCT_JSON", json.as_path()),
        ("MER_TINY_LLM", llm.as_path()),
        ("MER_TINY_CLIP", &models.join("clip-tiny")),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "recipes/vl/instruct_tiny.mer",
            "--runs",
            s(&runs),
            "--no-mlflow",
            "--set",
            "train.epochs=2",
            "--set",
            "llm.max_new_tokens=12",
        ];
        args.extend_from_slice(extra);
        cli::mer_env(&args, &dir, &env)
    };
    let o = run(&[]);
    ok(&o);
    assert!(text(&o).contains("| base | 1 |"), "{}", text(&o));
    let report =
        std::fs::read_to_string(cli::find_all(&runs, "report.md").pop().expect("a report"))
            .unwrap();
    let answers_csv = cli::find_all(&runs, "answers.csv")
        .pop()
        .expect("answers.csv");
    let rows = mer_engine::store::read_answers(&answers_csv).unwrap();
    // The test split: the last of 5 subjects, 3 clips.
    assert_eq!(rows.len(), 3, "{rows:?}");
    let unparseable = rows
        .iter()
        .filter(|r| r.reading.starts_with("unparseable"))
        .count();
    assert!(
        report.contains(&format!(
            "3 answers were generated over the finished folds; {unparseable} gave no reading for the task (unparseable)"
        )),
        "{report}"
    );
    assert!(
        report.contains("| sample | gold | read as | answer |"),
        "{report}"
    );
    assert!(
        report.contains("`uar`: UAR") && report.contains("`accuracy`: accuracy (WAR)"),
        "{report}"
    );
    if unparseable > 0 {
        assert!(
            report.contains(&format!(
                "{unparseable} of 3 answers named no single class (unparseable): counted wrong"
            )),
            "{report}"
        );
    }
    // Gold labels come from the gold answers: each row names a class.
    let classes = [
        "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear",
    ];
    assert!(
        rows.iter().all(|r| classes.contains(&r.gold.as_str())),
        "{rows:?}"
    );

    // A bad record is refused at build time with its file and index.
    let mut records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    records[1]["conversations"][0]["value"] = "<img>\nWhat emotion?".into();
    std::fs::write(&json, records.to_string()).unwrap();
    let o = run(&["--restart"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}: record 2 (id", json.display()))
            && text(&o).contains("unknown placeholder `<img>`"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}
