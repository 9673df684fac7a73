"""The gradient rules and which losses each can learn from (no torch: cheap to import).

Every rule turns dL/dS and dL/dt_hat into dL/dV[t] (see :mod:`antlr_exp.engine.lif`)::

    activation      dL/dV = sigma(V) dL/dS                    (SRM: no reset paths)
    timing          dL/dV = -dL/dt_hat / V*  at spike steps
    antlr           dL/dV = lambda_act * activation part + lambda_tim * timing part
    activation_rnn  plain BPTT of the RNN-like equations, reset paths kept
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

RULES = ("activation", "activation_rnn", "timing", "antlr")

LOSSES = ("count", "spike_train", "latency")

#: which rules can learn from which loss (count has no dL/dt, latency no dL/dS)
_COMPATIBLE = {
    "count": ("activation", "activation_rnn", "antlr"),
    "spike_train": ("activation", "activation_rnn", "timing", "antlr"),
    "latency": ("timing", "antlr"),
}


@dataclass(frozen=True)
class RuleConfig:
    """Which gradient rule a layer's backward applies, and its weights (antlr only)."""

    rule: str = "antlr"
    lambda_act: float = 1.0
    lambda_tim: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"method={self.rule!r}: accepted are {', '.join(RULES)}")
        for name in ("lambda_act", "lambda_tim"):  # antlr-train's config check is this one too
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"method.{name}={value!r} is out of range; accepted: a number in [0, inf)")

    @property
    def act_weight(self) -> float:
        """Weight of the activation (surrogate) part of dL/dV."""
        return {"activation": 1.0, "timing": 0.0, "antlr": float(self.lambda_act), "activation_rnn": 1.0}[self.rule]

    @property
    def tim_weight(self) -> float:
        """Weight of the timing part of dL/dV."""
        return {"activation": 0.0, "timing": 1.0, "antlr": float(self.lambda_tim), "activation_rnn": 0.0}[self.rule]


def check_rule_loss(rule: str, loss: str, lambda_act: float = 1.0, lambda_tim: float = 1.0) -> None:
    """Raise ConfigError for a rule/loss pairing that gives no gradient."""
    if loss not in LOSSES:
        raise ConfigError(f"loss={loss!r}: accepted are {', '.join(LOSSES)}")
    if rule not in _COMPATIBLE["spike_train"]:
        raise ConfigError(f"method={rule!r}: accepted are {', '.join(_COMPATIBLE['spike_train'])}")
    if rule not in _COMPATIBLE[loss]:
        raise ConfigError(
            f"method={rule} with loss={loss}: the {loss} loss gives "
            f"{'no spike-time gradient' if loss == 'count' else 'no spike-activation gradient'}, "
            f"which method={rule} needs; accepted methods for loss={loss}: {', '.join(_COMPATIBLE[loss])}"
        )
    if rule == "antlr" and lambda_act == 0 and lambda_tim == 0:
        raise ConfigError(
            "method=antlr with method.lambda_act=0 and method.lambda_tim=0: no gradient would flow; "
            "set at least one of them != 0"
        )
    if rule == "antlr" and loss == "count" and lambda_act == 0:
        raise ConfigError(
            "loss=count with method=antlr and method.lambda_act=0: no gradient would flow; set lambda_act != 0"
        )
    if rule == "antlr" and loss == "latency" and lambda_tim == 0:
        raise ConfigError(
            "loss=latency with method=antlr and method.lambda_tim=0: no gradient would flow; set lambda_tim != 0"
        )
