"""A remote MCP server over Streamable HTTP, made with the official MCP
Python SDK (its FastMCP, called MCPServer since mcp 2.x): tools `add` and
`shout`, behind `Authorization: Bearer TOKEN`.

usage: mcp_remote_server.py PORT TOKEN
Used by tests/node/remote_tools.rs.
"""

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("calc", version="1.0.0")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


class BearerAuth:
    """401 unless the request carries the token (plain ASGI, so SSE and
    the lifespan that starts the session manager pass untouched)."""

    def __init__(self, app, token):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            body = b'{"error":"unauthorized"}'
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


app = mcp.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
uvicorn.run(BearerAuth(app, sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
