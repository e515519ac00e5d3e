"""The functional API's argument handling: caching, names in messages, odd arrays, processes."""

import multiprocessing
import os
import sys

import numpy as np
import pytest

import convtranspose as ct

X = np.ones((1, 3, 3, 3), np.float32)
W = np.ones((3, 1, 2, 2), np.float32)


def _as_ints(value):
    return tuple(int(item) for item in value) if isinstance(value, tuple) else int(value)


@pytest.mark.parametrize("kwargs", [dict(stride=2.0), dict(stride=True), dict(stride=np.int64(2)),
                                    dict(dilation=1.0), dict(padding=0.0), dict(output_padding=False),
                                    dict(stride=(2, True))])
def test_rejected_types_stay_rejected_after_an_equal_valid_call(kwargs):
    """The spec cache must not let 2.0, True or np.int64(2) ride on the cached spec of 2."""
    ct.conv2d_transpose(X, W, pad_mode="pad", **{k: _as_ints(v) for k, v in kwargs.items()})
    with pytest.raises(TypeError):
        ct.conv2d_transpose(X, W, pad_mode="pad", **kwargs)


@pytest.mark.parametrize("group,match", [(0, "group"), (-1, "group"), (2, "group")])
def test_group_errors_name_group_and_the_weight(group, match):
    with pytest.raises(ValueError, match=match):
        ct.conv2d_transpose(X, W, group=group)


@pytest.mark.parametrize("weight,error,match", [
    ([[1.0]], TypeError, "weight"),
    (np.ones((3, 1, 2), np.float32), ValueError, "4-D"),
    (np.ones((3, 0, 2, 2), np.float32), ValueError, "empty"),
])
def test_bad_weights(weight, error, match):
    with pytest.raises(error, match=match):
        ct.conv2d_transpose(X, weight)


def test_bad_bias_and_gradient():
    with pytest.raises(ValueError, match="bias must have shape"):
        ct.conv2d_transpose(X, W, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="bias"):
        ct.conv2d_transpose(X, W, np.ones(1, np.float64))
    with pytest.raises(ValueError, match="grad_output"):
        ct.conv2d_transpose_backward(X, W, np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="grad_output"):
        ct.conv2d_transpose_backward(X, W, np.ones((1, 1, 3, 3), np.float64))


def test_masked_arrays_are_refused():
    with pytest.raises(TypeError, match="masked"):
        ct.conv2d_transpose(np.ma.masked_array(X, mask=X > 0), W)


def test_other_layouts_and_byte_orders_compute_the_same():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    expected = ct.conv2d_transpose(x, w, stride=2)
    for x_other, w_other in ((np.asfortranarray(x), np.asfortranarray(w)), (x[:, :, ::-1][:, :, ::-1], w),
                             (x.astype(">f4"), w.astype(">f4"))):
        np.testing.assert_array_equal(ct.conv2d_transpose(x_other, w_other, stride=2), expected)
    read_only = x.copy()
    read_only.setflags(write=False)
    np.testing.assert_array_equal(ct.conv2d_transpose(read_only, w, stride=2), expected)


@pytest.mark.parametrize("kwargs,match", [(dict(stride=10 ** 9), "one request may use"),
                                          (dict(dilation=10 ** 18, pad_mode="valid"), "one request may use")])
def test_huge_outputs_are_refused_with_the_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.conv2d_transpose(X, W, **kwargs)
    with pytest.raises(ValueError, match="kernel_size"):
        ct.Conv2dTranspose(1, 1, 2 ** 32)


def test_replaced_parameters_are_checked_at_the_call():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    net.weight.data = np.ones((2, 4, 2, 2), np.float32)
    with pytest.raises(ValueError, match="weight must have shape"):
        net(np.ones((1, 2, 3, 3), np.float32))
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    net.bias.data = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="bias must have shape"):
        net(np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="mapping"):
        net.load_parameters([("weight", net.weight.data)])


def test_chunk_budget_argument_checks():
    with pytest.raises(TypeError):
        ct.set_chunk_bytes(1.5)
    with pytest.raises(ValueError):
        ct.set_chunk_bytes(0)


def _child(queue):
    x = np.ones((16, 4, 32, 32), np.float32)
    queue.put(ct.conv2d_transpose(x, np.ones((4, 1, 3, 3), np.float32), stride=2, group=4).shape)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_child_can_compute_after_the_parent_used_the_thread_pool():
    x = np.ones((16, 4, 32, 32), np.float32)
    ct.conv2d_transpose(x, np.ones((4, 1, 3, 3), np.float32), stride=2, group=4)  # depthwise: threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child.join(30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung"
    assert queue.get(timeout=5) == (16, 4, 64, 64)
