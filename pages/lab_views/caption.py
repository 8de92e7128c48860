"""Training Lab: image captioning (CNN + RNN) on a pretrained encoder vs from scratch (layout only;
see core.lab.caption)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.lab import caption as cp
from core.lab.common import LabResults
from core.lab.reuse import SERIES, compare
from core.lab.scenes import caption_scenes, vocabulary
from core.train.events import Event, Snapshot
from pages.lab_views.reuse import COLOURS, NAMES, two_curves, verdict, weights_lines
from pages.lab_views.widgets import knob_widgets

INTRO = ("The lecture: transfer learning is the norm. A captioner reuses a pretrained CNN to turn the image into "
         "features and trains a recurrent network to write the sentence, one word at a time. Here a ResNet-18 and a "
         "GRU learn to describe generated scenes (\"a large red circle above a small blue square\") twice, with the "
         "same recipe: on our pretrained ResNet-18, and on the same ResNet-18 from scratch.")


# Measured on a 2-core CPU (seed 0; bench/README.md, bench_lab section).
MEASURED = ("The default run (800 scenes, 6 epochs per network, seed 0) ends at BLEU-4 0.80 and 27% exact sentences "
            "with the starter encoder fine-tuned vs 0.67 and 6.5% from scratch; it takes about 66 s on an idle "
            "2-core CPU (both networks), seconds on a GPU. "
            "With 1,000 scenes and 6 epochs the fine-tuned starter encoder ends far ahead "
            "(BLEU-4 0.85, 44% exact sentences vs 0.68 and 6% from scratch), though it starts slower (behind after "
            "epochs 2 and 3). The claim does not hold everywhere: with the starter encoder *frozen*, BLEU-4 is 0.35 "
            "(scratch 0.68): the fractals it learnt from were coloured at random, and its layer3 features tell "
            "our 8 colours apart less well than a random network's (a linear probe: 40% vs 70%; shapes 46% vs 34%), "
            "while 8 of the 24 words are colours. With only 300 scenes (12 epochs) the two tie (0.67 vs 0.65).")


def controls(d: dict[str, Any]) -> dict[str, Any]:
    return knob_widgets(cp.Config, d, ["scenes", "features", "decoder", "pretrained", "backbone", "epochs", "lr"],
                        "cap")


@st.cache_data(max_entries=8)
def _examples(size: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    s = caption_scenes(4, size, seed)
    return [s.images[i].permute(1, 2, 0).numpy() for i in range(4)], s.captions


def explain(cfg: cp.Config | None) -> None:
    with st.expander("How it works: scenes, sentences, CNN + RNN, BLEU", expanded=False):
        st.markdown(
            "- **Scenes and sentences.** Two shapes that do not touch, each one of 8 colours and small or large. The "
            "sentence names the upper one first (\"above\") or the left one first (\"to the left of\"), whichever "
            f"axis separates them more. {len(vocabulary()) - 3} words in all.\n"
            "- **CNN + RNN.** The ResNet-18's stages up to layer3 (a 4x4 map of 256 numbers per cell at 64 pixels) "
            "or layer4 (2x2 cells of 512) are reused. The map either sets the recurrent network's first state (Show "
            "and Tell) or is read again at every word through attention (Show, Attend and Tell). Training feeds the "
            "true previous word (teacher forcing); generation feeds back "
            "its own, greedily or with a beam search.\n"
            "- **BLEU.** The share of the generated 1-, 2-, 3- and 4-word sequences that appear in the true sentence, "
            "combined (geometric mean) and shortened sentences penalised; BLEU-4 uses all four. *Exact* counts "
            "sentences right word for word.\n"
            "- **The starter weights were pre-trained on generated fractals, not photographs**: this run measures what "
            "they are worth here.")
        if cfg is not None:
            images, captions = _examples(cfg.size, cfg.seed)
            st.image([im.repeat(3, 0).repeat(3, 1) for im in images], width=3 * cfg.size, caption=captions)
    st.info(MEASURED)


def _captioned(images: np.ndarray, rows: dict[str, np.ndarray], truth: np.ndarray) -> None:
    """Each image with the true sentence and every network's, a tick where one is exactly right."""
    cols = st.columns(len(images))
    for i, col in enumerate(cols):
        col.image(images[i].repeat(3, 0).repeat(3, 1), width="stretch")
        lines = [f"*true:* {truth[i]}"] + [f"**{NAMES[s]}:** {c[i]}{' ✓' if c[i] == truth[i] else ''}"
                                           for s, c in rows.items()]
        col.markdown("  \n".join(lines))


def live(events: list[Event], cfg: cp.Config) -> None:
    weights_lines(events)
    if any(e.kind in ("step", "epoch") for e in events):
        st.plotly_chart(two_curves(events, "bleu4", "BLEU-4", "cross-entropy per word"), key="cap_curves")
    snaps = {s: next((e for e in reversed(events) if isinstance(e, Snapshot) and e.series == s), None) for s in SERIES}
    first = next((snap for snap in snaps.values() if snap is not None), None)
    if first is None:
        return
    _captioned(first.arrays["images"], {s: snap.arrays["captions"] for s, snap in snaps.items() if snap is not None},
               first.arrays["truth"])
    st.caption("Validation scenes and the sentences each network writes after its latest epoch ("
               + ", ".join(f"{NAMES[s]}: epoch {snap.epoch}" for s, snap in snaps.items() if snap is not None) + ").")


def results(res: LabResults) -> None:
    f, cfg = res.final, cp.Config(**res.config)
    st.subheader("Pretrained encoder vs from scratch")
    c = st.columns(2)
    b4, ex = compare(f, "bleu4"), compare(f, "exact")
    c[0].metric("BLEU-4 (pretrained vs scratch)", f"{b4.pretrained:.2f} vs {b4.scratch:.2f}", f"{b4.gap:+.2f}")
    c[1].metric("Exact sentences", f"{ex.pretrained:.0%} vs {ex.scratch:.0%}", f"{ex.gap:+.0%}")
    verdict(b4, "BLEU-4", f"{cfg.epochs} epochs over {cfg.scenes} scenes each")
    if f.get("weights_note"):
        st.info(f["weights_note"])
    keys = ["bleu1", "bleu2", "bleu3", "bleu4", "exact"]
    fig = go.Figure([go.Bar(name=NAMES[s], x=["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "exact"],
                            y=[f[s][k] for k in keys], marker_color=COLOURS[s],
                            text=[f"{f[s][k]:.2f}" for k in keys], textposition="outside") for s in SERIES])
    fig.update_layout(barmode="group", height=320, margin=dict(t=40, b=10), yaxis=dict(range=[0, 1.1]),
                      title=f"Validation sentences ({'greedy' if cfg.beam == 1 else f'beam {cfg.beam}'} decoding)",
                      legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(fig, key="cap_bars")
    a = res.arrays
    for k in range(0, len(a["images"]), 4):
        sl = slice(k, k + 4)
        _captioned(a["images"][sl], {s: a[f"{s}_captions"][sl] for s in SERIES}, a["truth"][sl])
