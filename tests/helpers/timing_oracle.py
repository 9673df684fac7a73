"""Independent float64 evaluations for the timing rule (used by tests only).

* ``direct_timing_gradients``: eqs. 7 and 10 of the paper evaluated by plain loops over the
  spike-free windows with the central-difference kernel derivative.
* ``interpolated_loss``: the network re-expressed on linearly interpolated threshold-crossing
  times, so that a finite difference in the weights sees spike-time shifts.
"""

import math

import torch

from antlr_exp.engine.neuron import eps_kernel, eps_time_derivative


def simulate_layer(drive_fn, n, steps, params, bias):
    """Reference LIF by loops. drive_fn(t) -> [n] synaptic input; returns V [T,n], S [T,n]."""
    V = torch.zeros(steps, n, dtype=torch.float64)
    S = torch.zeros(steps, n, dtype=torch.float64)
    cur = torch.zeros(n, dtype=torch.float64)
    v = torch.zeros(n, dtype=torch.float64)
    keep = torch.ones(n, dtype=torch.float64)
    allowed = torch.ones(n, dtype=torch.float64)
    for t in range(steps):
        cur = params.alpha_I * keep * cur + params.beta_I * drive_fn(t)
        v = params.alpha_V * keep * v + params.beta_V * cur + params.beta_bias * bias
        s = (v >= params.theta).double()
        if params.single_spike:
            s = s * allowed
            allowed = allowed * (1 - s)
        V[t], S[t] = v, s
        keep = 1 - s
    return V, S


def last_spike_before(S_col, t_a):
    """Last spike step strictly before t_a (-1 if none) of one neuron's train [T]."""
    idx = torch.nonzero(S_col[:t_a]).flatten()
    return int(idx[-1]) if idx.numel() else -1


def direct_timing_gradients(x, weights, biases, params, grad_t_out, vstar_min=None):
    """Timing rule by eqs. 7 and 10, one sample. x [T, N0]; grad_t_out [T, N_out] = dL/dt_hat.
    V* is clamped below at ``vstar_min``, by default ``params.vstar_min``.

    Returns (grad_weights, grad_biases) lists.
    """
    vstar_min = params.vstar_min if vstar_min is None else vstar_min
    steps = x.shape[0]
    eps = eps_kernel(params, steps + 1)
    deps = eps_time_derivative(params, steps + 1)  # d eps[k]/dk
    layers_s, layers_v = [x], []
    s_in = x
    for w, b in zip(weights, biases):
        V, S = simulate_layer(lambda t, s_in=s_in, w=w: w @ s_in[t], w.shape[0], steps, params, b)
        layers_s.append(S)
        layers_v.append(V)
        s_in = S
    grads_w = [None] * len(weights)
    grads_b = [None] * len(weights)
    grad_t = grad_t_out.clone()
    for l in range(len(weights) - 1, -1, -1):
        V, S, S_in, w = layers_v[l], layers_s[l + 1], layers_s[l], weights[l]
        n_out, n_in = w.shape
        dv = torch.zeros(steps, n_out, dtype=torch.float64)
        for t in range(steps):
            for j in range(n_out):
                if S[t, j] == 1:
                    prev_keep = 1 - S[t - 1, j] if t > 0 else 1.0
                    prev_v = V[t - 1, j] if t > 0 else 0.0
                    vstar = max(float(V[t, j] - prev_keep * prev_v), vstar_min)
                    dv[t, j] = -grad_t[t, j] / vstar
        gw = torch.zeros_like(w)
        gb = torch.zeros(n_out, dtype=torch.float64)
        grad_t_in = torch.zeros(steps, n_in, dtype=torch.float64)
        for j in range(n_out):
            for t_a in range(steps):
                if dv[t_a, j] == 0:
                    continue
                t_last = last_spike_before(S[:, j], t_a)
                for tau in range(t_last + 1, t_a + 1):
                    gw[j] += dv[t_a, j] * eps[t_a - tau] * S_in[tau]
                    # eq. 7: dV_j[t_a]/dt_hat_i = w_ji * d eps[t_a - t]/dt = -w_ji * deps[t_a - t]
                    grad_t_in[tau] += dv[t_a, j] * w[j] * (-deps[t_a - tau]) * S_in[tau]
                gb[j] += dv[t_a, j] * params.beta_bias * sum(params.alpha_V**k for k in range(t_a - t_last))
        grads_w[l], grads_b[l] = gw, gb
        grad_t = grad_t_in
    return grads_w, grads_b


def eps_continuous(params, s):
    """eps at real argument s: linear interpolation of eps[k] with eps[-1] = 0 (0 for s <= -1)."""
    if s <= -1:
        return 0.0
    k = math.floor(s)
    frac = s - k

    def e(m):
        if m < 0:
            return 0.0
        return params.beta_I * params.beta_V * sum(params.alpha_I**q * params.alpha_V ** (m - q) for q in range(m + 1))

    return (1 - frac) * e(k) + frac * e(k + 1)


def _crossing(t, v, prev, theta, slopes, key):
    """t - (V[t] - theta) / slope; with ``slopes`` (a dict), the slope is recorded at the first call
    for ``key`` and reused afterwards (frozen at the base point)."""
    slope = max(float(v - prev), 1e-12)
    if slopes is not None:
        slope = slopes.setdefault(key, slope)
    return t - float(v - theta) / slope


def interpolated_crossing(V, S, j, t, theta=1.0, slopes=None, key=None):
    """Threshold-crossing time of neuron j spiking at step t, linearly interpolated."""
    prev = V[t - 1, j] * (1 - S[t - 1, j]) if t > 0 else 0.0
    return _crossing(t, V[t, j], prev, theta, slopes, key)


def interpolated_network_times(x, weights, biases, params, base_shifts=None, slopes=None):
    """A network whose spike times move continuously: returns (hidden, output) dicts.

    Layer 1 is simulated exactly (inputs at integer steps); each of its spikes at step tau gets
    the interpolated crossing time t~. Layer 2 sums ``w * eps_c(t_a - tau - (t~ - t~_base))``:
    at the base point this equals the discrete model, and moving a hidden spike by d moves its
    kernel by d (a central finite difference of eps_c across an integer argument is exactly the
    central-difference kernel derivative). Output crossing times are interpolated the same way.
    ``weights``/``biases`` hold two layers; pass ``base_shifts`` = hidden dict of the base point.
    ``slopes``: a dict to freeze every crossing slope at its base value (see ``_crossing``).
    Dict keys are (neuron, step).
    """
    (w1, w2), (b1, b2) = weights, biases
    steps = x.shape[0]
    v_h, s_h = simulate_layer(lambda t: w1 @ x[t], w1.shape[0], steps, params, b1)
    hidden = {
        (i, t): interpolated_crossing(v_h, s_h, i, t, params.theta, slopes, ("hidden", i, t))
        for t, i in torch.nonzero(s_h).tolist()
    }
    output = {}
    for o in range(w2.shape[0]):
        t_last, v_prev, keep = -1, 0.0, 1.0
        for t_a in range(steps):
            v = 0.0
            for (i, tau), t_tilde in hidden.items():
                if t_last < tau <= t_a:
                    shift = t_tilde - (base_shifts[(i, tau)] if base_shifts is not None else t_tilde)
                    v += float(w2[o, i]) * eps_continuous(params, t_a - tau - shift)
            v += params.beta_bias * float(b2[o]) * sum(params.alpha_V**k for k in range(t_a - t_last))
            if v >= params.theta and not (params.single_spike and t_last >= 0):
                prev = v_prev * keep
                output[(o, t_a)] = _crossing(t_a, v, prev, params.theta, slopes, ("output", o, t_a))
                t_last, keep = t_a, 0.0
            else:
                keep = 1.0
            v_prev = v
    return hidden, output


def single_neuron_times(x, w, b, params, slopes=None):
    """Interpolated crossing times {(0, step): t~} of one neuron with input spikes x [T, N]."""
    v, s = simulate_layer(lambda t: w @ x[t], w.shape[0], x.shape[0], params, b)
    return {
        (j, t): interpolated_crossing(v, s, j, t, params.theta, slopes, (j, t)) for t, j in torch.nonzero(s).tolist()
    }


def exponential_surrogate(v, params):
    """sigma(V) = a * exp(-b |V - theta|), written out here apart from the library's surrogates."""
    return params.surrogate_a * math.exp(-params.surrogate_b * abs(float(v) - params.theta))


def direct_antlr_gradients(
    x, weights, biases, params, grad_s_out, grad_t_out, lambda_act, lambda_tim, sigma=exponential_surrogate
):
    """ANTLR by loops, one sample: at every layer dL/dV[t] = lambda_act * sigma(V[t]) dL/dS[t]
    + lambda_tim * (-dL/dt_hat[t] / V*[t]) (the second at spike steps only, V* clamped below at
    ``params.vstar_min``), sent down through the spike-free windows: eps for the weights and
    dL/dS of the layer below, its central-difference derivative for dL/dt_hat of the layer below.

    x [T, N0]; grad_s_out, grad_t_out [T, N_out]. Returns (grad_weights, grad_biases, spikes per layer).
    """
    steps = x.shape[0]
    eps = eps_kernel(params, steps + 1)
    deps = eps_time_derivative(params, steps + 1)
    layers_s, layers_v = [x], []
    s_in = x
    for w, b in zip(weights, biases):
        V, S = simulate_layer(lambda t, s_in=s_in, w=w: w @ s_in[t], w.shape[0], steps, params, b)
        layers_s.append(S)
        layers_v.append(V)
        s_in = S
    grads_w = [None] * len(weights)
    grads_b = [None] * len(weights)
    grad_s, grad_t = grad_s_out.clone(), grad_t_out.clone()
    for l in range(len(weights) - 1, -1, -1):
        V, S, S_in, w = layers_v[l], layers_s[l + 1], layers_s[l], weights[l]
        n_out, n_in = w.shape
        dv = torch.zeros(steps, n_out, dtype=torch.float64)
        for t in range(steps):
            for j in range(n_out):
                fired_before = params.single_spike and bool(S[:t, j].sum() > 0)
                if not fired_before:
                    dv[t, j] += lambda_act * sigma(V[t, j], params) * grad_s[t, j]
                if S[t, j] == 1:
                    prev_keep = 1 - S[t - 1, j] if t > 0 else 1.0
                    prev_v = V[t - 1, j] if t > 0 else 0.0
                    vstar = max(float(V[t, j] - prev_keep * prev_v), params.vstar_min)
                    dv[t, j] += lambda_tim * (-grad_t[t, j] / vstar)
        gw = torch.zeros_like(w)
        gb = torch.zeros(n_out, dtype=torch.float64)
        grad_s_in = torch.zeros(steps, n_in, dtype=torch.float64)
        grad_t_in = torch.zeros(steps, n_in, dtype=torch.float64)
        for j in range(n_out):
            for t_a in range(steps):
                if dv[t_a, j] == 0:
                    continue
                t_last = last_spike_before(S[:, j], t_a)
                for tau in range(t_last + 1, t_a + 1):
                    gw[j] += dv[t_a, j] * eps[t_a - tau] * S_in[tau]
                    grad_s_in[tau] += dv[t_a, j] * w[j] * eps[t_a - tau]
                    grad_t_in[tau] += dv[t_a, j] * w[j] * (-deps[t_a - tau]) * S_in[tau]
                gb[j] += dv[t_a, j] * params.beta_bias * sum(params.alpha_V**k for k in range(t_a - t_last))
        grads_w[l], grads_b[l] = gw, gb
        grad_s, grad_t = grad_s_in, grad_t_in
    return grads_w, grads_b, layers_s[1:]
