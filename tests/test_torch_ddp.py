"""The torch module trained under DistributedDataParallel: two CPU processes, gloo on loopback.

Each process trains on its half of every batch; DDP averages the gradients, so after every step
both replicas must hold the same weights, equal to one process trained on the whole batch (the
loss is a mean over equal halves).
"""

import socket
import time

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import convtranspose as ct  # noqa: E402
from convtranspose.torch import Conv2dTranspose  # noqa: E402

WORLD = 2
STEPS = 3
BATCH = 4  # per step, split evenly over the processes


def _network():
    ct.set_seed(0)  # the initializers draw from convtranspose's generator, in every process alike
    return torch.nn.Sequential(
        Conv2dTranspose(
            4, 6, 3, stride=2, pad_mode="pad", padding=(1, 0, 0, 1), output_padding=1, group=2, has_bias=True
        ),
        torch.nn.ReLU(),
        Conv2dTranspose(6, 2, 2, stride=2, pad_mode="same", has_bias=True),
    )


def _data():
    generator = torch.Generator().manual_seed(1)
    xs = torch.randn(STEPS, BATCH, 4, 5, 5, generator=generator)
    targets = torch.randn(STEPS, BATCH, 2, 22, 22, generator=generator)
    return xs, targets


def _train(net, xs, targets):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for x, target in zip(xs, targets):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(x), target).backward()
        optimizer.step()


def _replica(rank, port, out_dir):
    """One DDP process: train on this rank's half of each batch, save the final weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(_network())
        xs, targets = _data()
        half = BATCH // WORLD
        _train(net, xs[:, rank * half : (rank + 1) * half], targets[:, rank * half : (rank + 1) * half])
        torch.save(net.module.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_replicas_agree_with_each_other_and_with_one_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    context = torch.multiprocessing.start_processes(
        _replica, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP processes did not finish within 180 s")
    replicas = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]

    single = _network()
    start = {name: value.clone() for name, value in single.state_dict().items()}
    _train(single, *_data())

    assert list(replicas[0]) == list(single.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, value in single.state_dict().items():
        assert torch.equal(replicas[0][name], replicas[1][name]), f"{name}: the replicas differ"
        assert not torch.equal(value, start[name]), f"{name}: training did not change it"
        torch.testing.assert_close(replicas[0][name], value, rtol=1e-5, atol=1e-6)
