"""What the MCP client tests share: a tools file declaring the test servers, and a streamable-HTTP server process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout: `python -m tests.mcp.servers.ops_server` runs from here
SECRET = "cred-5ecret-value-42"  # OPS_MCP_CRED: a name no convention marks secret; the tools file does

POLICIES = """
[groups]
oncall = ["cli:operator"]

[mcp]
approvers = ["group:oncall"]

[[mcp.policies]]
match = "*__get_*"
approval = { required = false }
idempotent = true

[[mcp.policies]]
match = "*__stall"
approval = { required = false }
timeout = 1

[[mcp.policies]]
match = "*__fail"
approval = { required = false }

[[mcp.policies]]
match = "*__crash"
approval = { required = false }

[[mcp.policies]]
match = "*__add_tool"
approval = { required = false }

[[mcp.policies]]
match = "*__rollout"
approval = { required = false }

[[mcp.policies]]
match = "*__rotate_key"
approval = { required = false }

[[mcp.policies]]
match = "*__login"
approval = { required = false }

# No policy names scale_deployment (or drain_node): they are gated, by [mcp].approvers.
"""


def stdio_server(name: str = "ops", extra: str = "") -> str:
    """A `[mcp.servers.<name>]` table that starts the test server over stdio."""
    return (
        f"[mcp.servers.{name}]\ncommand = {str(sys.executable)!r}\n"
        'args = ["-m", "tests.mcp.servers.ops_server", "stdio"]\n'
        f"cwd = {str(ROOT)!r}\n"
        'env = { OPS_TOKEN = "{env:OPS_MCP_CRED}" }\n' + extra
    )


def http_server(name: str, url: str, extra: str = "") -> str:
    return (
        f'[mcp.servers.{name}]\nurl = "{url}"\nheaders = {{ Authorization = "Bearer {{env:OPS_MCP_CRED}}" }}\n' + extra
    )


def tools_file(tmp_path: Path, *servers: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(POLICIES + "\n".join(servers))
    return path


@dataclass
class HttpServer:
    """The test server on streamable HTTP, in its own process: `kill` it mid-call, `start` it again."""

    port: int = 0
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> HttpServer:
        env = {**os.environ, "OPS_HTTP_PORT": str(self.port)}  # 0 the first time: the OS picks a free port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mcp.servers.ops_server", "http"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints its port once it listens
        assert line.strip().isdigit(), f"the HTTP MCP server did not start (it printed {line!r})"
        self.port = int(line)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def running_http_server() -> Iterator[HttpServer]:
    server = HttpServer().start()
    try:
        yield server
    finally:
        server.kill()
