"""antlr-plot --raster: the drawn spikes and potentials, read back from the figure's artists, against
the per-step reference simulation (engine/reference/per_step.py)."""

from __future__ import annotations

import re

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.engine.reference import reference_forward

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from antlr_exp.cli.plot import main  # noqa: E402
from antlr_exp.results.rasters import raster_figure, record  # noqa: E402

STEPS = 20


def strong_network(single_spike: bool) -> SpikingNetwork:
    torch.manual_seed(1)
    net = SpikingNetwork([8, 6, 5, 3], STEPS, NeuronParams(alpha_I=0.9, alpha_V=0.85, single_spike=single_spike))
    net = net.double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(5.0).add_(0.3)
            layer.bias.fill_(0.01)
    return net


def spike_points(ax) -> list:
    [dots] = [c for c in ax.collections if c.get_label() == "spikes"]
    return sorted((int(t), int(n)) for t, n in dots.get_offsets())


@pytest.mark.parametrize("single_spike", [False, True])
def test_the_drawn_spikes_and_potentials_are_the_reference_simulations(single_spike):
    net = strong_network(single_spike)
    x = (torch.rand(2, STEPS, 8, generator=torch.Generator().manual_seed(4)) < 0.3).double()
    labels = torch.tensor([1, 2])
    figure = raster_figure(record(net, x, labels, "earliest_spike", traces=True), net.params.theta, traces=True)
    weights = [layer.weight.detach() for layer in net.layers]
    biases = [layer.bias.detach() for layer in net.layers]
    spikes, potentials = reference_forward(x, weights, biases, net.params, reset_paths=False)
    grid = [figure.axes[row * 2 : row * 2 + 2] for row in range(7)]  # 4 raster rows, 3 trace rows
    drawn_potentials = 0
    for b in range(2):
        layers = [x[b], *(s[b] for s in spikes)]
        for row, expected in enumerate(layers):
            points = spike_points(grid[row][b])
            assert points == sorted(map(tuple, expected.nonzero().tolist())), (b, row)
        assert sum(len(spike_points(grid[row][b])) for row in (1, 2, 3)) > 10  # the layers do fire
        output = spikes[-1][b]
        first = [int(output[:, j].nonzero()[0]) if output[:, j].any() else STEPS for j in range(3)]
        decided = min(range(3), key=lambda j: (first[j], j))
        [decision] = [c for c in grid[3][b].collections if c.get_label() == "decision"]
        assert decision.get_offsets().tolist() == [[first[decided], decided]]
        [band] = [p for p in grid[3][b].patches if p.get_label() == "label"]
        assert band.get_y() == pytest.approx(labels[b].item() - 0.4)
        for index in range(3):
            for line in grid[4 + index][b].lines:
                found = re.fullmatch(r".* neuron (\d+)", line.get_label())
                if found is None:
                    continue
                neuron = int(found[1])
                torch.testing.assert_close(
                    torch.tensor(line.get_ydata()), potentials[index][b, :, neuron], rtol=1e-9, atol=1e-12
                )
                drawn_potentials += 1
    assert drawn_potentials == 2 * 3 * 3
    plt.close(figure)


def test_antlr_plot_raster_on_a_run_and_one_line_for_what_is_not_one(data_roots, tmp_path, capsys, one_thread):
    from antlr_exp.training.run import run

    run(compose_config(*tiny_overrides("mnist", data_roots)), tmp_path / "run")
    assert main(["--raster", str(tmp_path / "run"), "--samples", "2", "--traces", "--split", "val"]) == 0
    png = tmp_path / "run" / "raster_val.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == str(png)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["--raster", str(tmp_path / "empty")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"antlr-plot: error: {tmp_path / 'empty'} is not a run folder")
