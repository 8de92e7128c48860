"""What a finished run leaves on disk, and reading it back: the trained model as safetensors
with a small JSON (classes, preprocessing), the per-epoch metrics as CSV, and the validation
details the results view needs (confusion matrix, per-image losses, the images themselves)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.spec import ArchSpec
from core.train.data import ImageSet
from core.train.transfer import RunResult, TrainConfig, build_transfer_model
from core.weights import WeightsError, WeightsUsed, apply_user_weights, build_model, read_user_weights

# Each downloadable file and what it holds (a button's label is its file name: short, and what lands on disk).
DOWNLOADS = {"model.safetensors": "The whole fine-tuned model (safetensors); Inside the network loads it with "
                                  "model.json",
             "head.safetensors": "The trained head alone (safetensors): the encoder stayed frozen; Inside the "
                                 "network loads it with model.json",
             "model.json": "The model card: architecture, classes, the weights the encoder started from, "
                           "preprocessing",
             "metrics.csv": "Loss and accuracy per epoch (CSV)"}


def save_results(res: RunResult, data: ImageSet, out: Path) -> None:
    """A fine-tuned model is saved whole. Scenarios 1 and 2 leave the encoder as it started (frozen
    weights, BatchNorm statistics kept by `set_train_mode`), so they save only the head, about 0.1%
    of a ResNet-18's 45 MB, with the encoder's digest: reading it back rebuilds the encoder from the
    same weights and checks it is still the same (`load_trained`)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = res.config.to_dict()
    digest = None
    if res.model is not None:
        state = res.model.state_dict()
        if cfg["scenario"] in ("1", "2"):
            head, encoder = split_head(state, cfg["arch"])
            save_file({k: v.contiguous() for k, v in head.items()}, str(out / "head.safetensors"))
            digest = state_digest(encoder)
        else:
            save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "model.json").write_text(json.dumps({
        "arch": cfg["arch"], "scenario": cfg["scenario"], "classes": res.classes,
        "weights": asdict(res.weights), "config": cfg, "encoder_sha256": digest,
        "preprocessing": {"image_size": cfg["image_size"], "scale": "value / 255",
                          "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "val_acc": res.val_acc}, indent=1))
    buf = io.StringIO()
    rows = [{"epoch": e.epoch, "train_loss": e.train_loss, "val_loss": e.val_loss,
             **{f"val_{k}": v for k, v in e.metrics.items()}, "images_per_s": e.images_per_s,
             "elapsed_s": e.elapsed} for e in res.epochs]
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


class EncoderMismatch(ValueError):
    """A saved head's encoder cannot be rebuilt as it was: its weights are missing here, or differ."""


def load_trained(model_info: dict[str, Any], state: dict[str, torch.Tensor], head_only: bool = False) -> torch.nn.Module:
    """A finished run's model rebuilt from its card (`model.json`) and its weights, in eval mode.

    With `head_only` (scenarios 1 and 2 save only the head), the encoder is rebuilt from the weights
    the run really started from, with the run's seed, and must match the digest on the card:
    ImageNet weights deleted from the cache or changed since cannot pass for the run's encoder.
    """
    used = model_info["weights"]["kind"] if head_only else "random"
    cfg = TrainConfig(**{**model_info["config"], "weights": used})
    tm = build_transfer_model(cfg, len(model_info["classes"]))
    if head_only:
        if tm.weights.kind != used:
            raise EncoderMismatch(f"this run's encoder started from {used} weights, which are not on this "
                                  "machine now")
        _, encoder = split_head(tm.model.state_dict(), cfg.arch)
        if state_digest(encoder) != model_info.get("encoder_sha256"):
            raise EncoderMismatch("the encoder rebuilt here differs from the one this run trained on (its "
                                  "SHA-256 is not the card's encoder_sha256)")
        state = {**encoder, **state}
    tm.model.load_state_dict(state)
    return tm.model.eval()


@dataclass(frozen=True)
class UploadedModel:
    """A model rebuilt from files a user uploaded, and what it is."""

    model: nn.Module
    used: WeightsUsed               # kind "user", named after the files
    classes: list[str] | None       # the run's class names when a model card came with the weights


def load_upload(arch: str, files: dict[str, bytes]) -> UploadedModel:
    """A model (eval mode) from uploaded files: a state dict that fits `arch` as the registry builds
    it, or a Studio run's download with its model card, `model.json`: the whole fine-tuned model or,
    when the encoder stayed frozen, the head alone, whose encoder `load_trained` rebuilds from the
    weights the card names and checks against the card's digest.

    Args:
        arch: the registry name the page shows.
        files: file name -> bytes: one weights file (.safetensors, .pt, .pth) and at most one .json.

    Raises:
        WeightsError: a sentence for the user (unreadable files, a card of another architecture, a
            head without its card, an encoder that is not the one the head was trained on).
    """
    from core import registry

    spec = registry.get(arch)
    cards = sorted(n for n in files if n.lower().endswith(".json"))
    blobs = sorted(n for n in files if n not in cards)
    if len(cards) > 1 or len(blobs) > 1:
        raise WeightsError(f"Upload one weights file and at most one model.json; got {', '.join(sorted(files))}.")
    if not blobs:
        raise WeightsError(f"{cards[0]} describes a model; upload its weights (head.safetensors or "
                           "model.safetensors from the same run) together with it.")
    wname = blobs[0]
    state = read_user_weights(files[wname], wname)
    head, encoder = split_head(state, arch)
    head_only = bool(head) and not encoder
    if not cards:
        if head_only:
            raise WeightsError(f"{wname} holds only a classifier head ({len(head)} tensors under "
                               f"{spec.classifier}): upload it together with its run's model.json, which names "
                               "the weights the encoder started from.")
        model, _ = build_model(arch, False)
        own, w = model.get_submodule(spec.classifier), state.get(spec.classifier + ".weight")
        if isinstance(own, nn.Linear) and w is not None and w.dim() == 2 and w.shape[0] != own.out_features:
            raise WeightsError(f"{wname} has a classifier for {w.shape[0]} classes, not ImageNet's "
                               f"{own.out_features}: a Studio run's model? Upload its model.json together with it.")
        apply_user_weights(model, state)
        return UploadedModel(model.eval(), WeightsUsed("user", "user", name=wname), None)
    cname = cards[0]
    card = _read_card(files[cname], cname)
    if card["arch"] != arch:
        title = registry.get(card["arch"]).title if card["arch"] in registry.names() else repr(card["arch"])
        raise WeightsError(f"{cname} describes a {title}, not a {spec.title}: choose {title} as the architecture.")
    if head_only and not card.get("encoder_sha256"):
        raise WeightsError(f"{cname} describes a whole model (no encoder digest), but {wname} holds only a head.")
    started = WeightsUsed(**card["weights"])
    try:
        model = load_trained(card, state, head_only=head_only)
    except EncoderMismatch as e:
        raise WeightsError(f"Refused: {wname} is a head trained on an encoder with {started.describe()}, and "
                           f"{e}, so the head would read other features than it learnt from.") from None
    except ValueError as e:                           # the card's config, refused by TrainConfig
        raise WeightsError(f"Cannot rebuild the model {cname} describes: {e}.") from None
    except (RuntimeError, TypeError, KeyError) as e:  # load_state_dict's mismatch; a config field unknown here
        said = " ".join(str(e).split())[:240] or type(e).__name__
        raise WeightsError(f"{wname} does not fit the model {cname} describes: {said}") from None
    what = f"a head on {started.describe()}" if head_only else "the whole fine-tuned model"
    return UploadedModel(model, WeightsUsed("user", "user", name=f"{wname} with {cname}: {what}, "
                                            f"{len(card['classes'])} classes"), list(card["classes"]))


def _read_card(data: bytes, name: str) -> dict[str, Any]:
    """A Studio model card from uploaded bytes, its fields checked; WeightsError when it is not one."""
    try:
        card = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{name} is not JSON: {str(e)[:120]}") from None
    ok = (isinstance(card, dict) and isinstance(card.get("arch"), str) and isinstance(card.get("config"), dict)
          and isinstance(card.get("weights"), dict) and isinstance(card["weights"].get("kind"), str)
          and isinstance(card.get("classes"), list) and card["classes"]
          and all(isinstance(c, str) for c in card["classes"]))
    if not ok:
        raise WeightsError(f"{name} is not a Studio model card (it needs arch, classes, weights and config, as "
                           "the Studio's model.json has).")
    try:
        started = WeightsUsed(**card["weights"])
    except TypeError:
        started = None
    if started is None or started.kind not in ("imagenet", "starter", "random"):
        raise WeightsError(f"{name}: its weights entry is not one the Studio writes.")
    return card


def split_head(state: dict[str, torch.Tensor], arch: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A transfer model's state split into its new head (under the registry's classifier path) and
    the encoder."""
    from core import registry

    prefix = registry.get(arch).classifier + "."
    head = {k: v for k, v in state.items() if k.startswith(prefix)}
    return head, {k: v for k, v in state.items() if k not in head}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and values, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Results:
    """A finished run read back from its folder."""

    folder: Path
    summary: dict[str, Any]
    model_info: dict[str, Any]
    val_images: torch.Tensor     # (N, 3, S, S) uint8
    val_labels: torch.Tensor

    @property
    def weights(self) -> WeightsUsed:
        """The weights the run really started from."""
        return WeightsUsed(**self.model_info["weights"])

    @property
    def config(self) -> TrainConfig:
        """The run's configuration, as its model card keeps it."""
        return TrainConfig(**self.model_info["config"])

    @property
    def classes(self) -> list[str]:
        return list(self.model_info["classes"])

    def network_spec(self, run_id: str) -> ArchSpec:
        """The run's network as an `ArchSpec` for the analysis engine and the diagram: the registry's
        architecture with the run's new head, at the run's image size; `build()` makes it on the meta
        device (no weights: the explorer counts, Inside loads `trained_model`)."""
        from functools import partial

        from core import registry
        from core.train.transfer import transfer_skeleton

        arch, cfg = registry.get(self.model_info["arch"]), self.config
        head = "a small MLP head" if cfg.scenario == "2" else "a new linear head"
        return ArchSpec(
            name=f"run:{run_id}", title=f"{arch.title} with {head} for {len(self.classes)} classes",
            family="Studio run", builder=partial(lambda c, n, **_: transfer_skeleton(c, n), cfg, len(self.classes)),
            input_size=(3, cfg.image_size, cfg.image_size), paper=arch.paper, year=arch.year,
            description=f"The network of Studio run {run_id}: {arch.title} ({self.weights.describe()} at the start), "
                        f"its classifier replaced for the run's classes ({', '.join(self.classes[:6])}"
                        f"{', ...' if len(self.classes) > 6 else ''}), at the run's {cfg.image_size}x{cfg.image_size} "
                        "images.", classifier=arch.classifier)

    @property
    def has_model(self) -> bool:
        """A model can be rebuilt: saved whole (fine-tuning) or as a head on a known encoder."""
        return any((self.folder / f).is_file() for f in ("model.safetensors", "head.safetensors"))

    @property
    def downloads(self) -> dict[str, str]:
        """The downloadable files this run left, with what each holds."""
        return {name: label for name, label in DOWNLOADS.items() if (self.folder / name).is_file()}

    def file_bytes(self, name: str) -> bytes:
        """One of the run's downloadable files (DOWNLOADS)."""
        if name not in DOWNLOADS:
            raise KeyError(name)
        return (self.folder / name).read_bytes()

    def trained_model(self) -> torch.nn.Module:
        """The trained model (eval mode), rebuilt from the card: loaded from model.safetensors, or
        its encoder rebuilt from the weights it started from with the saved head on top."""
        from safetensors.torch import load_file

        if (self.folder / "model.safetensors").is_file():
            return load_trained(self.model_info, load_file(str(self.folder / "model.safetensors")))
        return load_trained(self.model_info, load_file(str(self.folder / "head.safetensors")), head_only=True)

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
