"""The official `openai` client against a dev node (`make run`: no admin key),
configured as its users configure local servers (Ollama, vLLM, llama.cpp):
with any placeholder key, which such servers ignore.

usage: openai_dev.py BASE_URL
Prints one JSON object with what the client saw (tests/node/sdk_clients.rs).
"""

import json
import sys

import openai

BASE = sys.argv[1]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="anything", max_retries=0)
done = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello dev"}])
out = {
    "completion": done.choices[0].message.content,
    "models": sorted(m.id for m in client.models.list()),
}
# A token shaped like a Caxton key is still checked: a wrong one is refused.
try:
    openai.OpenAI(base_url=f"{BASE}/v1", api_key="cxk_000000000000_wrong", max_retries=0).models.list()
    out["wrong_caxton_key"] = "accepted"
except openai.AuthenticationError as e:
    out["wrong_caxton_key"] = e.status_code
print(json.dumps(out))
