"""Shared fixtures for the real-client compatibility suite.

The ``runnel_node`` fixture starts one ``runnel dev`` node per test module
on a free port in a fresh temporary data directory; ``bootstrap`` yields its
advertised address ("HOST:PORT"). The node's stderr (its log) goes to a file
next to the data directory and is attached to the report of every failing
test. At the end of the module the node gets SIGTERM (SIGKILL if it has not
exited after 10 s); a node that crashed, or did not stop cleanly, fails the
module's teardown. Set RUNNEL_BIN to test another binary, RUST_LOG (e.g.
``RUST_LOG=debug``) for a more verbose broker log, and RUNNEL_TEST_LOG_DIR to
keep each module's broker log there (as <module>.log) after the run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "runnel"

STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0

# Auto-created topics (the kcat test relies on them) get this many partitions.
DEFAULT_PARTITIONS = 3

_LISTENER_LINE = re.compile(r"Kafka listener on (\S+), advertised as (\S+)")
_READY_LINE = re.compile(r"runnel: node \d+ is registered and serving")


# Ports handed to nodes that are stopped and started again come from below
# the kernel's ephemeral range (32768 up on Linux): an outgoing connection
# can take a port from that range while its node is down, and the restart
# would then fail to bind it.
_PORT_LOW, _PORT_SPAN = 20000, 12000
_next_port = [os.getpid() * 7919 % _PORT_SPAN]


def free_ports(n: int) -> list[int]:
    """n distinct ports, each free when probed, below the ephemeral range."""
    ports: list[int] = []
    for _ in range(_PORT_SPAN):
        port = _PORT_LOW + _next_port[0] % _PORT_SPAN
        _next_port[0] += 1
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports between {_PORT_LOW} and {_PORT_LOW + _PORT_SPAN}")


def runnel_bin() -> Path:
    path = Path(os.environ.get("RUNNEL_BIN") or DEFAULT_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"runnel binary not found or not executable at {path}; "
            "run `cargo build -p runnel` first (or point RUNNEL_BIN at a built binary)",
            pytrace=False,
        )
    return path


class RunnelNode:
    """A running `runnel dev` process."""

    def __init__(self, proc: subprocess.Popen, bootstrap: str, data_dir: Path, log_path: Path):
        self.proc = proc
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.log_path = log_path

    @property
    def host(self) -> str:
        return self.bootstrap.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_for_listener_line(proc: subprocess.Popen, deadline: float) -> tuple[str, list[str]]:
    """Read stdout lines until the listener line appears; return (advertised, lines seen)."""
    lines: list[str] = []
    found: dict[str, str] = {}
    done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            m = _LISTENER_LINE.search(line)
            if m and "listener" not in found:
                found["listener"] = m.group(2)
            # The node prints this once it has registered with its controller
            # and serves metadata; before that, clients would see no broker.
            if _READY_LINE.search(line) and "listener" in found and "advertised" not in found:
                found["advertised"] = found["listener"]
                done.set()
        done.set()  # EOF: the process closed stdout (it probably exited)

    # The thread keeps draining stdout for the life of the process so the
    # node can never block on a full pipe.
    threading.Thread(target=reader, name="runnel-stdout", daemon=True).start()
    done.wait(max(0.0, deadline - time.monotonic()))
    return found.get("advertised", ""), lines


def _wait_until_accepting(host: str, port: int, proc: subprocess.Popen, deadline: float) -> None:
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runnel exited with code {proc.returncode} before accepting connections")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            last_error = e
            time.sleep(0.05)
    raise TimeoutError(f"runnel did not accept connections on {host}:{port} within {STARTUP_TIMEOUT_S}s: {last_error}")


def _stop(proc: subprocess.Popen) -> str | None:
    """Stop the node; return a description of what went wrong, if anything."""
    if proc.poll() is not None:
        return f"runnel had already exited with code {proc.returncode} before the end of the module"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        return f"runnel did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM and was killed"
    if proc.returncode != 0:
        return f"runnel exited with code {proc.returncode} after SIGTERM"
    return None


@pytest.fixture(scope="module")
def runnel_node(request):
    binary = runnel_bin()
    work_dir = Path(tempfile.mkdtemp(prefix="runnel-clients-"))
    data_dir = work_dir / "data"
    log_path = work_dir / "runnel.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env.setdefault("NO_COLOR", "1")
    # A module may add flags: `def runnel_extra_args(work_dir) -> list[str]`
    # (it can write files, such as a users file, into work_dir).
    extra = getattr(request.module, "runnel_extra_args", None)
    extra_args = list(extra(work_dir)) if extra else []
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            str(binary),
            "dev",
            "--data-dir",
            str(data_dir),
            "--kafka-listener",
            "127.0.0.1:0",
            "--rpc-listener",
            "127.0.0.1:0",
            "--http-listener",
            "127.0.0.1:0",
            "--default-partitions",
            str(DEFAULT_PARTITIONS),
            *extra_args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        env=env,
    )
    stop_problem = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        advertised, lines = _wait_for_listener_line(proc, deadline)
        if not advertised:
            _stop(proc)
            log_file.flush()
            pytest.fail(
                f"runnel did not print its listener line within {STARTUP_TIMEOUT_S}s "
                f"(exit code {proc.poll()}); stdout: {lines!r}\n--- runnel log ---\n"
                f"{log_path.read_text(errors='replace')}",
                pytrace=False,
            )
        host, port = advertised.rsplit(":", 1)
        try:
            _wait_until_accepting(host, int(port), proc, deadline)
        except (RuntimeError, TimeoutError) as e:
            _stop(proc)
            log_file.flush()
            pytest.fail(f"{e}\n--- runnel log ---\n{log_path.read_text(errors='replace')}", pytrace=False)
        node = RunnelNode(proc, advertised, data_dir, log_path)
        yield node
    finally:
        stop_problem = _stop(proc)
        log_file.close()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        keep_dir = os.environ.get("RUNNEL_TEST_LOG_DIR")
        if keep_dir:
            Path(keep_dir).mkdir(parents=True, exist_ok=True)
            (Path(keep_dir) / f"{request.module.__name__}.log").write_text(log)
        shutil.rmtree(work_dir, ignore_errors=True)
    if stop_problem:
        pytest.fail(f"{stop_problem}\n--- runnel log ---\n{log}", pytrace=False)


@pytest.fixture(scope="module")
def bootstrap(runnel_node) -> str:
    """The bootstrap address ("HOST:PORT") of this module's runnel node."""
    return runnel_node.bootstrap


@pytest.fixture
def topic_name(request) -> str:
    """A topic name unique to the test (legal Kafka characters only)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:150]
    return f"{base}-{uuid.uuid4().hex[:8]}"


LOG_SECTION_MAX_CHARS = 200_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the runnel node's log to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    node = getattr(item, "funcargs", {}).get("runnel_node")
    if not isinstance(node, RunnelNode):
        return
    text = node.log()
    if len(text) > LOG_SECTION_MAX_CHARS:
        text = "[... earlier lines cut ...]\n" + text[-LOG_SECTION_MAX_CHARS:]
    report.sections.append((f"runnel log ({node.log_path})", text))
