"""Anomaly score normalisation: 0.5 at the calibrated threshold, clipped to [0, 1]."""

from __future__ import annotations

import numpy as np

from denoiser.scoring import calibrate, normalise


def test_threshold_maps_to_one_half():
    calibration = calibrate(np.linspace(0.0, 1.0, 1001), fpr=0.05)
    assert abs(calibration.threshold - 0.95) < 1e-9
    assert normalise(calibration.threshold, calibration) == 0.5
    assert normalise(10.0, calibration) == 1.0 and normalise(-10.0, calibration) == 0.0


def test_flagged_share_of_calibration_data_matches_fpr(rng):
    raws = rng.gamma(2.0, 1.0, 20000)
    calibration = calibrate(raws, fpr=0.01)
    flagged = np.mean([normalise(r, calibration) > 0.5 for r in raws])
    assert abs(flagged - 0.01) < 0.002
