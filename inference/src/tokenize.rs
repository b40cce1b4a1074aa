//! Text to token ids with the Hugging Face `tokenizers` crate, from a model's own
//! `tokenizer.json` bytes.

use crate::error::{Error, Result};
use tokenizers::{Tokenizer, TruncationParams};

/// A tokenizer that adds the model's special tokens, truncates to a length and never pads
/// (programs take the attention mask separately).
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes; encodings are truncated to `max_len` tokens.
    pub fn from_json(bytes: &[u8], max_len: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Decode(format!("tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| Error::Param(format!("tokenizer truncation: {e}")))?;
        Ok(Self { inner, max_len })
    }

    /// Token ids of `text`, special tokens included, at most the maximum length (the
    /// tokenizer's fast path: the same ids, without the character offsets nothing here reads).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| Error::Param(format!("tokenizing: {e}")))?;
        let ids = enc.get_ids().to_vec();
        debug_assert!(ids.len() <= self.max_len);
        Ok(ids)
    }
}
