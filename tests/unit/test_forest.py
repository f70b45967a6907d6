"""The compiled forest gives XGBoost's answers: the same margins bit for bit, probabilities within one
float32 step, for the service's booster and for trees with leaves above the bottom level."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_iris

from services.classic.forest import compile_booster
from services.classic.tabular import TabularClassifier, fit

ONE_STEP = 1.2e-7  # one float32 step near 1.0 (np.spacing(np.float32(0.5)) is 6e-8)


@pytest.fixture(scope="module")
def service_booster() -> xgb.Booster:
    return fit()[0].booster


def rows_to_check() -> np.ndarray:
    """The data, rows scaled around it, and rows far outside it (every split taken both ways)."""
    data = load_breast_cancer().data
    rng = np.random.default_rng(0)
    scaled = data[rng.integers(0, len(data), 3000)] * rng.uniform(0.5, 1.5, (3000, data.shape[1]))
    extreme = rng.choice([-1e30, 0.0, 1e30], size=(50, data.shape[1]))
    return np.vstack([data, scaled, extreme]).astype(np.float32)


def assert_same_answers(booster: xgb.Booster, rows: np.ndarray) -> None:
    forest = compile_booster(booster)
    assert forest is not None
    np.testing.assert_array_equal(forest.margins(rows), booster.inplace_predict(rows, predict_type="margin"))
    positive = forest.predict_proba(rows)[:, 1]
    assert np.abs(positive - booster.inplace_predict(rows)).max() <= ONE_STEP
    assert np.mean(positive == booster.inplace_predict(rows)) > 0.99


def test_the_service_booster_compiles_to_xgboosts_answers(service_booster: xgb.Booster) -> None:
    assert_same_answers(service_booster, rows_to_check())


def test_trees_of_uneven_depth_compile_to_xgboosts_answers() -> None:
    """Deeper trees that stop early (gamma prunes, min_child_weight stops), a base score far from 0.5."""
    data = load_breast_cancer()
    target = (data.data[:, 0] > np.percentile(data.data[:, 0], 90)).astype(int)  # 10% positive
    params = {"max_depth": 6, "gamma": 2.0, "min_child_weight": 5, "n_estimators": 40, "random_state": 0}
    booster = xgb.XGBClassifier(**params).fit(data.data, target).get_booster()
    depths = {tree.count("\t") for tree in booster.get_dump()}  # each leaf line's indent is its depth
    assert len(depths) > 1, "the fixture must have leaves above the bottom level"
    assert_same_answers(booster, rows_to_check())


def test_what_the_forest_cannot_answer_as_xgboost_is_not_compiled() -> None:
    iris = load_iris()
    multiclass = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(iris.data, iris.target).get_booster()
    regression = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(iris.data, iris.target).get_booster()
    assert compile_booster(multiclass) is None and compile_booster(regression) is None


def test_the_classifier_walks_small_batches_and_calls_xgboost_for_larger_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    model = TabularClassifier(fit()[0].booster, ["malignant", "benign"], forest_max_rows=4)
    booster_predict = model.booster.inplace_predict
    monkeypatch.setattr(
        model.booster, "inplace_predict", lambda x: calls.append(len(x)) or booster_predict(x)
    )
    rows = rows_to_check()[:5]
    small, large = asyncio.run(model.predict_batch(rows[:4].tolist(), None)), model.predict_proba(rows)
    assert calls == [5] and model.describe()["forest_max_rows"] == 4
    assert np.abs(small - large[:4]).max() <= ONE_STEP and small.dtype == large.dtype == np.float32
    assert TabularClassifier(model.booster, ["m", "b"], forest_max_rows=0).forest is None
