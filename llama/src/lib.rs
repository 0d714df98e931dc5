//! SmolLM2-class models on the CPU, read straight from a GGUF file: the
//! llama forward pass (`model.rs`), the matrix products it needs
//! (`weight.rs`, with our Q4_1 kernel in `q4_1.rs`) and the tokenizer the
//! file's own metadata describes (`tokenizer.rs`).
//!
//! A crate of its own, apart from the server, because it is the one piece
//! of our code that is pure arithmetic: it is built optimised even in the
//! test profile (`Cargo.toml`), where the server's code is not, so the
//! tests that run the real model take seconds rather than minutes.

mod model;
mod q4_1;
mod tokenizer;
mod weight;

pub use model::{Cache, Llama, WINDOW};
pub use tokenizer::GgufTokenizer;
