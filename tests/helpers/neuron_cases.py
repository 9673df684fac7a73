"""Neuron constants for the forward and gradient oracles besides the paper's defaults.

At the defaults (alpha_I = alpha_V, beta_I = 1, theta = 1, beta_V = beta_bias = "auto") several
constants coincide: "auto" makes beta_V = beta_bias when beta_I = 1, and alpha_I = alpha_V hides
which decay a formula uses. A formula that takes one for the other passes every oracle run at
the defaults. These sets make each of them differ (both have beta_I != 1, beta_V != beta_bias,
alpha_I != alpha_V and theta != 1), chosen so that the networks of the tests still fire.
"""

#: Kwargs of NeuronParams, by name (for test ids). "paper": the defaults.
PAPER = {}
#: beta_I != 1 with both scales "auto": beta_V = auto / beta_I while beta_bias = auto.
AUTO_SCALES = dict(alpha_I=0.95, alpha_V=0.9, beta_I=1.6, theta=0.85)
#: explicit beta_V and beta_bias, the opposite order of the decays.
EXPLICIT_SCALES = dict(alpha_I=0.9, alpha_V=0.97, beta_I=0.7, beta_V=0.3, beta_bias=0.08, theta=1.2)

NEURONS = {"paper": PAPER, "auto_scales": AUTO_SCALES, "explicit_scales": EXPLICIT_SCALES}
#: The non-default sets only (for tests that already run the defaults elsewhere).
OTHER_NEURONS = {name: kw for name, kw in NEURONS.items() if kw}
