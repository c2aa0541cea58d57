"""A trained logistic regression, stored as data: named features in, a probability out.

The models are fitted by ``parley_devtools.train_insight_models`` (scikit-learn, on the tuning part of the real
meeting corpora) and written next to this file as JSON: the weights by feature name, the intercept, the decision
threshold chosen on held-out folds, and the figures the model reached. The engine needs only this reader, so
scikit-learn stays a development tool.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent / "models"

Features = dict[str, float]


@dataclass(frozen=True)
class LinearModel:
    name: str
    weights: dict[str, float]
    intercept: float
    threshold: float
    metadata: dict[str, Any]

    def probability(self, features: Features) -> float:
        z = self.intercept + sum(self.weights.get(name, 0.0) * value for name, value in features.items())
        # The logistic function, written to stay finite for large |z|.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def confidence(self, probability: float, threshold: float | None = None) -> float:
        """The probability rescaled so that the decision threshold (the model's, unless given) reads 0.5, as
        Symbl's ``confidenceThreshold`` (default 0.5) expects of an item's ``score``."""
        threshold = self.threshold if threshold is None else threshold
        if probability >= threshold:
            return 0.5 + 0.5 * (probability - threshold) / max(1e-9, 1.0 - threshold)
        return 0.5 * probability / max(1e-9, threshold)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> LinearModel:
        return cls(
            name=body["name"],
            weights={str(k): float(v) for k, v in body["weights"].items()},
            intercept=float(body["intercept"]),
            threshold=float(body["threshold"]),
            metadata=dict(body.get("metadata", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "metadata": self.metadata,
            "weights": dict(sorted(self.weights.items(), key=lambda kv: (-abs(kv[1]), kv[0]))),
        }


@cache
def load_model(name: str) -> LinearModel:
    """The model ``models/<name>.json`` that ships with the engine."""
    return LinearModel.from_dict(json.loads((MODELS_DIR / f"{name}.json").read_text()))
