"""The `openai` SDK's parameters against a running Caxton node.

usage: openai_params.py BASE_URL API_KEY
Agents expected: `echo` (the echo provider: one token per word) and
`small` (the local SmolLM2 model). Prints one JSON object with what the
SDK saw; tests/node/sdk_clients.rs checks it.
"""

import base64
import json
import struct
import sys

import openai

BASE, KEY = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=120)
WORDS = "one two three four five six seven"


def ask(model, content, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


def summary(done):
    u = done.usage
    return {
        "content": done.choices[0].message.content,
        "finish_reason": done.choices[0].finish_reason,
        "usage": [u.prompt_tokens, u.completion_tokens, u.total_tokens] if u else None,
    }


def streamed(model, content, **kw):
    chunks = list(ask(model, content, stream=True, **kw))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [[c.usage.prompt_tokens, c.usage.completion_tokens] for c in chunks if c.usage]
    return {"content_chunks": len(texts), "content": "".join(texts), "finish": finish, "usage": usage,
            "last_has_choices": bool(chunks[-1].choices)}


def refusal(**kw):
    try:
        ask("echo", WORDS, **kw)
        return "accepted"
    except openai.BadRequestError as e:
        return [e.status_code, e.body.get("param") if isinstance(e.body, dict) else None]


def echo_checks():
    out = {}
    out["max_tokens"] = summary(ask("echo", WORDS, max_tokens=3))
    out["max_completion_tokens"] = summary(ask("echo", WORDS, max_completion_tokens=2, max_tokens=5))
    out["stop"] = summary(ask("echo", WORDS, stop=["four"]))
    out["plain"] = summary(ask("echo", WORDS))
    out["stream_max_tokens"] = streamed("echo", WORDS, max_tokens=4, stream_options={"include_usage": True})
    out["stream_stop"] = streamed("echo", WORDS, stop="three")
    out["n"] = refusal(n=2)
    out["n_one"] = refusal(n=1)
    out["tools"] = refusal(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    out["temperature"] = refusal(temperature=3.5)
    out["top_p"] = refusal(top_p=0)
    out["json_mode"] = refusal(response_format={"type": "json_object"})
    out["logprobs"] = refusal(logprobs=True)
    out["too_many_stops"] = refusal(stop=["a", "b", "c", "d", "e"])
    out["models"] = {m.id: getattr(m, "revision", None) for m in client.models.list()}
    return out


def small_checks():
    out = {}
    q = "Write a short story about a cat."
    greedy = ask("small", q, max_tokens=12, temperature=0)
    out["greedy"] = summary(greedy)
    out["stream_length"] = streamed("small", q, max_tokens=5, temperature=0, stream_options={"include_usage": True})
    words = greedy.choices[0].message.content.split()
    stop = words[len(words) // 2]
    out["stop_word"] = stop
    out["stop"] = summary(ask("small", q, max_tokens=12, temperature=0, stop=[stop]))
    out["seeded"] = [ask("small", q, max_tokens=12, temperature=1.5, seed=s).choices[0].message.content
                     for s in (7, 7, 8, 9)]
    # A nucleus this small holds only the likeliest token: greedy again.
    out["top_p"] = ask("small", q, max_tokens=12, temperature=1.5, top_p=0.0001, seed=3).choices[0].message.content
    return out


def embedding_checks():
    out = {}
    texts = ["the cat sat on the mat", "quarterly revenue grew"]
    floats = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    out["floats"] = [d.embedding for d in floats.data]
    out["usage"] = [floats.usage.prompt_tokens, floats.usage.total_tokens]
    raw = client.embeddings.create(model="all-minilm-l6-v2", input=texts[0], encoding_format="base64")
    packed = raw.data[0].embedding
    if isinstance(packed, str):
        packed = list(struct.unpack(f"<{len(base64.b64decode(packed)) // 4}f", base64.b64decode(packed)))
    out["base64_first"] = packed
    try:
        client.embeddings.create(model="text-embedding-3-small", input="x")
        out["wrong_model"] = "accepted"
    except openai.NotFoundError as e:
        out["wrong_model"] = e.status_code
    return out


print(json.dumps({"echo": echo_checks(), "small": small_checks(), "embeddings": embedding_checks()}))
