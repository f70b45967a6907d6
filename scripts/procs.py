"""Real processes for tests and benchmarks: redis-server and `bentoml serve`, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# The venv's own `bentoml`; where packages are installed apart from the interpreter (the GPU machine's
# staged /tmp/site), the one on PATH.
_BESIDE = Path(sys.executable).with_name("bentoml")
BENTOML = str(_BESIDE) if _BESIDE.exists() else (shutil.which("bentoml") or str(_BESIDE))


# Ports below this are left to well-known services (Redis 6379, BentoML 3000, Prometheus 9090, ...).
_LOWEST_TEST_PORT = 15000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for `bind(0)` and outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_candidates(ephemeral: tuple[int, int]) -> list[int]:
    """Ports no other process is handed by the kernel: those outside its ephemeral range."""
    low, high = ephemeral
    return [*range(_LOWEST_TEST_PORT, low), *range(max(high + 1, _LOWEST_TEST_PORT), 65536)]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """A loopback port (the first of ``count`` consecutive ones) that a child process can bind a moment later.

    Why not `bind(0)`: that port is free only until the socket closes, and the kernel hands the same
    range to every other process's `bind(0)` and outgoing connection (vLLM's and circus's internal
    sockets, HTTP clients), so a server started a second later could find it taken (CI saw
    "Address already in use" when four servers started at once). A port outside that range is taken
    only by an explicit bind, and this process never hands one out twice. ``count`` > 1 is for servers
    that bind the ports after theirs too (data-parallel engines: ``engine_port + i``)."""
    candidates = set(port_candidates(_ephemeral_range()))
    firsts = [port for port in candidates if port + count - 1 in candidates]
    random.shuffle(firsts)
    for first in firsts:
        run = range(first, first + count)
        if all(port in candidates and port not in _handed_out and _bindable(port) for port in run):
            _handed_out.update(run)
            return first
    raise RuntimeError(f"no {count} consecutive free loopback ports outside the kernel's ephemeral range")


def shared_model_store() -> Path:
    """The model store of the test process's BENTOML_HOME, which every test server shares."""
    store = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "models"
    store.mkdir(parents=True, exist_ok=True)
    return store


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def process_tree(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of ``root`` and every live descendant, root first. BentoML's circus workers
    each call setsid, so a process-group signal reaches only circusd; the tree reaches them all."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop(0)
        if (started := _start_time(pid)) is not None:
            tree.append((pid, started))
        frontier.extend(children.get(pid, []))
    return tree


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the group a process leads (started with start_new_session), SIGKILL after grace_s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _stop_leftovers(processes: list[tuple[int, str]], timeout_s: float = 10) -> None:
    """Workers that outlived circusd (same pid and start time, so never a reused pid): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, started in processes if _start_time(pid) == started]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [pid for pid, started in processes if _start_time(pid) == started]
        if not alive:
            return


def wait_until(check, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout_s} s")


class RedisServer:
    """A redis-server we can stop and start again on the same port (for outage tests)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make redis`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, "redis-server", self.proc)
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class BentoServer:
    """`bentoml serve TARGET` in its own process group, with its own environment.

    ``argv`` replaces ``bentoml serve TARGET`` (e.g. ``start-http-server ... --service-name X``);
    ``--host 127.0.0.1 --port PORT`` are appended either way."""

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        argv: list[str] | None = None,
        ready_timeout_s: float = 180,
    ) -> None:
        self.target = target
        self.ready_timeout_s = ready_timeout_s  # start()'s default: the gateway starts an LLM engine first
        self.argv = argv if argv is not None else [BENTOML, "serve", target]
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.startup_log = ""  # what the server logged until it was ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _home(self) -> Path:
        """A BENTOML_HOME of its own: two servers on one host sharing one would share, and wipe at
        start, BentoML's Prometheus multiprocess directory. The model store stays shared."""
        home = self.log_path.with_suffix(".bentoml")
        home.mkdir(exist_ok=True)
        models = home / "models"
        if not models.exists():
            models.symlink_to(shared_model_store())
        return home

    def start(self, ready_timeout_s: float | None = None) -> BentoServer:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "BENTOML_HOME": str(self._home()),
            **self.env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.argv, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200,
                ready_timeout_s or self.ready_timeout_s,
                f"bentoml serve {self.target}",
                self.proc,
            )
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.target} failed to start; log:\n{self.log_tail()}") from None
        self.startup_log = self.log_path.read_text(errors="replace")
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = process_tree(self.proc.pid)[1:]
            stop_process_group(self.proc)
            _stop_leftovers(workers)
        self.proc = None


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels must match exactly those given)."""
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        found = {k: v.strip('"') for k, v in found.items()}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None
