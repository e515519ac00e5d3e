"""convtranspose: MindSpore's ``nn.Conv2dTranspose`` and ``nn.Conv2d`` on NumPy, without MindSpore.

Same arguments, outputs, gradients and errors as MindSpore 2.10.

Public names:
    Conv2dTranspose              the layer (parameters, forward, backward)
    conv2d_transpose             functional forward
    conv2d_transpose_backward    functional backward -> (dx, dweight, dbias)
    Conv2dTransposeSpec          validated arguments and all shape arithmetic
    Conv2d                       MindSpore's nn.Conv2d (the adjoint pair of Conv2dTranspose)
    conv2d, conv2d_backward      its functional forward and backward
    Conv2dSpec                   its validated arguments; per-input-size geometry
    Parameter                    a named array with a gradient slot
    initializer                  MindSpore's initializers (module)
    set_seed                     seeds the initializers' generator
    set_chunk_bytes              NumPy engine setting: memory budget of its batch chunks (default 64 MiB);
                                 changes speed and memory, and results only within rounding
    release_workspace            NumPy engine: frees the scratch buffers it keeps between calls
    numpy_engine_settings        NumPy engine: chunk budget and threads within a block (context manager);
                                 changes speed and memory, and results only within rounding
    float16, float32, float64    parameter dtypes

Only NumPy is imported here. The other engines are modules of their own, imported on demand:
``convtranspose.torch`` (PyTorch), ``convtranspose.jax`` and ``convtranspose.flax`` (JAX, Flax NNX).
"""

from . import initializer
from ._engines.numpy import numpy_engine_settings, release_workspace, set_chunk_bytes
from .dtypes import float16, float32, float64
from .functional import conv2d, conv2d_backward, conv2d_transpose, conv2d_transpose_backward
from .initializer import set_seed
from .layer import Conv2d, Conv2dTranspose
from .parameter import Parameter
from .spec import Conv2dSpec, Conv2dTransposeSpec

__version__ = "0.1.0"

__all__ = [
    "Conv2dTranspose",
    "conv2d_transpose",
    "conv2d_transpose_backward",
    "Conv2dTransposeSpec",
    "Conv2d",
    "conv2d",
    "conv2d_backward",
    "Conv2dSpec",
    "Parameter",
    "initializer",
    "set_seed",
    "set_chunk_bytes",
    "release_workspace",
    "numpy_engine_settings",
    "float16",
    "float32",
    "float64",
]
