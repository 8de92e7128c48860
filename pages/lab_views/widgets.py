"""A Lab task's widgets, drawn from its Config's knobs (core.lab.common.Knob): each widget takes
exactly the values the Config accepts, so a value from a link always fits it."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.lab.common import Knob

SLIDER_SPAN = 300      # whole-number ranges up to this wide are sliders, wider ones number boxes


def knob_widget(name: str, knob: Knob, value: Any, key: str) -> Any:
    """The widget for one option, showing `value` (a value the Config accepts)."""
    if isinstance(value, bool):
        return st.toggle(knob.label, bool(value), key=key, help=knob.help or None)
    if knob.choices is not None:
        options = list(knob.choices)
        shown = value if value in options else options[0]
        fmt = (knob.names or {}).get
        if isinstance(shown, str):
            return st.radio(knob.label, options, options.index(shown), key=key, horizontal=True,
                            format_func=lambda v: fmt(v, str(v)), help=knob.help or None)
        return st.select_slider(knob.label, options, shown, key=key, help=knob.help or None,
                                format_func=lambda v: fmt(v, str(v)))
    if knob.lo is None or knob.hi is None:
        raise ValueError(f"the knob of {name!r} has no range and no choices: its view draws it")
    if knob.whole:
        lo, hi = int(knob.lo), int(knob.hi)
        step = int(knob.step or 1)
        if hi - lo <= SLIDER_SPAN and step == 1:
            return st.slider(knob.label, lo, hi, int(value), key=key, help=knob.help or None)
        return int(st.number_input(knob.label, lo, hi, int(value), step, key=key, help=knob.help or None))
    return float(st.number_input(knob.label, float(knob.lo), float(knob.hi), float(value),
                                 float(knob.step) if knob.step else None, format="%.1e" if knob.rate else "%.2f",
                                 key=key, help=knob.help or None))


def knob_widgets(config_cls: type, d: dict[str, Any], names: list[str], prefix: str,
                 more_settings: bool = True) -> dict[str, Any]:
    """The widgets of `names` in order, then (with `more_settings`) every other option with a `more`
    knob under "More settings"; keys are `<prefix>_<name>`."""
    knobs = config_cls.KNOBS
    out = {n: knob_widget(n, knobs[n], d[n], f"{prefix}_{n}") for n in names}
    more = [n for n, k in knobs.items() if k.more and n not in out] if more_settings else []
    if more:
        with st.expander("More settings"):
            out |= {n: knob_widget(n, knobs[n], d[n], f"{prefix}_{n}") for n in more}
    return out
