"""Per-layer spikes, neurons that never fire, and synaptic operations (SynOps).

The oracle is a 3-4-2 float64 network whose spikes are worked out by hand: with alpha_I =
alpha_V = 0 and beta_V = beta_bias = 1, V[t] = W s[t] + b, so a neuron fires at step t exactly
when its weighted input of that step reaches theta = 1.
"""

from __future__ import annotations

import pytest
import torch

from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.training.metrics import SplitMeter, metric_names

MEMORYLESS = NeuronParams(alpha_I=0.0, alpha_V=0.0, beta_V=1.0, beta_bias=1.0)


def hand_network() -> SpikingNetwork:
    """h0 copies input 0, h1 input 1, h2 fires when inputs 0 and 1 both do (0.5 + 0.5 = theta),
    h3 never fires; input 2 reaches nothing. o0 copies h0, o1 copies h1."""
    net = SpikingNetwork([3, 4, 2], 5, MEMORYLESS).double()
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [-1.0, -1.0, 0.0]]))
        net.layers[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        for layer in net.layers:
            layer.bias.zero_()
    return net


def hand_inputs() -> torch.Tensor:
    x = torch.zeros(2, 5, 3, dtype=torch.float64)
    # sample 0: t0 input 0; t1 input 1; t2 all three; t4 input 2
    x[0, 0, 0] = x[0, 1, 1] = x[0, 4, 2] = 1
    x[0, 2, :] = 1
    # sample 1: t2 input 1; t3 input 2; t4 input 0
    x[1, 2, 1] = x[1, 3, 2] = x[1, 4, 0] = 1
    return x


def test_the_hand_network_fires_as_worked_out():
    out = hand_network()(hand_inputs())
    hidden, output = (s.nonzero().tolist() for s in out.spikes)
    # [sample, step, neuron]
    assert hidden == [[0, 0, 0], [0, 1, 1], [0, 2, 0], [0, 2, 1], [0, 2, 2], [1, 2, 1], [1, 4, 0]]
    assert output == [[0, 0, 0], [0, 1, 1], [0, 2, 0], [0, 2, 1], [1, 2, 1], [1, 4, 0]]


@pytest.mark.parametrize("decision", ["earliest_spike", "most_spike"])
def test_per_layer_counts_silent_fractions_and_synops_by_hand(decision):
    x = hand_inputs()
    out = hand_network()(x)
    meter = SplitMeter(decision, has_labels=True)
    meter.update(out, torch.tensor([0, 1]), loss=0.0, inputs=x)
    m = meter.compute("test")
    # whole window: input events 6 and 3, hidden spikes 5 and 2, output spikes 4 and 2
    # SynOps = input events x 4 hidden + hidden spikes x 2 outputs: 6*4 + 5*2 = 34 and 3*4 + 2*2 = 16
    assert m["test_input_spikes_per_sample"] == 4.5
    assert m["test_hidden1_spikes_per_sample"] == 3.5
    assert m["test_output_spikes_per_sample"] == 3.0
    assert m["test_synops_per_sample"] == (34 + 16) / 2
    # h3 fires on no sample; both outputs fire
    assert m["test_hidden1_silent_fraction"] == 0.25
    assert m["test_output_silent_fraction"] == 0.0
    if decision == "earliest_spike":
        # decision steps 0 (o0 at t0) and 2 (o1 at t2): input 1 and 1, hidden 1 and 1 (h0; h1)
        assert m["test_input_spikes_to_decision_per_sample"] == 1.0
        assert m["test_hidden1_spikes_to_decision_per_sample"] == 1.0
        assert m["test_synops_to_decision_per_sample"] == (1 * 4 + 1 * 2 + 1 * 4 + 1 * 2) / 2
        assert m["test_hidden1_silent_to_decision_fraction"] == 0.5  # only h0 and h1 fired by then
        assert m["test_output_silent_to_decision_fraction"] == 0.0  # o0 (sample 0), o1 (sample 1)
    else:  # the decision takes the whole window
        for layer in ("input", "hidden1"):
            assert m[f"test_{layer}_spikes_to_decision_per_sample"] == m[f"test_{layer}_spikes_per_sample"]
        assert m["test_synops_to_decision_per_sample"] == 25.0
        assert m["test_hidden1_silent_to_decision_fraction"] == 0.25
    assert set(metric_names("test", True, hidden_layers=1)) == set(m)


def test_a_nonzero_input_that_is_not_one_is_one_event():
    """A library user's input of other values: each nonzero entry is one event (0.5 and 2 alike)."""
    x = hand_inputs()
    scaled = x * torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.5, 0.5, 2.0)
    net = hand_network()
    counts = []
    for inputs in (x, scaled):
        meter = SplitMeter("most_spike", has_labels=True)
        meter.update(net(inputs), torch.tensor([0, 1]), loss=0.0, inputs=inputs)
        counts.append(meter.compute("test")["test_input_spikes_per_sample"])
    assert counts == [4.5, 4.5]


def test_silent_fractions_count_a_neuron_that_fired_on_any_batch():
    """Two batches: a neuron that fires in only one of them is not silent."""
    x = hand_inputs()
    net = hand_network()
    meter = SplitMeter("earliest_spike", has_labels=True)
    for b in range(2):
        meter.update(net(x[b : b + 1]), torch.tensor([b]), loss=0.0, inputs=x[b : b + 1])
    m = meter.compute("val")
    assert m["val_hidden1_silent_fraction"] == 0.25
    assert m["val_hidden1_silent_to_decision_fraction"] == 0.5  # h0 by sample 0's t0, h1 by sample 1's t2
    assert m["val_synops_per_sample"] == 25.0


def test_the_training_meter_measures_no_layers():
    """Without the inputs (the training steps) the meter keeps its old metrics only."""
    x = hand_inputs()
    meter = SplitMeter("earliest_spike", has_labels=True)
    meter.update(hand_network()(x), torch.tensor([0, 1]), loss=0.0)
    assert set(meter.compute("train")) == set(metric_names("train", True, hidden_layers=1))
    assert "train_synops_per_sample" not in meter.compute("train")


def test_stacked_trials_measure_what_separate_networks_measure():
    """Two trials of a stacked 6-5-4-3 network (two hidden layers) against the two networks alone."""
    steps, seeds = 12, (3, 4)
    separate = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = SpikingNetwork([6, 5, 4, 3], steps, NeuronParams(alpha_I=0.8, alpha_V=0.8)).double()
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.mul_(4.0)
        separate.append(net)
    stacked = SpikingNetwork([6, 5, 4, 3], steps, NeuronParams(alpha_I=0.8, alpha_V=0.8), trials=2).double()
    stacked.load_state_dict({key: torch.stack([n.state_dict()[key] for n in separate]) for key in stacked.state_dict()})
    generator = torch.Generator().manual_seed(0)
    inputs = [(torch.rand(3, steps, 6, generator=generator) < 0.3).double() for _ in seeds]
    labels = [torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0])]
    with torch.no_grad():
        meter = SplitMeter("earliest_spike", has_labels=True, trials=2)
        meter.update(stacked(torch.stack(inputs)), torch.cat(labels), loss=torch.zeros(2), inputs=torch.stack(inputs))
        together = meter.compute_trials("test")
        for k, net in enumerate(separate):
            alone = SplitMeter("earliest_spike", has_labels=True)
            alone.update(net(inputs[k]), labels[k], loss=0.0, inputs=inputs[k])
            expected = alone.compute("test")
            assert set(together[k]) == set(expected) == set(metric_names("test", True, hidden_layers=2))
            for key, value in expected.items():
                assert together[k][key] == pytest.approx(value, abs=1e-12), (k, key)
    assert 0 < together[0]["test_hidden2_spikes_per_sample"] and together[0]["test_synops_per_sample"] > 0
    assert together[0]["test_synops_per_sample"] != together[1]["test_synops_per_sample"]


def test_a_run_writes_the_layers_everywhere_its_results_go(tmp_path, one_thread):
    """A stacked run (two hidden layers): metrics.csv (validation), each trial's summary.json
    (test, equal to a recount from its best checkpoint), trials.json (the mean), the console."""
    from helpers.runs import compose_config, tiny_overrides

    from antlr_exp.cli.console import result_block
    from antlr_exp.training import checkpoint as ckpt
    from antlr_exp.training.build import build_network, load_data, trial_config
    from antlr_exp.training.run import run

    cfg = compose_config(*tiny_overrides("matching", {}), "trials=2", "task.hidden_sizes=[8,6]")
    combined = run(cfg, tmp_path)
    layer_keys = set(metric_names("test", False, hidden_layers=2)) - set(metric_names("test", False))
    assert {key for key in layer_keys if key.endswith("_per_sample")} <= set(combined)  # trials.json's means
    summaries = combined["summaries"]
    for k, summary in enumerate(summaries):
        folder = tmp_path / f"seed_{cfg.seed + k}"
        assert layer_keys <= set(summary)
        header = (folder / "metrics.csv").read_text().splitlines()[0].split(",")
        assert {key.replace("test_", "val_", 1) for key in layer_keys} <= set(header)
        assert not any(key.startswith("train_synops") for key in header)  # not measured in training steps
        # recount: events of each layer below times the size of the layer above, from the best weights
        trial = trial_config(cfg, cfg.seed + k)
        data = load_data(trial)
        net = build_network(trial, data)
        net.load_state_dict(ckpt.load(folder / "checkpoints" / "best.pt")["model"])
        synops = samples = 0
        with torch.no_grad():
            for x, _ in torch.utils.data.DataLoader(data.test, batch_size=4):
                out = net(x)
                layers = [x.reshape(x.shape[0], x.shape[1], -1), *out.spikes]
                for below, above in zip(layers[:-1], layers[1:]):
                    synops += int(torch.count_nonzero(below)) * above.shape[2]
                samples += x.shape[0]
        assert summary["test_synops_per_sample"] == pytest.approx(synops / samples)
        block = result_block(summary, folder / "summary.json")
        assert f"synaptic operations per test sample: {summary['test_synops_per_sample']:.4g}" in block
        assert f"hidden2 {summary['test_hidden2_spikes_per_sample']:.4g}" in block
    assert combined["test_synops_per_sample"] == pytest.approx(sum(s["test_synops_per_sample"] for s in summaries) / 2)


def fake_sweep(folder, jobs: list):
    """A sweep folder of finished jobs: (method, seed, summary) each."""
    import json

    import yaml

    for number, (method, seed, summary) in enumerate(jobs):
        job = folder / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(
            yaml.safe_dump({"method": {"name": method}, "loss": {"name": "count"}, "seed": seed})
        )
        (job / "summary.json").write_text(json.dumps(summary))
    return folder


JOBS = [  # method, seed, (accuracy, synops)
    ("antlr", 0, (0.8, 1000.0)),
    ("antlr", 1, (0.9, 3000.0)),
    ("timing", 0, (0.6, 500.0)),
]


def summaries_with_synops():
    return [
        (
            method,
            seed,
            {
                "test_accuracy": acc,
                "test_hidden_spikes_per_sample": 1.0,
                "test_output_spikes_per_sample": 1.0,
                "test_synops_per_sample": synops,
            },
        )
        for method, seed, (acc, synops) in JOBS
    ]


def test_antlr_report_shows_synops_by_default_and_old_runs_without_them(tmp_path, capsys):
    from antlr_exp.cli.report import main

    assert main([str(fake_sweep(tmp_path / "new", summaries_with_synops())), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    header = rows[0].split(",")
    assert "test_synops_per_sample_mean" in header
    antlr = dict(zip(header, rows[1].split(",")))
    assert float(antlr["test_synops_per_sample_mean"]) == 2000.0
    old = [(m, s, {k: v for k, v in summary.items() if "synops" not in k}) for m, s, summary in summaries_with_synops()]
    assert main([str(fake_sweep(tmp_path / "old", old))]) == 0
    table = capsys.readouterr().out
    assert "test_accuracy" in table and "synops" not in table


def test_antlr_plot_draws_accuracy_against_synops(tmp_path):
    pytest.importorskip("matplotlib")
    from antlr_exp.cli.plot import main
    from antlr_exp.results import plots

    sweep = fake_sweep(tmp_path / "sweep", summaries_with_synops())
    figure = plots.accuracy_vs_synops(plots.groups([sweep]))
    axes = figure.axes[0]
    assert axes.collections[0].get_offsets().tolist() == [[1000.0, 0.8], [3000.0, 0.9]]
    assert axes.collections[2].get_offsets().tolist() == [[500.0, 0.6]]
    assert "synaptic operations" in axes.get_xlabel()
    assert main([str(sweep), "--out", str(tmp_path / "png")]) == 0
    assert (tmp_path / "png" / "accuracy_vs_synops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    old = [(m, s, {k: v for k, v in summary.items() if "synops" not in k}) for m, s, summary in summaries_with_synops()]
    assert main([str(fake_sweep(tmp_path / "old", old)), "--out", str(tmp_path / "old_png")]) == 0
    assert not (tmp_path / "old_png" / "accuracy_vs_synops.png").exists()  # nothing to draw for old runs
    assert (tmp_path / "old_png" / "accuracy_vs_spikes.png").is_file()
