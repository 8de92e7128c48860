"""Image captioning on a pretrained encoder: the lecture's "transfer learning is the norm", second half.

The slide's CNN + RNN (Karpathy & Fei-Fei, CVPR 2015; Vinyals et al., "Show and Tell", CVPR 2015):
a CNN turns the image into features, a recurrent network writes the sentence one word at a time,
each word fed back in as the next input. Here the CNN is our ResNet-18 up to layer3 (at 64 pixels a
4x4 map of 256 channels) or layer4 (2x2 of 512), an option, and the RNN a GRU (or an LSTM) with 256
units over word embeddings of 64. Two ways for the words to see the image (an option):

- "init": the map, flattened (so where things are survives), sets the RNN's first state through
  one linear layer and a tanh: Show and Tell's way, the image seen once.
- "attention": at every word the RNN also reads a weighted average of the map's cells, the
  weights computed from its state (Bahdanau-style additive attention; Xu et al., "Show, Attend
  and Tell", ICML 2015); its first state comes from the map's mean.

Attention is the default: measured on these scenes (bench/README.md), a decoder that sees the
image only through its first state stays at the sentences' word statistics (cross-entropy about
0.84 per word, what knowing nothing of the image gives) for more epochs than a CPU run has, even on
frozen features; with attention it reads colours, shapes and places within a few epochs.

Training uses teacher forcing (the true previous word as input, cross-entropy on the next one);
captions are decoded greedily, or with a beam search over the `beam` best partial sentences.
Corpus BLEU-1..4 (Papineni et al. 2002; torchmetrics' `BLEUScore`, one reference per image) and
the rate of exactly right sentences measure them on validation scenes.

As in `core.lab.detect`, two captioners train one after the other on the same scenes with the
same recipe and the same initialisation of the decoder: "pretrained" (starter weights, or
ImageNet's when cached) and "scratch" (random weights).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.images import normalise
from core.lab.common import Knob, check_knobs, save_arrays
from core.lab.reuse import (BACKBONE_KNOB, PRETRAINED_KNOB, SERIES, STAGES, TRAINS, counts, encoder, resolve,
                            set_trainable)
from core.lab.scenes import BOS, EOS, PAD, caption_scenes, decode, encode, vocabulary
from core.train.context import JobContext
from core.train.events import Done, Note, Phase, RunInfo, Snapshot
from core.train.loop import LoopConfig, Stepper, run_loop, set_train_mode
from core.weights import WeightsUsed

SHOW = 4                 # validation scenes pictured after every epoch
KEEP = 12                # validation scenes whose final captions the results keep
MAX_WORDS = 16           # the longest sentence decoding writes (the scenes' have 9 or 11 words)
EMBED = 64               # numbers per word embedding
ATTENTION = 128          # units of the attention's hidden layer
CHANNELS = {"layer3": 256, "layer4": 512}   # channels of the maps the decoder can read
STRIDES = {"layer3": 16, "layer4": 32}      # their pixels per cell


@dataclass(frozen=True)
class Config:
    """One comparison run (pretrained vs scratch). Units in the comments."""

    scenes: int = 800            # generated training scenes (one caption each)
    val_scenes: int = 200        # generated validation scenes (other scenes, the same generator)
    size: int = 64               # pixels per side (a multiple of 32: ResNet-18 halves it five times)
    features: str = "layer3"     # the map the RNN reads: "layer3" (size/16 cells a side) or "layer4" (size/32)
    decoder: str = "attention"   # how the RNN sees the image: "attention" (at every word) or "init" (its first state)
    rnn: str = "gru"             # "gru" or "lstm"
    hidden: int = 256            # units of the RNN
    beam: int = 1                # beam width of decoding (1 = greedy)
    pretrained: str = "starter"  # the pretrained network's weights: "starter" or "imagenet" (when cached)
    backbone: str = "all"        # which stages of the pretrained encoder train: "frozen", "top" (layer3-4), "all"
    epochs: int = 6              # passes over the training scenes, per network
    batch_size: int = 32         # scenes per step
    lr: float = 2e-3             # peak LR of the one-cycle schedule (AdamW)
    seed: int = 0                # scenes, initialisation, batches
    task: ClassVar[str] = "caption"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "scenes": Knob("Training scenes", 8, 50_000, step=100),
        "val_scenes": Knob("Validation scenes", 4, 5_000, step=50, more=True),
        "size": Knob("Scene size (pixels)", choices=(32, 64, 96, 128), help="ResNet-18's last map is size/32 a side."),
        "features": Knob("Map the RNN reads", choices=("layer3", "layer4"),
                         names={"layer3": "layer3 (4x4 at 64 px)", "layer4": "layer4 (2x2 at 64 px)"},
                         help="The encoder's stages up to this one are reused; the ones after it are not used."),
        "decoder": Knob("How the RNN sees the image", choices=("attention", "init"),
                        names={"init": "first state (Show and Tell)", "attention": "attention (Show, Attend and Tell)"},
                        help="Attention reads the map's cells again at every word. With the map only as the first "
                             "state, the RNN learns the sentences' word statistics long before it reads the image: "
                             "far slower here."),
        "rnn": Knob("Recurrent network", choices=("gru", "lstm"), names={"gru": "GRU", "lstm": "LSTM"}, more=True),
        "hidden": Knob("RNN units", 16, 1024, step=16, more=True),
        "beam": Knob("Beam width (1 = greedy)", 1, 10, more=True),
        "pretrained": PRETRAINED_KNOB,
        "backbone": BACKBONE_KNOB,
        "epochs": Knob("Epochs (each network)", 1, 100),
        "batch_size": Knob("Batch size (scenes)", 2, 1024, more=True),
        "lr": Knob("Peak learning rate", 1e-6, 1, whole=False, rate=True),
        "seed": Knob("Seed (scenes, initialisation)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_knobs(problems, self)
        if problems:
            raise ValueError("; ".join(problems))


# --- the captioner ---------------------------------------------------------------------------------------

class Captioner(nn.Module):
    """ResNet-18 (conv1 up to `features`: layer3 or layer4) + a GRU/LSTM decoder over words."""

    def __init__(self, resnet: nn.Module, vocab: int, cells: int, features: str = "layer3", decoder: str = "init",
                 rnn: str = "gru", hidden: int = 256) -> None:
        super().__init__()
        stages = ("conv1", "bn1", "relu", "maxpool", *STAGES[2:STAGES.index(features) + 1])
        self.encoder = nn.Sequential(OrderedDict((n, getattr(resnet, n)) for n in stages))
        self.decoder_kind, self.rnn_kind, self.hidden = decoder, rnn, hidden
        c = CHANNELS[features]
        # Each cell's channels normalised: the encoder's outputs are large and uneven (a random one's
        # even more than a trained one's), and without this the decoder learns the sentences' word
        # statistics long before it learns to read the image.
        self.norm = nn.LayerNorm(c)
        states = 2 if rnn == "lstm" else 1                            # an LSTM starts from h and c
        if decoder == "init":
            self.init = nn.Linear(c * cells, states * hidden)         # the whole map, flattened
        else:
            self.init = nn.Linear(c, states * hidden)                 # the map's mean
            self.att_f = nn.Linear(c, ATTENTION)
            self.att_h = nn.Linear(hidden, ATTENTION)
            self.att_v = nn.Linear(ATTENTION, 1)
        self.embed = nn.Embedding(vocab, EMBED)
        width = EMBED + (c if decoder == "attention" else 0)
        self.cell = nn.LSTMCell(width, hidden) if rnn == "lstm" else nn.GRUCell(width, hidden)
        self.out = nn.Linear(hidden, vocab)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, S, S) -> the map's cells (N, L, C), L = (S/16)^2 or (S/32)^2."""
        return self.norm(self.encoder(x).flatten(2).transpose(1, 2))

    def start(self, f: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The RNN's first state from the cells (N, L, C): (h,) or (h, c), each (N, hidden)."""
        src = f.flatten(1) if self.decoder_kind == "init" else f.mean(1)
        return tuple(torch.tanh(self.init(src)).chunk(2 if self.rnn_kind == "lstm" else 1, dim=1))

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...],
             f: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One word: the previous tokens (N,) -> logits of the next (N, V) and the new state."""
        e = self.embed(tokens)                                        # (N, EMBED)
        if self.decoder_kind == "attention":
            score = self.att_v(torch.tanh(self.att_f(f) + self.att_h(state[0])[:, None]))   # (N, L, 1)
            e = torch.cat([e, (torch.softmax(score, 1) * f).sum(1)], 1)                     # (N, EMBED + C)
        state = self.cell(e, state) if self.rnn_kind == "lstm" else (self.cell(e, state[0]),)
        return self.out(state[0]), state

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: images (N, 3, S, S) and their captions' tokens (N, T) -> the logits of
        every next word (N, T - 1, V), word t + 1 predicted from words 0..t."""
        f = self.features(x)
        state = self.start(f)
        logits = []
        for t in range(tokens.shape[1] - 1):
            out, state = self.step(tokens[:, t], state, f)
            logits.append(out)
        return torch.stack(logits, 1)


@torch.no_grad()
def generate(model: Captioner, x: torch.Tensor, beam: int = 1, max_words: int = MAX_WORDS) -> torch.Tensor:
    """Token ids (N, <= max_words + 1) of the most likely caption of each image under a beam
    search of width `beam` (1 = greedy: the likeliest word every time). A sentence ends at <eos>;
    its score is the sum of its words' log-probabilities."""
    was = model.training
    model.eval()
    try:
        f = model.features(x)                                          # (N, L, C)
        n = len(f)
        f = f.repeat_interleave(beam, 0)                              # (N*B, L, C)
        state = tuple(s.repeat_interleave(beam, 0) for s in model.start(f[::beam]))
        tokens = torch.full((n * beam, 1), BOS, dtype=torch.long, device=x.device)
        score = torch.full((n, beam), float("-inf"), device=x.device)
        score[:, 0] = 0                                                # one live beam to start with
        done = torch.zeros(n, beam, dtype=torch.bool, device=x.device)
        for _ in range(max_words + 1):
            logits, state = model.step(tokens[:, -1], state, f)
            logp = torch.log_softmax(logits, 1).view(n, beam, -1)      # (N, B, V)
            v = logp.shape[-1]
            ended = torch.full_like(logp, float("-inf"))
            ended[..., PAD] = 0                                        # a finished sentence only pads, at no cost
            logp = torch.where(done[..., None], ended, logp)
            top = (score[..., None] + logp).view(n, -1).topk(beam, 1)  # (N, B) of B*V candidates
            src = (top.indices // v) + torch.arange(n, device=x.device)[:, None] * beam   # rows they extend
            word = top.indices % v
            tokens = torch.cat([tokens[src.flatten()], word.flatten()[:, None]], 1)
            state = tuple(s[src.flatten()] for s in state)
            done = done.flatten()[src.flatten()].view(n, beam) | (word == EOS)
            score = top.values
            if done.all():
                break
        best = score.argmax(1) + torch.arange(n, device=x.device) * beam
        return tokens[best]
    finally:
        model.train(was)


def bleu(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 (torchmetrics' BLEUScore: uniform weights over 1..n-grams, brevity penalty,
    no smoothing), one reference per hypothesis; and "exact", the fraction that equal theirs."""
    from torchmetrics.functional.text import bleu_score

    refs = [[r] for r in references]
    out = {f"bleu{n}": float(bleu_score(hypotheses, refs, n_gram=n)) for n in range(1, 5)}
    out["exact"] = float(np.mean([h == r for h, r in zip(hypotheses, references)])) if references else 0.0
    return out


# --- the run -------------------------------------------------------------------------------------------------

def build(cfg: Config, kind: str, vocab: int) -> tuple[Captioner, WeightsUsed]:
    """The captioner with its encoder started from `kind` weights, and the WeightsUsed. The
    decoder's initialisation depends only on the global seed (set it first): both series get the
    same."""
    resnet, used = encoder(kind)
    set_trainable(resnet, STAGES if kind == "random" else TRAINS[cfg.backbone])
    cells = (cfg.size // STRIDES[cfg.features]) ** 2
    return Captioner(resnet, vocab, cells, cfg.features, cfg.decoder, cfg.rnn, cfg.hidden), used


def captions_of(model: Captioner, x: torch.Tensor, vocab: list[str], beam: int, batch: int = 128) -> list[str]:
    """The decoded captions of normalised images (N, 3, S, S)."""
    return [decode(ids, vocab) for i in range(0, len(x), batch) for ids in generate(model, x[i:i + batch], beam)]


def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("drawing the scenes"))
    vocab = vocabulary()
    tr = caption_scenes(cfg.scenes, cfg.size, cfg.seed)
    va = caption_scenes(cfg.val_scenes, cfg.size, cfg.seed + 1_000_003)
    x_tr, x_va = normalise(tr.images.to(dev), cfg.size), normalise(va.images.to(dev), cfg.size)
    y_tr, y_va = encode(tr.captions, vocab).to(dev), encode(va.captions, vocab).to(dev)       # (N, T)
    kind, why = resolve(cfg.pretrained)
    if why:
        ctx.emit(Note(why, warn=True))
    final: dict[str, dict] = {}
    kept: dict[str, np.ndarray] = {}
    for series in SERIES:
        t_series = time.perf_counter()
        torch.manual_seed(cfg.seed)                   # the same decoder for both
        model, used = build(cfg, kind if series == "pretrained" else "random", len(vocab))
        model.to(dev)
        trainable, frozen = counts(model)
        ctx.emit(RunInfo(weights=used, n_train=cfg.scenes, n_val=cfg.val_scenes, trainable=trainable, frozen=frozen,
                         series=series))
        epoch = [0]

        def loss(idx: torch.Tensor, model: Captioner = model) -> torch.Tensor:
            y = y_tr[idx]
            return F.cross_entropy(model(x_tr[idx], y).transpose(1, 2), y[:, 1:], ignore_index=PAD)

        @torch.no_grad()
        def evaluate(model: Captioner = model, series: str = series,
                     epoch: list = epoch) -> tuple[float, dict[str, float]]:
            epoch[0] += 1
            was = model.training
            model.eval()
            val_loss = sum(float(F.cross_entropy(model(x_va[i:i + 128], y_va[i:i + 128]).transpose(1, 2),
                                                 y_va[i:i + 128, 1:], ignore_index=PAD, reduction="sum"))
                           for i in range(0, len(x_va), 128)) / max(1, int((y_va[:, 1:] != PAD).sum()))
            model.train(was)
            hyps = captions_of(model, x_va, vocab, cfg.beam)
            ctx.emit(Snapshot(epoch[0], {"images": va.images[:SHOW].permute(0, 2, 3, 1).numpy(),
                                         "captions": np.array(hyps[:SHOW]), "truth": np.array(va.captions[:SHOW])},
                              series))
            return val_loss, bleu(hyps, va.captions)

        def train_mode(model: Captioner = model) -> None:
            set_train_mode(model)                    # frozen BatchNorm layers keep their statistics

        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
        stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=train_mode, n_train=cfg.scenes, device=dev)
        last = run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit,
                        ctx.should_stop, series=series)
        final[series] = {**last.metrics, "weights": used.kind, "trainable": trainable,
                         "seconds": round(time.perf_counter() - t_series, 2)}
        kept[series] = np.array(captions_of(model, x_va[:KEEP], vocab, cfg.beam))
        ctx.emit(Done(metrics=last.metrics, seconds=time.perf_counter() - t_series, series=series))
    save_arrays(ctx.out_dir, images=va.images[:KEEP].permute(0, 2, 3, 1).numpy(), truth=np.array(va.captions[:KEEP]),
                **{f"{s}_captions": kept[s] for s in SERIES})
    return {"pretrained": final["pretrained"], "scratch": final["scratch"], "vocabulary": len(vocab),
            "weights_note": why, "seconds": round(time.perf_counter() - t0, 2)}


def summary(final: dict) -> str:
    p, s = final["pretrained"], final["scratch"]
    return (f"BLEU-4 {p['bleu4']:.2f} pretrained vs {s['bleu4']:.2f} from scratch; exact sentences "
            f"{p['exact']:.0%} vs {s['exact']:.0%}")
