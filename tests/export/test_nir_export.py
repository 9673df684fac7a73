"""NIR export (antlr-export RUN --nir out.nir): the file read back by ``nir.read`` holds the
network's weights and the constants converted from alpha_I, alpha_V; a discrete-time simulator of
the graph, written here from NIR's documented CubaLIF equations, gives our forward's spike trains
wherever no neuron fires twice; and what cannot be exported is refused with one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.runs import cli_env, compose_config, tiny_overrides

from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.errors import ConfigError

nir = pytest.importorskip("nir")

from antlr_exp.cli.export import main  # noqa: E402
from antlr_exp.export.nir_graph import to_nir, write_nir  # noqa: E402

DT = 2e-3
STEPS = 25
ALPHA_I = 0.4


def network(sizes, single_spike=False, seed=0) -> SpikingNetwork:
    torch.manual_seed(seed)
    params = NeuronParams(alpha_I=ALPHA_I, alpha_V=0.7, beta_I=1.5, theta=0.9, single_spike=single_spike)
    net = SpikingNetwork(sizes, STEPS, params).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(2.0).add_(0.3)
            layer.bias.uniform_(-0.05, 0.02)
    return net


def latency_inputs(samples: int, inputs: int) -> torch.Tensor:
    """Half the inputs fire once, at a random step (as MNIST's latency code)."""
    generator = torch.Generator().manual_seed(5)
    steps = torch.randint(0, STEPS, (samples, inputs), generator=generator)
    on = torch.rand(samples, inputs, generator=generator) < 0.5
    x = torch.zeros(samples, STEPS, inputs, dtype=torch.float64)
    b, i = on.nonzero(as_tuple=True)
    x[b, steps[b, i], i] = 1
    return x


def simulate(graph, x: np.ndarray) -> list:
    """NIR's CubaLIF, ``tau_syn dI/dt = -I + w_in S`` and ``tau_mem dv/dt = (v_leak - v) + r I``, a
    spike where v > v_threshold and then v = v_reset, stepped by forward Euler at the graph's dt
    (the current first, then v with the new current); Affine ``y = W x + b``. ``x`` [T, N_in];
    returns the spikes [T, N] of each CubaLIF node along the graph's chain."""
    dt = float(graph.metadata["dt"])
    following = dict(graph.edges)
    chain, name = [], following["input"]
    while name != "output":
        chain.append(graph.nodes[name])
        name = following[name]
    state = {id(node): (0.0, 0.0) for node in chain}
    trains = {id(node): [] for node in chain if isinstance(node, nir.CubaLIF)}
    for t in range(x.shape[0]):
        signal = x[t]
        for node in chain:
            if isinstance(node, nir.Affine):
                signal = node.weight @ signal + node.bias
                continue
            current, v = state[id(node)]
            current = current + dt / node.tau_syn * (node.w_in * signal - current)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * current)
            spikes = v > node.v_threshold
            v = np.where(spikes, node.v_reset, v)
            state[id(node)] = (current, v)
            trains[id(node)].append(spikes)
            signal = spikes.astype(np.float64)
    return [np.array(train) for train in trains.values()]


def test_the_file_reads_back_with_the_weights_and_converted_constants(tmp_path):
    net = network([5, 4, 3, 2])
    p = net.params
    graph = nir.read(str(write_nir(net, tmp_path / "net.nir", dt=DT)))
    assert graph.edges == [
        ("input", "fc1"),
        ("fc1", "lif1"),
        ("lif1", "fc2"),
        ("fc2", "lif2"),
        ("lif2", "fc3"),
        ("fc3", "lif3"),
        ("lif3", "output"),
    ]
    assert list(graph.nodes["input"].input_type["input"]) == [5] and list(
        graph.nodes["output"].output_type["output"]
    ) == [2]
    for index, layer in enumerate(net.layers, start=1):
        affine, lif = graph.nodes[f"fc{index}"], graph.nodes[f"lif{index}"]
        np.testing.assert_array_equal(affine.weight, layer.weight.detach().numpy())
        np.testing.assert_array_equal(affine.bias, 0.0)
        bias = layer.bias.detach().numpy()
        # Euler: 1 - dt/tau_syn = alpha_I, dt/tau_syn w_in = beta_I; 1 - dt/tau_mem = alpha_V, dt/tau_mem r = beta_V
        np.testing.assert_allclose(1 - DT / lif.tau_syn, ALPHA_I, rtol=1e-12)
        np.testing.assert_allclose(DT / lif.tau_syn * lif.w_in, 1.5, rtol=1e-12)
        np.testing.assert_allclose(1 - DT / lif.tau_mem, 0.7, rtol=1e-12)
        np.testing.assert_allclose(DT / lif.tau_mem * lif.r, p.beta_V, rtol=1e-12)
        np.testing.assert_allclose(DT / lif.tau_mem * lif.v_leak, p.beta_bias * bias, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(lif.v_threshold, 0.9)
        np.testing.assert_array_equal(lif.v_reset, 0.0)
    meta = graph.metadata
    assert float(meta["dt"]) == DT and float(meta["alpha_I"]) == ALPHA_I and float(meta["alpha_V"]) == 0.7
    differences = str(meta["differences"])
    assert "resets only v" in differences and "no single-spike restriction" in differences


@pytest.mark.parametrize("single_spike", [False, True])
def test_the_graph_simulated_from_nirs_equations_spikes_as_our_forward(tmp_path, single_spike):
    """Equal spike trains on every sample where no neuron fires twice in either simulation; the
    two agree up to each neuron's first spike, and differ after it only through the reset of I
    (and the single-spike restriction), which a second spike would show."""
    net = network([8, 10, 6, 3], single_spike=single_spike, seed=2)
    graph = nir.read(str(write_nir(net, tmp_path / "net.nir", dt=DT)))
    x = latency_inputs(60, 8)
    with torch.no_grad():
        ours = [s.numpy() > 0 for s in net(x).spikes]
    compared, spikes = 0, np.zeros(3)
    for b in range(x.shape[0]):
        theirs = simulate(graph, x[b].numpy())
        mine = [layer[b] for layer in ours]
        if any((train.sum(axis=0) > 1).any() for train in (*theirs, *mine)):
            continue
        for layer, (a, c) in enumerate(zip(mine, theirs)):
            np.testing.assert_array_equal(a, c, err_msg=f"sample {b}, layer {layer + 1}")
        compared += 1
        spikes += [train.sum() for train in mine]
    assert compared >= 10 and (spikes >= 5).all(), (compared, spikes)  # every layer fires on them


def test_after_a_spike_nir_keeps_the_current_that_this_neuron_resets(tmp_path):
    """One input spike of a large weight: here I and V reset and the neuron fires once; in NIR's
    CubaLIF the current decays on and the neuron fires again (the difference the export states)."""
    net = SpikingNetwork([1, 1], 6, NeuronParams(alpha_I=0.9, alpha_V=0.5, beta_V=1.0, beta_bias=1.0)).double()
    with torch.no_grad():
        net.layers[0].weight.fill_(3.0)
        net.layers[0].bias.zero_()
    x = torch.zeros(1, 6, 1, dtype=torch.float64)
    x[0, 0, 0] = 1
    ours = net(x).spikes[0][0, :, 0].tolist()
    [theirs] = simulate(to_nir(net, DT), x[0].numpy())
    assert ours == [1, 0, 0, 0, 0, 0]
    # NIR: I = 3 * 0.9^t; v[0] = 3 -> spike, reset; v[1] = 2.7 -> spike; ... while 3 * 0.9^t > 1
    assert theirs[:, 0].tolist() == [True] * 6


def one_line_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as error:
        to_nir(**kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_what_cannot_be_exported_is_refused_with_one_line(monkeypatch):
    no_leak = SpikingNetwork([3, 2], 5, NeuronParams(alpha_V=1.0))
    assert one_line_error(network=no_leak).startswith("neuron.alpha_V=1.0: a decay of 1 (no leak)")
    stacked = SpikingNetwork([3, 2], 5, trials=2)
    assert "export one trial" in one_line_error(network=stacked)
    assert one_line_error(network=network([3, 2]), dt=0.0).startswith("dt=0.0: accepted")
    broken = network([3, 2])
    with torch.no_grad():
        broken.layers[0].weight[0, 0] = float("nan")
    assert "not all finite" in one_line_error(network=broken)
    monkeypatch.setitem(sys.modules, "nir", None)
    assert "pip install 'antlr-exp[nir]'" in one_line_error(network=network([3, 2]))


def test_antlr_export_writes_a_run_warns_and_refuses_with_one_line(tmp_path, capsys, one_thread):
    from antlr_exp.training import checkpoint as ckpt
    from antlr_exp.training.run import run

    run(compose_config(*tiny_overrides("matching", {}), "task.hidden_sizes=[6]", "single_spike=true"), tmp_path / "r")
    assert main([str(tmp_path / "r"), "--nir", str(tmp_path / "r.nir")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "r.nir")
    warnings = captured.err.strip().splitlines()
    assert [w.split(":")[2].strip() for w in warnings] == ["reset", "single spike"]
    graph = nir.read(str(tmp_path / "r.nir"))
    best = ckpt.load(tmp_path / "r" / "checkpoints" / "best.pt")["model"]
    np.testing.assert_array_equal(graph.nodes["fc2"].weight, best["layers.1.weight"].numpy())
    assert float(graph.metadata["dt"]) == 1e-3 and str(graph.metadata["task"]) == "matching"
    assert int(graph.metadata["single_spike"]) == 1
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "antlr_exp.cli.export", str(tmp_path / "empty"), "--nir", str(tmp_path / "x.nir")],
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and not (tmp_path / "x.nir").exists()
    assert result.stderr.strip() == (
        f"antlr-export: error: {tmp_path / 'empty'} is not a run folder (no checkpoints/best.pt in it); "
        "accepted: a run folder, a seed_<s>/ folder of a stacked run, or a checkpoint .pt file of antlr-train"
    )
