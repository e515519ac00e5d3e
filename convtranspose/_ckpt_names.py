"""Which checkpoint entries are a network's parameters and which are training state.

A checkpoint that MindSpore's ``ModelCheckpoint`` writes during ``Model.train`` holds the training
cell's parameters: the network's own (weights, biases, BatchNorm's ``gamma``, ``beta``,
``moving_mean``, ``moving_variance``, ...), then the optimizer's state, then the entries the
callback appends. The optimizer's state is of two kinds:

* per-parameter slots, which MindSpore's optimizers make with ``Parameter.clone(prefix=P)`` and so
  name ``P.<parameter name>`` (``moment1.up1.weight``), or, in a few optimizers, build by hand as
  ``P<parameter name>`` (AdaFactor's ``exp_avg_sq_row_up1.weight``);
* scalars and small tensors under fixed names (``global_step``, ``learning_rate``, ``beta1_power``).

A slot prefix alone does not make a name training state: ``linear``, ``moment``, ``accum`` or ``stat``
can just as well be a cell of the network (``linear.weight`` of a ``self.linear = nn.Dense(...)``). A
slot counts as training state only when the parameter it shadows is in the same checkpoint, as it
always is in what ``ModelCheckpoint`` and ``save_checkpoint`` write.

The prefixes and names below were read from MindSpore's optimizer sources (``mindspore.nn.optim`` and
``mindspore.experimental.optim``), its loss-scale cells and ``ModelCheckpoint``, and checked on
checkpoints MindSpore 2.10 wrote with Adam, Momentum and SGD.
"""

from __future__ import annotations

import re
from typing import Container, Dict, Mapping, Tuple, TypeVar

V = TypeVar("V")

# Slots named "<prefix>.<parameter name>" (Parameter.clone(prefix=...)), with the optimizers that make them.
SLOT_PREFIXES: Dict[str, str] = {
    "moment1": "Adam, LazyAdam, AdamOffload, AdaMax",
    "moment2": "Adam, LazyAdam, AdamOffload, AdaMax",
    "vhat": "Adam(use_amsgrad=True)",
    "adam_m": "AdamWeightDecay",
    "adam_v": "AdamWeightDecay",
    "lamb_m": "Lamb",
    "lamb_v": "Lamb",
    "moments": "Momentum, FTRL, THOR",
    "linear": "FTRL",
    "accum": "SGD, Adagrad, ProximalAdagrad, Adadelta (and their experimental versions)",
    "stat": "SGD",
    "accum_update": "Adadelta",
    "mean_square": "RMSProp",
    "mean_grad": "RMSProp(centered=True)",
    "moment": "RMSProp",
    "prev": "Rprop",
    "step_size": "Rprop",
    "ax_": "ASGD",
    "ax": "experimental ASGD",
    "exp_avg": "AdaFactor(beta1 > 0); experimental Adam, AdamW, Adamax, RAdam, NAdam",
    "exp_inf": "experimental Adamax",
    "exp_avg_sq": "experimental Adam, AdamW, RAdam, NAdam",
    "max_exp_avg_sq": "experimental Adam, AdamW (amsgrad)",
}

# Slots named "<prefix><parameter name>", no dot.
JOINED_PREFIXES: Dict[str, str] = {
    "exp_avg_sq_row_": "AdaFactor",
    "exp_avg_sq_col_": "AdaFactor",
    "exp_avg_sq_": "AdaFactor",
    "mu_": "ASGD",
    "eta_": "ASGD",
    "mu_product_": "experimental NAdam",
}

# Whole names: optimizer scalars, loss-scale state, and what ModelCheckpoint and training scripts append.
STATE_NAMES: Dict[str, str] = {
    "global_step": "every optimizer (int32, shape (1,))",
    "learning_rate": "every optimizer (a scalar, or a vector for a per-step schedule)",
    "momentum": "Momentum, SGD, RMSProp",
    "beta1_power": "Adam, LazyAdam, AdaMax",
    "beta2_power": "Adam, LazyAdam",
    "afactor_step": "AdaFactor",
    "train_step": "AdaFactor",
    "step_t": "experimental Adagrad, Adamax, ASGD, RAdam, NAdam, Rprop",
    "state_step": "experimental Adam, AdamW",
    "scale_sense": "TrainOneStepWithLossScaleCell",
    "loss_scale": "loss-scale managers",
    "current_iterator_step": "DynamicLossScaleUpdateCell",
    "last_overflow_iterator_step": "DynamicLossScaleUpdateCell",
    "scale_window_down_count": "dynamic loss scaling",
    "epoch_num": "ModelCheckpoint(append_info=['epoch_num'])",
    "step_num": "ModelCheckpoint(append_info=['step_num'])",
    "lr": "a training script's append_dict",
}

# learning_rate_group_<i>: the learning rate of parameter group i when the groups have their own.
_STATE_PATTERN = re.compile(r"learning_rate_group_\d+")

# Longest first, so that "exp_avg_sq_row_" is tried before "exp_avg_sq_".
_DOTTED = sorted((p + "." for p in SLOT_PREFIXES), key=len, reverse=True)
_JOINED = sorted(JOINED_PREFIXES, key=len, reverse=True)


def is_training_state(name: str, names: Container[str]) -> bool:
    """Whether a checkpoint entry is training state rather than a parameter of the network.

    Training state is what an optimizer, a loss-scale cell or ``ModelCheckpoint`` adds to the network's
    parameters: per-parameter slots (``moment1.*``, ``moment2.*`` of Adam, ``moments.*`` of Momentum,
    ``accum.*`` and ``stat.*`` of SGD, ``adam_m.*`` of AdamWeightDecay, ``lamb_m.*`` of Lamb,
    ``mean_square.*`` of RMSProp, ``linear.*`` of FTRL, ...) and named scalars (``global_step``,
    ``learning_rate``, ``learning_rate_group_<i>``, ``momentum``, ``beta1_power``, ``beta2_power``,
    ``epoch_num``, ``step_num``, ``current_iterator_step``, ``scale_sense``, ``lr``, ...).

    Args:
        name: The entry's name.
        names: Every name in the same checkpoint (the loaded dict itself will do). A slot is
            training state only when the parameter it shadows is among them: ``moments.fc.weight``
            is Momentum's slot in a checkpoint that also holds ``fc.weight``, and a parameter of a
            cell called ``moments`` in one that does not.

    Returns:
        True for training state, False for a network parameter.
    """
    if name in STATE_NAMES or _STATE_PATTERN.fullmatch(name):
        return True
    for prefix in _DOTTED:
        if name.startswith(prefix) and name[len(prefix) :] in names:
            return True
    return any(name.startswith(prefix) and name[len(prefix) :] in names for prefix in _JOINED)


def split_training_state(arrays: Mapping[str, V]) -> Tuple[Dict[str, V], Dict[str, V]]:
    """Splits a loaded checkpoint into the network's parameters and the training state.

    Args:
        arrays: ``{name: value}``, e.g. what :func:`convtranspose.ckpt.load` returns.

    Returns:
        ``(network, training_state)``: two dicts, each in the order of ``arrays``, the values
        untouched. See :func:`is_training_state` for what counts as training state.

    Example:
        >>> import numpy as np
        >>> from convtranspose import ckpt
        >>> w = np.zeros((2, 2), np.float32)
        >>> net, state = ckpt.split_training_state(
        ...     {"fc.weight": w, "global_step": np.array([3], np.int32), "moment1.fc.weight": w})
        >>> list(net), list(state)
        (['fc.weight'], ['global_step', 'moment1.fc.weight'])
    """
    names = set(arrays)
    network: Dict[str, V] = {}
    state: Dict[str, V] = {}
    for name, value in arrays.items():
        (state if is_training_state(name, names) else network)[name] = value
    return network, state
