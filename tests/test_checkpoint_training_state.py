"""ckpt.split_training_state and ckpt.is_training_state: a network's parameters apart from training state.

Checked on the checkpoints MindSpore 2.10 wrote for three networks (the golden data's networks: Adam,
Momentum and SGD state written by ModelCheckpoint during Model.train), against the key lists MindSpore
itself recorded beside them, and on names built the way MindSpore's other optimizers build theirs.
"""

import json

import numpy as np
import pytest

from convtranspose import ckpt

from conftest import golden_path

NETWORKS = ["unet", "dcgan_g", "encdec_same"]


def _meta(name: str) -> dict:
    with np.load(golden_path(f"networks/{name}.npz")) as data:
        return json.loads(str(data["meta"]))


@pytest.mark.parametrize("name", NETWORKS)
def test_modelcheckpoint_files_split_as_mindspore_recorded(name):
    meta = _meta(name)
    arrays = ckpt.load(golden_path(f"networks/{name}_with_opt.ckpt"))
    network, state = ckpt.split_training_state(arrays)
    appended = {"epoch_num", "step_num"}
    assert set(network) == set(meta["ckpt_keys"]) - appended
    assert set(state) == set(meta["with_opt_extra_keys"])
    assert list(network) + list(state) == [k for k in arrays if k in network] + [k for k in arrays if k in state]
    assert list(network) == [k for k in arrays if k in network]  # file order kept
    assert all(network[k] is arrays[k] for k in network)  # values untouched


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_checkpoint_holds_only_its_appended_scalars_as_state(name):
    arrays = ckpt.load(golden_path(f"networks/{name}.ckpt"))
    network, state = ckpt.split_training_state(arrays)
    assert list(state) == ["epoch_num", "step_num"]
    with_opt, _ = ckpt.split_training_state(ckpt.load(golden_path(f"networks/{name}_with_opt.ckpt")))
    assert set(network) == set(with_opt)
    assert all(np.array_equal(network[k], with_opt[k]) for k in network)


def _with_slots(params, prefixes, joined=(), scalars=()):
    """A checkpoint as an optimizer would write it: parameters, then slots, then scalars."""
    arrays = {p: np.zeros(2, np.float32) for p in params}
    for prefix in prefixes:
        arrays.update({f"{prefix}.{p}": np.zeros(2, np.float32) for p in params})
    for prefix in joined:
        arrays.update({f"{prefix}{p}": np.zeros(1, np.float32) for p in params})
    arrays.update({s: np.float32(0) for s in scalars})
    return arrays


PARAMS = ["conv1.weight", "bn1.gamma", "bn1.beta", "fc.weight", "fc.bias", "bn1.moving_mean"]


@pytest.mark.parametrize(
    "optimizer, prefixes, joined, scalars",
    [
        ("Adam", ["moment1", "moment2"], [], ["beta1_power", "beta2_power", "global_step", "learning_rate"]),
        ("Adam amsgrad", ["moment1", "moment2", "vhat"], [], ["beta1_power", "beta2_power"]),
        ("AdamWeightDecay", ["adam_m", "adam_v"], [], ["global_step", "learning_rate"]),
        ("Lamb", ["lamb_m", "lamb_v"], [], ["global_step"]),
        ("Momentum", ["moments"], [], ["momentum", "learning_rate_group_0", "learning_rate_group_1"]),
        ("SGD", ["accum", "stat"], [], ["momentum"]),
        ("RMSProp centered", ["mean_grad", "mean_square", "moment"], [], ["learning_rate"]),
        ("FTRL", ["moments", "linear"], [], []),
        ("Adagrad", ["accum"], [], []),
        ("Adadelta", ["accum", "accum_update"], [], []),
        ("Rprop", ["prev", "step_size"], [], ["step_t"]),
        ("ASGD", ["ax_"], ["mu_", "eta_"], ["global_step"]),
        ("AdaFactor", ["exp_avg"], ["exp_avg_sq_row_", "exp_avg_sq_col_", "exp_avg_sq_"], ["afactor_step"]),
        ("experimental Adam", ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], [], ["state_step", "learning_rate_group_0"]),
        ("experimental Adamax, ASGD", ["exp_avg", "exp_inf", "ax"], ["mu_", "eta_"], ["step_t"]),
        (
            "loss scale",
            ["moment1", "moment2"],
            [],
            ["scale_sense", "current_iterator_step", "last_overflow_iterator_step"],
        ),
    ],
)
def test_every_optimizers_state_is_recognised(optimizer, prefixes, joined, scalars):
    arrays = _with_slots(PARAMS, prefixes, joined, [*scalars, "epoch_num", "step_num"])
    network, state = ckpt.split_training_state(arrays)
    assert list(network) == PARAMS, optimizer
    assert len(state) == len(arrays) - len(PARAMS)


@pytest.mark.parametrize("cell", ["linear", "moments", "accum", "stat", "moment", "prev", "exp_avg", "mu_"])
def test_a_cell_named_like_a_slot_stays_a_network_parameter(cell):
    # "linear.weight" is FTRL's slot of a parameter "weight" only when "weight" is in the file too.
    sep = "" if cell.endswith("_") else "."
    arrays = {f"{cell}{sep}weight": np.zeros(2), f"{cell}{sep}bias": np.zeros(2), "head.weight": np.zeros(2)}
    network, state = ckpt.split_training_state(arrays)
    assert list(network) == list(arrays) and state == {}
    # with Momentum's slots beside them, the slots go and the cell stays
    arrays.update({f"moments.{name}": np.zeros(2) for name in list(arrays)})
    network, state = ckpt.split_training_state(arrays)
    assert list(network) == [f"{cell}{sep}weight", f"{cell}{sep}bias", "head.weight"]
    assert all(name.startswith("moments.") for name in state)


def test_is_training_state_needs_the_checkpoints_names():
    names = {"fc.weight", "moment1.fc.weight", "global_step"}
    assert ckpt.is_training_state("moment1.fc.weight", names)
    assert ckpt.is_training_state("global_step", names)
    assert not ckpt.is_training_state("fc.weight", names)
    assert not ckpt.is_training_state("moment1.other.weight", names)  # shadows nothing in this file
    assert ckpt.is_training_state("learning_rate_group_12", ())
    assert not ckpt.is_training_state("learning_rate_group_x", ())


def test_cli_inspect_shows_network_parameters_then_training_state(capsys):
    path = golden_path("networks/dcgan_g_with_opt.ckpt")
    assert ckpt.main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["name", "shape"]
    net_at = lines.index("# network parameters (16)")
    state_at = next(i for i, line in enumerate(lines) if line.startswith("# training state (15)"))
    assert net_at == 1 and state_at == net_at + 17
    assert all(not line.startswith(("moments.", "global_step")) for line in lines[net_at + 1 : state_at])
    assert lines[state_at + 1].startswith("global_step")
    assert lines[-1].startswith("31 entries (16 network parameters, 15 training state)")
