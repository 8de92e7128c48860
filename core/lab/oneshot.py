"""The N-way one-shot protocol (Lake et al. 2015; Koch et al. 2015, section 4.3): trials drawn from
an image set, how every method scores them, and the accuracy. N classes, one example of each drawn
by one hand (the support set), a query drawn by another hand from one of them; the prediction is
the most similar support image. The Siamese network and its baselines (pixels, a classifier's
features, the untrained network, chance) all answer the same trials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Trials:
    """N-way one-shot trials, as indices into one image set: the support set (T, N), one image
    of each of N classes; the query (T,); and the position of the query's class in the support (T,)."""

    support: torch.Tensor
    query: torch.Tensor
    answer: torch.Tensor

    @property
    def ways(self) -> int:
        return self.support.shape[1]


def make_trials(labels: torch.Tensor, hands: torch.Tensor, ways: int, count: int, seed: int) -> Trials:
    """`count` N-way trials over the classes present in `labels`. Lake's protocol where hands are
    known: the support images come from one hand, the query from another; the query's class sits
    at a random position of the support set."""
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    if ways > len(classes):
        raise ValueError(f"{ways}-way trials need {ways} classes; there are {len(classes)}")
    by_class = {int(c): torch.nonzero(labels == c).flatten() for c in classes}
    hand_ids = hands.unique()
    support, query, answer = [], [], []
    for _ in range(count):
        chosen = classes[torch.randperm(len(classes), generator=g)[:ways]]
        pick = int(torch.randint(ways, (1,), generator=g))
        hand = hand_ids[int(torch.randint(len(hand_ids), (1,), generator=g))]
        row = []
        for c in chosen.tolist():
            members = by_class[c]
            same_hand = members[hands[members] == hand]
            pool = same_hand if len(same_hand) else members
            row.append(int(pool[int(torch.randint(len(pool), (1,), generator=g))]))
        members = by_class[int(chosen[pick])]
        others = members[(hands[members] != hands[row[pick]]) & (members != row[pick])]
        pool = others if len(others) else members[members != row[pick]]
        query.append(int(pool[int(torch.randint(len(pool), (1,), generator=g))]))
        support.append(row)
        answer.append(pick)
    return Trials(torch.tensor(support), torch.tensor(query), torch.tensor(answer))


Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (T, D) queries, (T, N, D) support -> (T, N)


def trial_scores(feats: torch.Tensor, trials: Trials, score: Scorer) -> torch.Tensor:
    """(T, N) similarity of each trial's query to each support image, higher = more similar."""
    return score(feats[trials.query], feats[trials.support])


def accuracy(scores: torch.Tensor, trials: Trials) -> float:
    """The fraction of trials whose most similar support image is the query's class."""
    return float((scores.argmax(1).cpu() == trials.answer).float().mean())


def pixel_score(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Minus the Euclidean distance between flattened images."""
    return -(q.flatten(1)[:, None] - s.flatten(2)).norm(dim=-1)


def cosine_score(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(q[:, None], s, dim=-1)


# --- verification: "same" or "none of these" ----------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    """The similarity at or above which two images count as the same class, chosen on pairs whose
    answer is known, and how well it separated them there."""

    threshold: float            # the score's own units: p(same), or minus a distance
    balanced_accuracy: float    # mean of the two rates below
    same_accepted: float        # fraction of same pairs at or above the threshold
    different_rejected: float   # fraction of different pairs below it
    same_pairs: int
    different_pairs: int


def best_threshold(same: torch.Tensor, different: torch.Tensor) -> Verification:
    """The threshold that best separates same pairs (scores `same`) from different pairs (`different`):
    it maximises the balanced accuracy, the mean of the same pairs accepted and the different pairs
    rejected (Youden's J over two), so that the many more different pairs do not outvote the same ones.
    Candidates are the midpoints between neighbouring distinct scores (and one past each end)."""
    s, d = same.double().flatten(), different.double().flatten()
    if not len(s) or not len(d):
        raise ValueError("a threshold needs same pairs and different pairs")
    values = torch.cat([s, d]).unique()                                       # sorted
    cands = torch.cat([values[:1] - 1, (values[1:] + values[:-1]) / 2, values[-1:] + 1])
    s_sorted, d_sorted = s.sort().values, d.sort().values
    accepted = 1 - torch.searchsorted(s_sorted, cands, side="left").double() / len(s)   # same >= t
    rejected = torch.searchsorted(d_sorted, cands, side="left").double() / len(d)       # different < t
    bal = (accepted + rejected) / 2
    i = int(bal.argmax())
    return Verification(float(cands[i]), float(bal[i]), float(accepted[i]), float(rejected[i]), len(s), len(d))
