"""Normalisation and per-axis geometry, checked against the formulas and MindSpore's tables."""

import itertools
import os
import re

import pytest

from convtranspose import spec as spec_module
from convtranspose.spec import AxisPlan, Conv2dTransposeSpec, axis_plan, tap_window

# docs/mindspore-behavior.md (the wrong 'valid' length): real 'valid' heights for H_in = 4 (the page's formula is wrong)
VALID_H4 = {
    (2, 1, 1): 5,
    (2, 1, 2): 6,
    (2, 2, 2): 9,
    (3, 1, 1): 6,
    (3, 2, 1): 9,
    (3, 3, 3): 16,
    (4, 1, 1): 7,
    (4, 2, 2): 13,
    (4, 4, 3): 22,
    (5, 1, 3): 16,
    (5, 2, 3): 19,
    (5, 4, 1): 17,
}


@pytest.mark.parametrize("ksd,expected", sorted(VALID_H4.items()))
def test_valid_lengths_are_mindspores(ksd, expected):
    k, s, d = ksd
    assert axis_plan(k, s, d, "valid", 0, 0, 0).output_length(4) == expected


@pytest.mark.parametrize("k,s,d,n", list(itertools.product(range(1, 6), range(1, 5), range(1, 4), (1, 4, 7))))
def test_axis_plan_matches_the_formulas(k, s, d, n):
    k_eff = d * (k - 1) + 1
    same = axis_plan(k, s, d, "same", 0, 0, 0)
    assert same.output_length(n) == n * s
    assert same.crop_before == max(k_eff - s, 0) // 2
    valid = axis_plan(k, s, d, "valid", 0, 0, 0)
    assert valid.output_length(n) == n * s + max(k_eff - s, 0) and valid.crop_before == 0
    for top, bottom, extra in ((0, 0, 0), (1, 2, 0), (2, 0, 1)):
        pad = axis_plan(k, s, d, "pad", top, bottom, extra)
        # the page's 'pad' formula, which the real library follows
        assert pad.output_length(n) == n * s - (top + bottom) + k + (d - 1) * (k - 1) - s + extra
        assert pad.window_length(n) == pad.output_length(n) - extra


def test_same_puts_the_odd_crop_at_the_end():
    plan = axis_plan(4, 1, 1, "same", 0, 0, 0)  # total crop 3: 1 before, 2 after
    assert (plan.crop_before, plan.crop_after) == (1, 2)


def test_short_kernel_extends_with_rows_no_tap_reaches():
    plan = axis_plan(1, 3, 1, "same", 0, 0, 0)
    assert plan.crop_after == -2 and plan.full_length(2) == 4 and plan.window_length(2) == 6


def test_from_args_normalises_every_form():
    spec = Conv2dTransposeSpec.from_args(
        4,
        6,
        (3, 2),
        stride=2,
        pad_mode="pad",
        padding=(1, 0, 2, 1),
        output_padding=1,
        dilation=(1, 2),
        group=2,
        has_bias=True,
    )
    assert spec.kernel_size == (3, 2) and spec.stride == (2, 2) and spec.dilation == (1, 2)
    assert spec.padding == (1, 0, 2, 1) and spec.output_padding == (1, 1)
    assert spec.weight_shape == (4, 3, 3, 2) and spec.bias_shape == (6,)
    assert spec.output_shape((1, 4, 5, 6)) == (1, 6, 10 + 1, 10 + 1)  # (5-1)*2+3-1, (6-1)*2+3-3
    assert isinstance(spec.axes[0], AxisPlan)
    assert hash(spec) == hash(Conv2dTransposeSpec.from_args(4, 6, (3, 2), 2, "pad", (1, 0, 2, 1), 1, (1, 2), 2, True))


def test_checks_run_in_mindspores_order():
    """Two faults: the earlier MindSpore check decides the exception type."""
    with pytest.raises(TypeError):  # stride type (step 1) before padding value (step 5)
        Conv2dTransposeSpec.from_args(2, 2, 3, stride=[1, 1], pad_mode="pad", padding=-1)
    with pytest.raises(ValueError, match="in_channels"):  # in before out
        Conv2dTransposeSpec.from_args(0, 0, 3)
    with pytest.raises(TypeError, match="has_bias"):  # has_bias (step 10) before pad_mode (step 12)
        Conv2dTransposeSpec.from_args(2, 2, 3, pad_mode="bogus", has_bias=1)
    assert Conv2dTransposeSpec.weight_shape_of(2, 4, 3, group=2, pad_mode="bogus", has_bias=1) == (2, 2, 3, 3)


def test_initializers_are_drawn_between_mindspores_checks():
    """The weight initializer after the channel and kernel checks, the bias's after has_bias, both before pad_mode."""
    import convtranspose as ct

    with pytest.raises(ValueError, match="group"):  # a kernel check before the weight initializer
        ct.Conv2dTranspose(2, 4, 3, group=3, weight_init="bogus")
    with pytest.raises(ValueError, match="weight_init"):  # the weight initializer before has_bias
        ct.Conv2dTranspose(2, 4, 3, weight_init="bogus", has_bias=1)
    with pytest.raises(TypeError, match="has_bias"):  # has_bias before the bias initializer
        ct.Conv2dTranspose(2, 4, 3, has_bias=1, bias_init="bogus")
    with pytest.raises(ValueError, match="bias_init"):  # the bias initializer before pad_mode
        ct.Conv2dTranspose(2, 4, 3, has_bias=True, bias_init="bogus", pad_mode="bogus")


@pytest.mark.parametrize("x_shape,match", [((2, 4, 4), "4-D"), ((1, 3, 4, 4), "in_channels")])
def test_check_shapes_names_the_problem(x_shape, match):
    spec = Conv2dTransposeSpec.from_args(2, 2, 3)
    with pytest.raises(ValueError, match=match):
        spec.check_shapes(x_shape, spec.weight_shape)


def test_a_crop_past_the_result_is_a_clear_value_error():
    spec = Conv2dTransposeSpec.from_args(2, 2, 3, pad_mode="pad", padding=2)
    with pytest.raises(
        ValueError,
        match=r"padding=\(2, 2, 2, 2\) is too large for the height axis.*"
        r"input height of 1 is 3 rows long.*crops 4, which removes 4 rows "
        r"where only 3 exist",
    ):
        spec.check_shapes((1, 2, 1, 1), spec.weight_shape)


@pytest.mark.parametrize(
    "kwargs,x_shape,axis,full,cropped",
    [
        (dict(kernel_size=3, padding=(2, 2, 0, 0)), (1, 2, 1, 1), "height", 3, 4),
        (dict(kernel_size=3, padding=3), (1, 2, 1, 4), "height", 3, 6),
        (
            dict(kernel_size=(1, 3), stride=(1, 2), dilation=(1, 4), padding=(0, 0, 10, 9)),
            (1, 2, 3, 2),
            "width",
            11,
            19,
        ),
        (dict(kernel_size=4, stride=3, padding=(2, 3, 0, 0)), (1, 2, 1, 5), "height", 4, 5),
    ],
)
def test_a_crop_message_says_how_long_the_full_result_is_and_what_the_padding_removes(
    kwargs, x_shape, axis, full, cropped
):
    """The lengths are worked out by hand from (n-1)*stride + dilation*(kernel-1) + 1."""
    spec = Conv2dTransposeSpec.from_args(2, 2, pad_mode="pad", **kwargs)
    rows = "rows" if axis == "height" else "columns"
    with pytest.raises(ValueError) as info:
        spec.check_shapes(x_shape, spec.weight_shape)
    message = str(info.value)
    assert f"too large for the {axis} axis" in message, message
    assert f"is {full} {rows} long" in message, message
    assert f"the padding crops {cropped}, which removes {cropped} {rows} where only {full} exist" in message, message
    assert f"padding={spec.padding}" in message and f"stride={spec.stride}" in message, message
    assert not re.search(r"-\d+ (rows|columns)", message), message


def test_a_crop_to_nothing_before_output_padding_names_output_padding():
    spec = Conv2dTransposeSpec.from_args(2, 2, 3, stride=2, pad_mode="pad", padding=(0, 0, 2, 1), output_padding=1)
    with pytest.raises(ValueError) as info:
        spec.check_shapes((1, 2, 3, 1), spec.weight_shape)
    message = str(info.value)
    assert "width axis" in message and "is 3 columns long" in message and "removes all 3 columns" in message
    assert "output_padding=(1, 1)" in message, message
    # one more input column: a window of 5 - 3 columns, then the output_padding column
    assert spec.output_shape((1, 2, 3, 2)) == (1, 2, 7 + 1, 2 + 1)
    spec.check_shapes((1, 2, 3, 2), spec.weight_shape)


def test_the_memory_limit_is_half_the_physical_memory():
    if not hasattr(os, "sysconf"):
        pytest.skip("no os.sysconf here: the limit falls back to 1 TiB")
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pytest.skip("the OS does not report its physical memory")
    assert spec_module.MEMORY_LIMIT == physical // 2


def test_the_memory_limit_refuses_one_byte_more_and_accepts_the_rest(monkeypatch):
    monkeypatch.setattr(spec_module, "MEMORY_LIMIT", 2**20)  # 1 MiB
    spec = Conv2dTransposeSpec.from_args(1, 1, 1)
    assert spec.check_shapes((1, 1, 512, 512), spec.weight_shape) == (1, 1, 512, 512)  # 1 MiB of float32
    with pytest.raises(ValueError, match=r"output would have shape \(1, 1, 512, 513\) .* x of shape \(1, 1, 512, 513"):
        spec.check_shapes((1, 1, 512, 513), spec.weight_shape)
    assert spec.check_shapes((1, 1, 512, 1024), spec.weight_shape, itemsize=2)  # float16 output
    # the parameters: 16 bytes an element while they are drawn (float64 draw and result)
    assert Conv2dTransposeSpec.from_args(1, 1, 256).weight_shape == (1, 1, 256, 256)
    with pytest.raises(ValueError, match=r"weight would have shape \(1, 1, 256, 257\).*kernel_size=\(256, 257\)"):
        Conv2dTransposeSpec.from_args(1, 1, (256, 257))


def test_huge_ints_are_echoed_by_their_length():
    with pytest.raises(
        ValueError,
        match=r"^in_channels must be a positive int, got in_channels=<a negative int "
        r"of 16610 bits>$",
    ):
        Conv2dTransposeSpec.from_args(-(10**5000), 1, 1)
    with pytest.raises(ValueError, match=r"GiB.*in_channels=<an int of 401 digits>"):
        Conv2dTransposeSpec.from_args(10**400, 1, 1)
    spec = Conv2dTransposeSpec.from_args(1, 1, 1, stride=10**400)
    with pytest.raises(ValueError, match=r"stride=\(<an int of 401 digits>, <an int of 401 digits>\)"):
        spec.check_shapes((1, 1, 1, 1), spec.weight_shape)


def test_the_tap_window_of_a_short_kernel_skips_the_trailing_rows():
    plan = axis_plan(1, 3, 1, "same", 0, 0, 0)
    assert tap_window(plan, 0, 2) == (slice(0, 2), slice(0, 4, 3))


def test_a_tap_window_of_one_row_steps_by_one_whatever_the_stride():
    """A framework slice takes a 64-bit step: one row needs none, however huge the stride."""
    plan = axis_plan(2, 2**70, 1, "pad", 0, 0, 0)
    assert tap_window(plan, 1, 1) == (slice(0, 1), slice(1, 2, 1))
    cropped = axis_plan(2, 2**70, 1, "pad", 2**70, 0, 0)  # row 0 cropped away: row 1 alone
    assert tap_window(cropped, 0, 2) == (slice(1, 2), slice(0, 1, 1))
