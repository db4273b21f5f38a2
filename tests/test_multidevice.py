"""Sharded pretraining: 8 fake CPU devices and 2 processes × 4 devices equal 1 device.

The 8-device run also shards some parameters (FSDP-style rules) while the batch is data
parallel; the 2-process run goes through `jax.distributed` with gloo CPU collectives. Both are
compared with the 1-device reference run after 4 steps (train losses and exported parameters).
"""

import socket
import types

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec
from pretrain_runs import env, exported_params, main_command, ok, reference_run, run, train_losses

from caltransfer_jax.pretrain import sharding


def _same_as_reference(workdir):
    expected = train_losses(reference_run())
    got = train_losses(workdir)
    steps = sorted(expected)
    assert sorted(got) == steps
    np.testing.assert_allclose([got[s] for s in steps], [expected[s] for s in steps], rtol=1e-5)
    params, reference = exported_params(workdir), exported_params(reference_run())
    # The attention key bias shifts all logits of a query equally, so softmax ignores it and its
    # gradient is rounding noise, which Adam scales up to learning-rate-sized steps: it differs
    # between reductions in a different order without changing any output.
    for tree in (params, reference):
        for block in tree["transformer"]["blocks"].values():
            block["attn"]["k_proj"]["bias"][...] = 0.0
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params, reference
    )


def test_eight_devices_equal_one(tmp_path):
    rules = "--config.sharding_rules=moe/w[12]$=fsdp;transfer_head/spectral_real=-,-,data"
    output = ok(run(main_command(tmp_path, rules), devices=8))
    assert "mesh {'data': 8}" in output
    _same_as_reference(tmp_path)


def test_two_processes_of_four_devices_equal_one(tmp_path):
    import subprocess

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = (
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        "--cpu_collectives=gloo",
    )
    logs = [open(tmp_path / f"process{i}.log", "w") for i in range(2)]
    procs = [
        subprocess.Popen(
            main_command(tmp_path / "run", *flags, f"--process_id={i}"),
            env=env(4),
            stdout=logs[i],
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
        for f in logs:
            f.close()
    outputs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "process 1 of 2: 4 local of 8 devices" in outputs[1]
    _same_as_reference(tmp_path / "run")


def test_mesh_and_rules_parsing():
    assert sharding.parse_mesh("data:-1, model:2") == [("data", -1), ("model", 2)]
    rules = sharding.parse_rules("moe/w[12]$=fsdp; spectral=-,data")
    assert rules == [("moe/w[12]$", "fsdp"), ("spectral", (None, "data"))]
    with pytest.raises(ValueError, match="not 'name:size'"):
        sharding.parse_mesh("data")
    mesh = types.SimpleNamespace(shape={"data": 4})  # leaf_spec reads only the axis sizes
    # fsdp: the largest dimension the axis divides.
    assert sharding.leaf_spec("opt/mu/moe/w1", (4, 32, 6), rules, mesh, "data") == PartitionSpec(
        None, "data", None
    )
    assert sharding.leaf_spec("moe/w2", (3, 5), rules, mesh, "data") == PartitionSpec()
    assert sharding.leaf_spec("x/spectral", (2, 8), rules, mesh, "data") == PartitionSpec(
        None, "data"
    )
    assert sharding.leaf_spec("params/other", (4,), rules, mesh, "data") == PartitionSpec()
    with pytest.raises(ValueError, match="does not split"):
        sharding.leaf_spec("x/spectral", (2, 6), rules, mesh, "data")
    assert dict(sharding.make_mesh([("data", -1)]).shape) == {"data": jax.device_count()}
