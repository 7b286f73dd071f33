"""Tests that fix their own number of examples still deepen under ``pytest --slow``."""

from depth import examples
from hypothesis import settings


def test_fixed_example_counts_scale_with_the_profile():
    assert examples(15, settings.get_profile("default")) == 15
    assert examples(15, settings.get_profile("slow")) == 500
    assert examples(300, settings.get_profile("slow")) == 10000
