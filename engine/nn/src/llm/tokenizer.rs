//! Tokenizers for the LLM bodies: a `tokenizer.json` (Hugging Face), or one
//! built from a GGUF file's vocabulary and merges, so a GGUF model needs no
//! second file.

use super::gguf::Metadata;
use mer_registry::BuildError;
use std::path::Path;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// Text ↔ token ids.
pub struct Tok {
    inner: Tokenizer,
}

fn err(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("{what}: {e}"))
}

/// A byte range `(start, end)` of the text a token came from.
pub type Span = (usize, usize);

impl Tok {
    /// A Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Tok, BuildError> {
        Ok(Tok {
            inner: Tokenizer::from_file(path).map_err(|e| err(&path.display().to_string(), e))?,
        })
    }

    /// A byte-level BPE tokenizer from GGUF metadata (`tokenizer.ggml.model
    /// = gpt2`, as llama.cpp writes SmolLM, Qwen2 and LLaMA-3 models).
    /// Control and user-defined tokens (types 3 and 4) are special: they
    /// match whole in the text and are never split.
    pub fn from_gguf(meta: &Metadata) -> Result<Tok, BuildError> {
        if meta.model != "gpt2" {
            return Err(BuildError(format!(
                "GGUF tokenizer `{}` is not supported (byte-level BPE `gpt2` is); give a tokenizer.json with `tokenizer = \"…\"`",
                meta.model
            )));
        }
        let vocab: Vocab = meta
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut merges = Vec::with_capacity(meta.merges.len());
        for (i, m) in meta.merges.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| BuildError(format!("GGUF merge {i} `{m}` is not `a b`")))?;
            merges.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| err("GGUF BPE", e))?;
        let mut inner = Tokenizer::new(bpe);
        // SmolLM splits digits one by one before the byte-level regex.
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = if meta.pre == "smollm" || meta.pre == "qwen2" {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevel::default()));
        let special: Vec<AddedToken> = meta
            .tokens
            .iter()
            .zip(&meta.token_types)
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        inner
            .add_special_tokens(special)
            .map_err(|e| err("GGUF special tokens", e))?;
        Ok(Tok { inner })
    }

    /// Ids of `text`; special tokens written in the text are recognised,
    /// nothing is added around it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BuildError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| err("tokenizer", e))?
            .get_ids()
            .to_vec())
    }

    /// Ids of `text` with the byte range of `text` each came from, as
    /// [`Tok::encode`] tokenises it: how instruction data tells a label's
    /// tokens from the rationale's.
    pub fn encode_offsets(&self, text: &str) -> Result<Vec<(u32, Span)>, BuildError> {
        let e = self
            .inner
            .encode(text, false)
            .map_err(|e| err("tokenizer", e))?;
        Ok(e.get_ids()
            .iter()
            .copied()
            .zip(e.get_offsets().iter().copied())
            .collect())
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), BuildError> {
        self.inner
            .save(path, false)
            .map_err(|e| err(&path.display().to_string(), e))
    }

    /// Text of `ids`; special tokens are written out, not skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, BuildError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| err("tokenizer", e))
    }
}
