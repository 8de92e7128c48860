"""What the two "transfer learning is the norm" views share (detect, caption): the colours of the two
networks, their curves, which weights each started from, and the verdict line."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.lab.reuse import CLEAR_MARGIN, SERIES, Comparison
from core.train.events import Event, RunInfo
from pages.lab_views.charts import curves

COLOURS = {"pretrained": "#2ca02c", "scratch": "#7f7f7f"}
NAMES = {"pretrained": "pretrained encoder", "scratch": "from scratch"}


def two_curves(events: list[Event], metric: str, title: str, loss_title: str) -> go.Figure:
    """The lab's loss-per-step and metric-per-epoch chart, pretrained in green, scratch in grey."""
    fig = curves(events, metric, title, loss_title=loss_title)
    for s in SERIES:
        fig.for_each_trace(lambda t, s=s: t.update(line_color=COLOURS[s]), selector=lambda t, s=s: t.name.startswith(s))
    return fig


def weights_lines(events: list[Event]) -> None:
    """Which weights each network really started from."""
    infos = {e.series: e for e in events if isinstance(e, RunInfo) and e.series in SERIES}
    if infos:
        st.caption(" · ".join(f"**{s}**: {i.weights.describe()}, {i.trainable:,} trainable / {i.frozen:,} frozen "
                              "parameters" for s, i in infos.items()))


def verdict(c: Comparison, label: str, budget: str) -> None:
    """The lecture's claim, as this run measured it: green when it held, a warning when it did not."""
    said = f"{label}: {c.pretrained:.2f} with the pretrained encoder vs {c.scratch:.2f} from scratch, after {budget}."
    if c.held:
        st.success(f"The lecture's claim held in this run. {said}")
    elif c.gap > 0:
        st.warning(f"The lecture's claim did not clearly hold in this run: the pretrained encoder is ahead by less "
                   f"than {CLEAR_MARGIN:.2f}. {said}")
    else:
        st.warning(f"The lecture's claim did not hold in this run: the pretrained encoder is not ahead. {said}")
