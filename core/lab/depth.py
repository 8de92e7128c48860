"""Plain vs residual: the degradation problem of the ResNet paper, trained live.

He et al. (2015), section 4.2 ("CIFAR-10 and Analysis"): a 3x3 convolution, then three stages of
n blocks of two 3x3 convolutions each, on maps of side S, S/2, S/4 with w, 2w, 4w filters (the
paper's w is 16), global average pooling and one fully connected layer: 6n + 2 weighted layers.
The first convolution of stages 2 and 3 has stride 2. The residual network adds each block's
input to its output; where the shape changes the shortcut is the paper's option A (subsample,
then pad the new channels with zeros), which has no parameters, so a plain network and its
residual twin have exactly the same parameters and cost.

Parameters of a depth-(6n+2) network with width w on 3-channel images and K classes:

    convolutions  27w + 18n w^2 + (18 + 36(2n - 1)) w^2 + (72 + 144(2n - 1)) w^2
    BatchNorm     2 (w + 2n (w + 2w + 4w))            (a scale and a shift per channel)
    classifier    4w K + K

(w = 16, K = 10: 0.27M parameters at depth 20, 0.85M at 56, the paper's Table 6.)

The point to show is Figure 6 of the paper: the deeper plain network has the higher *training*
error, while the deeper residual network does not. So every epoch measures the error on a fixed
subset of the training images, in eval mode and without augmentation, beside the validation
error. All networks train one after another in one job with the same recipe and seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.common import Knob, check_knobs, save_arrays
from core.train.data import digits, shapes, stratified_split
from core.train.events import Done, Phase, RunInfo
from core.train.context import JobContext
from core.train.loop import LoopConfig, Stepper, random_shift, run_loop
from core.weights import WeightsUsed

KINDS = ("plain", "resnet")
TRAIN_SUBSET = 512      # training images whose error is measured every epoch (eval mode, no augmentation)


def blocks_per_stage(depth: int) -> int:
    """n of a depth-(6n+2) network; ValueError when the depth does not fit."""
    if depth < 8 or (depth - 2) % 6:
        lo = max(1, (depth - 2) // 6)
        near = sorted({6 * lo + 2, 6 * (lo + 1) + 2})
        raise ValueError(f"depth {depth} is not 6n+2 (three stages of n blocks of two 3x3 convolutions, plus the "
                         f"first convolution and the classifier); the nearest depths are "
                         f"{' and '.join(map(str, near))}, e.g. 20, 32, 44, 56, 110")
    return (depth - 2) // 6


def parse_depths(text: str) -> tuple[int, ...]:
    """"20,56" -> (20, 56), each checked against 6n+2; ValueError with a sentence otherwise."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError("depths needs at least one depth, e.g. 20,56")
    try:
        out = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"depths must be whole numbers separated by commas, e.g. 20,56 (got {text!r})") from None
    if len(set(out)) != len(out):
        raise ValueError(f"depths lists a depth twice ({text!r})")
    for d in out:
        blocks_per_stage(d)
        if d > 110:
            raise ValueError(f"depth {d} is more than this lab trains (110 at most, the paper's deepest but one)")
    return tuple(sorted(out))


def param_formula(depth: int, width: int, classes: int, in_channels: int = 3) -> int:
    """The parameter count of a depth-(6n+2) network, written out (see the module docstring)."""
    n, w = blocks_per_stage(depth), width
    convs = in_channels * 9 * w + 18 * n * w * w + (18 + 36 * (2 * n - 1)) * w * w + (72 + 144 * (2 * n - 1)) * w * w
    bn = 2 * (w + 2 * n * (w + 2 * w + 4 * w))
    return convs + bn + 4 * w * classes + classes


class Block(nn.Module):
    """Two 3x3 convolutions with BatchNorm; with `residual`, the input is added before the last ReLU
    (the paper's Figure 2), through option A's parameter-free shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.residual, self.stride, self.extra = residual, stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))          # (N, c_out, H/stride, W/stride)
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x[:, :, ::self.stride, ::self.stride]           # option A: subsample ...
            if self.extra:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))  # ... and zero-pad the channels
            out = out + shortcut
        return F.relu(out)


class CifarNet(nn.Module):
    """The paper's CIFAR network of depth 6n+2, plain or residual."""

    def __init__(self, depth: int, width: int = 16, residual: bool = True, classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        self.depth, self.residual = depth, residual
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, c_in = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(Block(c_in, c_out, 2 if stage > 0 and i == 0 else 1, residual))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * width, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # the paper's [13]

    def weighted_layers(self) -> int:
        """Convolutions and fully connected layers: the depth the paper counts."""
        return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))                  # (N, 4w, S/4, S/4)
        return self.fc(x.mean((2, 3)))                 # (N, classes)


def series_name(kind: str, depth: int) -> str:
    return f"{kind}{depth}"


@dataclass(frozen=True)
class Config:
    """One plain-vs-residual run: every depth, plain and residual, the same recipe. Units in the comments."""

    depths: str = "20,56"       # network depths, comma-separated, each 6n+2
    width: int = 8              # filters of the first stage (then 2x and 4x); the paper's is 16
    data: str = "digits"        # "digits" (scikit-learn, 10 classes) or "shapes" (generated, 8 classes)
    size: int = 16              # image side in pixels (the paper's CIFAR images are 32)
    per_class: int = 100        # training + validation images per class, shapes only (digits has ~180)
    epochs: int = 10            # passes over the training images, per network
    batch_size: int = 32        # images per step
    lr: float = 0.1             # peak LR of the one-cycle schedule (SGD, momentum 0.9; the paper's 0.1)
    weight_decay: float = 1e-4  # L2 penalty per step (the paper's 0.0001)
    augment: bool = True        # random shifts of up to 1/8 of the side during training
    seed: int = 0               # split, initialisation and batch order, the same for every network
    task: ClassVar[str] = "depth"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "depths": Knob("Depths (6n+2)", help="Each depth trains twice, plain and residual: 20 and 56 take four runs."),
        "width": Knob("Width (first stage's filters)", 1, 64, help="Then 2x and 4x in the next stages. The paper uses 16."),
        "data": Knob("Data", choices=("digits", "shapes"),
                     names={"digits": "handwritten digits", "shapes": "generated shapes"}),
        "size": Knob("Image size (px)", 8, 64, step=4, help="A multiple of 4: two stages halve it."),
        "per_class": Knob("Images per class (shapes only)", 10, 2000, step=10, more=True),
        "epochs": Knob("Epochs (per network)", 1, 200),
        "batch_size": Knob("Batch size", 2, 1024, more=True),
        "lr": Knob("Peak learning rate (SGD, momentum 0.9)", 1e-6, 2, whole=False, rate=True),
        "weight_decay": Knob("Weight decay", 0, 0.1, whole=False, rate=True, more=True),
        "augment": Knob("Random shifts (augmentation)"),
        "seed": Knob("Seed (split, initialisation, batch order)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            parse_depths(self.depths)
        except ValueError as e:
            problems.append(str(e))
        check_knobs(problems, self)
        if isinstance(self.size, int) and self.size % 4:
            problems.append(f"size must be a multiple of 4 (two stride-2 stages), got {self.size}")
        if problems:
            raise ValueError("; ".join(problems))

    def series(self) -> list[str]:
        """The networks in training order: "plain20", "resnet20", "plain56", "resnet56"."""
        return [series_name(k, d) for d in parse_depths(self.depths) for k in KINDS]


def load_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images as floats 0..1 (N, 3, S, S), labels, and the number of classes."""
    if cfg.data == "digits":
        d = digits(cfg.size)
    else:
        d = shapes(8, cfg.per_class, cfg.seed, cfg.size)
    return d.images.float() / 255, d.labels, len(d.classes)


def standardise(x: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
    """`x` standardised per channel with the mean and std of the images `fit` (the training split
    only: the validation images must not inform the preprocessing)."""
    mean, std = fit.mean((0, 2, 3), keepdim=True), fit.std((0, 2, 3), keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


@torch.no_grad()
def precise_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = 128) -> None:
    """Recomputes every BatchNorm's running statistics as the plain average over `x`'s batches, with
    the weights as they are now ("precise BN", Wu & Johnson 2021). The usual running average lags
    the weights by ~10 steps, which in a short run makes a deep network look worse in eval mode
    than it is: the degradation shown must be the training's, not the statistics'."""
    was = model.training
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                           # cumulative average
        model.train()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)


@torch.no_grad()
def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, fraction misclassified) in eval mode; restores the model's mode."""
    was = model.training
    model.eval()
    try:
        logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) != y).float().mean())
    finally:
        model.train(was)


def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("loading data"))
    x, y, classes = load_data(cfg)
    tr, va = stratified_split(y, 0.2, cfg.seed)
    x = standardise(x, x[tr])
    g = torch.Generator().manual_seed(cfg.seed)
    sub = tr[torch.randperm(len(tr), generator=g)[:TRAIN_SUBSET]]   # the fixed training subset
    x_tr, y_tr = x[tr].to(dev), y[tr].to(dev)
    x_sub, y_sub, x_va, y_va = x[sub].to(dev), y[sub].to(dev), x[va].to(dev), y[va].to(dev)
    final: dict = {}
    curves: dict[str, list[list[float]]] = {}
    weights: dict[str, torch.Tensor] = {}               # every trained network, "<name>.<key>"
    for depth in parse_depths(cfg.depths):
        for kind in KINDS:
            name = series_name(kind, depth)
            torch.manual_seed(cfg.seed)
            model = CifarNet(depth, cfg.width, kind == "resnet", classes).to(dev)
            ctx.emit(RunInfo(weights=WeightsUsed("random", "random"), n_train=len(tr), n_val=len(va),
                             trainable=sum(p.numel() for p in model.parameters()), frozen=0, series=name))
            aug = torch.Generator().manual_seed(cfg.seed)
            rows: list[list[float]] = []

            def loss(idx: torch.Tensor, model: nn.Module = model, aug: torch.Generator = aug) -> torch.Tensor:
                xb = x_tr[idx]
                if cfg.augment:
                    xb = random_shift(xb, aug)
                return F.cross_entropy(model(xb), y_tr[idx])

            def evaluate(model: nn.Module = model, rows: list = rows) -> tuple[float, dict[str, float]]:
                precise_batchnorm(model, x_sub)
                _, train_err = error_rate(model, x_sub, y_sub)
                val_loss, val_err = error_rate(model, x_va, y_va)
                rows.append([train_err, val_err])
                return val_loss, {"train_error": train_err, "val_error": val_err}

            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
            stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=model.train, n_train=len(tr), device=dev)
            t_model = time.perf_counter()
            last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit,
                            ctx.should_stop, series=name)
            seconds = time.perf_counter() - t_model
            final[name] = {"train_error": last.metrics["train_error"], "val_error": last.metrics["val_error"],
                           "params": sum(p.numel() for p in model.parameters()), "seconds": round(seconds, 2)}
            curves[name] = rows
            weights.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
            ctx.emit(Done(metrics={"train_error": last.metrics["train_error"], "val_error": last.metrics["val_error"]},
                          seconds=seconds, series=name))
    names = list(curves)
    from safetensors.torch import save_file

    save_file(weights, str(ctx.out_dir / "models.safetensors"))   # as they were at the last evaluation
    save_arrays(ctx.out_dir, errors=np.array([curves[n] for n in names], dtype=np.float32),  # (models, epochs, 2)
                names=np.array(names), train_subset=sub.numpy(), val_idx=va.numpy())
    final["train_subset"] = len(sub)
    final["degradation"] = degradation(final, len(sub))
    final["seconds"] = round(time.perf_counter() - t0, 2)
    return final


def degradation(final: dict, n: int) -> dict[str, bool]:
    """Per kind, whether the deepest network ended with a clearly higher training error than the
    shallowest (the paper's finding: True for plain, False for residual). Clearly: by more than two
    standard errors of the difference of two error rates measured on `n` images each, and by at
    least one percentage point."""
    out = {}
    for kind in KINDS:
        runs = sorted((int(k[len(kind):]), v) for k, v in final.items()
                      if k.startswith(kind) and k[len(kind):].isdigit() and isinstance(v, dict))
        if len(runs) >= 2:
            p_lo, p_hi = runs[0][1]["train_error"], runs[-1][1]["train_error"]
            se = math.sqrt((p_lo * (1 - p_lo) + p_hi * (1 - p_hi)) / n)
            out[kind] = p_hi - p_lo > max(0.01, 2 * se)
    return out


def summary(final: dict) -> str:
    parts = [f"{k} {v['train_error']:.1%} train / {v['val_error']:.1%} val error" for k, v in final.items()
             if isinstance(v, dict) and "train_error" in v]
    return "; ".join(parts)
