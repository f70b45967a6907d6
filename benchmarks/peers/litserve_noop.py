"""LitServe's own HTTP ceiling: a LitAPI whose predict returns its input, no batching.

``python -m benchmarks classic_batching --litserve-python ...`` posts the tabular bodies to it with the same
client and concurrency as every other cell, so a reader sees how close LitServe's model path gets to what
its HTTP path alone allows (ours has the same ceiling: benchmarks/noop_service.py).

    python benchmarks/peers/litserve_noop.py --port N
"""

from __future__ import annotations

from typing import Any

import litserve as ls
from litserve_run import peer_parser, serve  # a sibling: these run as scripts


class NoOpAPI(ls.LitAPI):  # type: ignore[misc]
    """Answers each JSON body with itself."""

    def setup(self, device: str) -> None:
        pass

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # unannotated: LitServe then passes the JSON body
        return request

    def predict(self, x: Any) -> Any:
        return x

    def encode_response(self, output: Any) -> Any:
        return output


def main() -> None:
    args = peer_parser(__doc__.splitlines()[0], batching=False).parse_args()
    serve(NoOpAPI(max_batch_size=1), args.port)


if __name__ == "__main__":
    main()
