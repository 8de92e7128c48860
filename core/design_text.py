"""The Design Lab's comparisons in words: each formula with the numbers substituted, and the one
sentence that reads it, as Markdown. The Design Lab and the lecture path (and its handout) show the
same text for the same numbers, so it is written once, here, from `core.design`'s raw results and
the engine's summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.design import BlockCost, GapVsFc, SeparableCost, StackVsLarge
from core.formatting import fmt_count, fmt_int

if TYPE_CHECKING:
    from core.analysis import Summary


def stack_text(r: StackVsLarge) -> str:
    """n stacked k x k layers against one K x K: receptive field, weights both ways, MACs, ReLUs."""
    n, k, big, ch = r.n, r.k, r.big, r.channels
    return (f"- **Receptive field** after each layer: r = r_in + (k − 1)·j_in → "
            f"{' → '.join(str(x) for x in r.rf_stack)} pixels, vs **{r.rf_large}** for one {big}x{big}.\n"
            f"- **Weights, the slide's way** (per filter, one input channel group): {n}×{k}×{k}×{ch} = "
            f"**{fmt_int(r.slide_stack)}** vs 1×{big}×{big}×{ch} = **{fmt_int(r.slide_large)}**.\n"
            f"- **Weights, the VGG paper's way** (C → C channels): {n}×{k}²×C² = {n * k * k}C² = "
            f"**{fmt_int(r.weights_stack)}** vs {big}²×C² = {big * big}C² = **{fmt_int(r.weights_large)}** "
            f"({r.extra_weights_pct:.0f}% more for the large kernel).\n"
            f"- **MACs** at {r.fmap}x{r.fmap}: **{fmt_int(r.macs_stack)}** vs **{fmt_int(r.macs_large)}**.\n"
            f"- **Non-linearities**: {r.nonlinearities_stack} vs {r.nonlinearities_large}.")


def stack_verdict(r: StackVsLarge) -> str:
    same = r.rf_stack[-1] == r.rf_large
    return (("Same receptive field, " if same else f"Receptive field {r.rf_stack[-1]} vs {r.rf_large}, ")
            + f"{'fewer' if r.weights_stack < r.weights_large else 'more'} weights and {r.n} non-linearities "
              f"instead of one: this is why VGG uses only 3x3 convolutions.")


def separable_text(sc: SeparableCost) -> str:
    """Standard against depthwise-separable, MobileNet's formula with the numbers in it."""
    m_, n_, dk, df = sc.m, sc.n, sc.dk, sc.df
    return (f"- **Standard**: D_K·D_K·M·N·D_F·D_F = {dk}·{dk}·{m_}·{n_}·{df}·{df} = **{fmt_int(sc.standard)}**\n"
            f"- **Depthwise-separable**: D_K·D_K·M·D_F·D_F + M·N·D_F·D_F = {dk}·{dk}·{m_}·{df}·{df} + "
            f"{m_}·{n_}·{df}·{df} = {fmt_int(sc.depthwise)} + {fmt_int(sc.pointwise)} = **{fmt_int(sc.separable)}**\n"
            f"- **Ratio** = 1/N + 1/D_K² = 1/{n_} + 1/{dk * dk} = **{sc.ratio:.4f}** "
            f"({1 / sc.ratio:.1f}x fewer operations)\n"
            f"- Weights: {fmt_int(sc.params_standard)} vs {fmt_int(sc.params_separable)}")


def bottleneck_text(naive: Summary, reduced: Summary) -> str:
    """The lecture's 1x1 example: a 5x5 convolution directly, and after a 1x1 reduction to 16."""
    r1, r5 = reduced.layers
    return (f"- **5x5 directly**, 480 → 48 channels at 14x14: (14×14×48)×(5×5×480) = "
            f"**{fmt_count(naive.totals.macs)}** multiply-accumulates\n"
            f"- **With a 1x1 reduction to 16**: (14×14×16)×(1×1×480) = {fmt_count(r1.macs)} plus "
            f"(14×14×48)×(5×5×16) = {fmt_count(r5.macs)}, total **{fmt_count(reduced.totals.macs)}** "
            f"({naive.totals.macs / reduced.totals.macs:.0f}x fewer)")


def inception_text(naive: Summary, reduced: Summary) -> str:
    """The lecture's Inception module at 28x28x256, naive and with 1x1 reductions."""
    return (f"- **Inception module at 28x28x256**: naive {fmt_count(naive.totals.macs, 0)} MACs, output depth "
            f"{naive.layers[-1].output_shape[0]} (128 + 192 + 96 + 256: the pooling branch keeps all 256 channels); "
            f"with reductions {fmt_count(reduced.totals.macs)} MACs, output depth {reduced.layers[-1].output_shape[0]} "
            f"(128 + 192 + 96 + 64).")


BOTTLENECK_VERDICT = ("A cheap 1x1 layer shrinks the depth before the expensive spatial filter sees it: most of the "
                      "cost of a convolution is input depth × kernel area.")


def gap_text(g: GapVsFc, h: int, c: int, out: int) -> str:
    """A fully connected head on an h x h x c map against global average pooling."""
    return (f"- **FC**: {h}×{h}×{c} inputs × {out} outputs = **{fmt_int(g.fc_weights)}** weights "
            f"({fmt_count(g.fc_weights)})\n- **GAP**: average each {h}x{h} map to one number: "
            f"**{g.gap_weights}** weights, {g.gap_outputs} outputs")


GAP_VERDICT = ("GoogLeNet replaced the FC layers with global average pooling: no weights to overfit, "
               "and the paper reports about 0.6% better top-1 accuracy.")


def block_text(blk: BlockCost, c_in: int, c_out: int) -> str:
    """One block's channels and shortcut: identity (type 1) or a projection (type 2), and why."""
    return (f"- **{blk.name}**: {c_in} → {c_out} channels; shortcut: {blk.shortcut}"
            + (f", {fmt_int(blk.shortcut_params)} weights: the shapes differ, so x must be projected "
               "before it can be added." if blk.shortcut_params else
               ": input and output have the same shape, so x is added as it is (the lecture's type 1)."))


RESIDUAL_VERDICT = ("Without shortcuts the deeper plain net is worse (28.54% vs 27.94%): an optimisation problem, "
                    "not overfitting. With shortcuts depth helps (25.03% vs 27.88%).")
