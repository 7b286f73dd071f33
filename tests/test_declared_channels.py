"""A declaration's per-channel rule (proofs/per-channel.md) rests on its ``mixes_channels``
fact. A witness of several elements of one tensor says nothing of the axes they lie along, so
such a declaration is taken to mix channels unless it says otherwise: a trial's RMS norm over
``x0 x1 x2``, declared in a file (which had no way to say it), was given the per-channel rule
its per-tensor scale invariance would have, and channels scaled apart change its output."""

from __future__ import annotations

import numpy as np
import pytest

from ptq_verify import Operator
from ptq_verify.catalog.toml_file import load_operators
from ptq_verify.errors import UserError
from ptq_verify.rules import classify
from ptq_verify.rules.per_channel import per_channel_rule

NORM = """
[[operator]]
name = "RmsNorm3"
inputs = "x0 x1 x2"
expr = "x0/sqrt((x0**2 + x1**2 + x2**2)/3)"
"""


def _per_channel(op: Operator):
    return per_channel_rule(op, classify(op))


def test_a_norm_over_several_elements_claims_no_per_channel_rule(tmp_path):
    path = tmp_path / "ops.toml"
    path.write_text(NORM)
    op, = load_operators(path)
    assert classify(op).rule.kind.has_rule  # scale-invariant under one scale
    assert not _per_channel(op).holds
    # the claim it had made is false: channels scaled apart change the output
    x, scales = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.5])

    def norm(x0, x1, x2):
        return x0 / np.sqrt((x0**2 + x1**2 + x2**2) / 3)

    assert not np.isclose(norm(*(x * scales)), norm(*x))


def test_a_declaration_may_say_its_elements_share_a_channel(tmp_path):
    path = tmp_path / "ops.toml"
    path.write_text(NORM.replace('inputs = "x0 x1 x2"',
                                 'inputs = "x0 x1 x2"\nmixes_channels = false'))
    op, = load_operators(path)
    assert _per_channel(op).holds


def test_element_wise_declarations_mix_no_channels():
    assert not Operator("Swish", "x", "x*sigmoid(x)").mixes_channels
    assert not Operator("Sum", "a, b", "a + b").mixes_channels
    assert Operator("Mean3", "x0 x1 x2", "(x0 + x1 + x2)/3").mixes_channels


@pytest.mark.parametrize("value", ['"no"', "0", "[false]"])
def test_mixes_channels_is_a_boolean_in_a_file(tmp_path, value):
    path = tmp_path / "ops.toml"
    path.write_text(NORM + f"mixes_channels = {value}\n")
    with pytest.raises(UserError, match="'mixes_channels' must be true or false"):
        load_operators(path)
