"""Transfer learning: the lecture's three scenarios and fine-tuning, as one engine with no UI.

`fit(config, data, device, on_event, should_stop)` trains and reports events (dicts with a
"type": "info", "step", "epoch", "done"); it raises `Diverged` on a NaN or infinite loss and
`Cancelled` when `should_stop()` turns true. The Streamlit page runs it in a worker process
(core.jobs); the CLI (`python -m core train`) runs it directly.

Scenarios (lecture: "Transfer learning"):
- "1": replace and train only the last FC layer; everything else frozen.
- "2": replace the last FC layer by a small MLP head (more FC layers); encoder frozen.
- "3": frozen encoder as a fixed feature extractor; logistic regression or k-nearest neighbours
  on its cached features.
- "finetune": train everything (or from a chosen stage on), with discriminative learning rates
  as fast.ai's `slice(lo, hi)`: geometrically spaced from `lr_body` (first stage) to `lr` (head).

Frozen BatchNorm layers stay in eval mode, keeping their (ImageNet) running statistics: a small
dataset's batches would otherwise overwrite them while the weights around them cannot adapt.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import registry
from core.data import ImageSet, limit_per_class, stratified_split
from core.images import IMAGENET_MEAN, IMAGENET_STD

SCENARIOS = {"1": "replace and train the last FC layer", "2": "replace more FC layers (MLP head)",
             "3": "fixed feature extractor + classic classifier", "finetune": "fine-tune (discriminative LRs)"}
ENCODERS = ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "vgg16", "alexnet_torchvision", "googlenet"]

Event = dict[str, Any]


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Cancelled(RuntimeError):
    """The user cancelled the run."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Units in the comments."""

    dataset: str = "digits"            # "digits", "shapes", "zip" (bytes passed separately) or a
                                       # torchvision set: "cifar10", "flowers102", "pets"
    arch: str = "resnet18"             # registry name of the encoder
    weights: str = "imagenet"          # "imagenet" (when cached), "starter" (ours, resnet18), "random"
    scenario: str = "1"                # key of SCENARIOS
    epochs: int = 3                    # passes over the training set
    batch_size: int = 64               # images per step
    lr: float = 3e-3                   # peak LR of the one-cycle schedule (the head's in fine-tuning)
    lr_body: float = 3e-4              # fine-tuning: peak LR of the first stage
    unfreeze_from: str = ""            # fine-tuning: first stage to train ("" = all)
    labels_per_class: int = 0          # training images per class (0 = all)
    val_fraction: float = 0.2          # share of each class held out for validation
    image_size: int = 32               # pixels per side fed to the encoder
    shapes_classes: int = 6            # shapes dataset: classes
    shapes_per_class: int = 100        # shapes dataset: images per class
    classifier: str = "logreg"         # scenario 3: "logreg" or "knn"
    augment: bool = False              # random shifts; off lets scenarios 1 and 2 cache the frozen features
    weight_decay: float = 1e-4         # AdamW weight decay
    seed: int = 0                      # data split, initialisation, augmentation
    log_every: int = 1                 # steps between "step" events (each costs a host sync on GPU)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the model ------------------------------------------------------------------------------------

def _set_child(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, new)


def stages(model: nn.Module, head: str) -> list[tuple[str, list[nn.Parameter]]]:
    """Top-level children with parameters, in order, the head's stage last."""
    top_head = head.split(".")[0]
    out = [(n, list(m.parameters())) for n, m in model.named_children() if n != top_head]
    out = [(n, p) for n, p in out if p]
    out.append((top_head, list(model.get_submodule(top_head).parameters())))
    return out


@dataclass
class TransferModel:
    """A model ready for one scenario, and what was done to it."""

    model: nn.Module
    head: str                      # dotted path of the new head
    in_features: int
    weights_note: str
    stage_names: list[str]


def build_transfer_model(cfg: TrainConfig, num_classes: int) -> TransferModel:
    """An encoder from the registry with a new head for `num_classes`, frozen as the scenario says."""
    from core.weights import build_model

    spec = registry.get(cfg.arch)
    if spec.classifier is None:
        raise ValueError(f"{spec.title} has no classifier to replace")
    check_input(cfg)
    torch.manual_seed(cfg.seed)
    model, note = build_model(cfg.arch, pretrained=cfg.weights == "imagenet")
    if cfg.weights == "starter":
        from core.pretrain import load_starter

        if cfg.arch != "resnet18":
            raise ValueError("the starter weights are a ResNet-18: choose resnet18 as the encoder")
        note = load_starter(model)
    if hasattr(model, "aux_logits") and getattr(model, "aux1", None) is not None:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    old = model.get_submodule(spec.classifier)
    d = old.in_features
    if cfg.scenario == "2":
        head: nn.Module = nn.Sequential(nn.Linear(d, 256), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(256, num_classes))
    else:
        head = nn.Linear(d, num_classes)
    _set_child(model, spec.classifier, head)
    model.requires_grad_(cfg.scenario == "finetune")
    head.requires_grad_(True)
    names = [n for n, _ in stages(model, spec.classifier)]
    if cfg.scenario == "finetune" and cfg.unfreeze_from:
        if cfg.unfreeze_from not in names:
            raise ValueError(f"unknown stage {cfg.unfreeze_from!r}; stages: {', '.join(names)}")
        for n in names[:names.index(cfg.unfreeze_from)]:
            model.get_submodule(n).requires_grad_(False)
    return TransferModel(model, spec.classifier, d, note, names)


def check_input(cfg: TrainConfig) -> None:
    """Raises ValueError (with the analysis engine's explanation) when the encoder cannot run at
    the configured image size, e.g. AlexNet at 32x32."""
    from core.analysis import AnalysisError, summarize

    try:
        summarize(cfg.arch, (3, cfg.image_size, cfg.image_size))
    except AnalysisError as e:
        raise ValueError(f"{registry.get(cfg.arch).title} cannot train at {cfg.image_size}x{cfg.image_size}: "
                         f"{e}") from None


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except BatchNorm layers whose parameters are frozen (see the module doc)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def param_groups(tm: TransferModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group per stage with trainable parameters. Fine-tuning spaces the peak LRs
    geometrically from `lr_body` to `lr` (fast.ai's slice); other scenarios train the head at `lr`."""
    trainable = [(n, [p for p in ps if p.requires_grad]) for n, ps in stages(tm.model, tm.head)]
    trainable = [(n, ps) for n, ps in trainable if ps]
    k = len(trainable)
    groups = []
    for i, (n, ps) in enumerate(trainable):
        lr = cfg.lr if k == 1 or cfg.scenario != "finetune" else cfg.lr_body * (cfg.lr / cfg.lr_body) ** (i / (k - 1))
        groups.append({"params": ps, "lr": lr, "name": n})
    return groups


# --- data on the device -----------------------------------------------------------------------------

def normalise(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float, resized to size, ImageNet-normalised."""
    x = x_uint8.float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random shift of up to 1/8 of the side (reflect padding), the same for the batch: cheap,
    on the device, and safe for digits (no flips)."""
    s = x.shape[-1]
    p = max(1, s // 8)
    dx, dy = (int(v) for v in torch.randint(0, 2 * p + 1, (2,), generator=g))
    return F.pad(x, (p, p, p, p), mode="reflect")[..., dy:dy + s, dx:dx + s]


@dataclass
class Split:
    """Train/validation tensors on the device and the indices they came from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor


def make_split(data: ImageSet, cfg: TrainConfig, device: torch.device) -> Split:
    tr, va = stratified_split(data.labels, cfg.val_fraction, cfg.seed)
    tr = limit_per_class(tr, data.labels, cfg.labels_per_class, cfg.seed)
    return Split(data.images[tr].to(device), data.labels[tr].to(device), data.images[va].to(device),
                 data.labels[va].to(device), tr, va)


# --- the loop -------------------------------------------------------------------------------------------

def one_cycle(total_steps: int, max_lr: float) -> list[float]:
    """The LR of every step of PyTorch's OneCycleLR (cosine warm-up over 30%, then down)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, size: int, batch: int) -> torch.Tensor:
    model.eval()
    out = [model(normalise(x[i:i + batch], size)).float() for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.empty(0)


@dataclass
class RunResult:
    """What a finished run leaves behind."""

    config: dict[str, Any]
    classes: list[str]
    val_acc: float
    val_loss: float
    confusion: list[list[int]]            # [true][predicted]
    val_losses: list[float]               # per validation image
    val_pred: list[int]
    val_idx: list[int]                    # indices into the dataset
    seconds: float
    weights_note: str
    history: list[Event]
    model: nn.Module | None = None        # None for scenario 3

    def metrics_rows(self) -> list[dict[str, Any]]:
        return [e for e in self.history if e["type"] == "epoch"]


def _confusion(y: torch.Tensor, p: torch.Tensor, n: int) -> list[list[int]]:
    m = torch.zeros(n, n, dtype=torch.long)
    m.index_put_((y.cpu(), p.cpu()), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return m.tolist()


def fit(cfg: TrainConfig, data: ImageSet, device: str | torch.device = "cpu",
        on_event: Callable[[Event], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False) -> RunResult:
    """Trains one configuration on `data`; see the module doc."""
    dev = torch.device(device)
    history: list[Event] = []

    def emit(e: Event) -> None:
        history.append(e)
        if on_event:
            on_event(e)

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    sp = make_split(data, cfg, dev)
    n_cls = len(data.classes)
    tm = build_transfer_model(cfg, n_cls)
    model = tm.model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    emit({"type": "info", "weights": tm.weights_note, "train": len(sp.y_train), "val": len(sp.y_val),
          "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
          "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad)})
    if cfg.scenario == "3":
        return _fit_features(cfg, data, tm, sp, dev, emit, should_stop, t0, history)

    groups = param_groups(tm, cfg)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    cached = cfg.scenario in ("1", "2") and not cfg.augment
    if cached:
        # The frozen encoder (BatchNorm in eval mode) gives the same features every epoch:
        # compute them once and train only the head on them.
        head = model.get_submodule(tm.head)
        _set_child(model, tm.head, nn.Identity())
        feats_tr = _features(model, sp.x_train, cfg.image_size, 256, lambda n: None).to(dev)
        feats_va = _features(model, sp.x_val, cfg.image_size, 256, lambda n: None).to(dev)
        _set_child(model, tm.head, head)
        emit({"type": "info", "cached_features": list(feats_tr.shape)})
    steps_per_epoch = max(1, math.ceil(len(sp.y_train) / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=total)
    g = torch.Generator().manual_seed(cfg.seed)
    amp = dev.type == "cuda"
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model)
        perm = torch.randperm(len(sp.y_train), generator=g).to(dev)
        t_epoch, seen, loss_sum, logged = time.perf_counter(), 0, 0.0, 0
        for b in range(steps_per_epoch):
            if should_stop():
                emit({"type": "cancelled", "step": step})
                raise Cancelled("cancelled by the user")
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 1 and len(perm) > 1:
                # BatchNorm cannot normalise one value per channel (ResNet's 1x1 maps at 32 px)
                idx = perm[-2:]
            if cached:
                head.train()
                loss = F.cross_entropy(head(feats_tr[idx]), sp.y_train[idx])
            else:
                x = normalise(sp.x_train[idx], cfg.image_size)  # (B, 3, S, S)
                if cfg.augment:
                    x = _augment(x, g)
                if dev.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss = F.cross_entropy(model(x).float(), sp.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(idx)
            if step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                lv = float(loss.detach())  # the one host sync per logged step
                if not math.isfinite(lv):
                    emit({"type": "diverged", "step": step, "loss": lv})
                    raise Diverged(f"the loss became {lv} at step {step}: the learning rate ({cfg.lr:g}) is "
                                   "probably too high; try the LR finder or a 3-10x lower rate")
                loss_sum += lv * len(idx)
                logged += len(idx)
                elapsed = time.perf_counter() - t0
                emit({"type": "step", "step": step, "total_steps": total, "epoch": epoch, "loss": lv,
                      "lr": opt.param_groups[-1]["lr"], "elapsed": elapsed,
                      "images_per_s": seen / max(1e-9, time.perf_counter() - t_epoch),
                      "eta": elapsed / step * (total - step)})
        if cached:
            with torch.no_grad():
                head.eval()
                logits = head(feats_va).float()
        else:
            logits = _predict(model, sp.x_val, cfg.image_size, 256)
        val_loss = float(F.cross_entropy(logits, sp.y_val))
        val_acc = float((logits.argmax(1) == sp.y_val).float().mean())
        emit({"type": "epoch", "epoch": epoch, "train_loss": loss_sum / max(1, logged), "val_loss": val_loss,
              "val_acc": val_acc, "images_per_s": seen / (time.perf_counter() - t_epoch),
              "elapsed": time.perf_counter() - t0})
    logits = _predict(model, sp.x_val, cfg.image_size, 256)
    losses = F.cross_entropy(logits, sp.y_val, reduction="none")
    pred = logits.argmax(1)
    res = RunResult(cfg.to_dict(), data.classes, float((pred == sp.y_val).float().mean()), float(losses.mean()),
                    _confusion(sp.y_val, pred, n_cls), losses.cpu().tolist(), pred.cpu().tolist(),
                    sp.val_idx.tolist(), time.perf_counter() - t0, tm.weights_note, history, model.cpu().eval())
    emit({"type": "done", "val_acc": res.val_acc, "val_loss": res.val_loss, "seconds": res.seconds})
    return res


@torch.no_grad()
def _features(model: nn.Module, x: torch.Tensor, size: int, batch: int,
              progress: Callable[[int], None]) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        out.append(model(normalise(x[i:i + batch], size)).float().flatten(1).cpu())
        progress(min(len(x), i + batch))
    return torch.cat(out)


def _fit_features(cfg: TrainConfig, data: ImageSet, tm: TransferModel, sp: Split, dev: torch.device,
                  emit: Callable[[Event], None], should_stop: Callable[[], bool], t0: float,
                  history: list[Event]) -> RunResult:
    """Scenario 3: encoder features computed once, then a scikit-learn classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    enc = tm.model
    _set_child(enc, tm.head, nn.Identity())
    total = len(sp.y_train) + len(sp.y_val)

    def progress(done_offset: int):
        def f(n: int) -> None:
            if should_stop():
                emit({"type": "cancelled"})
                raise Cancelled("cancelled by the user")
            emit({"type": "step", "step": done_offset + n, "total_steps": total, "epoch": 1, "loss": float("nan"),
                  "lr": 0.0, "elapsed": time.perf_counter() - t0,
                  "images_per_s": (done_offset + n) / max(1e-9, time.perf_counter() - t0),
                  "eta": (time.perf_counter() - t0) / (done_offset + n) * (total - done_offset - n)})
        return f

    f_tr = _features(enc, sp.x_train, cfg.image_size, 256, progress(0))
    f_va = _features(enc, sp.x_val, cfg.image_size, 256, progress(len(sp.y_train)))
    clf = (KNeighborsClassifier(n_neighbors=min(5, len(f_tr))) if cfg.classifier == "knn"
           else LogisticRegression(max_iter=2000, C=1.0))
    mean, std = f_tr.mean(0), f_tr.std(0).clamp_min(1e-6)
    clf.fit(((f_tr - mean) / std).numpy(), sp.y_train.cpu().numpy())
    proba = torch.from_numpy(clf.predict_proba(((f_va - mean) / std).numpy())).float()
    y = sp.y_val.cpu()
    full = torch.zeros(len(y), len(data.classes))
    full[:, torch.as_tensor(clf.classes_)] = proba
    losses = -torch.log(full[torch.arange(len(y)), y].clamp_min(1e-12))
    pred = full.argmax(1)
    acc = float((pred == y).float().mean())
    emit({"type": "epoch", "epoch": 1, "train_loss": float("nan"), "val_loss": float(losses.mean()),
          "val_acc": acc, "images_per_s": total / (time.perf_counter() - t0), "elapsed": time.perf_counter() - t0})
    res = RunResult(cfg.to_dict(), data.classes, acc, float(losses.mean()), _confusion(y, pred, len(data.classes)),
                    losses.tolist(), pred.tolist(), sp.val_idx.tolist(), time.perf_counter() - t0, tm.weights_note,
                    history, None)
    emit({"type": "done", "val_acc": acc, "val_loss": res.val_loss, "seconds": res.seconds})
    return res


# --- learning-rate finder -----------------------------------------------------------------------------

def lr_find(cfg: TrainConfig, data: ImageSet, device: str | torch.device = "cpu", start: float = 1e-6,
            end: float = 1.0, steps: int = 60, on_event: Callable[[Event], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> tuple[list[float], list[float], float]:
    """Exponential LR sweep (Smith 2015, fast.ai's lr_find): one step per LR, smoothed loss.

    Stops early when the loss explodes (above 4x its minimum or not finite); see `suggest_lr`.
    """
    dev = torch.device(device)
    sp = make_split(data, cfg, dev)
    tm = build_transfer_model(cfg, len(data.classes))
    model = tm.model.to(dev)
    set_train_mode(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=start, weight_decay=cfg.weight_decay)
    gamma = (end / start) ** (1 / max(1, steps - 1))
    g = torch.Generator().manual_seed(cfg.seed)
    lrs, losses, avg, best = [], [], 0.0, math.inf
    for i in range(steps):
        if should_stop():
            raise Cancelled("cancelled by the user")
        lr = start * gamma ** i
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(sp.y_train), (min(cfg.batch_size, len(sp.y_train)),), generator=g).to(dev)
        x = normalise(sp.x_train[idx], cfg.image_size)
        loss = F.cross_entropy(model(x), sp.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            break
        avg = 0.9 * avg + 0.1 * lv if i else lv
        smooth = avg / (1 - 0.9 ** (i + 1)) if i else lv
        lrs.append(lr)
        losses.append(smooth)
        if on_event:
            on_event({"type": "step", "step": i + 1, "total_steps": steps, "lr": lr, "loss": smooth})
        best = min(best, smooth)
        if smooth > 4 * best and i > 5:
            break
    return lrs, losses, suggest_lr(lrs, losses)


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """A tenth of the LR at the lowest smoothed loss: fast.ai's rule of thumb, robust to the noisy
    start of the sweep. Always a finite, positive number."""
    if not lrs:
        return 1e-3
    s = float(lrs[int(np.argmin(losses))]) / 10
    return s if math.isfinite(s) and s > 0 else 1e-3


def replace_cfg(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of a config with some fields changed."""
    d = cfg.to_dict()
    d.update(changes)
    return TrainConfig(**d)


def advise(similar: bool, lots_of_data: bool) -> tuple[str, str]:
    """The lecture's 2x2 table: (scenario key, the lecture's words)."""
    table = {(True, False): ("1", "Very similar dataset, very little data: replace the top layer (last FC)."),
             (False, False): ("2", "Very different dataset, very little data: replace more FC layers."),
             (True, True): ("finetune", "Very similar dataset, a lot of data: replace the top layer and "
                                        "fine-tune a few layers."),
             (False, True): ("finetune", "Very different dataset, a lot of data: replace more FC layers and "
                                         "fine-tune a large number of layers.")}
    return table[(similar, lots_of_data)]


def load_dataset(cfg: TrainConfig, zip_bytes: bytes | None = None, download: bool = True) -> ImageSet:
    """The dataset a config names (a zip's bytes for "zip"); `download=False` never touches the
    network (the page's preview), leaving downloads to the training worker."""
    from core import data as d

    if cfg.dataset == "digits":
        return d.digits(cfg.image_size)
    if cfg.dataset == "shapes":
        return d.shapes(cfg.shapes_classes, cfg.shapes_per_class, cfg.seed, cfg.image_size)
    if cfg.dataset in d.TORCHVISION_SETS:
        return d.from_torchvision(cfg.dataset, d.data_root(), cfg.image_size, download=download)
    if cfg.dataset == "zip":
        if zip_bytes is None:
            raise ValueError("the zip dataset needs the zip's bytes")
        return d.from_zip(zip_bytes, cfg.image_size)
    raise ValueError(f"unknown dataset {cfg.dataset!r}")

