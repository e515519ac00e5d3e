"""Determinism on the CPU: repeated calls, and calls from 4 threads at once, give bitwise the same results.

- Every engine: the same inputs give bitwise the same output and gradients on repeated calls,
  over every pad mode, groups, dilation, output_padding and bias; for NumPy also where the batch
  is split into chunks that run on its thread pool.
- Every layer (NumPy, torch, Flax) and every functional form (NumPy forward and backward, torch
  with autograd, jax with ``jax.vjp``), called from 4 threads at once on different inputs, gives
  what the same calls give one after another.
"""

import concurrent.futures
import threading

import numpy as np
import pytest

import convtranspose as ct

from conftest import geometry

CONFIGS = [
    dict(
        in_channels=4,
        out_channels=6,
        kernel_size=(3, 2),
        stride=(2, 3),
        pad_mode="pad",
        padding=(1, 0, 2, 1),
        output_padding=(1, 2),
        dilation=(1, 2),
        group=2,
        has_bias=True,
    ),
    dict(
        in_channels=3,
        out_channels=5,
        kernel_size=4,
        stride=2,
        pad_mode="same",
        padding=0,
        output_padding=0,
        dilation=1,
        group=1,
        has_bias=False,
    ),
    dict(
        in_channels=6,
        out_channels=6,
        kernel_size=(5, 3),
        stride=(1, 4),
        pad_mode="valid",
        padding=0,
        output_padding=0,
        dilation=(2, 1),
        group=6,
        has_bias=True,
    ),
]
THREADS = 4
ROUNDS = 3


def case(cfg, batch=3, size=(7, 6), seed=0):
    rng = np.random.default_rng(seed)
    k = cfg["kernel_size"] if isinstance(cfg["kernel_size"], tuple) else (cfg["kernel_size"],) * 2
    x = rng.standard_normal((batch, cfg["in_channels"]) + size).astype(np.float32)
    w = rng.standard_normal((cfg["in_channels"], cfg["out_channels"] // cfg["group"]) + k).astype(np.float32)
    b = rng.standard_normal(cfg["out_channels"]).astype(np.float32) if cfg["has_bias"] else None
    y = ct.conv2d_transpose(x, w, b, **geometry(cfg))
    g = rng.standard_normal(y.shape).astype(np.float32)
    return x, w, b, g


def assert_same_bits(results, label):
    first = results[0]
    for index, other in enumerate(results[1:], 1):
        assert first.keys() == other.keys(), label
        for name in first:
            a, b = np.asarray(first[name]), np.asarray(other[name])
            assert a.dtype == b.dtype and a.shape == b.shape, f"{label} {name}"
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), (
                f"{label}: {name} of call {index} differs from call 0 (max |diff| {np.abs(a - b).max()})"
            )


@pytest.mark.parametrize("cfg", CONFIGS, ids=["pad", "same", "valid-depthwise"])
def test_repeated_calls_give_bitwise_the_same_results(engine, cfg):
    x, w, b, g = case(cfg)
    results = [engine.forward_backward(cfg, x, w, b, g) for _ in range(ROUNDS)]
    assert_same_bits(results, f"{engine.name} repeated")


def test_numpy_chunked_and_threaded_batches_are_deterministic():
    """A depthwise batch large enough for the NumPy engine's thread pool, in one-image chunks."""
    from convtranspose._engines import numpy as engine

    cfg = dict(
        in_channels=16,
        out_channels=16,
        kernel_size=3,
        stride=2,
        pad_mode="pad",
        padding=(1, 2, 0, 1),
        output_padding=1,
        dilation=1,
        group=16,
        has_bias=True,
    )
    x, w, b, g = case(cfg, batch=12, size=(40, 40))
    kwargs = geometry(cfg)
    whole = {"y": ct.conv2d_transpose(x, w, b, **kwargs)}
    whole.update(zip(("dx", "dw", "db"), ct.conv2d_transpose_backward(x, w, g, **kwargs)))
    engine.set_chunk_bytes(1)  # one image per chunk, chunks spread over the pool
    try:
        runs = []
        for _ in range(ROUNDS):
            run = {"y": ct.conv2d_transpose(x, w, b, **kwargs)}
            run.update(zip(("dx", "dw", "db"), ct.conv2d_transpose_backward(x, w, g, **kwargs)))
            runs.append(run)
    finally:
        engine.set_chunk_bytes(64 * 2**20)
    assert_same_bits(runs, "numpy in one-image chunks")
    for name in whole:  # chunking changes the order of the float32 batch sums of dw and db only
        scale = np.abs(whole[name]).max()
        np.testing.assert_allclose(runs[0][name], whole[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


# ---------------------------------------------------------------------------- threads


def in_threads(task, inputs):
    """``task`` over ``inputs`` from THREADS threads at once, all released together."""
    barrier = threading.Barrier(THREADS)

    def start(item):
        index, value = item
        if index < THREADS:
            barrier.wait(timeout=30)
        return task(value)

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(start, enumerate(inputs)))


def check_threads(task, inputs, label):
    sequential = [task(value) for value in inputs]
    for round_ in range(ROUNDS):
        concurrent_results = in_threads(task, inputs)
        for index, (got, want) in enumerate(zip(concurrent_results, sequential)):
            assert_same_bits([want, got], f"{label}, round {round_}, input {index}")


def thread_inputs(cfg, count=2 * THREADS):
    return [case(cfg, batch=2, seed=seed) for seed in range(count)]


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=["pad", "same"])
def test_a_layer_called_from_four_threads_gives_the_sequential_results(layer_engine, cfg):
    x, w, b, _ = case(cfg)
    net = layer_engine.construct(**cfg, weight_init=w, bias_init=b)
    inputs = [layer_engine_input(layer_engine, xs) for xs, *_ in thread_inputs(cfg)]

    def task(value):
        return {"y": layer_engine.to_numpy(layer_engine.call(net, value))}

    check_threads(task, inputs, f"{layer_engine.name} layer")


def layer_engine_input(engine, x):
    if engine.name == "torch":
        return engine.torch.from_numpy(x)
    if engine.name == "flax":
        return engine.jax.numpy.asarray(x)
    return x


def numpy_task(cfg):
    kwargs = geometry(cfg)

    def task(arrays):
        x, w, b, g = arrays
        dx, dw, db = ct.conv2d_transpose_backward(x, w, g, **kwargs)
        return {"y": ct.conv2d_transpose(x, w, b, **kwargs), "dx": dx, "dw": dw, "db": db}

    return task


def torch_task(cfg):
    torch = pytest.importorskip("torch")
    module = pytest.importorskip("convtranspose.torch")
    kwargs = geometry(cfg)

    def task(arrays):
        *inputs, g = arrays
        tensors = [torch.from_numpy(a).requires_grad_() for a in inputs if a is not None]
        y = module.conv2d_transpose(tensors[0], tensors[1], tensors[2] if len(tensors) == 3 else None, **kwargs)
        grads = torch.autograd.grad(y, tensors, torch.from_numpy(g))
        out = {"y": y.detach().numpy()}
        out.update(zip(("dx", "dw", "db"), (t.numpy() for t in grads)))
        return out

    return task


def jax_task(cfg):
    jax = pytest.importorskip("jax")
    module = pytest.importorskip("convtranspose.jax")
    kwargs = geometry(cfg)

    def task(arrays):
        x, w, b, g = arrays
        if b is None:
            y, vjp = jax.vjp(lambda x, w: module.conv2d_transpose(x, w, None, **kwargs), x, w)
        else:
            y, vjp = jax.vjp(lambda x, w, b: module.conv2d_transpose(x, w, b, **kwargs), x, w, b)
        out = {"y": np.asarray(y)}
        out.update(zip(("dx", "dw", "db"), (np.asarray(t) for t in vjp(g))))
        return out

    return task


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=["pad", "same", "valid-depthwise"])
def test_a_functional_form_called_from_four_threads_gives_the_sequential_results(name, cfg):
    task = {"numpy": numpy_task, "torch": torch_task, "jax": jax_task}[name](cfg)
    check_threads(task, thread_inputs(cfg), f"{name} functional")
