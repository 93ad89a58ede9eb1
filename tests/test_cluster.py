"""The core on a real three-node Redis Cluster: every multi-key script's keys share one slot."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import RedisCluster

from bot.main import redis_client
from bot.redis_server import RedisServer, redis_server_binary
from config.settings import Settings
from core.domain import events as ev
from core.obs import failpoints
from core.redis import keys
from tests.conftest import APPROVER
from tests.eventually import eventually_sync

NODES = 3


def _free_port() -> int:
    # A cluster node also listens on port + 10000 for its bus, so port 0 cannot be handed to it.
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = str(Path(redis_server_binary()).with_name("redis-cli"))
    nodes: list[RedisServer] = []
    try:
        for n in range(NODES):
            folder = tmp_path_factory.mktemp(f"node{n}")
            flags = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / "nodes.conf"),
                "--appendonly",
                "no",
            ]
            nodes.append(RedisServer(folder, port=_free_port(), extra_args=flags))
            nodes[-1].start()
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        first = redis.Redis(port=nodes[0].port)
        eventually_sync(lambda: first.cluster("info").get("cluster_state") == "ok", "the cluster ready", within=15)
        yield f"redis://127.0.0.1:{nodes[0].port}"
    finally:
        for node in nodes:
            node.stop()


async def test_a_gated_deploy_runs_once_on_a_redis_cluster(cluster: str, make_harness, tmp_path: Path) -> None:
    settings = Settings.from_env({"REDIS_URL": cluster, "REDIS_CLUSTER": "1"})
    client = redis_client(settings, cluster)
    assert isinstance(client, RedisCluster)
    try:
        h = make_harness(client)
        await h.say("/deploy api 1.4.2 production")
        approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
        await h.say(f"approve {approval.approval_id}", sender=APPROVER)
        await h.say(f"approve {approval.approval_id}", sender=APPROVER)
        replies = [o.text for o in await h.outbox() if isinstance(o, ev.Reply)]
        assert any("deployed api 1.4.2 to production" in text for text in replies)
        thread = (await h.wiring.store.list_threads())[0]
        events = await h.wiring.store.load_events(thread.thread_id)
        assert [e.type for e in events].count("tool_started") == 1
        assert await h.wiring.store.rebuild_state(thread.thread_id) == thread
    finally:
        await client.aclose()


async def test_a_commit_whose_relay_never_happened_is_relayed_by_the_next_lease(
    cluster: str, make_harness, tmp_path: Path
) -> None:
    """On a cluster the card waits in the thread's own outbox until relayed; a worker that fails
    between the commit and the relay leaves it there, and the next one to take the thread relays it once."""
    settings = Settings.from_env({"REDIS_URL": cluster, "REDIS_CLUSTER": "1"})
    client = redis_client(settings, cluster)
    try:
        h = make_harness(client)
        with failpoints.armed("after-commit=error"):
            await h.say("/deploy api 1.4.2 production")
        [thread] = [t for t in await h.wiring.store.list_threads() if t.status == "awaiting_approval"]
        assert [
            o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest) and o.thread_id == thread.thread_id
        ] == []
        assert await client.xlen(keys.thread_outbox(thread.thread_id)) == 1

        await h.say("are you there?")  # any trigger for the thread takes its lease
        cards = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest) and o.thread_id == thread.thread_id]
        assert len(cards) == 1
        assert await client.xlen(keys.thread_outbox(thread.thread_id)) == 0
    finally:
        await client.aclose()
