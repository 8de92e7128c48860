"""The records a training run emits, the states of a job, and the faults a run can end in.

Torch-free on purpose: the server that shows a run, and the runner's tests, read these without
importing torch. Every event is a frozen dataclass; `as_dict` gives the JSON the CLI prints.
A run that trains several models one after another (U-Net beside an autoencoder) tags each
event with its `series`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:
    from core.weights import WeightsUsed

JobState = Literal["queued", "running", "done", "failed", "cancelled", "diverged", "interrupted"]
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})
JobKind = Literal["train", "lr_find", "lab", "compute"]


class Cancelled(RuntimeError):
    """The user cancelled the run."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class JobFailed(RuntimeError):
    """A run that cannot go on, with a message meant for the user as it is."""


@dataclass(frozen=True)
class Phase:
    """A stage of a run before or between training steps ("loading data", "computing features"),
    with its progress when it has any (done of total items)."""

    phase: str
    done: int = 0
    total: int = 0
    series: str = ""
    kind: str = field(default="phase", init=False)


@dataclass(frozen=True)
class RunInfo:
    """The model a run trains: which weights it really started from, its trainable and frozen
    parameters, and the split sizes."""

    weights: "WeightsUsed"
    n_train: int
    n_val: int
    trainable: int
    frozen: int
    series: str = ""
    kind: str = field(default="info", init=False)


@dataclass(frozen=True)
class Note:
    """A sentence for the user that does not end the run (e.g. the out-of-memory retry)."""

    message: str
    warn: bool = False         # shown as a warning (the run went wrong without failing)
    kind: str = field(default="note", init=False)


@dataclass(frozen=True)
class Step:
    """One logged optimisation step. `lrs` holds the LR of every parameter group (the stages of
    a fine-tune, first to head); `images_per_s` counts training images through the whole step and
    is None when the steps run on cached features."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lrs: tuple[float, ...]
    elapsed: float                   # seconds since the run started
    images_per_s: float | None
    eta: float                       # seconds left, from the mean step time so far
    series: str = ""
    kind: str = field(default="step", init=False)

    @property
    def lr(self) -> float:
        """The head's LR (the last group)."""
        return self.lrs[-1]


@dataclass(frozen=True)
class Epoch:
    """The end of an epoch: mean training loss of its logged steps and the validation metrics
    (`metrics` holds the task's own, e.g. {"acc": 0.93} or {"iou": 0.71})."""

    epoch: int
    train_loss: float
    val_loss: float
    metrics: dict[str, float]
    images_per_s: float | None
    elapsed: float
    series: str = ""
    kind: str = field(default="epoch", init=False)


@dataclass(frozen=True)
class LRPoint:
    """One step of the LR finder: the LR tried and the smoothed loss."""

    step: int
    total_steps: int
    lr: float
    loss: float
    kind: str = field(default="lr_point", init=False)


@dataclass(frozen=True)
class LRFound:
    """The LR finder's sweep and its suggestion."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    suggestion: float
    kind: str = field(default="lr_found", init=False)


@dataclass(frozen=True)
class Snapshot:
    """Pictures of the model at the end of an epoch (reconstructions, predicted masks), as small
    numpy arrays keyed by what they show; the task's page knows how to draw them."""

    epoch: int
    arrays: dict[str, Any]          # name -> numpy array
    series: str = ""
    kind: str = field(default="snapshot", init=False)


@dataclass(frozen=True)
class Done:
    """A model finished training; `metrics` are its final validation metrics."""

    metrics: dict[str, float]
    seconds: float
    series: str = ""
    kind: str = field(default="done", init=False)


Event = Union[Phase, RunInfo, Note, Step, Epoch, LRPoint, LRFound, Snapshot, Done]


def as_dict(e: Event) -> dict[str, Any]:
    """A plain, JSON-ready dict with the event's kind first."""
    d = asdict(e)
    if isinstance(e, RunInfo):
        d["weights"] = e.weights.describe()
    if isinstance(e, Snapshot):
        d["arrays"] = {k: list(getattr(v, "shape", ())) for k, v in e.arrays.items()}  # shapes only
    return {"type": d.pop("kind"), **d}
