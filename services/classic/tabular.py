"""Tabular classifier: an XGBoost booster on scikit-learn's Wisconsin breast-cancer data.

569 rows, 30 features (sklearn's column order), classes malignant/benign; the data ships with
scikit-learn (no download). Stored as XGBoost's own UBJSON booster file. ``inplace_predict`` skips building
a DMatrix: the cheapest call per batch.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from services.classic.contract import Log, ModelSpec
from services.classic.forest import as_float32, compile_booster
from services.classic.training import SEED, TEST_SIZE, Trained, fingerprint, store_name, train_once

BOOSTER_FILE = "booster.ubj"
INLINE_MAX_ROWS = 256  # predicted on the event loop up to this many rows (~0.5 ms); in a thread above
PARAMS: dict[str, Any] = {
    "n_estimators": 200, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9, "colsample_bytree": 0.8,
    "tree_method": "hist", "n_jobs": 2,
}  # fmt: skip
SOURCE = "sklearn.datasets.load_breast_cancer (Wisconsin diagnostic breast cancer, ships with sklearn)"
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]

SPEC = ModelSpec(
    kind="tabular",
    api="predict_tabular",
    field="rows",
    doc="Malignant or benign for each row of the 30 breast-cancer features (sklearn's column order). "
    "One model call per batch: the booster's trees walked in numpy up to tabular_forest_max_rows, XGBoost above.",
    default_tag="classic-tabular-cancer:latest",
    max_batch_size=256,
    max_latency_ms=1000,  # 250 shed requests at 80% of the whole Bento's peak on 2 cores (the soak)
    settings={
        "tabular_features": (int, Field(default=30, ge=1, description="Values per tabular row; the service refuses to start on a mismatch.")),
        "max_rows": (int, Field(default=256, ge=1, description="Most tabular rows in one request.")),
        "model_threads": (int, Field(default=1, ge=1, description="Threads of one booster call (XGBoost nthread).")),
        "tabular_forest_max_rows": (int, Field(default=32, ge=0, description="Batches up to this many rows walk the booster's trees as numpy arrays (services/classic/forest.py: XGBoost's answers, 22 us for 1 row and 42 for 4 on a 2-core CPU, against ~0.2 ms per XGBoost call); larger ones call XGBoost. 0: always XGBoost.")),
    },
)  # fmt: skip


class TabularClassifier:
    SPEC: ClassVar[ModelSpec] = SPEC

    def __init__(
        self, booster: Any, class_names: list[str], tag: str = "", threads: int = 1, forest_max_rows: int = 0
    ) -> None:
        booster.set_param({"nthread": threads})
        self.booster = booster
        self.class_names = class_names
        self.tag = tag
        self.forest = compile_booster(booster) if forest_max_rows > 0 else None  # None: XGBoost answers all
        self.forest_max_rows = forest_max_rows if self.forest is not None else 0

    @classmethod
    def input_type(cls, settings: Any) -> Any:
        width, most = settings.classic.tabular_features, settings.classic.max_rows
        row = Annotated[
            list[FiniteFloat],
            Field(min_length=width, max_length=width, description=f"{width} finite numbers"),
        ]
        return Annotated[
            list[row],
            Field(
                min_length=1, max_length=most, description=f"1 to {most} rows of {width} finite numbers each"
            ),
        ]

    @classmethod
    def load(cls, stored: Any, settings: Any) -> TabularClassifier:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(stored.path_of(BOOSTER_FILE))
        model = cls(
            booster,
            list(stored.info.metadata["class_names"]),
            str(stored.tag),
            settings.classic.model_threads,
            settings.classic.tabular_forest_max_rows,
        )
        if model.n_features != settings.classic.tabular_features:
            raise ValueError(
                f"{model.tag} takes {model.n_features} features but "
                f"INFSTACK_CLASSIC__TABULAR_FEATURES={settings.classic.tabular_features}"
            )
        return model

    @property
    def n_features(self) -> int:
        return int(self.booster.num_features())

    def predict_proba(self, rows: np.ndarray | list[list[float]]) -> np.ndarray:
        """(n, classes) probabilities; binary boosters return P(class 1) only, so complete it."""
        if self.forest is not None and len(rows) <= self.forest_max_rows:
            return self.forest.predict_proba(rows)
        scores = np.asarray(self.booster.inplace_predict(as_float32(rows)), np.float32)
        if scores.ndim == 1:
            scores = np.column_stack([1.0 - scores, scores])
        return scores

    async def predict_batch(self, rows: list[Any], service: Any) -> np.ndarray:
        """On the event loop up to ``INLINE_MAX_ROWS``: the booster takes 0.1-0.25 ms for 1-64 rows, less
        than a hand-off to a thread and back, whose GIL switches cost the HTTP path more (2-core CPU,
        c=1: 548 -> 683 rows/s). Larger batches go to a thread, so the loop never stalls for long."""
        if len(rows) <= INLINE_MAX_ROWS:
            return self.predict_proba(rows)
        return await asyncio.to_thread(self.predict_proba, rows)

    def describe(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "forest_max_rows": self.forest_max_rows}

    @classmethod
    def ensure_trained(cls, settings: Any, force: bool, log: Log) -> Any:
        import sklearn
        import xgboost as xgb

        def train() -> Trained:
            log("[tabular] training XGBoost on load_breast_cancer")
            model, accuracy, rows = fit()
            log(f"[tabular] {model.n_features} features, held-out accuracy {accuracy:.3f}")
            metadata = {
                "accuracy": accuracy, "source": SOURCE, "class_names": model.class_names,
                "n_features": model.n_features, "train_rows": rows, "test_size": TEST_SIZE, "seed": SEED,
                "params": PARAMS,
            }  # fmt: skip
            return metadata, lambda stored: model.booster.save_model(stored.path_of(BOOSTER_FILE))

        version = fingerprint(PARAMS, SEED, xgb.__version__, sklearn.__version__)
        return train_once(
            "tabular", f"{store_name(settings.classic.tabular_model)}:{version}", force, log, train
        )


def fit() -> tuple[TabularClassifier, float, int]:
    """XGBoost on breast-cancer, 80/20 stratified and seeded; (model, held-out accuracy, training rows)."""
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=SEED, stratify=data.target
    )
    estimator = xgb.XGBClassifier(random_state=SEED, **PARAMS).fit(x_train, y_train)
    model = TabularClassifier(estimator.get_booster(), [str(n) for n in data.target_names])
    accuracy = float(np.mean(model.predict_proba(x_test).argmax(axis=1) == y_test))
    return model, accuracy, len(x_train)
