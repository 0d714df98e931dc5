//! A GPT-2 style byte-level BPE tokenizer rebuilt from a GGUF file's own
//! metadata (`tokenizer.ggml.tokens` / `merges` / `token_type`), so the
//! model file alone is enough: no separate tokenizer.json.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// GGUF token type of control tokens (`<|im_start|>` …).
const TOKEN_TYPE_CONTROL: i32 = 3;

pub struct GgufTokenizer {
    inner: Tokenizer,
    pub eos: u32,
    /// End-of-turn marker for chat templates (`<|im_end|>`), if the vocab has it.
    pub end_of_turn: Option<u32>,
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, String> {
    ct.metadata.get(key).ok_or_else(|| format!("GGUF metadata lacks `{key}`"))
}

impl GgufTokenizer {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, String> {
        let model = md(ct, "tokenizer.ggml.model")?.to_string().map_err(|e| e.to_string())?;
        if model != "gpt2" {
            return Err(format!("tokenizer model `{model}` is not supported (only GPT-2 style byte-level BPE)"));
        }
        let tokens: Vec<String> = md(ct, "tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let merges: Vec<(String, String)> = md(ct, "tokenizer.ggml.merges")?
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|v| v.to_string().ok())
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(|e| e.to_string())?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe_vocab: tokenizers::models::bpe::Vocab = vocab.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let bpe = BPE::builder().vocab_and_merges(bpe_vocab, merges).build().map_err(|e| e.to_string())?;
        let mut inner = Tokenizer::new(bpe);
        // SmolLM's pre-tokenizer: digits split one by one, then GPT-2 byte level.
        let pre = Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]);
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(|e| format!("GGUF control tokens: {e}"))?;

        let id = |key: &str| ct.metadata.get(key).and_then(|v| v.to_u32().ok());
        let eos = id("tokenizer.ggml.eos_token_id").ok_or("GGUF metadata lacks tokenizer.ggml.eos_token_id")?;
        Ok(Self { inner, eos, end_of_turn: vocab.get("<|im_end|>").copied() })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(self.inner.encode(text, false).map_err(|e| e.to_string())?.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.inner.decode(ids, true).map_err(|e| e.to_string())
    }
}
