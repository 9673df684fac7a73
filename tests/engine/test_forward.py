"""Forward pass: the two neuron descriptions, kernels, early stop, decisions and spike counts."""

import pytest
import torch
from helpers.kernel_paths import kernel_path  # noqa: F401  (autouse: every test runs on both paths)
from helpers.neuron_cases import AUTO_SCALES, EXPLICIT_SCALES

from antlr_exp.engine.backends import select
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams, eps_kernel, eps_time_derivative
from antlr_exp.engine.spikes import decide, first_spike_times, spike_counts


def srm_potential(spikes_in, weight, bias, params):
    """Eq. 4 evaluated by loops: V_j[t] = sum_{tau=t_last+1..t} sum_i w_ji eps[t-tau] S_i[tau] + bias term.

    spikes_in [T, N_in] -> (V [T, N], S [T, N]) for one sample.
    """
    steps, n = spikes_in.shape[0], weight.shape[0]
    eps = eps_kernel(params, steps)
    V = torch.zeros(steps, n, dtype=torch.float64)
    S = torch.zeros(steps, n, dtype=torch.float64)
    for j in range(n):
        t_last = -1
        for t in range(steps):
            v = sum(float(weight[j] @ spikes_in[tau]) * float(eps[t - tau]) for tau in range(t_last + 1, t + 1))
            v += params.beta_bias * float(bias[j]) * sum(params.alpha_V**k for k in range(t - t_last))
            V[t, j] = v
            may_fire = not (params.single_spike and t_last >= 0)
            if v >= params.theta and may_fire:
                S[t, j] = 1.0
                t_last = t
            # single spike: after its spike the neuron keeps integrating from t_last + 1, never fires
    return V, S


@pytest.mark.parametrize("single_spike", [False, True])
@pytest.mark.parametrize(
    "neuron",
    [
        dict(alpha_I=0.99, alpha_V=0.99),
        dict(alpha_I=0.9, alpha_V=0.8),
        dict(alpha_I=0.0, alpha_V=0.95),
        AUTO_SCALES,
        EXPLICIT_SCALES,
    ],
    ids=["paper", "alphas_0.9_0.8", "alphas_0_0.95", "auto_scales", "explicit_scales"],
)
def test_rnn_recurrence_equals_srm_sum(single_spike, neuron):
    steps, n_in, n = 50, 7, 5
    params = NeuronParams(**neuron, single_spike=single_spike).resolve(steps)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, steps, n_in, generator=g, dtype=torch.float64) < 0.2).double()
    w = torch.rand(n, n_in, generator=g, dtype=torch.float64) * 1.5
    b = torch.rand(n, generator=g, dtype=torch.float64) * 0.3
    drive = torch.einsum("bti,ji->tbj", x, w)
    potential, spikes, _, _, _ = select(drive.device).simulate_lif(drive, b, params)
    total_spikes = 0
    for sample in range(2):
        v_ref, s_ref = srm_potential(x[sample], w, b, params)
        torch.testing.assert_close(potential[:, sample], v_ref, rtol=1e-12, atol=1e-12)
        assert torch.equal(spikes[:, sample], s_ref)
        total_spikes += int(s_ref.sum())
    assert total_spikes >= 5
    if single_spike:
        assert spikes.sum(dim=0).max() <= 1


def test_eps_kernel_closed_form_and_auto_scale():
    steps = 100
    params = NeuronParams(alpha_I=0.9, alpha_V=0.8).resolve(steps)
    k = torch.arange(steps, dtype=torch.float64)
    closed = params.beta_I * params.beta_V * (0.9 ** (k + 1) - 0.8 ** (k + 1)) / (0.9 - 0.8)
    torch.testing.assert_close(eps_kernel(params, steps), closed)
    # "auto": one input spike of weight 1 raises V by at most 1 over the window
    assert abs(float(eps_kernel(params, steps).max()) - 1.0) < 1e-12
    equal = NeuronParams().resolve(steps)  # alpha_I = alpha_V = 0.99: eps ~ (k+1) 0.99^k
    peak = max((m + 1) * 0.99**m for m in range(steps))
    assert abs(equal.beta_V - 1.0 / peak) < 1e-12 and abs(equal.beta_bias - 1.0 / peak) < 1e-12


def test_eps_time_derivative_is_central_difference():
    params = NeuronParams().resolve(50)
    eps = eps_kernel(params, 12)
    d = eps_time_derivative(params, 10)
    assert abs(float(d[0]) - float(eps[1]) / 2) < 1e-15
    for k in range(1, 10):
        assert abs(float(d[k]) - float(eps[k + 1] - eps[k - 1]) / 2) < 1e-15


def _net(sizes, steps, seed=0, **kw):
    torch.manual_seed(seed)
    net = SpikingNetwork(sizes, steps, NeuronParams(**kw))
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(8.0).add_(0.5)
    return net


def test_early_stop_matches_full_simulation_and_stops_early():
    steps = 100
    net = _net([20, 30, 3], steps)
    x = (torch.rand(4, steps, 20, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    with torch.no_grad():
        full = net(x)
        early = net(x, early_stop=True, chunk=7)
    assert early.num_steps < steps, "all outputs fire early here, so the simulation must stop"
    last_first = int(first_spike_times(full.output_spikes).max())
    assert last_first < early.num_steps <= last_first + 7
    for a, b in zip(early.spikes, full.spikes):
        assert torch.equal(a, b[:, : early.num_steps])
    assert torch.equal(decide(early.output_spikes, "earliest_spike"), decide(full.output_spikes, "earliest_spike"))


@pytest.mark.parametrize("rule, lambdas", [("antlr", (1.0, 1.0)), ("antlr", (0.3, 2.5)), ("timing", (1.0, 1.0))])
@pytest.mark.parametrize("single_spike", [False, True])
def test_training_early_stop_gives_the_full_window_gradients(rule, lambdas, single_spike):
    """Latency loss (+ no-spike count term): no gradient after every output's first spike, so the
    backward through the steps simulated up to the early stop equals the full window's (float64)."""
    from antlr_exp.engine.losses import latency_loss, no_spike_count_term

    steps = 100
    torch.manual_seed(3)
    net = SpikingNetwork(
        [20, 30, 4],
        steps,
        NeuronParams(single_spike=single_spike),
        rule=rule,
        lambda_act=lambdas[0],
        lambda_tim=lambdas[1],
    ).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(8.0).add_(0.5)
    x = (torch.rand(6, steps, 20, generator=torch.Generator().manual_seed(0)) < 0.1).double()
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    grads, full = [], None
    for early in (False, True):
        net.zero_grad()
        out = net(x, early_stop=early, chunk=7)
        loss = latency_loss(out.output_spikes, out.output_times, labels)
        loss = loss + no_spike_count_term(out.output_spikes, labels, 0.1)
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        if early:
            assert out.num_steps < steps, "every output fires early here, so the simulation must stop"
            hidden_after = float(full.spikes[0][:, out.num_steps :].detach().sum())
            assert hidden_after > 0, "hidden spikes after the stop: the truncation drops something"
        else:
            full = out
    for a, b in zip(*grads):
        assert a.abs().sum() > 0
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("chunked", [True, False])
def test_penalty_window_early_stop_counts_silence_up_to_the_last_first_output_spike(chunked):
    """The authors' window: a hidden neuron whose first spike falls after the step at which the
    batch's last output first fired counts as silent, whichever steps the pass simulated (the
    chunked early stop runs to the end of a chunk of 7 steps, the plain pass the whole window)."""
    from antlr_exp.engine.losses import no_spike_weight_penalty

    steps, p = 100, 100.0
    net = _net([20, 30, 4], steps, seed=3, single_spike=False)
    net.set_rule("timing")
    x = (torch.rand(6, steps, 20, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    with torch.no_grad():
        full = net(x)
    output = full.spikes[-1]
    firsts = [[int(output[b, :, j].nonzero()[0]) for j in range(4)] for b in range(6)]  # IndexError: one silent
    stop = max(max(row) for row in firsts) + 1  # steps 0 .. the last first output spike
    assert stop % 7 != 0, "the stop must fall inside a chunk"
    before = full.spikes[0][:, :stop].sum(dim=1) == 0  # silent up to the stop, [B, N]
    assert bool((before & ~(full.spikes[0][:, : (stop // 7 + 1) * 7].sum(dim=1) == 0)).any()), (
        "some neuron must first fire between the stop and the end of its chunk"
    )
    out = net(x, early_stop=True, chunk=7) if chunked else net(x)
    assert out.num_steps == ((stop // 7 + 1) * 7 if chunked else steps)
    net.zero_grad()
    no_spike_weight_penalty(net, out, p=p, until_all_fired=True).backward()
    expected = -(p / 20) * before.float().mean(dim=0).unsqueeze(1).expand(30, 20)
    torch.testing.assert_close(net.layers[0].weight.grad, expected)


def test_event_frames_are_flattened():
    steps = 20
    net = _net([2 * 3 * 3, 6, 2], steps)
    frames = (torch.rand(2, steps, 2, 3, 3, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    a = net(frames)
    b = net(frames.reshape(2, steps, -1))
    for s1, s2 in zip(a.spikes, b.spikes):
        assert torch.equal(s1, s2)


def _spikes(rows):
    """[B, T, O] from a list per sample of (step, neuron) spikes; T = 6, O = 3."""
    out = torch.zeros(len(rows), 6, 3)
    for b, events in enumerate(rows):
        for t, o in events:
            out[b, t, o] = 1.0
    return out


def test_decisions_and_their_ties_on_hand_worked_cases():
    s = _spikes(
        [
            [(2, 0), (4, 0), (1, 1)],  # most: 0 (2 spikes); earliest: 1 (step 1)
            [(3, 0), (3, 2), (5, 2)],  # earliest tie at step 3 -> lower index: 0; most: 2
            [(1, 2), (2, 0)],  # most tie (1 each) -> earlier first spike: 2; earliest: 2
            [(2, 0), (2, 1)],  # full ties -> lower index 0 for both
            [],  # silent -> -1
        ]
    )
    assert decide(s, "most_spike").tolist() == [0, 2, 2, 0, -1]
    assert decide(s, "earliest_spike").tolist() == [1, 0, 2, 0, -1]


def test_spike_counts_whole_window_and_to_decision():
    from antlr_exp.engine.spikes import NetworkOutput

    hidden = torch.zeros(2, 6, 4)
    hidden[0, 0, 0] = hidden[0, 2, 1] = hidden[0, 5, 3] = 1  # 3 spikes, 2 by step 2
    hidden[1, 4, 2] = 1
    out_spikes = _spikes([[(2, 1), (4, 1)], []])
    out = NetworkOutput([hidden, out_spikes], [hidden, out_spikes], 6)
    counts = spike_counts(out, "earliest_spike")
    assert counts["hidden_spikes"].tolist() == [3.0, 1.0]
    assert counts["output_spikes"].tolist() == [2.0, 0.0]
    assert counts["hidden_spikes_to_decision"].tolist() == [2.0, 1.0]  # decision at step 2; silent -> whole window
    assert counts["output_spikes_to_decision"].tolist() == [1.0, 0.0]
    most = spike_counts(out, "most_spike")
    assert most["hidden_spikes_to_decision"].tolist() == [3.0, 1.0]


def test_emitted_events_are_the_nonzero_spikes(kernel_path):
    """The events a layer hands to the next one list exactly its spikes, sorted by row t*B + b."""
    if kernel_path != "cpp":
        pytest.skip("only the C++ kernels emit events")
    steps = 30
    torch.manual_seed(0)
    net = SpikingNetwork([20, 40, 3], steps)
    with torch.no_grad():
        net.layers[0].weight.mul_(6.0)
    x = (torch.rand(5, steps, 20, generator=torch.Generator().manual_seed(2)) < 0.1).float()
    with torch.no_grad():
        spikes, _, events = net.layers[0](x, None, None, emit_events=True)
    assert 0 < spikes.mean() < 0.1  # sparse enough to be passed on as events
    assert events is not None and events.values is None
    b, t, n = spikes.nonzero(as_tuple=True)
    rows = t * 5 + b
    order = torch.argsort(rows * 40 + n)
    assert torch.equal(events.rows, rows[order]) and torch.equal(events.cols, n[order])
    counts = torch.bincount(rows, minlength=steps * 5)
    assert torch.equal(events.row_offsets, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))
    assert events.rows.numel() > 20
