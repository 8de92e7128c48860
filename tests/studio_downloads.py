"""Real Studio downloads for the tests that upload them: a tiny run trained and saved as the Studio
saves it (core.train.results.save_results), so the files are exactly what a user downloads."""

from __future__ import annotations

from pathlib import Path

from core.train import data as D
from core.train.results import save_results
from core.train.transfer import RunResult, TrainConfig, fit


def studio_download(folder: Path, scenario: str, weights: str) -> RunResult:
    """Trains ResNet-18 for one epoch on 3 classes of generated shapes (36 images of 32 px) and saves
    the run into `folder`: scenarios 1 and 2 leave head.safetensors, fine-tuning model.safetensors
    (44.8 MB), each with model.json and metrics.csv. Returns the run, its trained model included."""
    data = D.shapes(classes=3, per_class=12, seed=1, size=32)
    res = fit(TrainConfig(dataset="shapes", shapes_classes=3, weights=weights, scenario=scenario, epochs=1,
                          batch_size=8), data)
    save_results(res, data, folder)
    return res
