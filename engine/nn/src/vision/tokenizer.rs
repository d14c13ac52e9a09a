//! CLIP's BPE tokenizer from a folder's `tokenizer.json` (lower-cased,
//! `</w>` word ends, `<|startoftext|>` … `<|endoftext|>` around every
//! text), and the byte-level one `mer models tiny --arch clip` writes.

use mer_registry::BuildError;
use std::path::Path;
use std::str::FromStr;
use tokenizers::Tokenizer;

/// Text → CLIP token ids, start and end tokens included.
pub struct ClipTokenizer {
    inner: Tokenizer,
}

impl ClipTokenizer {
    /// The `tokenizer.json` in `folder`.
    pub fn from_folder(folder: &Path) -> Result<ClipTokenizer, BuildError> {
        let file = folder.join("tokenizer.json");
        let inner = Tokenizer::from_file(&file).map_err(|e| {
            BuildError(format!(
                "`{}`: {e} (CLIP's text tower needs its tokenizer.json beside the weights)",
                file.display()
            ))
        })?;
        Ok(ClipTokenizer { inner })
    }

    /// The ids of `text`, with the post-processor's start and end tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BuildError> {
        Ok(self
            .inner
            .encode(text, true)
            .map_err(|e| BuildError(format!("tokenizing `{text}`: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// The number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// CLIP's tokenizer pipeline over a byte-level vocabulary without merges:
/// every byte as itself and as a word end (`</w>`), then the start and end
/// tokens (ids 512 and 513), in the layout of OpenAI's `tokenizer.json`.
pub fn tiny_tokenizer_json() -> String {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut vocab = serde_json::Map::new();
    for (i, c) in alphabet.iter().enumerate() {
        vocab.insert(c.to_string(), (i as u32).into());
        vocab.insert(format!("{c}</w>"), ((i + alphabet.len()) as u32).into());
    }
    let (sot, eot) = (2 * alphabet.len() as u32, 2 * alphabet.len() as u32 + 1);
    vocab.insert("<|startoftext|>".into(), sot.into());
    vocab.insert("<|endoftext|>".into(), eot.into());
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(sot, "<|startoftext|>"), special(eot, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eot],
            "cls": ["<|startoftext|>", sot], "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
            "byte_fallback": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// [`tiny_tokenizer_json`], loaded.
pub fn tiny_tokenizer() -> Result<ClipTokenizer, BuildError> {
    Ok(ClipTokenizer {
        inner: Tokenizer::from_str(&tiny_tokenizer_json())
            .map_err(|e| BuildError(format!("the tiny CLIP tokenizer: {e}")))?,
    })
}
