"""Transfer learning: the lecture's three scenarios and fine-tuning, as steps for the shared loop.

Scenarios (lecture: "Transfer learning"; their words and the 2x2 table live in `advice`):
- "1": replace and train only the last FC layer; everything else frozen.
- "2": replace the last FC layer by a small MLP head (more FC layers); encoder frozen.
- "3": frozen encoder as a fixed feature extractor; logistic regression or k-nearest neighbours
  on its features (no loop: scikit-learn fits the classifier).
- "finetune": train everything (or from a chosen stage on), with discriminative learning rates
  as fast.ai's `slice(lo, hi)`: geometrically spaced from `lr_body` (first stage) to `lr` (head).

Without augmentation, scenarios 1 and 2 see the same frozen features every epoch, so the encoder
runs once and the loop trains the head on the cached features. Frozen BatchNorm layers stay in
eval mode (see `loop.set_train_mode`).

`fit` takes the images in memory (`ImageSet`, put on the device once) or as JPEG files on disk
(`JpegFiles`): then every training batch is read and decoded from its files, every epoch, and
augmented on the device (`data.FileBatches`); the validation files are decoded once.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from core import registry
from core.images import normalise
from core.train.data import (BUILTIN_SETS, TORCHVISION_SETS, FileBatches, ImageSet, JpegFiles, crop_flip, decode_all,
                             limit_per_class, resize_each, stratified_split)
from core.train.events import Cancelled, Done, Epoch, Event, Note, Phase, RunInfo, Step
from core.train.loop import (LoopConfig, Stepper, learning_problem, predict, random_shift, run_loop,
                             set_train_mode)
from core.weights import WeightsKind, WeightsUsed, build_with

Scenario = Literal["1", "2", "3", "finetune"]
Classifier = Literal["logreg", "knn"]
Augmentation = Literal["shift", "crop_flip"]
Precision = Literal["auto", "fp32", "bf16"]
SCENARIO_KEYS: tuple[str, ...] = get_args(Scenario)
WEIGHT_KINDS: tuple[str, ...] = ("imagenet", "starter", "random")   # what a run can start from
ENCODERS = ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "vgg16", "alexnet_torchvision", "googlenet"]
IMAGE_SIZES = (16, 512)   # pixels per side a run accepts (the encoder may need more: check_input)
Emit = Callable[[Event], None]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Units in the comments. Construction checks every field (ValueError)."""

    dataset: str = "digits"            # "digits", "shapes", "zip" (bytes passed separately) or a
                                       # torchvision set: "cifar10", "flowers102", "pets"
    arch: str = "resnet18"             # registry name of the encoder (one of ENCODERS)
    weights: WeightsKind = "imagenet"  # "imagenet" (when cached), "starter" (ours, resnet18), "random"
    scenario: Scenario = "1"           # see the module doc
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
    classifier: Classifier = "logreg"  # scenario 3: logistic regression or k-nearest neighbours
    augment: bool = False              # augmented batches; off lets scenarios 1 and 2 cache the frozen features
    augmentation: Augmentation = "shift"  # with augment: "shift" (one random shift per batch, safe for
                                       # digits) or "crop_flip" (per image: RandomResizedCrop, 8-100% of
                                       # the area, aspect 3/4-4/3, then a horizontal flip half the time)
    precision: Precision = "auto"      # forward pass: "auto" (bf16 autocast on CUDA, fp32 elsewhere),
                                       # "fp32" or "bf16"
    weight_decay: float = 1e-4         # AdamW weight decay
    seed: int = 0                      # data split, initialisation, augmentation
    log_every: int = 1                 # steps between Step events (each costs a host sync on a GPU)

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_problems(c: TrainConfig) -> list[str]:
    """Every field out of range, as sentences; the page and the CLI both check through this."""
    out = []
    if c.dataset not in {*BUILTIN_SETS, *TORCHVISION_SETS}:
        out.append(f"unknown dataset {c.dataset!r}")
    if c.arch not in ENCODERS:
        out.append(f"unknown encoder {c.arch!r}; choose from {', '.join(ENCODERS)}")
    if c.weights not in WEIGHT_KINDS:
        out.append(f"weights must be one of {', '.join(WEIGHT_KINDS)}")
    if c.scenario not in SCENARIO_KEYS:
        out.append(f"scenario must be one of {', '.join(SCENARIO_KEYS)}")
    if c.classifier not in get_args(Classifier):
        out.append("classifier must be logreg or knn")
    if c.augmentation not in get_args(Augmentation):
        out.append(f"augmentation must be one of {', '.join(get_args(Augmentation))}")
    if c.precision not in get_args(Precision):
        out.append(f"precision must be one of {', '.join(get_args(Precision))}")
    for name, lo, hi in (("epochs", 1, 1000), ("batch_size", 1, 4096), ("shapes_classes", 2, 8),
                         ("shapes_per_class", 2, 5000), ("log_every", 1, 10**6),
                         ("image_size", *IMAGE_SIZES), ("labels_per_class", 0, 10**6)):
        v = getattr(c, name)
        if not (isinstance(v, int) and lo <= v <= hi):
            out.append(f"{name} must be a whole number from {lo} to {hi} (got {v!r})")
    for name in ("lr", "lr_body"):
        v = getattr(c, name)
        if not (math.isfinite(v) and 0 < v <= 10):
            out.append(f"{name} must be a number above 0 and at most 10 (got {v!r})")
    if not (math.isfinite(c.weight_decay) and 0 <= c.weight_decay < 1):
        out.append(f"weight_decay must be from 0 to 1 (got {c.weight_decay!r})")
    if not 0 < c.val_fraction < 1:
        out.append(f"val_fraction must be between 0 and 1 (got {c.val_fraction!r})")
    if c.weights == "starter" and c.arch != "resnet18":
        out.append("the starter weights are a ResNet-18: choose resnet18 as the encoder")
    return out


# --- the model ------------------------------------------------------------------------------------

def _set_child(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, new)


@contextmanager
def without_head(model: nn.Module, head: str) -> Iterator[nn.Module]:
    """The model with its head replaced by an identity (its features as output), restored after."""
    old = model.get_submodule(head)
    _set_child(model, head, nn.Identity())
    try:
        yield model
    finally:
        _set_child(model, head, old)


def stages(model: nn.Module, head: str) -> list[tuple[str, list[nn.Parameter]]]:
    """Top-level children with parameters, in order, the head's stage last."""
    top_head = head.split(".")[0]
    out = [(n, list(m.parameters())) for n, m in model.named_children() if n != top_head]
    out = [(n, p) for n, p in out if p]
    out.append((top_head, list(model.get_submodule(top_head).parameters())))
    return out


def stage_names(arch: str) -> list[str]:
    """The stages of an encoder, in order, the classifier's last: what "unfreeze from" offers."""
    spec = registry.get(arch)
    with torch.device("meta"):
        return [n for n, _ in stages(spec.build(), spec.classifier or "")]


@dataclass
class TransferModel:
    """A model ready for one scenario, and which weights it started from."""

    model: nn.Module
    head: str                      # dotted path of the new head
    weights: WeightsUsed


def build_transfer_model(cfg: TrainConfig, num_classes: int) -> TransferModel:
    """An encoder from the registry with a new head for `num_classes`, frozen as the scenario says."""
    spec = registry.get(cfg.arch)
    if spec.classifier is None:
        raise ValueError(f"{spec.title} has no classifier to replace")
    check_input(cfg)
    torch.manual_seed(cfg.seed)
    model, used = build_with(cfg.arch, cfg.weights)
    return TransferModel(with_new_head(model, cfg, num_classes), spec.classifier, used)


def transfer_skeleton(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """A run's network as `build_transfer_model` makes it, on the meta device and without weights: what
    the explorer analyses of a Studio run (the encoder with the run's head)."""
    from core.spec import weightless

    with weightless():
        return with_new_head(registry.get(cfg.arch).build(), cfg, num_classes)


def with_new_head(model: nn.Module, cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model with its classifier replaced by the scenario's head for `num_classes` (scenario 2: a small
    MLP; otherwise one linear layer) and frozen as the scenario says; GoogLeNet's auxiliary classifiers off."""
    spec = registry.get(cfg.arch)
    if hasattr(model, "aux_logits") and getattr(model, "aux1", None) is not None:
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    d = model.get_submodule(spec.classifier).in_features
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
    return model


def check_input(cfg: TrainConfig) -> None:
    """Raises ValueError (with the analysis engine's explanation) when the encoder cannot run at
    the configured image size, e.g. AlexNet at 32x32."""
    from core.analysis import AnalysisError, summarize

    try:
        summarize(cfg.arch, (3, cfg.image_size, cfg.image_size))
    except AnalysisError as e:
        raise ValueError(f"{registry.get(cfg.arch).title} cannot train at {cfg.image_size}x{cfg.image_size}: "
                         f"{e}") from None


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

@dataclass
class Split:
    """Train/validation tensors on the device, and the dataset indices of the validation images."""

    x_train: torch.Tensor    # (N, 3, S, S) uint8; empty when the training images are files
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    val_idx: torch.Tensor
    train_files: JpegFiles | None = None   # the training images as files, read every epoch


def split_indices(labels: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The (training, validation) dataset indices of a run: stratified by class, then at most
    `labels_per_class` training images per class."""
    tr, va = stratified_split(labels, cfg.val_fraction, cfg.seed)
    return limit_per_class(tr, labels, cfg.labels_per_class, cfg.seed), va


def make_split(data: ImageSet | JpegFiles, cfg: TrainConfig, device: torch.device) -> Split:
    tr, va = split_indices(data.labels, cfg)
    if isinstance(data, JpegFiles):
        val = decode_all(data.subset(va), cfg.image_size)
        return Split(torch.empty(0, 3, cfg.image_size, cfg.image_size, dtype=torch.uint8, device=device),
                     data.labels[tr].to(device), val.images.to(device), val.labels.to(device), va,
                     train_files=data.subset(tr))
    return Split(data.images[tr].to(device), data.labels[tr].to(device), data.images[va].to(device),
                 data.labels[va].to(device), va)


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, size: int, on_progress: Callable[[int], None],
             batch: int = 256) -> torch.Tensor:
    """(N, D) features of uint8 images on the model's device (the head removed by the caller),
    reporting the images done after each batch."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        out.append(model(normalise(x[i:i + batch], size)).float().flatten(1))
        on_progress(min(len(x), i + batch))
    return torch.cat(out)


def encoder_features(tm: TransferModel, sp: Split, cfg: TrainConfig, emit: Emit,
                     should_stop: Callable[[], bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's features of the training and validation images (head removed), with
    a "computing features" phase per batch; cancellable between batches."""
    n = len(sp.y_train) + len(sp.y_val)

    def progress(offset: int) -> Callable[[int], None]:
        def f(done: int) -> None:
            if should_stop():
                raise Cancelled("cancelled by the user")
            emit(Phase("computing features", offset + done, n))
        return f

    with without_head(tm.model, tm.head) as enc:
        return (features(enc, sp.x_train, cfg.image_size, progress(0)),
                features(enc, sp.x_val, cfg.image_size, progress(len(sp.y_train))))


# --- steps for the loop -------------------------------------------------------------------------------

def _accuracy_eval(logits_fn: Callable[[], torch.Tensor], y: torch.Tensor) -> Callable[[], tuple[float, dict[str, float]]]:
    def evaluate() -> tuple[float, dict[str, float]]:
        logits = logits_fn()
        return float(F.cross_entropy(logits, y)), {"acc": float((logits.argmax(1) == y).float().mean())}
    return evaluate


def head_stepper(tm: TransferModel, sp: Split, cfg: TrainConfig, dev: torch.device, emit: Emit,
                 should_stop: Callable[[], bool]) -> Stepper:
    """Scenarios 1 and 2 without augmentation: the frozen encoder runs once, the loop trains the
    head on the cached features."""
    head = tm.model.get_submodule(tm.head)
    f_tr, f_va = encoder_features(tm, sp, cfg, emit, should_stop)                # (N, D) each

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(f_tr[idx]), sp.y_train[idx])

    @torch.no_grad()
    def val_logits() -> torch.Tensor:
        head.eval()
        return head(f_va).float()

    return Stepper(loss=loss, evaluate=_accuracy_eval(val_logits, sp.y_val), train_mode=head.train,
                   n_train=len(sp.y_train), device=dev, counts_images=False)


def uses_bf16(cfg: TrainConfig, dev: torch.device) -> bool:
    """Whether the training forward pass runs under bf16 autocast."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")


def model_stepper(tm: TransferModel, sp: Split, cfg: TrainConfig, dev: torch.device) -> Stepper:
    """The whole model forward and backward on every step (fine-tuning, or any augmented run),
    on images in memory or read from files (`sp.train_files`)."""
    model = tm.model
    bf16 = uses_bf16(cfg, dev)
    g_aug = torch.Generator().manual_seed(cfg.seed + 1)

    def prepare(images: torch.Tensor, hw: torch.Tensor | None) -> torch.Tensor:
        """uint8 images (B, 3, H, W) -> the augmented, normalised batch (B, 3, S, S)."""
        if cfg.augment and cfg.augmentation == "crop_flip":
            # crop_flip returns floats in 0..255, which normalise takes as the uint8 they stand for
            x = normalise(crop_flip(images, cfg.image_size, g_aug, hw), cfg.image_size)
        else:
            x = normalise(images if hw is None else resize_each(images, hw, cfg.image_size), cfg.image_size)
            if cfg.augment:
                x = random_shift(x, g_aug)
        return x.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else x

    files = (FileBatches(sp.train_files, dev, prepare, cfg.batch_size, seed=cfg.seed)
             if sp.train_files is not None else None)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        x, y = files(idx) if files is not None else (prepare(sp.x_train[idx], None), sp.y_train[idx])
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return F.cross_entropy(model(x).float(), y)

    def train_mode() -> None:
        set_train_mode(model)
        if files is not None:
            files.new_epoch()

    return Stepper(loss=loss, evaluate=_accuracy_eval(lambda: predict(model, sp.x_val, cfg.image_size), sp.y_val),
                   train_mode=train_mode, n_train=len(sp.y_train),
                   # file batches are picked on the host: their indices name files
                   device=dev if files is None else torch.device("cpu"))


# --- a run ------------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    """What a finished run leaves behind."""

    config: TrainConfig
    classes: list[str]
    weights: WeightsUsed
    val_acc: float
    val_loss: float
    confusion: list[list[int]]            # [true][predicted]
    val_losses: list[float]               # per validation image
    val_pred: list[int]
    val_idx: list[int]                    # indices into the dataset
    seconds: float
    epochs: list[Epoch]
    model: nn.Module | None               # the trained model on the CPU; None for scenario 3


def _confusion(y: torch.Tensor, p: torch.Tensor, n: int) -> list[list[int]]:
    m = torch.zeros(n, n, dtype=torch.long)
    m.index_put_((y.cpu(), p.cpu()), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return m.tolist()


def fit(cfg: TrainConfig, data: ImageSet | JpegFiles, device: str | torch.device = "cpu",
        on_event: Emit = lambda e: None, should_stop: Callable[[], bool] = lambda: False) -> RunResult:
    """Trains one configuration on `data`: build the model, build its steps, run the loop."""
    dev = torch.device(device)
    cached = cfg.scenario in ("1", "2") and not cfg.augment   # the head trains on features computed once
    if isinstance(data, JpegFiles) and (cached or cfg.scenario == "3"):
        data = decode_all(data, cfg.image_size)                # features are computed once: decode once
    t0 = time.perf_counter()
    epochs: list[Epoch] = []

    def emit(e: Event) -> None:
        if isinstance(e, Epoch):
            epochs.append(e)
        on_event(e)

    torch.manual_seed(cfg.seed)
    sp = make_split(data, cfg, dev)
    emit(Phase("building the model"))
    tm = build_transfer_model(cfg, len(data.classes))
    model = tm.model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # one input shape per run: let cuDNN pick its fastest kernels
    emit(RunInfo(weights=tm.weights, n_train=len(sp.y_train), n_val=len(sp.y_val),
                 trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                 frozen=sum(p.numel() for p in model.parameters() if not p.requires_grad)))
    if cfg.scenario == "3":
        probs = _classic_classifier(tm, sp, cfg, emit, should_stop, t0)
    else:
        stepper = head_stepper(tm, sp, cfg, dev, emit, should_stop) if cached else model_stepper(tm, sp, cfg, dev)
        opt = torch.optim.AdamW(param_groups(tm, cfg), weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
        first: list[float] = []

        def watch(e: Event) -> None:
            if isinstance(e, Step) and not first:
                first.append(e.loss)
            emit(e)

        last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, cfg.log_every, cfg.seed), watch,
                        should_stop)
        problem = learning_problem(first[0] if first else None, last, 1 / len(data.classes), cfg.lr)
        if problem:
            emit(Note(problem, warn=True))
        probs = predict(model, sp.x_val, cfg.image_size).softmax(1)
    y = sp.y_val
    losses = -torch.log(probs[torch.arange(len(y), device=y.device), y].clamp_min(1e-12))
    pred = probs.argmax(1)
    res = RunResult(config=cfg, classes=data.classes, weights=tm.weights,
                    val_acc=float((pred == y).float().mean()), val_loss=float(losses.mean()),
                    confusion=_confusion(y, pred, len(data.classes)), val_losses=losses.cpu().tolist(),
                    val_pred=pred.cpu().tolist(), val_idx=sp.val_idx.tolist(), seconds=time.perf_counter() - t0,
                    epochs=epochs, model=None if cfg.scenario == "3" else model.cpu().eval())
    emit(Done(metrics={"acc": res.val_acc, "loss": res.val_loss}, seconds=res.seconds))
    return res


def _classic_classifier(tm: TransferModel, sp: Split, cfg: TrainConfig, emit: Emit,
                        should_stop: Callable[[], bool], t0: float) -> torch.Tensor:
    """Scenario 3: encoder features computed once, then a scikit-learn classifier. Returns the
    class probabilities of the validation images (N_val, classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    f_tr, f_va = (f.cpu() for f in encoder_features(tm, sp, cfg, emit, should_stop))
    emit(Phase(f"fitting {'k-nearest neighbours' if cfg.classifier == 'knn' else 'logistic regression'}"))
    clf = (KNeighborsClassifier(n_neighbors=min(5, len(f_tr))) if cfg.classifier == "knn"
           else LogisticRegression(max_iter=2000, C=1.0))
    mean, std = f_tr.mean(0), f_tr.std(0).clamp_min(1e-6)
    clf.fit(((f_tr - mean) / std).numpy(), sp.y_train.cpu().numpy())
    proba = torch.from_numpy(clf.predict_proba(((f_va - mean) / std).numpy())).float()
    n_cls = tm.model.get_submodule(tm.head).out_features
    full = torch.zeros(len(sp.y_val), n_cls)
    full[:, torch.as_tensor(clf.classes_)] = proba
    y = sp.y_val.cpu()
    losses = -torch.log(full[torch.arange(len(y)), y].clamp_min(1e-12))
    emit(Epoch(epoch=1, train_loss=float("nan"), val_loss=float(losses.mean()),
               metrics={"acc": float((full.argmax(1) == y).float().mean())}, images_per_s=None,
               elapsed=time.perf_counter() - t0))
    return full.to(sp.y_val.device)
