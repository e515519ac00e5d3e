"""The Flax layers in Flax's training machinery: construction under transforms, sharding, mixed precision.

Every test runs on both layers (Conv2dTranspose and Conv2d): what they share lives in ``_FlaxLayer``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from convtranspose import _layers, spec  # noqa: E402
from convtranspose.flax import Conv2d, Conv2dTranspose  # noqa: E402
from convtranspose.initializer import Normal, TruncatedNormal  # noqa: E402

LAYERS = [Conv2dTranspose, Conv2d]


def _fan_in(layer):
    """MindSpore's fan_in of the layer's weight: ``shape[1] * kH * kW``."""
    shape = layer.weight.get_value().shape
    return shape[1] * shape[2] * shape[3]


def _refuse_numpy_draws(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MindSpore's NumPy initializer drew under a transform")

    monkeypatch.setattr(_layers, "_draw", refuse)


# ---------------------------------------------------------------------------- eager: values unchanged


@pytest.mark.parametrize("cls", LAYERS)
def test_eager_construction_keeps_the_numpy_initializers_values(cls):
    layer = cls(4, 6, 3, has_bias=True, rngs=nnx.Rngs(3))
    seed = np.asarray(jax.random.bits(nnx.Rngs(3).params(), (4,), jnp.uint32))
    geometry = dict(in_channels=4, out_channels=6, kernel_size=3, has_bias=True)
    built = _layers.build_parameters(cls._spec_class, geometry, rng=np.random.default_rng(seed), with_bfloat16=True)
    np.testing.assert_array_equal(np.asarray(layer.weight[...]), built.weight)
    np.testing.assert_array_equal(np.asarray(layer.bias[...]), built.bias)


# ---------------------------------------------------------------------------- construction under transforms


@pytest.mark.parametrize("cls", LAYERS)
def test_construction_under_nnx_jit_draws_mindspore_default_distributions(cls, monkeypatch):
    _refuse_numpy_draws(monkeypatch)
    build = nnx.jit(lambda: cls(32, 64, 3, has_bias=True, rngs=nnx.Rngs(0)))
    layer = build()
    weight, bias = np.asarray(layer.weight[...]), np.asarray(layer.bias[...])
    bound = 1 / math.sqrt(_fan_in(layer))  # HeUniform(sqrt(5)) and the bias's Uniform share it
    for values in (weight, bias):
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert np.abs(weight).max() > 0.99 * bound and abs(weight.mean()) < 0.02 * bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.02 * bound  # U(-b, b) has std b/sqrt(3)
    np.testing.assert_array_equal(np.asarray(build().weight[...]), weight)  # the key decides the values


@pytest.mark.parametrize("cls", LAYERS)
def test_traced_construction_draws_named_initializers_and_bfloat16(cls):
    layer = nnx.jit(
        lambda: cls(
            16,
            32,
            3,
            has_bias=True,
            weight_init=Normal(sigma=0.02, mean=0.5),
            bias_init=TruncatedNormal(sigma=1.0, a=-0.1, b=0.3),
            dtype="bfloat16",
            rngs=nnx.Rngs(1),
        )
    )()
    weight = np.asarray(layer.weight[...].astype(jnp.float32))
    bias = np.asarray(layer.bias[...].astype(jnp.float32))
    assert layer.weight[...].dtype == jnp.bfloat16
    assert abs(weight.mean() - 0.5) < 0.002 and abs(weight.std() - 0.02) < 0.002
    assert bias.min() >= -0.1 and bias.max() <= 0.3 and len(set(bias.tolist())) > 1
    ones = nnx.jit(lambda: cls(2, 4, 3, weight_init="ones", rngs=nnx.Rngs(1)))()
    assert bool(jnp.all(ones.weight[...] == 1))


@pytest.mark.parametrize("cls", LAYERS)
def test_traced_construction_checks_initializer_arguments_as_eager_construction(cls):
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        nnx.jit(lambda: cls(2, 4, 3, weight_init=Normal(sigma=-1.0), rngs=nnx.Rngs(0)))()
    with pytest.raises(TypeError, match=r"weight_init=Sparse\(.*cannot be drawn under a JAX transform"):
        from convtranspose.initializer import Sparse

        nnx.jit(lambda: cls(2, 4, 3, weight_init=Sparse(0.1), rngs=nnx.Rngs(0)))()


@pytest.mark.parametrize("cls", LAYERS)
def test_eval_shape_gives_shapes_without_drawing_or_the_memory_limit(cls, monkeypatch):
    _refuse_numpy_draws(monkeypatch)
    monkeypatch.setattr(spec, "MEMORY_LIMIT", 1000)
    abstract = nnx.eval_shape(lambda: cls(2048, 2048, 7, has_bias=True, rngs=nnx.Rngs(0)))
    weight, bias = abstract.weight.get_value(), abstract.bias.get_value()
    assert isinstance(weight, jax.ShapeDtypeStruct) and weight.shape == (2048, 2048, 7, 7)
    assert isinstance(bias, jax.ShapeDtypeStruct) and bias.shape == (2048,) and bias.dtype == jnp.float32


@pytest.mark.parametrize("cls", LAYERS)
def test_vmap_builds_an_ensemble_of_distinct_members(cls):
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def ensemble(rngs):
        return cls(4, 6, 3, has_bias=True, rngs=rngs)

    members = ensemble(nnx.Rngs(0))
    weights = np.asarray(members.weight[...])
    assert weights.shape[0] == 4
    for i in range(4):
        for j in range(i):
            assert not np.array_equal(weights[i], weights[j])
    assert np.abs(weights).max() <= 1 / math.sqrt(_fan_in(cls(4, 6, 3)))

    @nnx.vmap(in_axes=(0, None), out_axes=0)
    def run(member, x):
        return member(x)

    assert run(members, jnp.ones((1, 4, 5, 5))).shape[:2] == (4, 1)


@pytest.mark.parametrize("cls", LAYERS)
def test_scan_builds_and_runs_a_stack_of_layers(cls):
    @nnx.split_rngs(splits=3)
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def build(carry, rngs):
        return carry, cls(4, 4, 3, has_bias=True, rngs=rngs)

    _, stack = build(None, nnx.Rngs(0))
    assert stack.weight[...].shape == (3, 4, 4, 3, 3)
    assert not np.array_equal(np.asarray(stack.weight[...][0]), np.asarray(stack.weight[...][1]))

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def apply(x, layer):
        return layer(x)

    assert apply(jnp.ones((1, 4, 5, 5)), stack).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("cls", LAYERS)
def test_sharding_annotations_on_the_parameters(cls):
    mesh = jax.make_mesh((1, 1), ("data", "model"))
    with jax.set_mesh(mesh):
        layer = nnx.jit(
            lambda: cls(
                4,
                6,
                3,
                has_bias=True,
                weight_metadata={"out_sharding": ("model", None, None, None)},
                bias_metadata={"out_sharding": ("model",)},
                rngs=nnx.Rngs(0),
            )
        )()
        specs = nnx.get_partition_spec(nnx.state(layer))
        assert specs["weight"].get_value() == PartitionSpec("model", None, None, None)
        assert specs["bias"].get_value() == PartitionSpec("model")
        partitioned = cls(
            4,
            6,
            3,
            weight_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model", None, None)),
            rngs=nnx.Rngs(0),
        )
        assert nnx.get_partition_spec(nnx.state(partitioned))["weight"].get_value() == PartitionSpec(
            None, "model", None, None
        )


# ---------------------------------------------------------------------------- mixed precision


def _twins(cls, compute_dtype, param_dtype=jnp.float32):
    """A layer with ``compute_dtype`` and one with its parameters cast to what it computes in."""
    layer = cls(4, 6, 3, stride=2, has_bias=True, dtype=param_dtype, compute_dtype=compute_dtype, rngs=nnx.Rngs(0))
    cast_to = compute_dtype if compute_dtype != "promote" else jnp.float32
    cast = cls(4, 6, 3, stride=2, has_bias=True, dtype=cast_to, rngs=nnx.Rngs(0))
    cast.weight.set_value(layer.weight[...].astype(cast_to))
    cast.bias.set_value(layer.bias[...].astype(cast_to))
    return layer, cast


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("compute_dtype", [jnp.bfloat16, jnp.float16])
def test_compute_dtype_computes_mindsporess_reduced_precision(cls, compute_dtype):
    layer, cast = _twins(cls, compute_dtype)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 7, 6)), jnp.float32)
    y = layer(x)
    assert y.dtype == compute_dtype and layer.weight[...].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y.astype(jnp.float32)), np.asarray(cast(x.astype(compute_dtype))))

    def loss(model):
        return jnp.sum(model(x).astype(jnp.float32) ** 2)

    grads = nnx.grad(loss)(layer)
    assert grads["weight"].get_value().dtype == jnp.float32 and bool(jnp.any(grads["weight"].get_value() != 0))


@pytest.mark.parametrize("cls", LAYERS)
def test_promote_computes_a_bfloat16_module_on_float32_input_as_nnx_does(cls):
    layer, cast = _twins(cls, "promote", param_dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 5, 5)), jnp.float32)
    y = layer(x)
    assert y.dtype == jnp.float32 and layer.weight[...].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y), np.asarray(cast(x)))
    strict = cls(4, 6, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # MindSpore's rule without compute_dtype
    with pytest.raises(TypeError, match="x must have the weight's dtype bfloat16"):
        strict(x)
    with pytest.raises(TypeError, match="x must be a float array"):
        layer(jnp.ones((1, 4, 5, 5), jnp.int32))


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("bad", ["bogus", jnp.int32, 3])
def test_a_bad_compute_dtype_is_refused(cls, bad):
    with pytest.raises(TypeError, match="compute_dtype"):
        cls(2, 4, 3, compute_dtype=bad, rngs=nnx.Rngs(0))


def test_a_mixed_precision_model_trains_under_nnx_jit():
    optax = pytest.importorskip("optax")

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.up = Conv2dTranspose(3, 8, 3, stride=2, has_bias=True, compute_dtype=jnp.bfloat16, rngs=rngs)
            self.down = Conv2d(8, 2, 3, stride=2, has_bias=True, compute_dtype=jnp.bfloat16, rngs=rngs)

        def __call__(self, x):
            return self.down(jax.nn.relu(self.up(x))).astype(jnp.float32)

    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3, 6, 6)), jnp.float32)
    target = jnp.zeros((4, 2, 6, 6))

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(4)]
    assert losses[-1] < losses[0] and model.up.weight[...].dtype == jnp.float32


# ---------------------------------------------------------------------------- Flax initializers


@pytest.mark.parametrize("cls", LAYERS)
def test_flax_initializers_are_accepted(cls):
    layer = cls(
        4,
        6,
        3,
        has_bias=True,
        weight_init=nnx.initializers.lecun_normal(),
        bias_init=nnx.initializers.zeros_init(),
        dtype=jnp.bfloat16,
        rngs=nnx.Rngs(0),
    )
    assert layer.weight[...].dtype == jnp.bfloat16 and bool(jnp.all(layer.bias[...] == 0))
    assert layer.weight_init is not None and callable(layer.weight_init)
    custom = cls(2, 4, 3, weight_init=lambda key, shape, dtype: jnp.full(shape, 0.25, dtype), rngs=nnx.Rngs(0))
    assert bool(jnp.all(custom.weight[...] == 0.25))
    traced = nnx.jit(lambda: cls(2, 4, 3, weight_init=nnx.initializers.lecun_normal(), rngs=nnx.Rngs(0)))()
    assert traced.weight[...].shape == custom.weight[...].shape
    with pytest.raises(ValueError, match="weight_init=.* returned shape"):
        cls(2, 4, 3, weight_init=lambda key, shape, dtype: jnp.zeros((3,), dtype), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs is None"):
        cls(2, 4, 3, weight_init=nnx.initializers.lecun_normal())


@pytest.mark.parametrize("cls", LAYERS)
def test_a_flax_weight_initializer_leaves_the_bias_drawn_by_mindspore(cls):
    rngs = nnx.Rngs(5)
    layer = cls(4, 6, 3, has_bias=True, weight_init=nnx.initializers.lecun_normal(), rngs=rngs)
    bound = 1 / math.sqrt(_fan_in(layer))
    bias = np.asarray(layer.bias[...])
    assert np.abs(bias).max() <= bound and len(set(bias.tolist())) == bias.size
