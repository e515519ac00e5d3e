"""``from_flax``: the layers that compute what Flax's ``nnx.ConvTranspose`` and ``nnx.Conv`` compute.

The sweep compares outputs on every configuration (kernels 1-5, strides 1-3, dilations 1-2,
'SAME', 'VALID' and explicit padding, with and without bias, both kernel conventions of
ConvTranspose, groups of Conv); the default run takes a sample, ``make test-slow`` all of it.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import convtranspose as ct  # noqa: E402
from convtranspose import flax as ct_flax  # noqa: E402
from convtranspose.spec import axis_plan, lax_transpose_crop  # noqa: E402

torch = pytest.importorskip("torch")
from convtranspose import torch as ct_torch  # noqa: E402

C_IN, C_OUT, SIZE = 4, 6, 5


def _paddings(k_eff, stride):
    """'SAME', 'VALID' and explicit (lo, hi) pairs, some past what MindSpore can express."""
    return ["SAME", "VALID", (0, 0), (1, 2), (k_eff - 1, k_eff - 1), (k_eff - 1, k_eff + stride - 1), (k_eff, 0)]


def _transposed_cases():
    for kernel, stride, dilation, use_bias, transpose_kernel in itertools.product(
        range(1, 6), range(1, 4), (1, 2), (True, False), (False, True)
    ):
        k_eff = dilation * (kernel - 1) + 1
        for padding in _paddings(k_eff, stride):
            yield kernel, stride, dilation, padding, use_bias, transpose_kernel


def _conv_cases():
    for kernel, stride, dilation, group in itertools.product(range(1, 6), range(1, 4), (1, 2), (1, 2)):
        for padding in ("SAME", "VALID", (0, 0), (1, 2), ((2, 0), (0, 1))):
            yield kernel, stride, dilation, padding, group


def _flax_output(module, x_nchw):
    """The Flax module's output (NHWC in and out) in NCHW."""
    return np.asarray(module(jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)


def _expressible(kernel, stride, dilation, padding, use_bias):
    """Whether MindSpore's arguments can express lax's crop (the same on both axes here), restated.

    'same' or 'valid' when their crops are lax's (rows past the full result then receive the
    bias in both); else 'pad', which crops, with output_padding zeros past the full result.
    """
    crop = lax_transpose_crop(kernel, stride, dilation, padding)
    modes = [axis_plan(kernel, stride, dilation, mode, 0, 0, 0) for mode in ("same", "valid")]
    if any((plan.crop_before, plan.crop_after) == crop for plan in modes):
        return True
    before, after = crop
    return before >= 0 and (after >= 0 or (not use_bias and -after < max(stride, dilation)))


def check_transposed(kernel, stride, dilation, padding, use_bias, transpose_kernel):
    """'exact', 'refused' (checked to be inexpressible) or 'empty' for one nnx.ConvTranspose configuration.

    'empty': lax's padding crops every row of the SIZE-row input's result (Flax has no output to compare).
    """
    before, after = lax_transpose_crop(kernel, stride, dilation, padding)
    if (SIZE - 1) * stride + dilation * (kernel - 1) + 1 - before - after < 1:
        return "empty"
    module = nnx.ConvTranspose(
        C_IN,
        C_OUT,
        (kernel, kernel),
        strides=stride,
        padding=padding if isinstance(padding, str) else (padding, padding),
        kernel_dilation=dilation,
        use_bias=use_bias,
        transpose_kernel=transpose_kernel,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(kernel * 100 + stride * 10 + dilation),
    )
    if not _expressible(kernel, stride, dilation, padding, use_bias):
        with pytest.raises(ValueError, match="module has padding=.*cannot express"):
            ct.Conv2dTranspose.from_flax(module)
        return "refused"
    x = np.random.default_rng(kernel).standard_normal((2, C_IN, SIZE, SIZE)).astype(np.float32)
    expected = _flax_output(module, x)
    got = ct.Conv2dTranspose.from_flax(module)(x)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return "exact"


def check_conv(kernel, stride, dilation, padding, group):
    module = nnx.Conv(
        C_IN,
        C_OUT,
        (kernel, kernel),
        strides=stride,
        padding=padding if isinstance(padding, str) or isinstance(padding[0], tuple) else (padding, padding),
        kernel_dilation=dilation,
        feature_group_count=group,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(kernel),
    )
    x = np.random.default_rng(kernel).standard_normal((2, C_IN, 9, 9)).astype(np.float32)
    expected = _flax_output(module, x)
    got = ct.Conv2d.from_flax(module)(x)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return "exact"


TRANSPOSED = list(_transposed_cases())
CONV = list(_conv_cases())


@pytest.mark.parametrize("case", random.Random(0).sample(TRANSPOSED, 5), ids=str)
def test_conv_transpose_sample(case):
    check_transposed(*case)


@pytest.mark.parametrize("case", random.Random(0).sample(CONV, 3), ids=str)
def test_conv_sample(case):
    check_conv(*case)


@pytest.mark.slow
def test_the_whole_sweep(capsys):
    outcomes = [check_transposed(*case) for case in TRANSPOSED]
    conv = [check_conv(*case) for case in CONV]
    with capsys.disabled():
        print(
            f"\nnnx.ConvTranspose: {outcomes.count('exact')} exact, {outcomes.count('refused')} refused, "
            f"{outcomes.count('empty')} with no output in Flax, of {len(outcomes)}; "
            f"nnx.Conv: {conv.count('exact')} exact of {len(conv)}"
        )


def test_known_kernel_mapping_and_pad_modes():
    module = nnx.ConvTranspose(2, 3, (3, 2), strides=2, padding="VALID", rngs=nnx.Rngs(0))
    net = ct.Conv2dTranspose.from_flax(module)
    kernel = np.asarray(module.kernel[...])
    np.testing.assert_array_equal(net.weight.data, kernel[::-1, ::-1].transpose(2, 3, 0, 1))  # flip, transpose
    assert net.pad_mode == "valid" and net.has_bias
    conv = nnx.Conv(2, 4, (3, 3), padding="SAME", use_bias=False, rngs=nnx.Rngs(0))
    net = ct.Conv2d.from_flax(conv)
    np.testing.assert_array_equal(net.weight.data, np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1))
    assert net.pad_mode == "same" and not net.has_bias


def test_every_front_end_builds_the_same_layer():
    module = nnx.ConvTranspose(3, 4, (3, 3), strides=2, padding=((1, 1), (2, 3)), use_bias=False, rngs=nnx.Rngs(1))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    expected = _flax_output(module, x)
    numpy_net = ct.Conv2dTranspose.from_flax(module)
    flax_net = ct_flax.Conv2dTranspose.from_flax(module)
    torch_net = ct_torch.Conv2dTranspose.from_flax(module)
    assert numpy_net.padding == flax_net.padding == torch_net.padding == (1, 1, 0, 0)
    assert numpy_net.output_padding == (0, 1)
    for got in (numpy_net(x), np.asarray(flax_net(jnp.asarray(x))), torch_net(torch.from_numpy(x)).detach().numpy()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    conv = nnx.Conv(4, 6, (3, 3), strides=2, feature_group_count=2, rngs=nnx.Rngs(0))
    x = np.random.default_rng(1).standard_normal((1, 4, 7, 7)).astype(np.float32)
    expected = _flax_output(conv, x)
    for got in (
        np.asarray(ct_flax.Conv2d.from_flax(conv)(jnp.asarray(x))),
        ct_torch.Conv2d.from_flax(conv)(torch.from_numpy(x)).detach().numpy(),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_what_mindspore_cannot_express_is_refused_by_name():
    with pytest.raises(TypeError, match="module must be a flax.nnx.ConvTranspose, got module of type Conv"):
        ct.Conv2dTranspose.from_flax(nnx.Conv(2, 2, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="module must be a flax.nnx.Conv, got module of type ConvTranspose"):
        ct.Conv2d.from_flax(nnx.ConvTranspose(2, 2, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="padding='CIRCULAR'"):
        ct.Conv2d.from_flax(nnx.Conv(2, 2, (3, 3), padding="CIRCULAR", rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="input_dilation"):
        ct.Conv2d.from_flax(nnx.Conv(2, 2, (3, 3), input_dilation=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="2-D convolution"):
        ct.Conv2dTranspose.from_flax(nnx.ConvTranspose(2, 2, (3,), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="after the full transposed convolution.*receive the bias"):
        ct.Conv2dTranspose.from_flax(nnx.ConvTranspose(2, 2, (3, 3), padding=((2, 4), (2, 4)), rngs=nnx.Rngs(0)))
