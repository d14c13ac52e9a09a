//! The chat template a model was tuned with, from the model itself: the
//! `chat_template` of the folder's `tokenizer_config.json` or the GGUF
//! file's `tokenizer.chat_template`, rendered with minijinja as
//! `transformers`' `apply_chat_template` renders it. A string in the CLI
//! would be one family's template for every model (SmolLM2's template, for
//! one, adds a default system turn that ChatML alone leaves out).

use mer_registry::BuildError;
use std::path::Path;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A user turn.
    pub fn user(text: &str) -> Message {
        Message {
            role: "user".into(),
            content: text.into(),
        }
    }
}

/// A model's chat template and the special tokens it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    /// The Jinja source, as the model ships it.
    pub source: String,
    /// `bos_token` in the template's context ("" when the model has none).
    pub bos: String,
    /// `eos_token` in the template's context.
    pub eos: String,
}

impl ChatTemplate {
    /// The template of the checkpoint at `weights`: a Hugging Face folder
    /// (its `tokenizer_config.json`) or a `.gguf` file (its metadata).
    pub fn of(weights: &Path) -> Result<ChatTemplate, BuildError> {
        if weights.is_dir() {
            let file = weights.join("tokenizer_config.json");
            let text = std::fs::read_to_string(&file).map_err(|e| {
                BuildError(format!(
                    "`{}`: {e}; the chat template is read from there",
                    file.display()
                ))
            })?;
            Self::from_tokenizer_config(&text)
                .map_err(|e| BuildError(format!("`{}`: {}", file.display(), e.0)))
        } else {
            let m = super::gguf::metadata(weights)?;
            let source = m.chat_template.clone().ok_or_else(|| {
                BuildError(format!(
                    "`{}` has no `tokenizer.chat_template` in its metadata",
                    weights.display()
                ))
            })?;
            let token = |id: Option<u32>| {
                id.and_then(|i| m.tokens.get(i as usize).cloned())
                    .unwrap_or_default()
            };
            Ok(ChatTemplate {
                source,
                bos: token(m.bos),
                eos: token(m.eos),
            })
        }
    }

    /// The template in a `tokenizer_config.json`: `chat_template` is a
    /// string, or a list of `{name, template}` of which `default` is used.
    pub fn from_tokenizer_config(text: &str) -> Result<ChatTemplate, BuildError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BuildError(format!("not JSON: {e}")))?;
        let source = match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(str::to_string)
                .ok_or_else(|| BuildError("`chat_template` lists no `default` template".into()))?,
            _ => return Err(BuildError("no `chat_template`".into())),
        };
        // Special tokens are strings, or `{"content": …}` records.
        let token = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        };
        Ok(ChatTemplate {
            source,
            bos: token("bos_token"),
            eos: token("eos_token"),
        })
    }

    /// The conversation as the model saw such conversations in tuning,
    /// ending with the assistant's opening when `generation_prompt`.
    pub fn render(
        &self,
        messages: &[Message],
        generation_prompt: bool,
    ) -> Result<String, BuildError> {
        let mut env = minijinja::Environment::new();
        // transformers' templates call raise_exception to refuse
        // conversations (a system turn a model does not take).
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| BuildError(format!("chat template: {e}")))?;
        let t = env
            .get_template("chat")
            .map_err(|e| BuildError(format!("chat template: {e}")))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| BuildError(format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its tokenizer_config.json and
    /// GGUF carry it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2s_template_adds_its_default_system_turn() {
        let cfg = serde_json::json!({
            "chat_template": SMOLLM2,
            "bos_token": "<|im_start|>",
            "eos_token": {"content": "<|im_end|>"},
        })
        .to_string();
        let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap();
        assert_eq!(t.eos, "<|im_end|>");
        let s = t.render(&[Message::user("Hi")], true).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let sys = [
            Message {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            Message::user("Hi"),
        ];
        let s = t.render(&sys, false).unwrap();
        assert!(
            s.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"),
            "{s}"
        );
        assert!(!s.contains("assistant"), "{s}");
    }

    #[test]
    fn a_template_that_refuses_says_why() {
        let t = ChatTemplate {
            source: "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok".into(),
            bos: String::new(),
            eos: String::new(),
        };
        let sys = [Message {
            role: "system".into(),
            content: "x".into(),
        }];
        let e = t.render(&sys, true).unwrap_err();
        assert!(e.0.contains("System role not supported"), "{}", e.0);
        assert_eq!(t.render(&[Message::user("x")], true).unwrap(), "ok");
    }

    /// The same template comes out of a folder's tokenizer_config.json and
    /// of a GGUF file's metadata, with the same special tokens.
    #[test]
    fn folders_and_gguf_files_give_the_same_conversation() {
        let dir = std::env::temp_dir().join(format!("mer-chat-ckpt-{}", std::process::id()));
        let (folder, file, _) = crate::llm::tiny::tiny_checkpoint("llama", &dir).unwrap();
        let a = ChatTemplate::of(&folder).unwrap();
        let b = ChatTemplate::of(&file).unwrap();
        assert_eq!(a, b);
        let m = crate::llm::tiny::tiny_vocab();
        let s = b.render(&[Message::user("hell")], true).unwrap();
        assert_eq!(
            s,
            format!("{0}user\nhell{1}\n{0}assistant\n", m.tokens[0], m.tokens[1])
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_folder_without_a_template_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("mer-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
        let e = ChatTemplate::of(&dir).unwrap_err();
        assert!(
            e.0.contains("tokenizer_config.json") && e.0.contains("no `chat_template`"),
            "{}",
            e.0
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
