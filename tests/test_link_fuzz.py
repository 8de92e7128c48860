"""Links with any values: the Lab's link reader on thousands of random values (fast), then every
page opened with random link parameters (a few each: a page run costs a second or two). No
exception, ever; what a page cannot use is ignored with a note."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from core import registry
from core.lab.common import TASKS, link_values, options, task_module
from tests.conftest import ROOT

APP = str(ROOT / "app.py")

# Text a link may carry: numbers of every size and form, floats' odd spellings, unicode, long text.
VALUE = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=24),
    st.sampled_from(["", "0", "1", "-3", "1e3", "²", "nan", "inf", "5e-06", "0.000005", "digits", "glyphs",
                     "shapes", "binary", "5,20", "8,110", "20,56", "7", "x" * 300, "1x572x572", "3x224x224"]),
)


@pytest.mark.parametrize("task", list(TASKS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_lab_link_reader_always_gives_a_config_it_can_train(task, data):
    cls = task_module(task).Config
    names = [f.name for f in options(cls)]
    raw = data.draw(st.dictionaries(st.sampled_from(names), VALUE, max_size=len(names)))
    link = link_values(cls, raw)
    cls(**link.values)                                   # the values taken always make a run
    assert set(link.ignored) <= set(raw)
    for name in set(raw) - set(link.ignored):            # every value not ignored is taken as written
        default = next(f.default for f in options(cls) if f.name == name)
        if not isinstance(default, str):
            assert link.values[name] == type(default)(link.values[name])
    for name, why in link.ignored.items():               # and every ignored one is named with its text
        assert why.startswith(f"{name}=")


def test_every_option_of_every_task_has_a_knob():
    for task in TASKS:
        cls = task_module(task).Config
        assert set(cls.KNOBS) == {f.name for f in options(cls)}, task


PAGE_PARAMS = {
    "pages/explorer.py": {"arch": st.one_of(st.sampled_from(registry.names()), VALUE), "size": VALUE,
                          "layer": VALUE, "quiz": VALUE, "o_padding": VALUE, "o_n_filters": VALUE,
                          "o_two_towers": VALUE, "o_width_mult": VALUE},
    "pages/design.py": {"stack": VALUE},
    "pages/lab.py": {"task": st.one_of(st.sampled_from(list(TASKS)), VALUE), "epochs": VALUE, "lr": VALUE,
                     "data": VALUE, "unseen": VALUE, "ways": VALUE, "depths": VALUE, "images": VALUE,
                     "size": VALUE, "bottleneck": VALUE, "job": VALUE, "view": VALUE},
    "pages/transfer.py": {"job": st.one_of(st.text("0123456789abcdef", min_size=12, max_size=12), VALUE),
                          "view": VALUE, "sid": VALUE},
    "pages/inside.py": {"sid": VALUE, "arch": VALUE},
    "pages/zoo.py": {"sid": VALUE},
}


@pytest.mark.parametrize("page", list(PAGE_PARAMS))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_page_takes_any_link_without_an_exception(page, data):
    params = data.draw(st.fixed_dictionaries({}, optional=PAGE_PARAMS[page]))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, params, [e.value for e in at.exception])
