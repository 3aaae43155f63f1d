"""A small MCP server over streamable HTTP, for the HTTP transport tests.

Its tools are the ones the compat corpus's mcp-http example calls (echo, get_time,
add_numbers), plus auth_ok, which says whether the request's Authorization header is
the one in EXPECTED_AUTH (so a test can check what pflow sent without printing it).
Usage: python http_tools.py PORT
"""

import os
import sys

PORT = int(sys.argv[1])

try:  # the mcp package 2.x
    from mcp.server.mcpserver import Context, MCPServer

    app = MCPServer("test-http", version="1.0.0")
    RUN = {"port": PORT}
except ImportError:  # 1.x, where the same server is FastMCP, configured up front
    from mcp.server.fastmcp import Context, FastMCP

    app = FastMCP("test-http", host="127.0.0.1", port=PORT)
    RUN = {}


@app.tool()
def echo(message: str) -> str:
    """Echo the message back."""
    return message


@app.tool()
def get_time() -> str:
    """A fixed time, so results compare."""
    return "2026-01-01T00:00:00Z"


@app.tool()
def add_numbers(a: int, b: int) -> int:
    """The sum of a and b."""
    return a + b


@app.tool()
def auth_ok(ctx: Context) -> str:
    """Whether the Authorization header is the expected one."""
    request = ctx.request_context.request
    got = request.headers.get("authorization") if request is not None else None
    return "yes" if got == os.environ.get("EXPECTED_AUTH") else "no"


app.run(transport="streamable-http", **RUN)
