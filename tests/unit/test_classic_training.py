"""Training of the classic models: the committed data, determinism, and the serving code path."""

from __future__ import annotations

from collections import Counter

import numpy as np

from models.train_classic import fingerprint, fit_tabular_classifier, fit_text_classifier, load_text_dataset
from services.classic.tabular import TabularClassifier


def test_text_dataset_is_real_labeled_docstrings() -> None:
    texts, labels = load_text_dataset()
    counts = Counter(labels)
    assert len(texts) > 2000 and len(set(texts)) == len(texts)
    assert set(counts) == {
        "concurrency",
        "devtools",
        "files",
        "formats",
        "network",
        "numbers",
        "text",
        "time",
    }
    assert min(counts.values()) >= 100
    assert "Return the integer part of the square root of the input." in texts  # math.isqrt


def test_tabular_training_is_deterministic_and_accurate() -> None:
    first, accuracy, rows = fit_tabular_classifier()
    second, again, _ = fit_tabular_classifier()
    assert bytes(first.booster.save_raw("ubj")) == bytes(second.booster.save_raw("ubj"))
    assert accuracy == again and accuracy > 0.93
    assert rows == 455 and first.n_features == 30 and first.class_names == ["malignant", "benign"]


def test_text_training_is_deterministic() -> None:
    _, labels = load_text_dataset()
    rng = np.random.default_rng(0)
    centers = {label: rng.normal(size=16) for label in set(labels)}
    vectors = np.stack([centers[label] + rng.normal(scale=2.0, size=16) for label in labels])
    first, accuracy = fit_text_classifier(vectors.astype(np.float32), labels)
    second, again = fit_text_classifier(vectors.astype(np.float32), labels)
    np.testing.assert_array_equal(first.estimator.coef_, second.estimator.coef_)
    assert accuracy == again and accuracy > 0.5


def test_binary_booster_probabilities_are_two_columns_summing_to_one() -> None:
    model: TabularClassifier = fit_tabular_classifier()[0]
    proba = model.predict_proba(np.zeros((3, 30)))
    assert proba.shape == (3, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_fingerprint_is_stable_and_input_sensitive() -> None:
    assert fingerprint({"a": 1}, 0) == fingerprint({"a": 1}, 0)
    assert fingerprint({"a": 1}, 0) != fingerprint({"a": 2}, 0)
    assert len(fingerprint("x")) == 16


def test_a_batch_is_predicted_the_same_on_the_loop_and_in_a_thread() -> None:
    """Small batches run on the event loop, large ones in a thread: the answers must not depend on it."""
    import asyncio

    from services.classic.tabular import INLINE_MAX_ROWS

    model: TabularClassifier = fit_tabular_classifier()[0]
    rows = np.random.default_rng(0).normal(size=(INLINE_MAX_ROWS + 1, 30)).tolist()

    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await model.predict_batch(rows[:INLINE_MAX_ROWS], None), await model.predict_batch(rows, None)

    on_loop, in_thread = asyncio.run(both())
    np.testing.assert_array_equal(on_loop, in_thread[:INLINE_MAX_ROWS])
    assert in_thread.shape == (INLINE_MAX_ROWS + 1, 2)
