"""The classic tabular model (the same stored XGBoost booster file) behind LitServe: the peer that
``python -m benchmarks classic_batching --litserve-python .venv-peers/bin/python`` measures ours against, in the same run.

Runs in LitServe's own environment (``make peers``), not the project's: it imports only xgboost and
numpy from the project's stack, and reads the booster file the project's model store holds.

    python benchmarks/peers/litserve_classic.py --booster PATH --port N [--max-batch-size 64]
"""

from __future__ import annotations

from typing import Any

import litserve as ls
import numpy as np
import xgboost as xgb
from litserve_run import batching, peer_parser, serve  # a sibling: these run as scripts


class TabularAPI(ls.LitAPI):  # type: ignore[misc]
    """One row per request (``{"rows": [[30 floats]]}``), answered like ours: label and probabilities."""

    def __init__(self, booster_path: str, class_names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.booster_path = booster_path
        self.class_names = class_names

    def setup(self, device: str) -> None:
        self.booster = xgb.Booster()
        self.booster.load_model(self.booster_path)

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # unannotated: LitServe then passes the JSON body
        return list(request["rows"][0])

    def batch(self, inputs: list[list[float]]) -> np.ndarray:
        return np.asarray(inputs, dtype=np.float32)

    def predict(self, x: Any) -> np.ndarray:
        rows = x if isinstance(x, np.ndarray) else np.asarray([x], dtype=np.float32)
        scores = np.asarray(self.booster.inplace_predict(rows), dtype=np.float32)
        return np.column_stack([1.0 - scores, scores]) if scores.ndim == 1 else scores

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        probabilities = np.asarray(output).reshape(-1)
        label = self.class_names[int(probabilities.argmax())]
        return {"predictions": [{"label": label, "probabilities": probabilities.round(6).tolist()}]}


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--booster", required=True)
    parser.add_argument("--classes", default="malignant,benign")
    args = parser.parse_args()
    serve(TabularAPI(args.booster, args.classes.split(","), **batching(args)), args.port)


if __name__ == "__main__":
    main()
