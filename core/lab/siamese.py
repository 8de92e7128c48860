"""A Siamese network learns a similarity function: one-shot learning on classes it never saw.

The lecture's "new employee": a classifier must be retrained for every new person, a Siamese
network needs one reference image. Two images go through the same encoder (one set of weights);
the network is trained on pairs to say whether they show the same class, on some classes only.
A new class then needs one example: a query goes to the class whose example it is most similar to.

Two ways to train the similarity (the user picks):

- "binary": Koch, Zemel & Salakhutdinov (2015), the paper the lecture cites: p(same) =
  sigmoid(w . |h1 - h2| + b), binary cross-entropy on same/different pairs.
- "contrastive": Hadsell, Chopra & LeCun (2006): embeddings on the unit sphere, distance
  d = ||h1 - h2||, loss y d^2 + (1 - y) max(0, m - d)^2 with margin m = 1.

N-way one-shot test (Lake et al. 2015, Koch et al. section 4.3): N unseen classes, one example of
each drawn by one hand (the support set), a query drawn by another hand from one of them; the
prediction is the most similar support image. Every method answers the same trials:

- the Siamese network;
- nearest neighbour on pixels (Euclidean distance);
- nearest neighbour on the features of a classifier (the same encoder with a softmax layer over
  the training classes, trained with the same recipe; cosine similarity of its encoder outputs);
- the Siamese network before training (the same initial weights), and chance, 1/N.

The trials and their scoring live in `core.lab.oneshot`; what a trained network does with a new
class (the new-employee demo) in `core.lab.new_employee`.

Verification ("is this anyone we know?"): a most-similar reference always exists, so a drawing of
nobody on file would still be given to someone. A match therefore needs a similarity at or above a
threshold, chosen after training on the training classes' same and different pairs (held-out
drawings against training drawings) as the one that best separates them (`oneshot.best_threshold`),
and saved with the results (`final["verify"]`); below it the answer is "none of these".

Data: generated glyphs (core.lab.glyphs; many characters in several handwritings, the held-out
characters are the unseen classes), or scikit-learn's digits (train on the first digits, test
one-shot on the last ones).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.common import Knob, check_knobs, save_arrays
from core.lab.glyphs import SIDE, glyphs
from core.lab.oneshot import Scorer, accuracy, best_threshold, cosine_score, make_trials, pixel_score, trial_scores
from core.train.data import digits, stratified_split
from core.train.events import Done, Phase, RunInfo, Snapshot
from core.train.context import JobContext
from core.train.loop import LoopConfig, Stepper, run_loop
from core.weights import WeightsUsed

MARGIN = 1.0            # contrastive margin, on unit-length embeddings (distances 0..2)
SHOW_TRIALS = 6         # trials per N whose images and scores the results keep
VERIFY_DIFFERENT = 50   # different-class partners per held-out drawing when the threshold is calibrated
DIGIT_CLASSES = 10


def parse_ways(text: str) -> tuple[int, ...]:
    """"5,20" -> (5, 20); ValueError with a sentence otherwise."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        ways = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise ValueError(f"ways must be whole numbers separated by commas, e.g. 5,20 (got {text!r})") from None
    if not ways:
        raise ValueError("ways needs at least one N, e.g. 5,20")
    if ways[0] < 2:
        raise ValueError(f"an N-way test needs N of at least 2 (got {ways[0]})")
    return ways


@dataclass(frozen=True)
class Config:
    """One Siamese run. Units in the comments."""

    data: str = "glyphs"        # "glyphs" (generated characters in several handwritings) or "digits"
    loss: str = "contrastive"   # "contrastive" (a distance) or "binary" (Koch et al.'s same/different head)
    characters: int = 200       # glyph characters generated (glyphs only)
    drawers: int = 10           # handwritings, one drawing of every character each (glyphs only)
    unseen: int = 40            # classes held out of training for the one-shot test (digits: the last ones)
    ways: str = "5,20"          # the N of each N-way one-shot test, comma-separated
    trials: int = 400           # one-shot trials per N (the same trials for every method)
    embedding: int = 64         # numbers in the encoder's output
    augment: bool = True        # random small rotations, scalings and shifts of training images (Koch et al.'s distortions)
    epochs: int = 10            # passes over the training images (each one an anchor once per epoch)
    batch_size: int = 64        # anchors per step: each pairs with a drawing of its class and with every other anchor
    lr: float = 3e-3            # peak LR of the one-cycle schedule (AdamW)
    seed: int = 0               # data, split, trials, initialisation, pairs
    task: ClassVar[str] = "siamese"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "data": Knob("Data", choices=("glyphs", "digits"),
                     names={"glyphs": "generated glyphs", "digits": "handwritten digits"},
                     help="Glyphs: many generated characters, each drawn in several handwritings (like Omniglot, "
                          "the paper's data). Digits: train on the first digits, test one-shot on the last ones."),
        "loss": Knob("Similarity", choices=("contrastive", "binary"),
                     names={"binary": "same/different head (Koch et al.)", "contrastive": "contrastive distance"},
                     help="Koch et al.: p(same) = sigmoid(w·|h1 - h2| + b) with binary cross-entropy. Contrastive "
                          "(Hadsell et al. 2006): pull same pairs together, push different pairs beyond a margin."),
        "characters": Knob("Characters", 4, 1000, step=10),
        "drawers": Knob("Handwritings per character", 2, 40),
        "unseen": Knob("Unseen classes (held out for the test)", 2, 998),
        "ways": Knob("N-way tests", help="N unseen classes, one example each, and a query from one of them."),
        "trials": Knob("Trials per test", 10, 5000, step=100, more=True),
        "embedding": Knob("Embedding size", 2, 1024, more=True),
        "augment": Knob("Distort training images (Koch et al.)", more=True),
        "epochs": Knob("Epochs", 1, 200),
        "batch_size": Knob("Batch size (anchors per step)", 2, 1024, more=True),
        "lr": Knob("Peak learning rate", 1e-6, 1, whole=False, rate=True),
        "seed": Knob("Seed (data, split, trials, initialisation)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_knobs(problems, self)
        total = DIGIT_CLASSES if self.data == "digits" else self.characters
        what = "digits" if self.data == "digits" else f"{self.characters} characters"
        unseen_ok = isinstance(self.unseen, int) and 2 <= self.unseen <= total - 2
        if not unseen_ok:
            problems.append(f"unseen must be a whole number from 2 to {total - 2} with {what}: at least two classes to "
                            f"test on and two to train on (got {self.unseen!r})")
        try:
            ways = parse_ways(self.ways)
            if unseen_ok and ways[-1] > self.unseen:
                problems.append(f"{ways[-1]}-way one-shot needs {ways[-1]} unseen classes but only {self.unseen} are "
                                f"held out ({what}); lower ways or raise unseen")
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))

    def n_classes(self) -> int:
        return DIGIT_CLASSES if self.data == "digits" else self.characters


# --- data ----------------------------------------------------------------------------------------

@dataclass
class PairData:
    """Grey images (N, 1, S, S) floats 0..1, class labels (N,), and the hand that drew each (N,;
    for the digits, whose writers are unknown, every image its own hand)."""

    images: torch.Tensor
    labels: torch.Tensor
    hands: torch.Tensor


def load_data(cfg: Config) -> PairData:
    if cfg.data == "digits":
        d = digits(SIDE)
        return PairData(d.images[:, :1].float() / 255, d.labels, torch.arange(len(d.labels)))
    g = glyphs(cfg.characters, cfg.drawers, cfg.seed)
    return PairData(g.images.float() / 255, g.labels, g.drawers)


def split_classes(cfg: Config) -> tuple[list[int], list[int]]:
    """(training classes, unseen classes): the last `unseen` classes are held out."""
    n = cfg.n_classes()
    return list(range(n - cfg.unseen)), list(range(n - cfg.unseen, n))


# --- the network -----------------------------------------------------------------------------------

def encoder(embedding: int) -> nn.Sequential:
    """Koch et al.'s encoder scaled to 28x28: convolutions and max-pooling, then one dense layer."""
    def stage(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*stage(1, 32), *stage(32, 64), *stage(64, 64),    # (N, 64, 3, 3)
                         nn.Flatten(), nn.Linear(64 * 3 * 3, embedding))   # (N, embedding)


class Siamese(nn.Module):
    """One encoder for both images; the similarity is the loss's."""

    def __init__(self, embedding: int = 64, loss: str = "binary") -> None:
        super().__init__()
        self.loss_kind = loss
        self.encoder = encoder(embedding)
        self.head = nn.Linear(embedding, 1) if loss == "binary" else None   # Koch's weighted L1 distance

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)                                                 # (N, D)
        return F.normalize(h, dim=1) if self.head is None else h

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Embeddings (..., D) twice -> (...): a logit of p(same) for "binary", minus the distance
        for "contrastive"; higher = more similar either way."""
        if self.head is not None:
            return self.head((a - b).abs()).squeeze(-1)
        return -(a - b).norm(dim=-1)

    def readable(self, s: torch.Tensor) -> torch.Tensor:
        """A similarity as the page shows it: p(same) (the sigmoid of the logit) for "binary", minus
        the distance for "contrastive". Monotone, so the most similar stays the most similar."""
        return torch.sigmoid(s) if self.head is not None else s

    def loss_same(self, s: torch.Tensor) -> torch.Tensor:
        """Per pair of the same class, from its similarity: -log p(same), or the squared distance."""
        return F.softplus(-s) if self.head is not None else s ** 2

    def loss_different(self, s: torch.Tensor) -> torch.Tensor:
        """Per pair of different classes: -log(1 - p(same)), or the squared shortfall from the margin."""
        return F.softplus(s) if self.head is not None else F.relu(MARGIN + s) ** 2

    def pair_loss(self, a: torch.Tensor, b: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """The mean loss of pairs of embeddings (N, D) labelled same (1) or different (0)."""
        s = self.similarity(a, b)
        return (same * self.loss_same(s) + (1 - same) * self.loss_different(s)).mean()

    def batch_loss(self, a: torch.Tensor, p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Anchors (B, D) with one image of their class each (B, D): B same pairs, and every pair of
        anchors of different classes as a different pair (up to B(B-1) of them, at no extra forward
        pass). Same and different pairs weigh half each."""
        s_same = self.similarity(a, p)                                       # (B,)
        s_all = self.similarity(a[:, None].expand(-1, len(a), -1), a[None].expand(len(a), -1, -1))  # (B, B)
        different = labels[:, None] != labels[None]
        if not different.any():
            return self.loss_same(s_same).mean()
        return 0.5 * (self.loss_same(s_same).mean() + self.loss_different(s_all[different]).mean())

    def score(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Scorer over embeddings: (T, D), (T, N, D) -> (T, N)."""
        return self.similarity(q[:, None].expand_as(s), s)


class Classifier(nn.Module):
    """The baseline: the same encoder with a softmax layer over the training classes."""

    def __init__(self, embedding: int, classes: int) -> None:
        super().__init__()
        self.encoder = encoder(embedding)
        self.fc = nn.Linear(embedding, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.encoder(x)))


@torch.no_grad()
def embed_all(f: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, x: torch.Tensor,
              batch: int = 512) -> torch.Tensor:
    """f over x in eval mode, in batches; restores the model's mode."""
    was = model.training
    model.eval()
    try:
        return torch.cat([f(x[i:i + batch]) for i in range(0, len(x), batch)])
    finally:
        model.train(was)


def distort(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image (N, 1, S, S) rotated by up to 10 degrees, scaled by 0.9-1.1 and shifted by up to
    2 pixels, independently: Koch et al.'s affine distortions, milder."""
    n = len(x)
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 2 / (x.shape[-1] / 2)  # 2 px in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)   # (N, S, S, 2)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


class PairSampler:
    """For each anchor, one image of its class (another one) and one of a different class."""

    def __init__(self, labels: torch.Tensor, seed: int) -> None:
        self.labels = labels
        self.order = torch.argsort(labels, stable=True)                     # images grouped by class
        counts = torch.bincount(labels)
        self.count = counts
        self.start = torch.cumsum(counts, 0) - counts
        self.rank = torch.empty_like(labels)
        self.rank[self.order] = torch.arange(len(labels)) - self.start[labels[self.order]]
        self.classes = torch.nonzero(counts).flatten()
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.labels[idx]
        k = (torch.rand(len(idx), generator=self.g) * (self.count[c] - 1)).long()
        k = k + (k >= self.rank[idx]).long()                                 # skip the anchor itself
        pos = self.order[self.start[c] + k]
        pos_of_c = torch.searchsorted(self.classes, c)
        shift = 1 + (torch.rand(len(idx), generator=self.g) * (len(self.classes) - 1)).long()
        other = self.classes[(pos_of_c + shift) % len(self.classes)]         # any class but c
        neg = self.order[self.start[other] + (torch.rand(len(idx), generator=self.g) * self.count[other]).long()]
        return pos, neg


@torch.no_grad()
def verification_pairs(net: Siamese, x_held: torch.Tensor, y_held: torch.Tensor, x_train: torch.Tensor,
                       y_train: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Readable similarities of same and different pairs of the training classes, for the threshold:
    each held-out drawing (never trained on) with every training drawing of its class, and with
    VERIFY_DIFFERENT training drawings of other classes (a fixed draw). Returns (same, different)."""
    h = embed_all(net.embed, net, x_held)                                   # (M, D)
    t = embed_all(net.embed, net, x_train)                                  # (T, D)
    g = torch.Generator().manual_seed(seed)
    same, different = [], []
    for i in range(len(h)):
        mine = torch.nonzero(y_train == y_held[i]).flatten()
        other = torch.nonzero(y_train != y_held[i]).flatten()
        other = other[torch.randperm(len(other), generator=g)[:VERIFY_DIFFERENT].to(other.device)]
        for idx, out in ((mine, same), (other, different)):
            out.append(net.readable(net.similarity(h[i].expand(len(idx), -1), t[idx])).cpu())
    return torch.cat(same), torch.cat(different)


# --- training ------------------------------------------------------------------------------------

def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("drawing the glyphs" if cfg.data == "glyphs" else "loading data"))
    data = load_data(cfg)
    seen, unseen = split_classes(cfg)
    is_seen = data.labels < len(seen)
    tr_all = torch.nonzero(is_seen).flatten()
    # a tenth of the training classes' images checks the classifier on classes it knows
    tr_rel, va_rel = stratified_split(data.labels[tr_all], 0.1, cfg.seed)
    tr, va_seen = tr_all[tr_rel], tr_all[va_rel]
    test = torch.nonzero(~is_seen).flatten()
    x, y = data.images.to(dev), data.labels.to(dev)
    x_tr, y_tr, x_test = x[tr], y[tr], x[test]
    ways = parse_ways(cfg.ways)
    # per-epoch curves and the final numbers use different trials (nothing is selected on either)
    watch = {n: make_trials(data.labels[test], data.hands[test], n, min(cfg.trials, 200), cfg.seed + 1) for n in ways}
    final_trials = {n: make_trials(data.labels[test], data.hands[test], n, cfg.trials, cfg.seed + 2) for n in ways}
    g = torch.Generator().manual_seed(cfg.seed)
    anchor_rel = torch.randint(len(test), (256,), generator=g)
    pos_rel, neg_rel = PairSampler(data.labels[test] - len(seen), cfg.seed)(anchor_rel)
    val_pairs = (test[anchor_rel], test[pos_rel], test[neg_rel])     # fixed same/different pairs on unseen classes

    # --- the Siamese network -------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    net = Siamese(cfg.embedding, cfg.loss).to(dev)
    feats0 = embed_all(net.embed, net, x_test)
    untrained = {n: accuracy(trial_scores(feats0, t, net.score), t) for n, t in final_trials.items()}
    ctx.emit(RunInfo(weights=WeightsUsed("random", "random"), n_train=len(tr), n_val=len(test),
                     trainable=sum(p.numel() for p in net.parameters()), frozen=0, series="siamese"))
    sampler = PairSampler(data.labels[tr], cfg.seed)
    epoch = [0]

    aug = torch.Generator().manual_seed(cfg.seed)

    def batch(images: torch.Tensor) -> torch.Tensor:
        return distort(images, aug) if cfg.augment else images

    def siamese_loss(idx: torch.Tensor) -> torch.Tensor:
        pos, _ = sampler(idx.cpu())
        h = net.embed(batch(torch.cat([x_tr[idx], x_tr[pos.to(dev)]])))   # (2B, D)
        a, p = h.chunk(2)
        return net.batch_loss(a, p, y_tr[idx])

    def watch_accuracy(feats: torch.Tensor, score: Scorer) -> dict[str, float]:
        return {f"one_shot_{n}": accuracy(trial_scores(feats, t, score), t) for n, t in watch.items()}

    @torch.no_grad()
    def siamese_eval() -> tuple[float, dict[str, float]]:
        feats = embed_all(net.embed, net, x_test)
        a, p, n = (embed_all(net.embed, net, x[i]) for i in val_pairs)
        same = torch.cat([torch.ones(len(a)), torch.zeros(len(a))]).to(dev)
        val_loss = float(net.pair_loss(torch.cat([a, a]), torch.cat([p, n]), same))
        epoch[0] += 1
        t = watch[ways[0]]
        k = 0  # the first watched trial, every epoch
        ctx.emit(Snapshot(epoch[0], {"support": x_test[t.support[k], 0].cpu().numpy().astype(np.float16),
                                     "query": x_test[t.query[k], 0].cpu().numpy().astype(np.float16),
                                     "scores": net.readable(trial_scores(feats, t, net.score)[k]).cpu().numpy(),
                                     "answer": np.array([int(t.answer[k])])}, series="siamese"))
        return val_loss, watch_accuracy(feats, net.score)

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    stepper = Stepper(loss=siamese_loss, evaluate=siamese_eval, train_mode=net.train, n_train=len(tr), device=dev)
    t_model = time.perf_counter()
    last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit, ctx.should_stop,
                    series="siamese")
    ctx.emit(Done(metrics=last.metrics, seconds=time.perf_counter() - t_model, series="siamese"))
    # "None of these": the similarity a match needs, chosen where the answers are known (the training
    # classes' held-out drawings), never on the unseen classes the one-shot test and the demo use
    ctx.emit(Phase("calibrating the same/different threshold"))
    v_same, v_diff = verification_pairs(net, x[va_seen], y[va_seen], x_tr, y_tr, cfg.seed)
    verify = best_threshold(v_same, v_diff)

    # --- the classifier baseline, the same encoder and recipe ------------------------------------
    torch.manual_seed(cfg.seed)
    clf = Classifier(cfg.embedding, len(seen)).to(dev)
    ctx.emit(RunInfo(weights=WeightsUsed("random", "random"), n_train=len(tr), n_val=len(va_seen),
                     trainable=sum(p.numel() for p in clf.parameters()), frozen=0, series="classifier"))
    x_vs, y_vs = x[va_seen], y[va_seen]

    def clf_loss(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(clf(batch(x_tr[idx])), y_tr[idx])

    @torch.no_grad()
    def clf_eval() -> tuple[float, dict[str, float]]:
        logits = embed_all(clf, clf, x_vs)
        feats = embed_all(clf.encoder, clf, x_test)
        return float(F.cross_entropy(logits, y_vs)), {**watch_accuracy(feats, cosine_score),
                                                      "seen_acc": float((logits.argmax(1) == y_vs).float().mean())}

    opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=1e-4)
    stepper = Stepper(loss=clf_loss, evaluate=clf_eval, train_mode=clf.train, n_train=len(tr), device=dev)
    t_model = time.perf_counter()
    last_clf = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit,
                        ctx.should_stop, series="classifier")
    ctx.emit(Done(metrics=last_clf.metrics, seconds=time.perf_counter() - t_model, series="classifier"))

    # --- the one-shot test: every method on the same trials ---------------------------------------
    ctx.emit(Phase("one-shot trials"))
    feats = embed_all(net.embed, net, x_test)
    clf_feats = embed_all(clf.encoder, clf, x_test)
    with torch.no_grad():
        scores = {n: {"siamese": net.readable(trial_scores(feats, t, net.score)).cpu(),
                      "pixels": trial_scores(x_test, t, pixel_score).cpu(),
                      "classifier": trial_scores(clf_feats, t, cosine_score).cpu()} for n, t in final_trials.items()}
    x_test_cpu = x_test.cpu()
    acc = {m: {str(n): accuracy(scores[n][m], final_trials[n]) for n in ways} for m in ("siamese", "pixels", "classifier")}
    from safetensors.torch import save_file

    save_file({k: v.contiguous().cpu() for k, v in net.state_dict().items()}, str(ctx.out_dir / "model.safetensors"))
    shown = {}
    for n, t in final_trials.items():
        shown[f"support_{n}"] = t.support[:SHOW_TRIALS].numpy()
        shown[f"query_{n}"] = t.query[:SHOW_TRIALS].numpy()
        shown[f"answer_{n}"] = t.answer[:SHOW_TRIALS].numpy()
        for m in ("siamese", "pixels", "classifier"):
            shown[f"scores_{m}_{n}"] = scores[n][m][:SHOW_TRIALS].numpy().astype(np.float32)
    save_arrays(ctx.out_dir, test_images=(x_test_cpu[:, 0].numpy() * 255).round().astype(np.uint8),
                test_labels=data.labels[test].numpy(), test_hands=data.hands[test].numpy(),
                ways=np.array(ways), verify_same=v_same.numpy().astype(np.float32),
                verify_different=v_diff.numpy().astype(np.float32), **shown)
    final = {"one_shot": acc["siamese"], "baselines": {"pixels": acc["pixels"], "classifier": acc["classifier"]},
             "untrained": {str(n): v for n, v in untrained.items()}, "chance": {str(n): 1 / n for n in ways},
             "loss": cfg.loss, "data": cfg.data, "train_classes": len(seen), "unseen_classes": len(unseen),
             "seen_acc": last_clf.metrics["seen_acc"], "verify": asdict(verify),
             "seconds": round(time.perf_counter() - t0, 2)}
    return final


def summary(final: dict) -> str:
    parts = [f"{n}-way {a:.0%} (pixels {final['baselines']['pixels'][n]:.0%}, classifier features "
             f"{final['baselines']['classifier'][n]:.0%}, chance {1 / int(n):.0%})" for n, a in final["one_shot"].items()]
    return f"one-shot on {final['unseen_classes']} unseen classes: " + "; ".join(parts)
