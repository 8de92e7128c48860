"""Plotly figure builders shared by the pages, the lecture path and its static handout.

A builder takes raw numbers (a `Summary`, a dataclass of `core.design`, the Model Zoo's rows, a
run's events) and returns a `go.Figure`; it never formats for one page only and never imports
Streamlit, so the Architecture Explorer, the Design Lab, the Model Zoo, the lecture path and the
handout (`core.lecture.handout`, written without a server) draw the same chart from the same
code. Projector-sized text (15 pt) and legends under the plot, as every page uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.design import PLAIN_VS_RESNET, GapVsFc, SeparableCost, StackVsLarge, rf_grid
from core.formatting import fmt_shape
from core.train.events import Epoch, Event, Step

if TYPE_CHECKING:
    import pandas as pd

    from core.analysis import Summary
    from core.train.changed import WhatChanged

FONT = dict(size=15)
COLOURS = {"": "#1f77b4", "unet": "#d62728", "autoencoder": "#1f77b4", "plain20": "#9467bd",
           "plain56": "#d62728", "resnet20": "#2ca02c", "resnet56": "#17becf"}


def styled(fig: go.Figure, height: int = 340) -> go.Figure:
    """The Design Lab's style: projector-sized text, the legend under the plot (beside it, it takes
    a third of the width at 1024 px)."""
    fig.update_layout(height=height, margin=dict(t=40, b=10, l=10, r=10), font=FONT,
                      legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    return fig


# --- the Architecture Explorer ------------------------------------------------------------------

def layer_chart(summary: Summary, current: int | None = None, log: bool = True, height: int = 520) -> go.Figure:
    """Parameters (top) and activation values (bottom) per layer call, the `current` layer red:
    early layers hold the activations, late (FC) layers the parameters."""
    layers = summary.layers
    xs = list(range(len(layers)))
    names = [f"{r.index}: {r.name} ({fmt_shape(r.output_shape)})" for r in layers]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Parameters per layer", "Activation values per layer (one image)"))
    fig.add_bar(x=xs, y=[r.params for r in layers], hovertext=names, name="parameters",
                marker_color=["#d62728" if r.index == current else "#1f77b4" for r in layers], row=1, col=1)
    fig.add_bar(x=xs, y=[r.activation_elems for r in layers], hovertext=names, name="activations",
                marker_color=["#d62728" if r.index == current else "#2ca02c" for r in layers], row=2, col=1)
    fig.update_yaxes(type="log" if log else "linear")
    fig.update_layout(height=height, showlegend=False, margin=dict(t=40, b=10), xaxis2_title="layer index",
                      font=FONT)
    return fig


def totals_bars(names: Sequence[str], values: Sequence[float], title: str, axis: str,
                highlight: Sequence[str] = (), log: bool = False, height: int = 320) -> go.Figure:
    """One bar per network (parameters, GMACs, ...), each labelled with its value; `highlight`ed
    names in red."""
    fig = go.Figure(go.Bar(x=list(names), y=list(values), text=[f"{v:,.3g}" for v in values],
                           textposition="outside", cliponaxis=False,
                           marker_color=["#d62728" if n in highlight else "#1f77b4" for n in names]))
    fig.update_layout(title=title, yaxis=dict(title=axis, type="log" if log else "linear", rangemode="tozero"))
    return styled(fig, height)


# --- the Design Lab -----------------------------------------------------------------------------

def rf_grid_figure(rf_stack: list[int], height: int = 360) -> go.Figure:
    """The input pixels the centre unit sees after each layer of a stack, as nested squares."""
    fig = go.Figure(go.Heatmap(z=rf_grid(rf_stack), colorscale="Blues", showscale=True,
                               colorbar=dict(title="layer")))
    fig.update_layout(title="Input pixels seen by the centre unit, by layer", yaxis_scaleanchor="x")
    return styled(fig, height)


def stack_cost_figure(r: StackVsLarge, height: int = 360) -> go.Figure:
    """Weights and MACs of n stacked k x k layers against one K x K layer (log scale)."""
    fig = go.Figure([go.Bar(name=f"{r.n} x {r.k}x{r.k}", x=["weights", "MACs"], y=[r.weights_stack, r.macs_stack]),
                     go.Bar(name=f"1 x {r.big}x{r.big}", x=["weights", "MACs"], y=[r.weights_large, r.macs_large])])
    fig.update_layout(barmode="group", yaxis_type="log", title="Cost (log scale)")
    return styled(fig, height)


def separable_figure(sc: SeparableCost, height: int = 340) -> go.Figure:
    """Multiply-accumulates of a standard convolution against its depthwise and pointwise parts."""
    fig = go.Figure(go.Bar(x=["standard", "depthwise", "pointwise", "separable total"],
                           y=[sc.standard, sc.depthwise, sc.pointwise, sc.separable],
                           marker_color=["#1f77b4", "#2ca02c", "#98df8a", "#d62728"]))
    fig.update_layout(title="Multiply-accumulates")
    return styled(fig, height)


def bottleneck_figure(naive_macs: float, reduced_macs: float, inception_naive_macs: float,
                      inception_reduced_macs: float, height: int = 340) -> go.Figure:
    """The 1x1 example and the Inception module, each without and with 1x1 reductions (log MACs)."""
    x = ["1x1 example", "Inception module"]
    fig = go.Figure([go.Bar(x=x, y=[naive_macs, inception_naive_macs], name="without 1x1"),
                     go.Bar(x=x, y=[reduced_macs, inception_reduced_macs], name="with 1x1")])
    fig.update_layout(barmode="group", yaxis_type="log", title="MACs (log scale)")
    return styled(fig, height)


def gap_figure(g: GapVsFc, height: int = 280) -> go.Figure:
    """Weights of a fully connected head against global average pooling (none)."""
    return styled(go.Figure(go.Bar(x=["FC", "GAP"], y=[g.fc_weights, g.gap_weights])).update_layout(title="Weights"),
                  height)


def resnet_table2(height: int = 320) -> go.Figure:
    """The ResNet paper's Table 2 (ImageNet top-1 error, plain vs ResNet at 18 and 34 layers) as bars
    from zero, each labelled with its value: from zero the bars look alike, and the numbers carry
    the 0.6-point and 2.9-point differences (TABLE2_CAPTION says so)."""
    fig = go.Figure([go.Bar(name=name, x=list(PLAIN_VS_RESNET), y=[v[i] for v in PLAIN_VS_RESNET.values()],
                            marker_color=colour, text=[f"{v[i]:.2f}%" for v in PLAIN_VS_RESNET.values()],
                            textposition="outside")
                     for i, (name, colour) in enumerate([("plain", COLOURS["plain56"]), ("ResNet", COLOURS["resnet20"])])])
    fig.update_layout(barmode="group", height=height, margin=dict(t=50, b=10),
                      title="ImageNet top-1 error (%), ResNet paper Table 2",
                      yaxis=dict(title="top-1 error (%)", range=[0, 35]))
    return fig


TABLE2_CAPTION = ("The axis starts at 0, so the bars look alike: the effect is in the numbers. Going from 18 to 34 "
                  "layers, the plain net gets 0.60 points worse (27.94% -> 28.54%) and the ResNet 2.85 points better "
                  "(27.88% -> 25.03%).")


# --- the Model Zoo --------------------------------------------------------------------------------

# One name per lecture family (more overlap: VGG's eight variants sit on top of each other).
NAMED_ON_CHART = ("alexnet", "vgg16", "googlenet", "inception_v3", "resnet18", "resnet50", "resnet152",
                  "mobilenet_v2", "mobilenet_v3_small")


def zoo_scatter(view: pd.DataFrame, logx: bool = True, height: int = 640) -> go.Figure:
    """The lecture's "accuracy vs operations, blob size = parameters" chart of `core.zoo.zoo_rows`
    (a DataFrame of them, with a `group` column: the family for the lecture's, else "other").
    NAMED_ON_CHART labelled; strong colours (a projector washes out pastels); blobs half
    transparent with a dark outline, so VGG's overlapping blobs stay apart."""
    view = view.assign(label=view.name.where(view.name.isin(NAMED_ON_CHART), ""))
    fig = px.scatter(view, x="gmacs", y="acc1", size="params", color="group", hover_name="name", text="label",
                     hover_data={"params": ":,", "gmacs": ":.3f", "acc1": ":.2f", "year": True, "group": False,
                                 "resolution": True, "label": False},
                     log_x=logx, size_max=45, color_discrete_sequence=px.colors.qualitative.Bold,
                     color_discrete_map={"other (not in the lecture)": "#9a9a9a"},
                     labels={"gmacs": "GMACs (one image at the model's own resolution)", "acc1": "top-1 (%)",
                             "resolution": "input (pixels)"})
    fig.update_traces(marker=dict(opacity=0.65, line=dict(width=1.5, color="#222")), textposition="top center",
                      textfont=dict(size=13, color="#111"), cliponaxis=False)
    fig.update_traces(selector=dict(name="GoogLeNet"), textposition="bottom center")  # ResNet-18 sits on it
    fig.update_layout(height=height, font=FONT, legend=dict(title_text="", orientation="h", yanchor="top",
                                                            y=-0.15, x=0))
    return fig


def zoo_groups(df: pd.DataFrame) -> pd.DataFrame:
    """The Zoo's rows with the chart's `group` column (the family for the lecture's models)."""
    return df.assign(group=df.family.where(df.in_lecture, "other (not in the lecture)"))


# --- training runs ---------------------------------------------------------------------------------

def curves(events: list[Event], metric: str, metric_title: str, percent: bool = False,
           loss_title: str = "loss", height: int = 340) -> go.Figure:
    """Training loss per step (left) and a validation metric per epoch (right), one line per series."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss per step", f"validation {metric_title} per epoch"))
    series = list(dict.fromkeys(e.series for e in events if isinstance(e, (Step, Epoch))))
    for s in series:
        steps = [e for e in events if isinstance(e, Step) and e.series == s]
        epochs = [e for e in events if isinstance(e, Epoch) and e.series == s]
        colour = COLOURS.get(s)
        name = s or "model"
        fig.add_scatter(x=[e.step for e in steps], y=[e.loss for e in steps], name=f"{name}: train loss",
                        line=dict(color=colour), row=1, col=1)
        fig.add_scatter(x=[e.epoch for e in epochs], y=[e.metrics.get(metric, e.val_loss) if metric != "loss"
                                                          else e.val_loss for e in epochs],
                        name=f"{name}: val {metric_title}", mode="lines+markers", line=dict(color=colour, dash="dot"),
                        row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text=loss_title, row=1, col=1)
    fig.update_yaxes(title_text=metric_title, tickformat=".0%" if percent else None,
                     range=[0, 1.02] if percent else None, row=1, col=2)
    fig.update_layout(height=height, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def error_curves(events: list[Event], height: int = 380) -> go.Figure:
    """Training error (solid) and validation error (dotted) per epoch, one colour per network: the
    ResNet paper's Figure 1, from a plain-vs-residual run."""
    fig = go.Figure()
    for s in dict.fromkeys(e.series for e in events if isinstance(e, Epoch)):
        ep = [e for e in events if isinstance(e, Epoch) and e.series == s]
        colour = COLOURS.get(s)
        fig.add_scatter(x=[e.epoch for e in ep], y=[e.metrics["train_error"] for e in ep], name=f"{s}: training",
                        mode="lines+markers", line=dict(color=colour, width=3))
        fig.add_scatter(x=[e.epoch for e in ep], y=[e.metrics["val_error"] for e in ep], name=f"{s}: validation",
                        mode="lines", line=dict(color=colour, dash="dot"))
    fig.update_layout(height=height, margin=dict(t=40, b=10), title="Error per epoch (solid: training, dotted: validation)",
                      xaxis=dict(title="epoch", dtick=1), yaxis=dict(title="error", tickformat=".0%", rangemode="tozero"),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def lr_finder_figure(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None,
                     height: int = 320) -> go.Figure:
    """The LR finder's smoothed loss against the learning rate (log axis), its suggestion dashed."""
    fig = go.Figure(go.Scatter(x=list(lrs), y=list(losses), mode="lines"))
    if suggestion:
        fig.add_vline(x=suggestion, line_dash="dash", annotation_text=f"suggested {suggestion:.1e}")
    fig.update_layout(xaxis_type="log", height=height, title="Loss vs learning rate", xaxis_title="learning rate",
                      yaxis_title="smoothed loss", margin=dict(t=50, b=10))
    return fig


def grouped_bars(groups: dict[str, dict[str, float]], title: str, percent: bool = True, top: float | None = None,
                 height: int = 340) -> go.Figure:
    """One bar group per key of each inner dict, one colour per outer key, values on the bars
    (accuracies per scenario, one-shot accuracy per method and N)."""
    fig = go.Figure([go.Bar(name=name, x=list(vals), y=list(vals.values()),
                            text=[f"{v:.0%}" if percent else f"{v:.2f}" for v in vals.values()],
                            textposition="outside", cliponaxis=False) for name, vals in groups.items()])
    fig.update_layout(barmode="group", title=title, margin=dict(t=50, b=10),
                      yaxis=dict(tickformat=".0%" if percent else None, range=[0, top] if top else None),
                      legend=dict(orientation="h", y=-0.2), height=height, font=FONT)
    return fig



def what_changed_figure(wc: "WhatChanged") -> go.Figure:
    """A Studio run's stages, first to last: how far training moved each stage's weights (bars,
    ||W_after - W_before|| / ||W_before||) and how alike its output stayed (line, linear CKA between the
    starting and the fine-tuned network on the same validation images). Frozen stages are grey."""
    names = [s.stage + (" (new head)" if s.new else "") for s in wc.stages]
    colours = ["#1f77b4" if s.trained else "#b0b0b0" for s in wc.stages]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=names, y=[s.weight_change for s in wc.stages], marker_color=colours,
                name="relative weight change", text=[f"{s.weight_change:.3g}" for s in wc.stages],
                textposition="outside", hovertemplate="%{x}: %{y:.4g}<extra>weight change</extra>")
    fig.add_scatter(x=names, y=[s.cka for s in wc.stages], mode="lines+markers", name="CKA, start vs fine-tuned",
                    line=dict(color="#d62728"), secondary_y=True,
                    hovertemplate="%{x}: %{y:.4f}<extra>linear CKA</extra>")
    fig.update_yaxes(title_text="||W_after - W_before|| / ||W_before||", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="linear CKA (1 = same representation)", range=[0, 1.05], secondary_y=True)
    fig.update_layout(title=f"What training changed, stage by stage ({wc.n_images} validation images; grey: frozen)",
                      legend=dict(orientation="h", y=-0.25), bargap=0.3)
    return styled(fig, 420)
