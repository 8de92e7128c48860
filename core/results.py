"""What a finished run leaves on disk, and reading it back: the trained model as safetensors
with a small JSON (classes, preprocessing), the per-epoch metrics as CSV, and the validation
details the results view needs (confusion matrix, per-image losses, the images themselves)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from core.data import ImageSet
from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.training import RunResult


def save_results(res: RunResult, data: ImageSet, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if res.model is not None:
        save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "model.json").write_text(json.dumps({
        "arch": res.config["arch"], "scenario": res.config["scenario"], "classes": res.classes,
        "weights": res.weights_note, "config": res.config,
        "preprocessing": {"image_size": res.config["image_size"], "scale": "value / 255",
                          "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "val_acc": res.val_acc}, indent=1))
    buf = io.StringIO()
    rows = res.metrics_rows()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "metrics.csv").write_text(buf.getvalue())
    (out / "results.json").write_text(json.dumps({
        "val_acc": res.val_acc, "val_loss": res.val_loss, "confusion": res.confusion, "val_losses": res.val_losses,
        "val_pred": res.val_pred, "classes": res.classes, "seconds": res.seconds}))
    torch.save({"images": data.images[res.val_idx].clone(), "labels": data.labels[res.val_idx].clone()},
               out / "val.pt")


@dataclass
class Results:
    """A finished run read back from its folder."""

    folder: Path
    summary: dict[str, Any]
    model_info: dict[str, Any]
    val_images: torch.Tensor     # (N, 3, S, S) uint8
    val_labels: torch.Tensor

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """(true, predicted, count) of the largest off-diagonal cells."""
        cm, names = self.summary["confusion"], self.summary["classes"]
        pairs = [(names[i], names[j], cm[i][j]) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i][j]]
        return sorted(pairs, key=lambda t: -t[2])[:k]

    def top_losses(self, k: int = 8) -> list[int]:
        """Indices (into the validation set) of the k highest losses."""
        losses = torch.tensor(self.summary["val_losses"])
        return losses.argsort(descending=True)[:k].tolist()


def load_results(folder: str | Path) -> Results | None:
    """None when the run left no results (failed, cancelled, LR finder)."""
    f = Path(folder)
    if not (f / "results.json").is_file():
        return None
    val = torch.load(f / "val.pt", weights_only=True)
    return Results(f, json.loads((f / "results.json").read_text()), json.loads((f / "model.json").read_text()),
                   val["images"], val["labels"])
