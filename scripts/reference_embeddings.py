"""Makes tests/data/minilm_reference.json: reference All-MiniLM-L6-v2
embeddings from the Python sentence-transformers library, which the Rust
embedder must reproduce (cosine >= 0.999). Run once; the output is committed.

    pip install sentence-transformers
    python scripts/reference_embeddings.py models/all-minilm-l6-v2 tests/data/minilm_reference.json
"""
import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The cat sits on the mat.",
    "A feline is resting on a rug.",
    "Raft is a consensus algorithm for managing a replicated log.",
    "Quarterly revenue grew by twelve percent compared to last year.",
    "How do I reset my password?",
    "WebAssembly modules run in a sandbox with no ambient authority.",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Embeddings map sentences to points in a vector space where similar meanings are close.",
    "ok",
    "Ünïcödé téxt with àccents and emoji 🚀 should tokenize too.",
]

def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "made_with": f"sentence-transformers {sentence_transformers.__version__}",
        "items": [{"text": t, "embedding": [float(x) for x in v]} for t, v in zip(SENTENCES, vectors)],
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
        f.write("\n")

if __name__ == "__main__":
    main()
