"""The lecture's "new employee", after a Siamese run has trained: a new class from one example,
no retraining. A drawing (a query) goes to the reference it is most similar to, when that similarity
reaches the run's verification threshold (`core.lab.siamese`); below it the answer is "none of
these" (`UNKNOWN`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.images import prepare_drawing
from core.lab.common import LabResults
from core.lab.glyphs import SIDE
from core.lab.siamese import Siamese

UNKNOWN = -1      # a query no reference is similar enough to


def prepare(pixels: np.ndarray) -> np.ndarray:
    """An uploaded photo or scan of a drawing at the glyphs' size (`core.images.prepare_drawing`)."""
    return prepare_drawing(pixels, SIDE)


def load_model(res: LabResults) -> Siamese:
    from safetensors.torch import load_file

    net = Siamese(int(res.config["embedding"]), str(res.config["loss"]))
    net.load_state_dict(load_file(str(res.model_file())))
    return net.eval()


@torch.no_grad()
def classify(net: Siamese, references: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Similarity of each query to each reference, no retraining: references (K, S, S) and
    queries (Q, S, S) as floats 0..1 -> (Q, K), higher = more similar (for "binary", p(same))."""
    r = net.embed(torch.from_numpy(np.asarray(references, np.float32)).unsqueeze(1))   # (K, D)
    q = net.embed(torch.from_numpy(np.asarray(queries, np.float32)).unsqueeze(1))      # (Q, D)
    s = net.similarity(q[:, None].expand(-1, len(r), -1), r[None].expand(len(q), -1, -1))
    return net.readable(s).numpy()


def verification_threshold(res: LabResults) -> float | None:
    """The run's threshold (the similarity a match needs), or None for a run trained before it was kept."""
    verify = res.final.get("verify")
    return float(verify["threshold"]) if verify else None


def decide(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """Per query (rows of `scores`, (Q, K)), the most similar reference, or UNKNOWN where even that one
    is below `threshold` (None: always the most similar)."""
    best = scores.argmax(1)
    if threshold is None:
        return best
    return np.where(scores.max(1) >= threshold, best, UNKNOWN)


@dataclass(frozen=True)
class Gallery:
    """References (one image per class) and queries compared with them, no retraining."""

    references: np.ndarray      # (K, S, S) floats 0..1
    queries: np.ndarray         # (Q, S, S) floats 0..1
    truth: np.ndarray           # (Q,) the reference each query belongs to, UNKNOWN for a stranger's
    scores: np.ndarray          # (Q, K) similarities, higher = more similar
    threshold: float | None = None   # the similarity a match needs; None: the most similar always wins

    @property
    def predicted(self) -> np.ndarray:
        """(Q,) the reference each query goes to, or UNKNOWN."""
        return decide(self.scores, self.threshold)

    def recall(self) -> np.ndarray:
        """(K,) the fraction of each reference's queries that went to it."""
        return np.array([float((self.predicted[self.truth == k] == k).mean()) if (self.truth == k).any() else np.nan
                         for k in range(len(self.references))])

    def turned_away(self) -> float:
        """The fraction of strangers' drawings (classes with no reference) answered "none of these"."""
        strangers = self.truth == UNKNOWN
        return float((self.predicted[strangers] == UNKNOWN).mean()) if strangers.any() else float("nan")


def new_employee(res: LabResults, staff: list[int], newcomer: int | np.ndarray, hand: int = 0,
                 threshold: float | None = None, strangers: bool = False) -> Gallery:
    """The lecture's new employee: the references are one drawing of each `staff` class (unseen
    classes, numbered 0.. in the results' test images) by `hand`, plus the newcomer: another
    unseen class, or an image (S, S) of a class the network has never seen at all. The queries
    are every other drawing of those classes; the newcomer's reference is its only example. With
    `strangers`, the drawings of the other unseen classes (nobody on file) are queries too, their
    truth UNKNOWN. A query goes to its most similar reference when that reaches `threshold`."""
    a = res.arrays
    images, labels, hands = a["test_images"].astype(np.float32) / 255, a["test_labels"], a["test_hands"]
    classes = np.unique(labels)
    known = list(staff) + ([int(newcomer)] if isinstance(newcomer, (int, np.integer)) else [])
    members = [np.flatnonzero(labels == classes[c]) for c in known]
    refs, queries, truth = [], [], []
    for k, m in enumerate(members):
        mine = m[hands[m] == hand]
        ref = int(mine[0]) if len(mine) else int(m[0])
        refs.append(images[ref])
        rest = m[m != ref]
        queries.append(images[rest])
        truth += [k] * len(rest)
    if not isinstance(newcomer, (int, np.integer)):
        refs.append(np.asarray(newcomer, np.float32))
    if strangers:
        others = np.flatnonzero(~np.isin(labels, classes[known]))
        queries.append(images[others])
        truth += [UNKNOWN] * len(others)
    net = load_model(res)
    q = np.concatenate(queries) if queries else np.zeros((0, SIDE, SIDE), np.float32)
    return Gallery(np.stack(refs), q, np.array(truth, dtype=int), classify(net, np.stack(refs), q), threshold)
