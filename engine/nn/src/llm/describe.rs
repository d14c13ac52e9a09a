//! Class descriptions written by a real LLM: MPA-FER asks a chat model
//! "What are the most useful visual features to distinguish the facial
//! expression of [class]?" and puts each answer into that class's hard
//! prompt. mer asks the LLM a recipe names (SmolLM2 from PyPI, say) in its
//! own chat template, greedily, and keeps the answers on disk keyed by the
//! model's bytes, the question, the class list and the token budget: a
//! second run, an ablation or another fold asks nothing.

use super::chat::{ChatTemplate, Message};
use super::generate::{Generator, Request};
use mer_registry::candle::Device;
use mer_registry::BuildError;
use std::path::{Path, PathBuf};

/// What to ask.
pub struct Ask<'a> {
    /// The LLM: a Hugging Face folder or a `.gguf` file.
    pub weights: &'a Path,
    /// The question; `{}` is replaced by each class name.
    pub question: &'a str,
    /// The class names, in label order.
    pub classes: &'a [String],
    /// The most tokens each answer may take.
    pub max_tokens: usize,
}

/// The answers, one per class, and where they are kept.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Descriptions {
    /// The model file (or folder) asked, as given.
    pub model: String,
    /// The question as written (with `{}`).
    pub question: String,
    /// The token budget per answer.
    pub max_tokens: usize,
    /// `(class, answer)` in label order; answers are cleaned
    /// ([`clean`]) but otherwise as generated.
    pub answers: Vec<(String, String)>,
}

/// The cache entry for `ask` and whether it was there already.
pub struct Described {
    /// The answers.
    pub descriptions: Descriptions,
    /// Where they are kept (JSON).
    pub file: Option<PathBuf>,
    /// Read from the cache: no model ran.
    pub cached: bool,
}

/// BLAKE3 of a file, or of every file under a folder in name order (a
/// Hugging Face folder's weights, tokenizer and template all shape the
/// answers).
fn content_hash(path: &Path, h: &mut blake3::Hasher) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError(format!("{}: {e}", path.display()));
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            h.update(e.file_name().map(|n| n.as_encoded_bytes()).unwrap_or(b""));
            content_hash(&e, h)?;
        }
        Ok(())
    } else {
        let mut f = std::fs::File::open(path).map_err(io)?;
        std::io::copy(&mut f, h).map_err(io)?;
        Ok(())
    }
}

/// One line of prose from an answer: special tokens cut off (the first
/// `<|…|>` or `</s>` ends it), Markdown emphasis and heading marks dropped,
/// all whitespace one space. A CLIP prompt is one line of plain text.
pub fn clean(answer: &str) -> String {
    let end = ["<|", "</s>", "<end_of_turn>"]
        .iter()
        .filter_map(|m| answer.find(m))
        .min()
        .unwrap_or(answer.len());
    answer[..end]
        .replace(['*', '#'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each class's answer, from the cache folder `cache` when an earlier run
/// asked the same model the same question about the same classes, else
/// from the model (then stored there).
pub fn describe(ask: &Ask, cache: Option<&Path>, device: &Device) -> Result<Described, BuildError> {
    if !ask.question.contains("{}") {
        return Err(BuildError(format!(
            "the question `{}` has no `{{}}` for the class name",
            ask.question
        )));
    }
    let mut h = blake3::Hasher::new();
    content_hash(ask.weights, &mut h)?;
    h.update(ask.question.as_bytes());
    h.update(&[0]);
    for c in ask.classes {
        h.update(c.as_bytes());
        h.update(&[0]);
    }
    h.update(&(ask.max_tokens as u64).to_le_bytes());
    let file = cache.map(|d| d.join(format!("{}.json", h.finalize().to_hex())));
    if let Some(f) = &file {
        if let Ok(text) = std::fs::read_to_string(f) {
            // An unreadable entry (a kill mid-write cannot make one: it is
            // renamed into place) is asked again, never trusted.
            if let Ok(d) = serde_json::from_str::<Descriptions>(&text) {
                return Ok(Described {
                    descriptions: d,
                    file,
                    cached: true,
                });
            }
        }
    }
    let template = ChatTemplate::of(ask.weights)?;
    let model = Generator::open(
        &Request {
            weights: ask.weights,
            tokenizer: None,
            adapters: None,
            layers: None,
            prompt: "",
            max_tokens: ask.max_tokens,
        },
        device,
    )?;
    let mut answers = Vec::with_capacity(ask.classes.len());
    for c in ask.classes {
        let prompt = template.render(&[Message::user(&ask.question.replace("{}", c))], true)?;
        let a = model.answer(&prompt, ask.max_tokens)?;
        answers.push((c.clone(), clean(&a.text)));
    }
    let d = Descriptions {
        model: ask.weights.display().to_string(),
        question: ask.question.to_string(),
        max_tokens: ask.max_tokens,
        answers,
    };
    if let Some(f) = &file {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = f.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_string_pretty(&d)?)?;
            std::fs::rename(&tmp, f)
        };
        // A cache that cannot be written costs a second asking, nothing else.
        let _ = write();
    }
    Ok(Described {
        descriptions: d,
        file,
        cached: false,
    })
}

/// Reads `class: description` lines (blank lines and `#` comments
/// skipped); every class must have exactly one.
pub fn read_file(path: &Path, classes: &[String]) -> Result<Vec<(String, String)>, BuildError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BuildError(format!("{}: {e}", path.display())))?;
    let mut found: Vec<Option<String>> = vec![None; classes.len()];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| BuildError(format!("{}:{}: {m}", path.display(), i + 1));
        let (name, desc) = line
            .split_once(':')
            .ok_or_else(|| at("expected `class: description`".into()))?;
        let name = name.trim();
        let k = classes.iter().position(|c| c == name).ok_or_else(|| {
            at(format!(
                "`{name}` is not one of the classes ({})",
                classes.join(", ")
            ))
        })?;
        if found[k].is_some() {
            return Err(at(format!("a second description for `{name}`")));
        }
        found[k] = Some(desc.trim().to_string());
    }
    classes
        .iter()
        .zip(found)
        .map(|(c, d)| {
            d.map(|d| (c.clone(), d))
                .ok_or_else(|| BuildError(format!("{}: no description for `{c}`", path.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_one_line_of_prose() {
        assert_eq!(
            clean("**Raised** cheeks,\n\n# and lip corners up.<|im_end|>\nmore"),
            "Raised cheeks, and lip corners up."
        );
        assert_eq!(clean("  plain  </s>"), "plain");
    }

    #[test]
    fn a_descriptions_file_needs_each_class_once() {
        let dir = std::env::temp_dir().join(format!("mer-describe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.txt");
        let classes = vec!["happy".to_string(), "sad".to_string()];
        std::fs::write(&p, "# ours\nhappy: cheeks up\n\nsad: corners down\n").unwrap();
        let d = read_file(&p, &classes).unwrap();
        assert_eq!(d[1], ("sad".into(), "corners down".into()));
        std::fs::write(&p, "happy: a\nsadd: b\n").unwrap();
        let e = read_file(&p, &classes).unwrap_err().0;
        assert!(
            e.contains("d.txt:2: `sadd` is not one of the classes"),
            "{e}"
        );
        std::fs::write(&p, "happy: a\n").unwrap();
        let e = read_file(&p, &classes).unwrap_err().0;
        assert!(e.ends_with("no description for `sad`"), "{e}");
        std::fs::write(&p, "happy a\n").unwrap();
        assert!(read_file(&p, &classes)
            .unwrap_err()
            .0
            .contains(":1: expected"));
    }
}
