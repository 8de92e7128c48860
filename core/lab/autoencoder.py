"""The lecture's convolutional autoencoder, trained live on handwritten digits.

The model is the slide's Keras network (28x28x1 -> Dense(49) -> 28x28x1) split into `encode` and
`decode`. The bottleneck width is the control: at 49 it is the lecture's model exactly; at any
other width k the code is Dense(576 -> k) and the decoder starts with Dense(k -> 49), so the rest
of the network stays the slide's (BatchNorm's running statistics are per epoch: see
`loop.restart_batchnorm`). The code is linear (the ReLU the slide applies after Dense(49)
moves to the decoder's start), so a 2-number code can be drawn as it is. The denoising variant
adds Gaussian noise to the input and keeps the clean image as the target.

Data: scikit-learn's 1,797 handwritten digits, offline. They are 8x8 pixels, upsampled to 28x28, so
they are blurrier than MNIST's: the page says so.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.lab.common import Knob, LabResults, check_knobs, save_arrays
from core.models.encdec import conv_autoencoder
from core.train.data import digits, stratified_split
from core.train.events import Done, Phase, RunInfo, Snapshot
from core.train.context import JobContext
from core.train.loop import LoopConfig, Stepper, restart_batchnorm, run_loop
from core.weights import WeightsUsed

LECTURE_CODE = 49    # the slide's Dense(49), reshaped to 7x7x1
SIDE = 28
WIDTHS = (1, 2, 4, 8, 16, 32, 49, 64, 128, 256, 576)   # bottlenecks offered: 576 = the encoder's whole output


@dataclass(frozen=True)
class Config:
    """One autoencoder run. Units in the comments."""

    bottleneck: int = 49        # numbers in the code (49: the lecture's model exactly)
    noise: float = 0.0          # std of the Gaussian noise on the input (pixel values 0..1); 0 = plain
    epochs: int = 6             # passes over the 1,438 training digits
    batch_size: int = 64        # images per step
    lr: float = 3e-3            # peak LR of the one-cycle schedule
    seed: int = 0               # split, initialisation, noise
    task: ClassVar[str] = "autoencoder"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "bottleneck": Knob("Bottleneck (numbers in the code)", choices=WIDTHS,
                           help="49 is the lecture's Dense(49) reshaped to 7x7x1."),
        "noise": Knob("Input noise (denoising variant)", 0, 1, whole=False, step=0.05,
                      help="Gaussian noise added to the input; the target stays the clean digit."),
        "epochs": Knob("Epochs", 1, 200),
        "batch_size": Knob("Batch size", 2, 1024, more=True),
        "lr": Knob("Peak learning rate", 1e-6, 1, whole=False, rate=True),
        "seed": Knob("Seed (split, initialisation, noise)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_knobs(problems, self)
        if problems:
            raise ValueError("; ".join(problems))


class Autoencoder(nn.Module):
    """The slide's network as `encoder` (image -> code) and `decoder` (code -> image)."""

    def __init__(self, bottleneck: int = LECTURE_CODE) -> None:
        super().__init__()
        layers = dict(conv_autoencoder("first").named_children())
        names = list(layers)
        cut = names.index("dense")
        enc = [(n, layers[n]) for n in names[:cut]]
        dec = [(n, layers[n]) for n in names[cut + 1:]]     # relu4, reshape, tconv1, ...
        if bottleneck == LECTURE_CODE:
            enc.append(("dense", layers["dense"]))
        else:
            enc.append(("code", nn.Linear(576, bottleneck)))
            dec.insert(0, ("dense", nn.Linear(bottleneck, LECTURE_CODE)))
        self.encoder = nn.Sequential(OrderedDict(enc))   # (N, 1, 28, 28) -> (N, bottleneck)
        self.decoder = nn.Sequential(OrderedDict(dec))   # (N, bottleneck) -> (N, 1, 28, 28), values 0..1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) float 0..1 and the labels."""
    d = digits(SIDE)
    return d.images[:, :1].float() / 255, d.labels


def _noisy(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    if std == 0:
        return x
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


def project_2d(codes: torch.Tensor) -> tuple[np.ndarray, str]:
    """The codes themselves at width 2 (or 1, padded), else their first two principal components."""
    if codes.shape[1] <= 2:
        return F.pad(codes, (0, 2 - codes.shape[1])).numpy(), "the code itself"
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).numpy(), "the first two principal components of the code"


def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("loading data"))
    x, y = digit_images()
    tr, va = stratified_split(y, 0.2, cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    x_tr, x_va = x[tr].to(dev), x[va].to(dev)
    x_va_in = _noisy(x[va], cfg.noise, g).to(dev)        # fixed noisy validation inputs
    torch.manual_seed(cfg.seed)
    model = Autoencoder(cfg.bottleneck).to(dev)
    ctx.emit(RunInfo(weights=WeightsUsed("random", "random"), n_train=len(tr), n_val=len(va),
                     trainable=sum(p.numel() for p in model.parameters()), frozen=0))
    show = torch.arange(8) * (len(va) // 8)              # the same 8 validation digits every epoch
    epoch = [0]

    def loss(idx: torch.Tensor) -> torch.Tensor:
        target = x_tr[idx]
        inp = _noisy(target.cpu(), cfg.noise, g).to(dev) if cfg.noise else target
        return F.binary_cross_entropy(model(inp), target)

    @torch.no_grad()
    def evaluate() -> tuple[float, dict[str, float]]:
        model.eval()
        out = model(x_va_in)
        epoch[0] += 1
        ctx.emit(Snapshot(epoch[0], {"input": x_va_in[show, 0].cpu().numpy().astype(np.float16),
                                     "output": out[show, 0].cpu().numpy().astype(np.float16)}))
        return float(F.binary_cross_entropy(out, x_va)), {"mse": float(F.mse_loss(out, x_va))}

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    def train_mode() -> None:
        restart_batchnorm(model)
        model.train()

    stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=train_mode, n_train=len(tr), device=dev)
    last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit, ctx.should_stop)

    ctx.emit(Phase("projecting the validation codes"))
    model.eval()
    with torch.no_grad():
        codes = model.encoder(x_va_in).cpu()               # (N_val, bottleneck)
        out = model(x_va_in).cpu()
    xy, how = project_2d(codes)
    from safetensors.torch import save_file

    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(ctx.out_dir / "model.safetensors"))
    save_arrays(ctx.out_dir, latent_2d=xy.astype(np.float32), labels=y[va].numpy(),
                val_images=(x[va, 0].numpy() * 255).round().astype(np.uint8),
                val_inputs=(x_va_in[:, 0].cpu().numpy() * 255).round().astype(np.uint8),
                reconstructions=(out[:, 0].numpy() * 255).round().astype(np.uint8),
                projection=np.array([how == "the code itself"]))
    final = {"val_loss": last.val_loss, "val_mse": last.metrics["mse"], "bottleneck": cfg.bottleneck,
             "seconds": round(time.perf_counter() - t0, 2)}
    ctx.emit(Done(metrics={"loss": last.val_loss, "mse": last.metrics["mse"]}, seconds=final["seconds"]))
    return final


def summary(final: dict) -> str:
    return (f"bottleneck {final['bottleneck']}: validation loss {final['val_loss']:.4f} "
            f"(mean squared error {final['val_mse']:.4f} per pixel)")


def load_model(res: LabResults) -> Autoencoder:
    from safetensors.torch import load_file

    model = Autoencoder(int(res.config["bottleneck"]))
    model.load_state_dict(load_file(str(res.model_file())))
    return model.eval()


@torch.no_grad()
def interpolate(res: LabResults, i: int, j: int, steps: int = 8) -> np.ndarray:
    """Decodes `steps` codes on the straight line from validation image i's code to image j's:
    (steps, 28, 28) values 0..1. The ends are the two reconstructions."""
    model = load_model(res)
    imgs = torch.from_numpy(res.arrays["val_inputs"][[i, j]]).float().unsqueeze(1) / 255   # (2, 1, 28, 28)
    a, b = model.encoder(imgs)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return model.decoder((1 - t) * a + t * b)[:, 0].numpy()


# --- several runs side by side ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WidthComparison:
    """Finished autoencoder runs side by side (one per bottleneck width, or several), in the order
    shown: by width, then noise, then as given."""

    order: list[int]          # indices into the results given, as shown
    bottlenecks: list[int]    # numbers in the code, per run
    noise: list[float]        # input noise, per run
    val_mse: list[float]      # final validation mean squared error per pixel, per run
    digits: np.ndarray        # (K, 28, 28) 0..1: clean validation digits that every run held out
    labels: np.ndarray        # (K,) their digit
    rebuilt: np.ndarray       # (runs, K, 28, 28) 0..1: each run's reconstruction of them


def compare_widths(results: Sequence[LabResults], k: int = 8) -> WidthComparison:
    """Runs side by side on the same validation digits: those every run held out (found by their
    pixels, so runs with other seeds share what their splits share), up to `k`, one of each digit in
    turn. Each run's reconstructions come from its saved results; no model is run."""
    order = sorted(range(len(results)), key=lambda i: (int(results[i].config["bottleneck"]),
                                                       float(results[i].config["noise"]), i))
    where = [{img.tobytes(): j for j, img in enumerate(results[i].arrays["val_images"])} for i in order]
    first = results[order[0]].arrays
    common = [j for j, img in enumerate(first["val_images"]) if all(img.tobytes() in w for w in where[1:])]
    by_digit = {d: [j for j in common if first["labels"][j] == d] for d in range(10)}
    picked: list[int] = []
    while len(picked) < min(k, len(common)):
        for d in range(10):
            if by_digit[d] and len(picked) < k:
                picked.append(by_digit[d].pop(0))
    keys = [first["val_images"][j].tobytes() for j in picked]
    rebuilt = np.stack([results[i].arrays["reconstructions"][[w[key] for key in keys]] for i, w in zip(order, where)]
                       ) if picked else np.zeros((len(order), 0, SIDE, SIDE))
    return WidthComparison(order, [int(results[i].config["bottleneck"]) for i in order],
                           [float(results[i].config["noise"]) for i in order],
                           [float(results[i].final["val_mse"]) for i in order],
                           first["val_images"][picked].astype(np.float32) / 255, first["labels"][picked],
                           rebuilt.astype(np.float32) / 255)


# --- the slide's transposed convolution, by hand --------------------------------------------------------

@dataclass(frozen=True)
class TransposedConv:
    """A transposed convolution written out: each input value scatters a scaled copy of the kernel."""

    output: np.ndarray                       # (H_out, W_out)
    pieces: list[tuple[int, int, np.ndarray]]  # (row, col of the input value, its scaled kernel placed in the output)
    size_formula: str


def transposed_conv(x: np.ndarray, k: np.ndarray, stride: int = 2, padding: int = 0) -> TransposedConv:
    """out = sum over input positions (i, j) of x[i, j] * kernel, placed at (i*stride, j*stride),
    then `padding` rows/columns cropped from each border: (n - 1)*stride - 2*padding + k."""
    n, m = x.shape
    kh, kw = k.shape
    full = np.zeros(((n - 1) * stride + kh, (m - 1) * stride + kw))
    pieces = []
    for i in range(n):
        for j in range(m):
            placed = np.zeros_like(full)
            placed[i * stride:i * stride + kh, j * stride:j * stride + kw] = x[i, j] * k
            full += placed
            pieces.append((i, j, placed[padding:full.shape[0] - padding, padding:full.shape[1] - padding]))
    out = full[padding:full.shape[0] - padding, padding:full.shape[1] - padding]
    formula = f"({n} - 1)×{stride} - 2×{padding} + {kh} = {out.shape[0]}"
    return TransposedConv(out, pieces, formula)
