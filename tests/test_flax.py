"""The Flax NNX module: construction as the NumPy layer, parameters from rngs, dtypes, training
with optax under nnx.jit, and MindSpore checkpoints in and out."""

import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")
ct_flax = pytest.importorskip("convtranspose.flax")

import convtranspose as ct  # noqa: E402
from convtranspose import ckpt  # noqa: E402

from conftest import GOLDEN, assert_close, golden_path  # noqa: E402

Conv2dTranspose = ct_flax.Conv2dTranspose
ARGS = dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, pad_mode="pad", padding=1, group=2, has_bias=True)


def _numpy_twin(net, dtype=np.float32):
    """The NumPy layer with the module's parameters."""
    twin = ct.Conv2dTranspose(**ARGS, dtype=dtype)
    twin.weight.set_data(np.asarray(net.weight[...]))
    twin.bias.set_data(np.asarray(net.bias[...]))
    return twin


# ---------------------------------------------------------------------------- construction


def test_parameters_have_mindspore_shapes_and_defaults():
    net = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
    assert isinstance(net.weight, nnx.Param) and isinstance(net.bias, nnx.Param)
    assert net.weight[...].shape == (4, 3, 3, 3) and net.bias[...].shape == (6,)
    assert net.weight[...].dtype == jnp.float32
    # HeUniform(sqrt(5)) and Uniform(1/sqrt(fan_in)), fan_in = (C_out/group)*kH*kW = 27
    bound = 1 / np.sqrt(27)
    for param in (net.weight, net.bias):
        values = np.asarray(param[...])
        assert np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.5 * bound
    no_bias = Conv2dTranspose(4, 6, 3, rngs=nnx.Rngs(0))
    assert no_bias.bias is None and no_bias.spec.pad_mode == "same"
    assert len(jax.tree.leaves(nnx.state(no_bias, nnx.Param))) == 1


def test_parameters_are_reproducible_from_rngs():
    first, again = (Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0)) for _ in range(2))
    other = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(np.asarray(first.weight[...]), np.asarray(again.weight[...]))
    np.testing.assert_array_equal(np.asarray(first.bias[...]), np.asarray(again.bias[...]))
    assert not np.array_equal(np.asarray(first.weight[...]), np.asarray(other.weight[...]))
    # a shared Rngs advances: two layers built from it differ
    rngs = nnx.Rngs(0)
    one, two = Conv2dTranspose(**ARGS, rngs=rngs), Conv2dTranspose(**ARGS, rngs=rngs)
    assert not np.array_equal(np.asarray(one.weight[...]), np.asarray(two.weight[...]))


def test_without_rngs_it_draws_like_the_numpy_layer():
    ct.set_seed(7)
    numpy_layer = ct.Conv2dTranspose(**ARGS)
    ct.set_seed(7)
    net = Conv2dTranspose(**ARGS)
    ct.set_seed(None)
    np.testing.assert_array_equal(np.asarray(net.weight[...]), numpy_layer.weight.data)
    np.testing.assert_array_equal(np.asarray(net.bias[...]), numpy_layer.bias.data)


def _decode(value, key=None):
    """errors.json values: tuples for lists, arrays for Tensors (see tests/data/README.md)."""
    if key == "dtype" and isinstance(value, str):  # a MindSpore dtype, written by its name
        return getattr(np, value, value)  # NumPy has no bfloat16: the name itself
    if isinstance(value, list):
        return tuple(_decode(item) for item in value)
    if isinstance(value, dict):
        if "__list__" in value:
            return [_decode(item) for item in value["__list__"]]
        if "__pystr__" in value:
            return value["__pystr__"]
        if "__nptype__" in value:
            return getattr(np, value["__nptype__"])
        if "__npscalar__" in value:
            return np.dtype(value["__npscalar__"]["dtype"]).type(value["__npscalar__"]["value"])
        for marker in ("__ndarray__", "__tensor__"):
            if marker in value:
                spec = value[marker]
                return np.full(tuple(spec["shape"]), spec["fill"], dtype=np.dtype(spec["dtype"]))
        if "__initializer__" in value:
            cls = getattr(ct.initializer, value["__initializer__"])
            return cls(**{k: _decode(v) for k, v in value["args"].items()})
        return {k: _decode(v) for k, v in value.items()}
    return value


def _outcome(build):
    try:
        build()
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)
    return None


def test_constructor_raises_what_the_numpy_layer_raises():
    """Every errors.json argument list: the same exception and message, or both accept it."""
    cases = json.loads(golden_path("errors.json").read_text())
    compared = 0
    with jax.enable_x64(True):  # float64 parameters are an extension both layers accept
        for case in cases:
            kwargs = {k: _decode(v, k) for k, v in case["kwargs"].items()}
            numpy_outcome = _outcome(lambda kwargs=kwargs: ct.Conv2dTranspose(**kwargs))
            flax_outcome = _outcome(lambda kwargs=kwargs: Conv2dTranspose(**kwargs, rngs=nnx.Rngs(0)))
            if numpy_outcome is not None and "bfloat16" in str(kwargs.get("dtype")).lower():
                assert flax_outcome is None, case["id"]  # JAX has bfloat16, NumPy does not
                continue
            if flax_outcome is not None:  # Flax computes bfloat16 too, and its dtype messages say so
                flax_outcome = (flax_outcome[0], flax_outcome[1].replace("float16, bfloat16,", "float16,"))
            assert flax_outcome == numpy_outcome, case["id"]
            compared += 1
    assert compared >= 250


def test_float64_needs_x64_and_bfloat16_is_drawn_in_float32():
    if not jax.config.read("jax_enable_x64"):
        with pytest.raises(TypeError, match=r"dtype gives float64 parameters.*jax_enable_x64"):
            Conv2dTranspose(**ARGS, dtype=np.float64, rngs=nnx.Rngs(0))
    with jax.enable_x64(True):
        assert Conv2dTranspose(**ARGS, dtype="float64", rngs=nnx.Rngs(0)).weight[...].dtype == jnp.float64
    f32 = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(3))
    for dtype in (jnp.bfloat16, "bfloat16", "mindspore.bfloat16"):
        bf16 = Conv2dTranspose(**ARGS, dtype=dtype, rngs=nnx.Rngs(3))
        assert bf16.weight[...].dtype == jnp.bfloat16 and bf16.bias[...].dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(bf16.weight[...]), np.asarray(f32.weight[...].astype(jnp.bfloat16)))


def test_jax_and_bfloat16_array_initializers_are_taken_and_keep_their_dtype():
    """Found in review: a JAX array was refused (with the whole array in the message), and so was a
    bfloat16 array in a bfloat16 layer."""
    net = Conv2dTranspose(2, 4, 3, weight_init=jnp.full((2, 4, 3, 3), 0.5), rngs=nnx.Rngs(0))
    assert net.weight[...].dtype == jnp.float32 and bool(jnp.all(net.weight[...] == 0.5))
    bf16 = Conv2dTranspose(
        2, 4, 3, weight_init=jnp.ones((2, 4, 3, 3), jnp.bfloat16), has_bias=True, dtype="bfloat16", rngs=nnx.Rngs(0)
    )
    assert bf16.weight[...].dtype == jnp.bfloat16 and bf16.bias[...].dtype == jnp.bfloat16
    assert bf16(jnp.ones((1, 2, 3, 3), jnp.bfloat16)).dtype == jnp.bfloat16


def test_construction_under_a_trace_refuses_clearly_what_it_cannot_draw():
    # traced construction itself is tested in test_flax_training.py
    with pytest.raises(TypeError, match=r"weight_init=Orthogonal\(.*cannot be drawn under a JAX transform"):
        nnx.eval_shape(lambda: Conv2dTranspose(**ARGS, weight_init="orthogonal", rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"rngs must be a flax.nnx.Rngs or None, got rngs of type int"):
        Conv2dTranspose(**ARGS, rngs=0)


# ---------------------------------------------------------------------------- calls

X = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)


def test_call_and_gradients_match_the_numpy_layer():
    net = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
    twin = _numpy_twin(net)
    y_ref = twin(X)
    g = np.random.default_rng(1).standard_normal(y_ref.shape).astype(np.float32)
    dx_ref = twin.backward(g)

    def loss(net, x):
        return jnp.sum(net(x) * g)

    (dparams, dx) = nnx.grad(loss, argnums=(0, 1))(net, jnp.asarray(X))
    assert_close(np.asarray(net(jnp.asarray(X))), y_ref, 1e-4, "y")
    assert_close(np.asarray(dx), dx_ref, 1e-4, "dx")
    assert_close(np.asarray(dparams.weight[...]), twin.weight.grad, 1e-4, "dweight")
    assert_close(np.asarray(dparams.bias[...]), twin.bias.grad, 1e-4, "dbias")


def test_float16_and_bfloat16_layers():
    net16 = Conv2dTranspose(**ARGS, dtype=np.float16, rngs=nnx.Rngs(0))
    twin = _numpy_twin(net16, np.float16)
    x16 = X.astype(np.float16)
    y = net16(jnp.asarray(x16))
    assert y.dtype == jnp.float16
    assert_close(np.asarray(y), twin(x16), 2e-3, "float16 layer")
    with pytest.raises(TypeError, match=r"x must have the weight's dtype float16, got x of dtype float32"):
        net16(jnp.asarray(X))
    bf16 = Conv2dTranspose(**ARGS, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    y = bf16(jnp.asarray(X, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))


def test_call_errors_name_the_input():
    net = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x must have in_channels=4 channels"):
        net(jnp.ones((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        net(jnp.ones((4, 5, 5)))
    with pytest.raises(TypeError, match=r"x must be a JAX or NumPy array, got x of type list"):
        net([[1.0]])


# ---------------------------------------------------------------------------- training


def test_trains_with_optax_under_nnx_jit():
    teacher = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 4, 5, 5)), jnp.float32)
    target = teacher(x)
    student = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(student, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, target):
        def loss_fn(model):
            return jnp.mean((model(x) - target) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(student, optimizer, x, target)) for _ in range(30)]
    assert losses[-1] < 0.1 * losses[0], losses


def test_one_sgd_step_matches_the_numpy_layer():
    net = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
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


# ---------------------------------------------------------------------------- MindSpore checkpoints


class Decoder(nnx.Module):
    """The network of tests/data/ckpt: up1, ReLU, then blocks.0 and blocks.1."""

    def __init__(self, configs, rngs):
        self.up1 = Conv2dTranspose(**configs[0], rngs=rngs)
        self.blocks = nnx.List([Conv2dTranspose(**cfg, rngs=rngs) for cfg in configs[1:]])

    def __call__(self, x):
        x = jax.nn.relu(self.up1(x))
        for block in self.blocks:
            x = block(x)
        return x

    def layers(self):
        yield "up1.", self.up1
        for index, block in enumerate(self.blocks):
            yield f"blocks.{index}.", block


def _configs(expected):
    return [
        {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        for cfg in json.loads(str(expected["configs"]))
    ]


def test_mindspore_checkpoint_fills_the_modules_and_reproduces_its_output(tmp_path):
    path = golden_path("ckpt/decoder.ckpt")
    expected = np.load(GOLDEN / "ckpt" / "expected.npz")
    arrays = ckpt.load(path)
    net = Decoder(_configs(expected), nnx.Rngs(0))
    for prefix, layer in net.layers():
        layer.load_parameters(arrays, prefix)
    assert_close(
        np.asarray(nnx.jit(lambda m, x: m(x))(net, jnp.asarray(expected["x"]))), expected["y"], 1e-4, "decoder output"
    )
    # saved back: the same bytes MindSpore wrote (parameters, then its append_dict entries)
    saved = {}
    for prefix, layer in net.layers():
        saved.update(layer.parameters_dict(prefix))
    saved.update({name: arrays[name].item() for name in ("epoch_num", "step_num", "lr")})
    out = tmp_path / "decoder.ckpt"
    ckpt.save(out, saved)
    assert out.read_bytes() == path.read_bytes()
    # and a float16 checkpoint fills float16 modules
    net16 = Decoder([dict(cfg, dtype=np.float16) for cfg in _configs(expected)], nnx.Rngs(0))
    arrays16 = ckpt.load(GOLDEN / "ckpt" / "decoder_fp16.ckpt")
    for prefix, layer in net16.layers():
        layer.load_parameters(arrays16, prefix)
    assert net16.up1.weight[...].dtype == jnp.float16


def test_load_parameters_checks_before_changing_anything():
    net = Conv2dTranspose(**ARGS, rngs=nnx.Rngs(0))
    before = np.asarray(net.weight[...]).copy()
    good = net.parameters_dict("up1.")
    assert sorted(good) == ["up1.bias", "up1.weight"]
    with pytest.raises(KeyError, match=r"'up1.bias' is missing"):
        net.load_parameters({"up1.weight": good["up1.weight"] + 1}, "up1.")
    with pytest.raises(ValueError, match=r"up1.weight must have shape \(4, 3, 3, 3\)"):
        net.load_parameters(dict(good, **{"up1.weight": np.zeros((4, 3, 3, 2), np.float32)}), "up1.")
    with pytest.raises(TypeError, match=r"up1.bias must have dtype float32, got float64"):
        net.load_parameters(dict(good, **{"up1.bias": good["up1.bias"].astype(np.float64)}), "up1.")
    with pytest.raises(TypeError, match=r"arrays must be a mapping"):
        net.load_parameters([good], "up1.")
    np.testing.assert_array_equal(np.asarray(net.weight[...]), before)
    net.load_parameters(dict(good, **{"up1.weight": good["up1.weight"] * 2}), "up1.")
    np.testing.assert_array_equal(np.asarray(net.weight[...]), before * 2)
    no_bias = Conv2dTranspose(4, 6, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"bias is given but the layer has has_bias=False"):
        no_bias.load_parameters({"weight": np.zeros((4, 6, 3, 3), np.float32), "bias": np.zeros(6, np.float32)})


def test_expected_npz_parameters_equal_the_checkpoint():
    expected = np.load(GOLDEN / "ckpt" / "expected.npz")
    arrays = ckpt.load(GOLDEN / "ckpt" / "decoder.ckpt")
    for key in expected.files:
        if key.startswith("param/"):
            np.testing.assert_array_equal(arrays[key[len("param/") :]], expected[key])
