"""Peer servers the benchmarks measure ours against, each run from its own environment (``make peers``):
their pins clash with the project's, and a benchmark-only dependency has no place in the Bento."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from scripts.procs import free_port, wait_until

HERE = Path(__file__).parent


class PeerServer:
    """A peer's HTTP server in its own process group, answering ``api_path``; ready at ``/health``."""

    def __init__(self, name: str, argv: list[str], api_path: str, log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [*argv, "--port", str(self.port)]
        self.api_path = api_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120) -> PeerServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200, timeout_s,
                       self.name, self.proc)  # fmt: skip
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def litserve_tabular(python: str, booster: str, batching: bool, log_path: Path) -> PeerServer:
    """The stored tabular booster behind LitServe, batched as the issue tried it (64 rows, 10 ms) or not."""
    argv = [python, str(HERE / "litserve_classic.py"), "--booster", booster,
            "--max-batch-size", "64" if batching else "1"]  # fmt: skip
    return PeerServer(f"litserve-{'on' if batching else 'off'}", argv, "/predict", log_path)


def litserve_text(
    python: str, classifier: str, batching: bool, log_path: Path, device: str = "cpu"
) -> PeerServer:
    """MiniLM encode + the stored text classifier behind LitServe, batched like the tabular peer (64 texts,
    10 ms) or not. Its first answer loads the transformer: ``start`` waits for /health, which LitServe
    answers only once ``setup`` has run."""
    argv = [python, str(HERE / "litserve_text.py"), "--classifier", classifier,
            "--max-batch-size", "64" if batching else "1", "--device", device]  # fmt: skip
    return PeerServer(f"litserve-{'on' if batching else 'off'}", argv, "/predict", log_path)


def litserve_noop(python: str, log_path: Path) -> PeerServer:
    """LitServe answering each body with itself: its HTTP ceiling on this machine."""
    return PeerServer("litserve-noop", [python, str(HERE / "litserve_noop.py")], "/predict", log_path)
