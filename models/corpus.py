"""The shipped text the small trained LLM learns from, and the held-out part it is judged on.

Why one module: training, the quantizer's default calibration set and the evaluation must agree on
which docstrings are held out, or the perplexity would be measured on text the model trained on. The
split is by a hash of each text (stable when rows are added or reordered), about 1 in 10 held out.
Standard library only: the quantizer's own environment imports it too.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

DATA_PATH = Path(__file__).resolve().parent / "data" / "stdlib_docstrings.csv"
HELD_OUT_EVERY = 10


def is_held_out(text: str) -> bool:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()[0] % HELD_OUT_EVERY == 0


def load_texts(path: Path = DATA_PATH) -> list[str]:
    """The ``text`` column of a CSV (the shipped corpus, or a user's calibration file), in file order.

    A plain .txt file is read as one text per non-empty line.
    """
    path = Path(path)
    if path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise ValueError(f"{path} has no 'text' column (columns: {reader.fieldnames})")
        return [row["text"].strip() for row in reader if row["text"].strip()]


def split(path: Path = DATA_PATH) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of the corpus at ``path``."""
    texts = load_texts(path)
    return [t for t in texts if not is_held_out(t)], [t for t in texts if is_held_out(t)]
