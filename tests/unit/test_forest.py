"""The compiled forest gives XGBoost's answers: the same margins bit for bit, probabilities within one
float32 step, for the service's booster and for trees with leaves above the bottom level."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_iris

from services.classic.forest import as_float32, compile_booster
from services.classic.tabular import TabularClassifier, fit


@pytest.fixture(scope="module")
def service_booster() -> xgb.Booster:
    return fit()[0].booster


def rows_to_check() -> np.ndarray:
    """The data, rows scaled around it, rows far outside it (every split taken both ways) and finite values
    beyond float32's range, which the API accepts (the fuzz test found the walk stepping off its tables)."""
    data = load_breast_cancer().data
    rng = np.random.default_rng(0)
    scaled = data[rng.integers(0, len(data), 3000)] * rng.uniform(0.5, 1.5, (3000, data.shape[1]))
    extreme = rng.choice([-1e30, 0.0, 1e30], size=(50, data.shape[1]))
    beyond = rng.choice(
        [-1.7976931348623157e308, -1e300, 1e300, 1.7976931348623157e308], size=(50, data.shape[1])
    )
    return as_float32(np.vstack([data, scaled, extreme, beyond]))  # beyond float32's range: +-inf


def assert_same_answers(booster: xgb.Booster, rows: np.ndarray) -> None:
    forest = compile_booster(booster)
    assert forest is not None
    np.testing.assert_array_equal(forest.margins(rows), booster.inplace_predict(rows, predict_type="margin"))
    positive, expected = forest.predict_proba(rows)[:, 1], booster.inplace_predict(rows)
    np.testing.assert_array_max_ulp(positive, expected, maxulp=1)
    assert np.mean(positive == expected) > 0.99


def test_the_service_booster_compiles_to_xgboosts_answers(service_booster: xgb.Booster) -> None:
    assert_same_answers(service_booster, rows_to_check())


def test_trees_of_uneven_depth_compile_to_xgboosts_answers() -> None:
    """Deeper trees that stop early (gamma prunes, min_child_weight stops), a base score far from 0.5."""
    data = load_breast_cancer()
    target = (data.data[:, 0] > np.percentile(data.data[:, 0], 90)).astype(int)  # 10% positive
    params = {"max_depth": 6, "gamma": 2.0, "min_child_weight": 5, "n_estimators": 40, "random_state": 0}
    booster = xgb.XGBClassifier(**params).fit(data.data, target).get_booster()
    leaf_depths = [
        {len(line) - len(line.lstrip("\t")) for line in tree.splitlines() if "leaf=" in line}
        for tree in booster.get_dump()
    ]  # a line's indent is its node's depth
    deepest = max(max(depths) for depths in leaf_depths)
    assert any(min(depths) < deepest for depths in leaf_depths), "the fixture must have shallow leaves"
    assert_same_answers(booster, rows_to_check())


def test_what_the_forest_cannot_answer_as_xgboost_is_not_compiled() -> None:
    iris = load_iris()
    multiclass = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(iris.data, iris.target).get_booster()
    regression = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(iris.data, iris.target).get_booster()
    empty = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(iris.data, iris.target > 1), 0)
    assert compile_booster(multiclass) is None and compile_booster(regression) is None
    assert compile_booster(empty) is None


def test_the_classifier_walks_small_batches_and_calls_xgboost_for_larger_ones(
    service_booster: xgb.Booster, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    model = TabularClassifier(service_booster, ["malignant", "benign"], forest_max_rows=4)
    booster_predict = model.booster.inplace_predict
    monkeypatch.setattr(
        model.booster, "inplace_predict", lambda x: calls.append(len(x)) or booster_predict(x)
    )
    rows = rows_to_check()[:5]
    small, large = asyncio.run(model.predict_batch(rows[:4].tolist(), None)), model.predict_proba(rows)
    assert calls == [5] and model.describe()["forest_max_rows"] == 4
    np.testing.assert_array_max_ulp(small, large[:4], maxulp=1)
    assert small.dtype == large.dtype == np.float32
    assert TabularClassifier(model.booster, ["m", "b"], forest_max_rows=0).forest is None
