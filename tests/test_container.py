"""The container image (Dockerfile) and compose.yaml.

The facts that matter are checked on every run, without an engine: who the image runs as, what its
health check probes (and that the probe's own command works, against a loopback server), how the wheel
is installed under the lock, and that compose runs the Procfile's processes on a durable Redis. Building
the image and running it until Docker calls it healthy needs a Docker engine, and skips without one.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from config.channels import HttpSettings
from config.settings import Settings
from tests.eventually import eventually_sync

REPO_ROOT = Path(__file__).resolve().parent.parent
BOT_SERVICES = ("web", "worker", "channels")


# --- the Dockerfile, read as instructions --------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            parsed.append((instruction.upper(), " ".join(arguments.split())))
    return parsed


def _stages() -> list[list[tuple[str, str]]]:
    """The build stages, each from its FROM on; FROM's image with the global ARG defaults filled in."""
    defaults: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _instructions((REPO_ROOT / "Dockerfile").read_text()):
        if instruction == "ARG" and not stages and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults[name] = value
        if instruction == "FROM":
            arguments = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), arguments)
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def _final(instruction: str) -> list[str]:
    """The arguments of each `instruction` in the final stage, the one that becomes the image."""
    return [arguments for name, arguments in _stages()[-1] if name == instruction]


def _env() -> dict[str, str]:
    pairs = (re.findall(r"(\w+)=(\S+)", arguments) for arguments in _final("ENV"))
    return {name: value for found in pairs for name, value in found}


def test_the_image_is_built_in_stages_on_python_311_slim() -> None:
    """The source and the build tools stay in the build stage; the image gets only the built wheel."""
    stages = _stages()
    assert len(stages) >= 2
    assert all(stage[0][1].split()[0] == "python:3.11-slim" for stage in stages), [s[0] for s in stages]
    assert any(name == "COPY" and arguments.startswith("--from=build /dist") for name, arguments in stages[-1])
    assert not any(name == "COPY" and arguments.startswith(". ") for name, arguments in stages[-1])


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """Numeric, so that a platform's runAsNonRoot check can verify it without the image's /etc/passwd."""
    user = _final("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, user


def test_the_image_runs_bot_serve_in_data_and_stops_on_sigterm() -> None:
    assert json.loads(_final("ENTRYPOINT")[-1]) == ["bot"]
    assert json.loads(_final("CMD")[-1]) == ["serve"]
    assert _final("STOPSIGNAL") == ["SIGTERM"]
    assert _final("WORKDIR")[-1] == "/data"
    env = _env()
    data_dir = Settings.model_fields["data_dir"].alias
    host, port = HttpSettings.model_fields["host"].alias, HttpSettings.model_fields["port"].alias
    assert env[data_dir] == "/data/.bot"
    assert env[host] == "0.0.0.0", "listening on the container's loopback only, nothing outside could connect"
    assert env[port].isdigit() and _final("EXPOSE") == [env[port]]


def test_the_wheel_is_installed_with_its_extras_under_the_channels_lock() -> None:
    """One line, so that the wheel test and docs can mirror it; -c keeps the image on the locked versions."""
    installs = [arguments for arguments in _final("RUN") if "/dist/*.whl" in arguments]
    assert len(installs) == 1, installs
    argv = shlex.split(installs[0])
    assert argv[:4] == ["pip", "install", "--no-cache-dir", "-c"] and argv[4] == "requirements/channels.txt"
    assert re.fullmatch(r"\$\(ls /dist/\*\.whl\)\[channels(,\w+)*\]", argv[5]), argv


def _healthcheck_argv() -> list[str]:
    (healthcheck,) = _final("HEALTHCHECK")
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert argv[0] == "python", "the slim image has no curl: the probe is Python's urllib"
    return [sys.executable, *argv[1:]]


class _Readiness(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # the name http.server dispatches to
        type(self).paths.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows stderr of failures
        pass


@pytest.fixture
def readiness() -> Iterator[tuple[type[_Readiness], int]]:
    """A loopback server standing in for `bot serve`, on a free port; set `.status` to what it answers."""
    handler = type("Readiness", (_Readiness,), {"status": 200, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _probe(port: int) -> int:
    port_variable = HttpSettings.model_fields["port"].alias
    env = {"PATH": "/usr/bin:/bin", port_variable: str(port)}
    return subprocess.run(_healthcheck_argv(), env=env, capture_output=True, timeout=30, check=False).returncode


def test_the_health_check_asks_readyz_on_the_http_port(readiness: tuple[type[_Readiness], int]) -> None:
    """The image's own probe command: healthy on 200 from /readyz, unhealthy on 503 (Redis cannot write)."""
    handler, port = readiness
    assert _probe(port) == 0
    handler.status = 503
    assert _probe(port) != 0
    assert handler.paths == ["/readyz", "/readyz"]


def test_the_health_check_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on: bound to learn a number, closed
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert _probe(port) != 0


def test_the_build_context_leaves_out_venvs_secrets_and_history() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".bot", ".env", "tests"} <= ignored


# --- compose.yaml --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    return loaded


def _procfile() -> dict[str, list[str]]:
    processes = {}
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes


def test_compose_runs_each_procfile_process(compose: dict[str, Any]) -> None:
    """web, worker and channels, each `bot <command>` through the image's entrypoint, on the one Redis."""
    processes = _procfile()
    assert set(processes) == set(BOT_SERVICES)
    entrypoint = json.loads(_final("ENTRYPOINT")[-1])
    for name, argv in processes.items():
        service = compose["services"][name]
        assert "entrypoint" not in service
        assert [*entrypoint, *service["command"]] == argv, name
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:"), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert any(volume.endswith(":/data/.bot") for volume in service["volumes"]), "BOT_DATA_DIR is not kept"


def test_compose_keeps_redis_on_a_named_volume_with_appendonly(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    assert redis["command"][0] == "redis-server"
    assert " ".join(redis["command"]).count("--appendonly yes") == 1
    volume, _, target = next(v for v in redis["volumes"] if v.endswith(":/data")).partition(":")
    assert target == "/data" and volume in compose["volumes"], "the append-only file must outlive the container"


def test_compose_workers_scale(compose: dict[str, Any]) -> None:
    """`--scale worker=3` needs a worker with no fixed container name and no host port."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}, "no HTTP to probe: the image's /readyz check would fail"
    assert compose["services"]["channels"]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in compose["services"]["web"], "web keeps the image's /readyz check"
    assert compose["services"]["web"]["ports"], "web is the one service reachable from outside"


def test_compose_tracing_is_an_opt_in_profile(compose: dict[str, Any]) -> None:
    """Jaeger starts only with --profile tracing; the OTLP endpoint reaches the bot only when it is set."""
    jaeger = compose["services"]["jaeger"]
    assert jaeger["profiles"] == ["tracing"]
    assert any(str(port).endswith(":16686") for port in jaeger["ports"])
    for name, service in compose["services"].items():
        if name != "jaeger":
            assert "profiles" not in service, name
    for name in BOT_SERVICES:
        environment = compose["services"][name]["environment"]
        # No value: compose passes the variable through when it is set, and leaves it out when it is not.
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in environment and environment["OTEL_EXPORTER_OTLP_ENDPOINT"] is None
        assert "jaeger" not in compose["services"][name]["depends_on"]


# --- the locks the image and CI install from --------------------------------------------------------------


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip())[0]).lower()  # type: ignore[index]


def _pins(lock: str) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in (REPO_ROOT / "requirements" / lock).read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", line):
            pins.setdefault(_name(match[1]), set()).add(match[2])
    return pins


def _declared(extras: list[str]) -> set[str]:
    """The names of the runtime dependencies plus those of `extras`, self-references (opsbot[x]) followed."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    names, todo, seen = {_name(r) for r in project["dependencies"]}, list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen or extra not in optional:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            if _name(requirement) == _name(project["name"]):
                todo += re.search(r"\[(.*)\]", requirement)[1].split(",")  # type: ignore[index]
            else:
                names.add(_name(requirement))
    return names


def test_the_locks_pin_every_declared_dependency() -> None:
    """A dependency added to pyproject.toml without `bash .ci/lock` would float in CI and in the image."""
    install = next(arguments for arguments in _final("RUN") if "/dist/*.whl" in arguments)
    image_extras = re.search(r"\.whl\)\[([\w,]+)\]", install)[1].split(",")  # type: ignore[index]
    for lock, extras in (("base.txt", []), ("channels.txt", image_extras), ("dev.txt", ["dev"])):
        missing = _declared(extras) - set(_pins(lock))
        assert not missing, f"requirements/{lock} lacks {sorted(missing)}; run bash .ci/lock"


def test_the_image_and_ci_get_the_same_versions() -> None:
    """channels.txt and base.txt are resolved under dev.txt: the tests run what the image ships."""
    dev = _pins("dev.txt")
    for lock in ("base.txt", "channels.txt"):
        different = {
            name: (pins, dev.get(name)) for name, pins in _pins(lock).items() if not pins <= dev.get(name, set())
        }
        assert not different, f"requirements/{lock} differs from dev.txt: {different}; run bash .ci/lock"


# --- with a Docker engine ----------------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _answers(*args: str) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return _docker(*args, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


needs_engine = pytest.mark.skipif(
    not _answers("info"), reason="no Docker engine answers `docker info` (start dockerd to build and run the image)"
)
needs_compose = pytest.mark.skipif(
    not _answers("compose", "version"), reason="the docker compose plugin is not installed (`docker compose version`)"
)


@needs_compose
def test_compose_file_is_valid() -> None:
    """`docker compose config` needs no engine: it checks the file against the Compose specification."""
    for profile in ([], ["--profile", "tracing"]):
        done = _docker("compose", "-f", str(REPO_ROOT / "compose.yaml"), *profile, "config", "--services")
        assert done.returncode == 0, done.stderr
        expected = {"redis", *BOT_SERVICES} | ({"jaeger"} if profile else set())
        assert set(done.stdout.split()) == expected


@needs_engine
@pytest.mark.timeout(1800)
def test_the_image_builds_runs_as_non_root_and_becomes_healthy() -> None:
    """Build the image, run `bot serve` (embedded Redis), wait for Docker's health check, stop it cleanly."""
    tag = f"opsbot-test:{uuid.uuid4().hex[:12]}"
    built = _docker("build", "--tag", tag, str(REPO_ROOT), timeout=1500)
    assert built.returncode == 0, built.stderr[-4000:]
    container = ""
    try:
        # The image's own health check, polled every second instead of every 30; a random host port.
        started = _docker("run", "--detach", "--health-interval=1s", "--publish", "127.0.0.1::8080", tag)
        assert started.returncode == 0, started.stderr
        container = started.stdout.strip()

        def health() -> str | None:
            state = json.loads(_docker("inspect", "--format", "{{json .State}}", container).stdout)
            if not state["Running"]:
                raise AssertionError(f"the container exited {state['ExitCode']}: {_docker('logs', container).stderr}")
            status = state.get("Health", {}).get("Status")
            assert status != "unhealthy", _docker("logs", container).stderr
            return status if status == "healthy" else None

        # Every half second: each look is a `docker inspect`.
        eventually_sync(health, "docker's health check of /readyz reporting healthy", within=180, every=0.5)
        assert _docker("exec", container, "id", "-u").stdout.strip() != "0"
        port = _docker("port", container, "8080/tcp").stdout.split(":")[-1].strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert json.loads(answer.read())["ready"] is True

        stopped = _docker("stop", "--time", "60", container, timeout=90)
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(_docker("inspect", "--format", "{{json .State}}", container).stdout)
        assert state["ExitCode"] == 0, "SIGTERM should stop bot serve cleanly, not by SIGKILL (137)"
    finally:
        if container:
            _docker("rm", "--force", container)
        _docker("rmi", "--force", tag)
