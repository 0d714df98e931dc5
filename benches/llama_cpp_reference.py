"""llama.cpp on the same GGUF file, the reference for the local model bench.

Run by `cargo bench --bench messaging` (step (c)) with the Python that has
`llama-cpp-python` (`make bench` installs it into the test venv); prints one
JSON line: median decode tokens/s and time to first token over three runs of
the same chat the candle bench runs, greedy, threads matched to the cores.
"""

import json
import os
import statistics
import sys
import time

from llama_cpp import Llama

model_path, max_tokens = sys.argv[1], int(sys.argv[2])
llm = Llama(model_path=model_path, n_ctx=2048, n_threads=os.cpu_count(), n_batch=512, verbose=False, seed=7)
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a short paragraph about the sea."},
]
llm.create_chat_completion(messages=messages, max_tokens=8, temperature=0.0)  # warm up
decode, first = [], []
for _ in range(3):
    llm.reset()
    start = time.perf_counter()
    first_at, tokens = None, 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if first_at is None:
                first_at = time.perf_counter()
    end = time.perf_counter()
    first.append((first_at - start) * 1e3)
    decode.append((tokens - 1) / (end - first_at))
print(json.dumps({"decode_tps": statistics.median(decode), "ttft_ms": statistics.median(first), "tokens": tokens}))
