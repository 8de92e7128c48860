"""One module per Training Lab task, each with INTRO, controls(defaults) -> values,
explain(cfg), live(events, cfg) and results(res): layout only, the work is in core.lab."""
