"""convtranspose: MindSpore's ``nn.Conv2dTranspose`` on NumPy, with the same arguments,
outputs, gradients and errors as MindSpore 2.10, and no MindSpore installed.

Public names:
    Conv2dTranspose              the layer (parameters, forward, backward)
    conv2d_transpose             functional forward
    conv2d_transpose_backward    functional backward -> (dx, dweight, dbias)
    Conv2dTransposeSpec          validated arguments and all shape arithmetic
    Parameter                    a named array with a gradient slot
    initializer                  MindSpore's initializers (module)
    set_seed                     seeds the initializers' generator
    float16, float32, float64    parameter dtypes

Only NumPy is imported here.
"""

from . import initializer
from .dtypes import float16, float32, float64
from .functional import conv2d_transpose, conv2d_transpose_backward
from .initializer import set_seed
from .layer import Conv2dTranspose
from .parameter import Parameter
from .spec import AxisPlan, Conv2dTransposeSpec

__version__ = "0.1.0"

__all__ = [
    "Conv2dTranspose", "conv2d_transpose", "conv2d_transpose_backward", "Conv2dTransposeSpec",
    "AxisPlan", "Parameter", "initializer", "set_seed", "float16", "float32", "float64",
]
