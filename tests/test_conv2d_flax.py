"""MindSpore's nn.Conv2d as a Flax NNX module: parameters, dtypes and optax training under nnx.jit.

One SGD step against the NumPy layer checks the gradients (the whole update, under nnx.jit).

Golden parity and the constructor errors run through the ``conv2d_engine`` and
``conv2d_layer_engine`` fixtures (test_conv2d_golden.py, test_conv2d_errors.py).
"""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")
ct_flax = pytest.importorskip("convtranspose.flax")

import convtranspose as ct  # noqa: E402

from conftest import assert_close  # noqa: E402

Conv2d = ct_flax.Conv2d
ARGS = dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, group=2, has_bias=True)  # odd 'same'
X = np.random.default_rng(0).standard_normal((2, 4, 7, 6)).astype(np.float32)


def _numpy_twin(net, dtype=np.float32):
    """The NumPy layer with the module's parameters."""
    twin = ct.Conv2d(**ARGS, dtype=dtype)
    twin.weight.set_data(np.asarray(net.weight[...]))
    twin.bias.set_data(np.asarray(net.bias[...]))
    return twin


def test_parameters_have_mindspore_shapes_and_conv2d_fan_in():
    net = Conv2d(**ARGS, rngs=nnx.Rngs(0))
    assert isinstance(net.weight, nnx.Param) and net.weight[...].shape == (6, 2, 3, 2) and net.bias[...].shape == (6,)
    bound = 1 / np.sqrt(2 * 3 * 2)  # fan_in = (C_in/group)*kH*kW, not the transposed layer's C_out
    for param in (net.weight, net.bias):
        values = np.asarray(param[...])
        assert np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.5 * bound


def test_float16_and_bfloat16_layers():
    net16 = Conv2d(**ARGS, dtype=np.float16, rngs=nnx.Rngs(0))
    twin = _numpy_twin(net16, np.float16)
    y = net16(jnp.asarray(X.astype(np.float16)))
    assert y.dtype == jnp.float16
    assert_close(np.asarray(y), twin(X.astype(np.float16)), 0, "float16 layer (MindSpore's rounding, bit for bit)")
    with pytest.raises(TypeError, match=r"x must have the weight's dtype float16, got x of dtype float32"):
        net16(jnp.asarray(X))
    bf16 = Conv2d(**ARGS, dtype="bfloat16", rngs=nnx.Rngs(0))
    assert bf16.weight[...].dtype == jnp.bfloat16
    grads = nnx.grad(lambda m: jnp.sum(m(jnp.asarray(X, jnp.bfloat16)).astype(jnp.float32)))(bf16)
    assert grads.weight[...].dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grads.weight[...])))


def test_trains_with_optax_under_nnx_jit():
    teacher = Conv2d(**ARGS, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 4, 7, 6)), jnp.float32)
    target = teacher(x)
    student = Conv2d(**ARGS, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(student, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, target):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(student, optimizer, x, target)) for _ in range(30)]
    assert losses[-1] < 0.1 * losses[0], losses


def test_one_sgd_step_matches_the_numpy_layer():
    net = Conv2d(**ARGS, rngs=nnx.Rngs(0))
    twin = _numpy_twin(net)
    target = np.random.default_rng(4).standard_normal(twin(X).shape).astype(np.float32)
    lr = 0.5
    optimizer = nnx.Optimizer(net, optax.sgd(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(jnp.asarray(X)) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    step(net, optimizer)
    y = twin(X)
    twin.backward(2 * (y - target) / y.size)  # d mean((y - t)^2) / dy
    assert_close(np.asarray(net.weight[...]), twin.weight.data - lr * twin.weight.grad, 1e-5, "weight after a step")
    assert_close(np.asarray(net.bias[...]), twin.bias.data - lr * twin.bias.grad, 1e-5, "bias after a step")


def test_a_new_input_size_under_nnx_jit_moves_the_same_padding():
    """'same' pads by the input length (the extra row at the bottom): each size traces anew and matches NumPy."""
    net = Conv2d(**ARGS, rngs=nnx.Rngs(0))
    twin = _numpy_twin(net)
    call = nnx.jit(lambda m, x: m(x))
    rng = np.random.default_rng(5)
    for height, width in ((7, 6), (8, 5)):  # padding (1, 1, 0, 0), then (0, 1, 0, 1)
        x = rng.standard_normal((2, 4, height, width)).astype(np.float32)
        assert_close(np.asarray(call(net, jnp.asarray(x))), twin(x), 1e-4, f"size {(height, width)}")
