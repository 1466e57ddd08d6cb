#!/usr/bin/env python3
"""Interop check with the official Python SDK 1.x (pip ``mcp``), Streamable HTTP.

    python py_client.py URL [--header "Name: value"]... [--expected FILE] [--answers json|sse]

initialize (+ initialized) -> MCP ping -> tools/list (every page; the names must be exactly those
in FILE, default expected_tools.txt beside this script) -> tools/call ping ("pong") -> close,
which DELETEs the session (its status must be 2xx). With --answers, every 200 answer to a POST
must have that content type (application/json or text/event-stream). Exit 0 when all held, 1 on any failure,
2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

TAG = "py_client"
step = "start"


class Failure(Exception):
    """A check did not hold; the message says which."""


def fail(msg: str) -> None:
    raise Failure(msg)


def describe(e: BaseException) -> str:
    """The leaves of an exception group (a failed check alone if there is one), or the exception."""
    if isinstance(e, BaseExceptionGroup):
        leaves = [describe(x) for x in e.exceptions]
        checks = [x for x in leaves if not x.startswith("exception: ")]
        return " | ".join(checks or leaves)
    if isinstance(e, Failure):
        return str(e)
    return f"exception: {type(e).__name__}: {e}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="py_client.py")
    ap.add_argument("url")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--answers", choices=["json", "sse"])
    ap.add_argument("--expected", default=str(Path(__file__).with_name("expected_tools.txt")))
    a = ap.parse_args()
    a.headers = {}
    for h in a.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            ap.error(f'--header needs "Name: value", got {h!r}')
        a.headers[name.strip()] = value.strip()
    return a


async def run(a: argparse.Namespace, expected: list[str]) -> None:
    global step
    from importlib.metadata import version

    import mcp
    from mcp.client import streamable_http as sh

    print(f"{TAG}: mcp {version('mcp')}, python {sys.version.split()[0]}, {a.url}", flush=True)
    deletes: list[int] = []
    post_types: list[str] = []

    async def on_response(response) -> None:
        if response.request.method == "DELETE":
            deletes.append(response.status_code)
        if response.request.method == "POST" and response.status_code == 200:
            post_types.append(response.headers.get("content-type", "").split(";")[0].strip())

    if hasattr(sh, "streamable_http_client"):
        http = sh.create_mcp_http_client(headers=a.headers or None)
        http.event_hooks["response"].append(on_response)
        connect = sh.streamable_http_client(a.url, http_client=http)
    else:  # older 1.x
        http = None
        connect = sh.streamablehttp_client(a.url, headers=a.headers or None)

    try:
        async with connect as (read, write, get_session_id):
            async with mcp.ClientSession(read, write) as session:
                step = "initialize"
                init = await session.initialize()
                sid = get_session_id()
                if not sid:
                    fail("initialize returned no MCP-Session-Id")
                if init.capabilities.tools is None:
                    fail("the server does not declare the tools capability")
                print(
                    f"initialize: {init.serverInfo.name}@{init.serverInfo.version}, "
                    f"protocol {init.protocolVersion}, session {sid}",
                    flush=True,
                )

                step = "ping"
                await session.send_ping()
                print("ping: ok", flush=True)

                step = "tools/list"
                names: list[str] = []
                cursor = None
                pages = 0
                while True:
                    page = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
                    pages += 1
                    names += [t.name for t in page.tools]
                    cursor = page.nextCursor
                    if not cursor:
                        break
                    if pages > 100:
                        fail("more than 100 pages: the cursor does not end")
                missing = [n for n in expected if n not in names]
                extra = [n for n in names if n not in expected]
                dupes = [n for n, c in Counter(names).items() if c > 1]
                if missing or extra or dupes or len(names) != len(expected):
                    fail(
                        f"tool names differ from {Path(a.expected).name}: got {len(names)}, expected "
                        f"{len(expected)}; missing {missing}, unexpected {extra}, duplicated {dupes}"
                    )
                print(f"tools/list: {len(names)} tools in {pages} page(s), as expected", flush=True)

                step = "tools/call ping"
                result = await session.call_tool("ping", {})
                text = result.content[0].text if result.content and result.content[0].type == "text" else None
                if result.isError or text != "pong":
                    fail(f'expected text "pong", got {result.model_dump_json(by_alias=True, exclude_none=True)}')
                print("tools/call ping: pong", flush=True)
                step = "close"
    finally:
        if http is not None:
            await http.aclose()

    step = "DELETE session"
    if http is not None:
        if not deletes:
            fail("the client sent no DELETE on close")
        if not 200 <= deletes[0] < 300:
            fail(f"DELETE answered HTTP {deletes[0]}")
        print(f"DELETE session: HTTP {deletes[0]}", flush=True)

    step = "answer content types"
    if a.answers and http is not None:
        want = "text/event-stream" if a.answers == "sse" else "application/json"
        if not post_types or any(t != want for t in post_types):
            fail(f"expected every POST answer as {want}, got {post_types}")
        print(f"answers: {len(post_types)} POST answers, all {want}", flush=True)


def main() -> None:
    a = parse_args()
    lines = Path(a.expected).read_text().splitlines()
    expected = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    try:
        asyncio.run(asyncio.wait_for(run(a, expected), timeout=30))
    except (asyncio.TimeoutError, TimeoutError):
        print(f"{TAG}: FAIL at {step}: timed out after 30 s", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"{TAG}: FAIL at {step}: {describe(e)}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"{TAG}: OK", flush=True)


if __name__ == "__main__":
    main()
