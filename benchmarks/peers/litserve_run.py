"""The command line and server every LitServe peer shares: one LitServer worker on the CPU, batching as
the issue tried LitServe (64 per batch, 10 ms window) or off. Imported by the peer scripts as a sibling
module: they run in LitServe's own environment, outside the project's package."""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls


def peer_parser(description: str, batching: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    if batching:
        parser.add_argument("--max-batch-size", type=int, default=64, help="1: no batching")
        parser.add_argument("--batch-timeout", type=float, default=0.01)
    return parser


def batching(args: argparse.Namespace) -> dict[str, Any]:
    """LitAPI keyword arguments: a batch window only where there is a batch to wait for."""
    return {
        "max_batch_size": args.max_batch_size,
        "batch_timeout": args.batch_timeout if args.max_batch_size > 1 else 0.0,
    }


def serve(api: Any, port: int) -> None:
    import litserve.mcp
    import litserve.server

    # LitServe 0.2.19 starts its MCP endpoint when the `mcp` package is importable but defines it only
    # when `fastmcp` is too: beside vLLM (which brings `mcp` alone) every server died with NameError.
    litserve.server._MCP_AVAILABLE &= litserve.mcp._is_mcp_installed
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=port, generate_client_file=False)
