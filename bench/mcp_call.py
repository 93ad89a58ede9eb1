#!/usr/bin/env python
"""The overhead of an MCP tool call against a local stdio server, against the same tool as a Python executor.

    python bench/mcp_call.py [--calls 500] [--runs 5]

Both go through the bot's own `ToolRunner.run` (timeout, redaction, output cap), so the difference is
the MCP path: the SDK's `Client.call_tool` (JSON-RPC over the server's stdin/stdout, the server's
argument validation and result conversion). The tool is the test server's `get_pods`
(`tests/mcp/servers/ops_server.py`): over MCP it runs in the server process, as a Python executor the
same function runs in this one. Prints, per call, the median, p99 and range (min-max) of each run,
then the medians over the runs and the ratio MCP / Python. No Redis: only the tool call is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.tools.executors import CallContext, ToolRunner
from core.tools.mcp.catalog import McpCatalog, McpPolicy, McpSection, ServerConfig
from core.tools.mcp.client import McpClients
from core.tools.redact import Redactor
from core.tools.registry import ApprovalPolicy, PythonExecutor, ToolSpec

ARGS = {"namespace": "payments"}
WARMUP = 20


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(runner: ToolRunner, spec: ToolSpec, calls: int) -> list[float]:
    ctx = CallContext(thread_id="bench", call_id="c", requester="bench")
    for _ in range(WARMUP):
        await runner.run(spec, ARGS, ctx)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        output = await runner.run(spec, ARGS, ctx)
        samples.append((time.perf_counter() - started) * 1e6)
    assert output.text.startswith("pods in payments"), output.text
    return samples


def row(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<8} median {statistics.median(samples):8.1f} us   p99 {quantile(samples, 0.99):8.1f} us   "
        f"range {min(samples):7.1f}-{max(samples):8.1f} us"
    )


async def main(calls: int, runs: int) -> None:
    server = ServerConfig(command=sys.executable, args=["-m", "tests.mcp.servers.ops_server", "stdio"], cwd=str(ROOT))
    policy = McpPolicy(match="*", approval=ApprovalPolicy(required=False))
    catalog = McpCatalog(McpSection(servers={"ops": server}, policies=[policy], approvers=["cli:bench"]))
    clients = McpClients(catalog, {})
    with tempfile.TemporaryDirectory() as scratch:
        runner = ToolRunner(
            workdir=Path(scratch), data_dir=Path(scratch), env={}, redactor=Redactor({}), http=None, mcp=clients
        )
        python = ToolSpec(
            name="get_pods",
            description="List the pods of a namespace.",
            executor=PythonExecutor(kind="python", target="tests.mcp.servers.ops_server:get_pods"),
        )
        try:
            failed = await clients.start()
            assert not failed, failed
            mcp = catalog.spec("ops__get_pods")
            assert mcp is not None
            medians: dict[str, list[float]] = {"python": [], "mcp": []}
            print(f"{calls} calls per run after {WARMUP} warm-up calls, {runs} runs; per call:")
            for run in range(1, runs + 1):
                print(f"run {run}")
                for name, spec in (("python", python), ("mcp", mcp)):
                    samples = await timed(runner, spec, calls)
                    medians[name].append(statistics.median(samples))
                    print(row(name, samples))
            py, mc = statistics.median(medians["python"]), statistics.median(medians["mcp"])
            print(
                f"median of run medians: python {py:.1f} us, mcp {mc:.1f} us "
                f"(runs {min(medians['mcp']):.1f}-{max(medians['mcp']):.1f}); "
                f"MCP overhead {mc - py:.1f} us per call, {mc / py:.1f}x the Python executor"
            )
        finally:
            await clients.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.runs))
