"""An XGBoost binary classifier's trees as numpy arrays, for batches too small to amortise XGBoost's call.

Why: one ``Booster.inplace_predict`` costs ~0.2 ms whatever the batch (about half in XGBoost's C++ set-up,
half in its Python wrapper), and a busy classic worker on a many-core host batches only a few rows
(3.9 on average at 64 clients on an H100 host, benchmarks/results/README.md), so that fixed cost was a
third of a row's CPU. Walking the same trees with a few numpy gathers per tree level costs 22-42 us for a
handful of rows and grows with the rows, so it is used up to a row count and XGBoost above it.

What it computes is XGBoost's own arithmetic: the same float32 comparisons (``x < split`` goes left), the
leaves added one tree after another in float32 from the base margin (margins bit-identical in the tests),
and XGBoost's sigmoid; its ``expf`` is replaced by float64 ``exp`` rounded to float32, so a probability
can differ in its last float32 bit (~0.2% of rows). Only what the service feeds it is supported: finite
inputs (the API refuses NaN and infinities, so XGBoost's default directions never apply), numerical
splits, one tree per round, ``binary:logistic``. (A finite number beyond float32's range is +-inf once
cast, in XGBoost too: both send it right of every split, or left for -inf.) Anything else is not compiled (:func:`compile_booster`
returns None) and XGBoost answers every batch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_DEPTH = 10  # deeper trees make 2**depth-wide tables; XGBoost answers them instead


class CompiledForest:
    """Each tree padded to a complete binary tree of the forest's depth and stored as one heap block
    (node ``i``'s children at ``2i+1``, left, ``x < split``, and ``2i+2``; the leaves last); a leaf above
    the bottom level is copied to every bottom slot below it, and the nodes below it send everything left
    (their split is NaN: ``x >= NaN`` is false for every x, +inf included). All blocks share one set of
    tables indexed by slot, so a level is a handful of numpy gathers over (rows, trees). One extra slot
    holds the base margin and points at itself: it rides along as tree -1, so the leaves gathered at the
    end are the whole sum, in XGBoost's order."""

    def __init__(
        self, features: np.ndarray, splits: np.ndarray, leaves: np.ndarray, base_margin: float
    ) -> None:
        trees, internal = features.shape
        self.depth = int(np.log2(internal + 1))
        block = 2 * internal + 1  # a tree's slots: internal nodes, then leaves
        base = trees * block  # the base margin's slot, after every tree
        local = np.arange(internal)
        starts = np.arange(trees) * block
        self._feature = np.zeros(base + 1, dtype=np.intp)
        self._split = np.full(base + 1, np.nan, dtype=np.float32)
        self._left = np.arange(base + 1, dtype=np.intp)  # leaves and the base slot: themselves
        self._value = np.zeros(base + 1, dtype=np.float32)
        at = (starts[:, None] + local[None, :]).ravel()
        self._feature[at] = features.ravel()
        self._split[at] = splits.ravel()
        self._left[at] = (starts[:, None] + 2 * local[None, :] + 1).ravel()
        self._value[(starts[:, None] + internal + np.arange(internal + 1)[None, :]).ravel()] = leaves.ravel()
        self._value[base] = np.float32(base_margin)
        self._roots = np.concatenate([[base], starts])[None, :]  # tree -1 (the base margin), then each root

    def margins(self, rows: Any) -> np.ndarray:
        x = as_float32(rows)
        n, width = x.shape
        flat = x.ravel()
        row_starts = (np.arange(n) * width)[:, None] if n > 1 else 0
        at = np.repeat(self._roots, n, axis=0) if n > 1 else self._roots
        for _ in range(self.depth):
            right = flat[self._feature[at] + row_starts] >= self._split[at]
            at = self._left[at] + right
        return np.cumsum(self._value[at], axis=1, dtype=np.float32)[:, -1]  # tree after tree, as XGBoost adds

    def predict_proba(self, rows: Any) -> np.ndarray:
        """(n, 2) probabilities, XGBoost's sigmoid: ``1 / (1 + exp(min(-margin, 88.7)))`` in float32."""
        margin = self.margins(rows)
        e = np.exp(np.minimum(-margin, np.float32(88.7)).astype(np.float64)).astype(np.float32)
        proba = np.empty((len(margin), 2), dtype=np.float32)
        proba[:, 1] = np.float32(1) / (e + np.float32(1))
        proba[:, 0] = np.float32(1) - proba[:, 1]
        return proba


def as_float32(rows: Any) -> np.ndarray:
    """The rows as the float32 XGBoost computes in: a finite float64 beyond float32's range becomes +-inf,
    as it does in XGBoost (which answers it as it answers float32's largest value), without a warning."""
    with np.errstate(over="ignore"):
        return np.asarray(rows, dtype=np.float32)


def compile_booster(booster: Any) -> CompiledForest | None:
    """The booster's trees as a :class:`CompiledForest`, or None where that would not be XGBoost's answer."""
    learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
    try:
        params = learner["learner_model_param"]
        model = learner["gradient_booster"]["model"]
        trees = model["trees"]
        if (
            learner["objective"]["name"] != "binary:logistic"
            or learner["gradient_booster"]["name"] != "gbtree"
            or int(params.get("num_target", 1)) != 1
            or int(model["gbtree_model_param"]["num_parallel_tree"]) != 1
            or not trees
            or any(any(tree["split_type"]) for tree in trees)  # categorical splits
        ):
            return None
        depth = max(_depth(tree, 0) for tree in trees)
    except (KeyError, TypeError, ValueError):  # a model format this walk was not written for
        return None
    if not 1 <= depth <= MAX_DEPTH:
        return None
    internal = 2**depth - 1
    features = np.zeros((len(trees), internal), dtype=np.intp)
    splits = np.full((len(trees), internal), np.nan, dtype=np.float32)
    leaves = np.zeros((len(trees), 2**depth), dtype=np.float32)
    for k, tree in enumerate(trees):
        _fill(tree, 0, 0, 0, depth, features[k], splits[k], leaves[k])
    base_score = np.float32(params["base_score"].strip("[]"))  # "[6.2637365E-1]" (3.x) or "6.2637365E-1"
    # XGBoost's ProbToMargin, in float32
    base_margin = -np.log(np.float32(1) / base_score - np.float32(1), dtype=np.float32)
    return CompiledForest(features, splits, leaves, float(base_margin))


def _depth(tree: dict[str, Any], node: int) -> int:
    left, right = tree["left_children"][node], tree["right_children"][node]
    return 0 if left == -1 else 1 + max(_depth(tree, left), _depth(tree, right))


def _fill(tree: dict[str, Any], node: int, slot: int, level: int, depth: int, features: np.ndarray,
          splits: np.ndarray, leaves: np.ndarray) -> None:  # fmt: skip
    """Copy XGBoost node ``node`` (and its subtree) into heap slot ``slot`` at ``level``."""
    if tree["left_children"][node] == -1:  # a leaf: its value under every bottom slot below this one
        first = slot
        for _ in range(depth - level):
            first = 2 * first + 1
        start = first - (2**depth - 1)
        leaves[start : start + 2 ** (depth - level)] = tree["split_conditions"][node]  # a leaf's value
        return
    features[slot] = tree["split_indices"][node]
    splits[slot] = tree["split_conditions"][node]
    _fill(tree, tree["left_children"][node], 2 * slot + 1, level + 1, depth, features, splits, leaves)
    _fill(tree, tree["right_children"][node], 2 * slot + 2, level + 1, depth, features, splits, leaves)
