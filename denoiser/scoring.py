"""Anomaly score calibration: a threshold at a false-positive rate, normalised so that 0.5 is the threshold."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Calibration(NamedTuple):
    """Threshold and min-max range of raw scores on held-out normal images."""

    threshold: float
    low: float
    high: float
    fpr: float

    @classmethod
    def from_card(cls, card: dict) -> Calibration | None:
        """The calibration stored in a model card, if any."""
        values = card.get("calibration")
        return cls(**{k: float(values[k]) for k in cls._fields}) if values else None


class Score(NamedTuple):
    """One image's anomaly score."""

    raw: float
    score: float
    anomalous: bool


def calibrate(raw_scores, fpr: float = 0.01) -> Calibration:
    """Threshold at the (1 - fpr) quantile of raw scores from normal images."""
    raw = np.asarray(raw_scores, np.float64)
    return Calibration(float(np.quantile(raw, 1.0 - fpr)), float(raw.min()), float(raw.max()), fpr)


def normalise(raw: float, calibration: Calibration) -> float:
    """Min-max normalise around the threshold (anomalib style): 0.5 at threshold, clipped to [0, 1]."""
    span = max(calibration.high - calibration.low, 1e-12)
    return float(np.clip((raw - calibration.threshold) / span + 0.5, 0.0, 1.0))
