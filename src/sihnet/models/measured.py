"""A model of the measured Bern quantities: scikit-learn's logistic regression on what the automatic
reader measured (:mod:`sihnet.reader`), and its fusion with the network.

Fitted on a fold's training patients only (missing measures filled with their training medians,
each standardised with the training mean and SD, L2-penalised, classes weighted by their inverse
frequency), stored as plain numbers in JSON (no pickle) and applied by the same arithmetic
scikit-learn uses, so that a stored model gives what the fitted one gave.

The fusion (:func:`combine`, the one place it is decided) is the mean of the two logits: nothing is
fitted for it, so nothing can see a validation fold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ConfigDict, TypeAdapter

from sihnet.config_sections import Fusion
from sihnet.hashing import text_sha256
from sihnet.reader.reading import FEATURES


@dataclasses.dataclass(frozen=True)
class MeasuredModel:
    """A fitted logistic regression on measured quantities.

    Attributes:
        features: names, in order.
        medians, means, scales: (F,) the training patients' medians (for missing values), means
            and standard deviations.
        coefficients: (F,) on the standardised features; intercept: the logit at the means.
        measurements_sha256: SHA-256 of the run's ``patient_measures.csv`` it was fitted from ("":
            not recorded).

    Its JSON is sealed with the SHA-256 of its content: an edited file is refused, as an edited
    exported model is (``EditedModelError``).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # its file's schema (from_json)

    features: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    measurements_sha256: str = ""

    @staticmethod
    def fit(
        rows: Sequence[Mapping[str, float | None]],
        labels: np.ndarray,
        features: tuple[str, ...] = FEATURES,
        penalty_c: float = 0.3,
    ) -> MeasuredModel:
        """Fit on training patients: ``rows[i]`` their measures (None or NaN: not measured),
        ``labels`` (P,) 0/1."""
        from sklearn.linear_model import LogisticRegression

        values = _matrix(rows, features)
        medians = np.array(
            [np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else 0.0 for c in values.T]
        )
        filled = np.where(np.isfinite(values), values, medians)
        means, scales = filled.mean(axis=0), filled.std(axis=0)
        scales = np.where(scales > 1e-9, scales, 1.0)
        model = LogisticRegression(C=penalty_c, class_weight="balanced", max_iter=1000)
        model.fit((filled - means) / scales, np.asarray(labels, dtype=int))
        return MeasuredModel(
            features,
            tuple(float(v) for v in medians),
            tuple(float(v) for v in means),
            tuple(float(v) for v in scales),
            tuple(float(v) for v in model.coef_[0]),
            float(model.intercept_[0]),
        )

    def logits(self, rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        """(P,) logits of the fistula for each patient's measures."""
        values = _matrix(rows, self.features)
        filled = np.where(np.isfinite(values), values, np.asarray(self.medians))
        standard = (filled - np.asarray(self.means)) / np.asarray(self.scales)
        return standard @ np.asarray(self.coefficients) + self.intercept

    def as_json(self) -> dict[str, Any]:
        """The model's values and their seal (``sha256``)."""
        values = dataclasses.asdict(self)
        return {**values, "sha256": _seal(values)}

    @staticmethod
    def from_json(values: object) -> MeasuredModel:
        """Read a model's JSON, the dataclass itself its schema (unknown keys refused; a model
        written before the seal existed has none).

        Raises:
            ValueError (pydantic's ValidationError among them): not a measured model's file.
            EditedModelError: its content does not match its seal.
        """
        if not isinstance(values, Mapping):
            raise ValueError("a measured model's file holds an object")
        seal = values.get("sha256")
        content = {k: v for k, v in values.items() if k != "sha256"}
        model = _SCHEMA.validate_python(content)
        if seal is not None and seal != _seal(dataclasses.asdict(model)):
            raise EditedModelError("its content does not match its SHA-256")
        return model


_SCHEMA = TypeAdapter(MeasuredModel)


class EditedModelError(ValueError):
    """A measured model's file was changed after it was written."""


def _seal(values: Mapping[str, Any]) -> str:
    return text_sha256(json.dumps(values, sort_keys=True))


def _matrix(rows: Sequence[Mapping[str, float | None]], features: tuple[str, ...]) -> np.ndarray:
    def number(value: float | None) -> float:
        return float("nan") if value is None else float(value)

    return np.array([[number(row.get(f)) for f in features] for row in rows], dtype=np.float64)


def logit(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probability, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def fuse(network: np.ndarray, measured_logits: np.ndarray) -> np.ndarray:
    """The fused probability: the mean of the network's and the measured model's logits."""
    return sigmoid((logit(network) + np.asarray(measured_logits)) / 2)


def combine(
    network: np.ndarray, measured_logits: np.ndarray, fusion: Fusion
) -> dict[str, np.ndarray]:
    """A measured run's probabilities, the one place its fusion rule is applied (training's
    out-of-fold predictions, predict, external evaluation, the ONNX recipe).

    Args:
        network: (P,) the network's probabilities; measured_logits: (P,) the measured model's.
        fusion: the configuration's ``measured.fusion``.

    Returns:
        ``probability`` (the run's answer: fused, or the measured model's alone with
        ``measured_only``), ``probability_network`` and ``probability_measured``, each (P,).
    """
    network = np.asarray(network, dtype=np.float64)
    measured = sigmoid(measured_logits)
    answer = measured if fusion == "measured_only" else fuse(network, measured_logits)
    return {
        "probability": answer,
        "probability_network": network,
        "probability_measured": measured,
    }
