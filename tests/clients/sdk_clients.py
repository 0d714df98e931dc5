"""Official client libraries against a running Caxton node, with an API key.

usage: sdk_clients.py BASE_URL API_KEY
Prints one JSON object with what each client saw; the Rust test
(tests/node/sdk_clients.rs) checks it.
"""

import asyncio
import json
import sys

import openai
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

BASE, KEY = sys.argv[1], sys.argv[2]


def openai_checks() -> dict:
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
    out = {}
    done = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello sdk"}])
    out["completion"] = done.choices[0].message.content
    stream = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "streamed hello"}], stream=True
    )
    out["streamed"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    out["models"] = sorted(m.id for m in client.models.list())
    try:
        openai.OpenAI(base_url=f"{BASE}/v1", api_key="cxk_000000000000_wrong", max_retries=0).models.list()
        out["wrong_key"] = "accepted"
    except openai.AuthenticationError as e:
        out["wrong_key"] = e.status_code
    return out


async def mcp_checks() -> dict:
    out = {}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(f"{BASE}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                result = await session.call_tool("json_query", {"json": {"x": 42}, "path": "x"})
                out["call"] = result.structured_content
    # Without a key: the SDK reports a failed initialize; the HTTP status
    # it was refused with is read off the client's own response hook.
    statuses = []

    async def record(response):
        statuses.append(response.status_code)

    try:
        async with create_mcp_http_client() as http:
            http.event_hooks["response"].append(record)
            async with streamable_http_client(f"{BASE}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), 10)
        out["no_key"] = "accepted"
    except BaseException:  # the SDK wraps transport errors in exception groups
        out["no_key"] = statuses
    return out


def main() -> None:
    result = {"openai": openai_checks(), "mcp": asyncio.run(mcp_checks())}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
