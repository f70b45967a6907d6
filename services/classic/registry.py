"""The classic models the service serves: one line each (their modules implement services/classic/contract.py)."""

from __future__ import annotations

from services.classic.contract import ClassicModel
from services.classic.digits import DigitsClassifier
from services.classic.tabular import TabularClassifier
from services.classic.text import TextClassifier

MODELS: tuple[type[ClassicModel], ...] = (
    TextClassifier,
    TabularClassifier,
    DigitsClassifier,
)
