"""Pretrained ImageNet weights through torchvision's weights API, and what is cached offline.

torchvision's `load_state_dict_from_url` looks in `$TORCH_HOME/hub/checkpoints/<file name of
the weights URL>` before it downloads anything, so a file placed there ahead of a lecture makes
the weights available offline. The weights' metadata (parameters, GMACs, accuracy, class names)
ships inside torchvision and needs no download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torchvision.models import get_model_weights
from torchvision.models._api import WeightsEnum

from core import registry

ASSETS = Path(__file__).resolve().parents[1] / "assets"
STARTER = ASSETS / "starter_resnet18.safetensors"        # written by `python -m core pretrain`
STARTER_CARD = ASSETS / "starter_resnet18.json"
STARTER_ARCH = "resnet18"                                # the only architecture the starter weights fit
# The largest weights file a page accepts, in MB as Streamlit counts them (MiB); .streamlit/config.toml's
# server.maxUploadSize must be as large, since the server caps every upload at it. The largest
# models the pages build are VGG-19's 548 MiB (Inside) and a fine-tuned VGG-16 from the Studio, 528 MiB.
MAX_WEIGHTS_MB = 600


def default_weights(name: str) -> WeightsEnum | None:
    """torchvision's DEFAULT ImageNet weights for a registry entry, or None when it has none."""
    tv = registry.get(name).torchvision_name
    return get_model_weights(tv).DEFAULT if tv else None


def cache_path(weights: WeightsEnum) -> Path:
    """Where torchvision looks for this weights file before downloading it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


@dataclass(frozen=True)
class WeightsStatus:
    """One registry entry's pretrained weights and whether they are on this machine."""

    arch: str
    weights: str        # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    cached: bool
    path: str
    file_mb: float
    acc1: float | None  # ImageNet top-1 accuracy from torchvision's metadata


def weights_status() -> list[WeightsStatus]:
    """Every registry entry with torchvision weights, cached or not."""
    out = []
    for name in registry.names():
        w = default_weights(name)
        if w is None:
            continue
        p = cache_path(w)
        out.append(WeightsStatus(name, f"{type(w).__name__}.{w.name}", p.is_file(), str(p),
                                 float(w.meta.get("_file_size", 0.0)),
                                 w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")))
    return out


WeightsKind = Literal["imagenet", "starter", "random", "user"]


@dataclass(frozen=True)
class WeightsUsed:
    """Which weights a model really has, and why when that is not what was asked for."""

    kind: WeightsKind            # what the model has
    requested: WeightsKind       # what was asked for
    name: str = ""               # e.g. "ResNet18_Weights.IMAGENET1K_V1"; "" for random
    reason: str = ""             # why the request was not met ("" when it was)

    @property
    def trained(self) -> bool:
        """True when the weights were learnt (ImageNet or the starter encoder), not random."""
        return self.kind != "random"

    @property
    def fell_back(self) -> bool:
        return self.kind != self.requested

    def describe(self) -> str:
        """A short name for captions and tables: 'ImageNet weights (ResNet18_Weights.IMAGENET1K_V1)'."""
        return {"imagenet": f"ImageNet weights ({self.name})", "random": "random initialisation",
                "starter": "ConvNet Lab starter weights (ResNet-18 pre-trained on generated fractals, "
                           "no photographs)", "user": f"your weights ({self.name})"}[self.kind]

    def sentence(self) -> str:
        """describe() plus the reason for a fallback, for a warning."""
        return self.describe() + (f": {self.reason}" if self.reason else "")


def imagenet_cached(name: str) -> bool:
    """True when the registry entry has torchvision ImageNet weights and they are on this machine."""
    w = default_weights(name)
    return w is not None and cache_path(w).is_file()


def default_start(name: str) -> WeightsKind:
    """What a page starts a registry entry from before anyone chooses: ImageNet when cached; else, for
    ResNet-18, the starter weights we ship (a trained network rather than noise); else "imagenet"
    still, which falls back to random initialisation with a warning that says how to fetch them."""
    return "starter" if name == STARTER_ARCH and not imagenet_cached(name) else "imagenet"


def start_for(name: str, kind: WeightsKind) -> WeightsKind:
    """`kind` where a registry entry can start from it. The starter weights are a ResNet-18: any other
    architecture asked to start from them starts from ImageNet's when cached, else from random."""
    if kind == "starter" and name != STARTER_ARCH:
        return "imagenet" if imagenet_cached(name) else "random"
    return kind


def build_model(name: str, pretrained: bool = False) -> tuple["torch.nn.Module", WeightsUsed]:
    """A CPU model of a registry entry in eval mode, with ImageNet weights when asked for and
    cached on this machine, else randomly initialised; and which weights it got."""
    spec = registry.get(name)
    w = default_weights(name)
    requested: WeightsKind = "imagenet" if pretrained else "random"
    if not pretrained:
        return spec.build().eval(), WeightsUsed("random", requested)
    if w is None:
        return spec.build().eval(), WeightsUsed("random", requested,
                                                reason=f"{spec.title} has no torchvision ImageNet weights")
    wname = f"{type(w).__name__}.{w.name}"
    if not imagenet_cached(name):
        return spec.build().eval(), WeightsUsed("random", requested, reason=(
            f"{wname} is not cached on this machine (expected at {cache_path(w)})"))
    # torchvision's own builder with its weights: it handles quirks such as GoogLeNet's auxiliary
    # classifiers in the checkpoint and its transform_input flag.
    from torchvision.models import get_model

    return get_model(spec.torchvision_name, weights=w, progress=False).eval(), WeightsUsed("imagenet", requested, wname)


def build_with(name: str, kind: WeightsKind) -> tuple["torch.nn.Module", WeightsUsed]:
    """`build_model` for "imagenet" (when cached) and "random", plus "starter": the starter encoder we
    ship, for ResNet-18 only (its FC layer stays random: it knows no ImageNet classes)."""
    model, used = build_model(name, kind == "imagenet")
    if kind == "starter":
        if name != STARTER_ARCH:
            raise ValueError("the starter weights are a ResNet-18")
        used = load_starter(model)
    return model, used


def load_starter(model: "torch.nn.Module", path: Path = STARTER) -> WeightsUsed:
    """Loads the starter encoder into a torchvision ResNet-18 (its FC layer stays as it is).

    Raises FileNotFoundError when the file is missing.
    """
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("fc.") for k in missing):
        raise ValueError(f"starter weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return WeightsUsed("starter", "starter", name=path.name)


class WeightsError(ValueError):
    """User-supplied weights that cannot be used, with a message for the user."""


def read_user_weights(data: bytes, filename: str) -> dict[str, torch.Tensor]:
    """A state dict from uploaded bytes, never unpickling arbitrary objects: safetensors, or a
    PyTorch file read with `weights_only=True` (tensors and plain containers only)."""
    import io

    from safetensors.torch import load as load_safetensors

    try:
        if filename.lower().endswith(".safetensors"):
            return load_safetensors(data)
        if filename.lower().endswith((".pt", ".pth")):
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise WeightsError("The file holds no state dict (a mapping from names to tensors).")
            return state
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure is the file's fault
        # SafetensorError for a bad header; UnpicklingError when a .pt holds more than tensors
        # (weights_only refuses to build arbitrary objects): report it, never run it.
        raise WeightsError(f"Cannot read {filename}: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
    raise WeightsError("Upload weights as .safetensors (preferred) or a .pt/.pth state dict.")


def apply_user_weights(model: "torch.nn.Module", state: dict[str, torch.Tensor]) -> None:
    """Loads a state dict that must match the model exactly; mismatches become one clear message."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[0]})")
        raise WeightsError("These weights do not fit this architecture: " + "; ".join(parts) + ".")
    model.load_state_dict(state)


def prefetch(name: str, progress: Callable[[float, str], None] | None = None) -> str:
    """Downloads a registry entry's ImageNet weights into the cache (ahead of an offline lecture).

    With `progress` (fraction, message) the file is streamed from torchvision's URL into the same
    place torchvision reads it from, its SHA-256 checked against the prefix in its name (as
    torch.hub does), and only then moved into place; without, torchvision downloads it itself.
    Returns a sentence saying what happened. Raises WeightsError when there is nothing to fetch
    or the download fails (no network, a broken file).
    """
    w = default_weights(name)
    if w is None:
        raise WeightsError(f"{name} has no torchvision ImageNet weights.")
    path = cache_path(w)
    if path.is_file():
        return f"{name}: already cached at {path}"
    try:
        if progress is None:
            w.get_state_dict(progress=True)
        else:
            _stream(w.url, path, progress)
    except OSError as e:  # URLError is an OSError
        raise WeightsError(f"{name}: could not download {w.url} ({e}). Without a network, copy that file "
                           f"to {path}.") from None
    return f"{name}: downloaded to {path}"


def download_size_mb(name: str) -> float | None:
    """The size of a registry entry's ImageNet weights file in MB (torchvision's metadata), if known."""
    w = default_weights(name)
    return None if w is None else w.meta.get("_file_size")


def _stream(url: str, path: Path, progress: Callable[[float, str], None], chunk: int = 1 << 20) -> None:
    import hashlib
    import re
    import urllib.request

    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=15) as r, open(part, "wb") as f:
            total, done = int(r.headers.get("Content-Length") or 0), 0
            while block := r.read(chunk):
                f.write(block)
                digest.update(block)
                done += len(block)
                progress(min(1.0, done / total) if total else 0.0, f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
    except OSError:
        part.unlink(missing_ok=True)   # a broken download leaves nothing behind
        raise
    want = re.search(r"-([a-f0-9]+)\.", path.name)
    if want and not digest.hexdigest().startswith(want.group(1)):
        part.unlink(missing_ok=True)
        raise WeightsError(f"the downloaded file does not match its checksum ({path.name}); nothing was saved")
    part.replace(path)
