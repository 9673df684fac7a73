"""Adam's epsilon, AMSGrad and clipping by norm: each reaches the step, per trial, as torch's own
optimizer and clipping would do it on separate runs; and runs saved before these keys existed
still resume and evaluate."""

from __future__ import annotations

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides
from omegaconf import OmegaConf

from antlr_exp.config import LEGACY_VALUES, with_legacy_values
from antlr_exp.errors import ConfigError
from antlr_exp.training.build import load_trials, resolve_device
from antlr_exp.training.objective import clip_grad_norm_per_trial
from antlr_exp.training.state import check_same_run
from antlr_exp.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_norm_clipping_scales_each_trial_as_a_separate_run_would():
    torch.manual_seed(0)
    trials, max_norm = 3, 1.5
    shapes = [(trials, 4, 5), (trials, 4)]
    params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    scales = torch.tensor([0.01, 1.0, 10.0])  # trial 0 under the limit, the others over it
    for p in params:
        p.grad = torch.randn(p.shape) * scales.view(trials, *([1] * (p.dim() - 1)))
    expected = []
    for k in range(trials):  # torch's clipping, one trial's parameters at a time
        own = [torch.zeros(p.shape[1:], requires_grad=True) for p in params]
        for q, p in zip(own, params):
            q.grad = p.grad[k].clone()
        torch.nn.utils.clip_grad_norm_(own, max_norm)
        expected.append([q.grad for q in own])
    clip_grad_norm_per_trial(params, max_norm, trials)
    for k in range(trials):
        for p, want in zip(params, expected[k]):
            torch.testing.assert_close(p.grad[k], want, rtol=1e-6, atol=1e-7)
    norm0 = torch.sqrt(sum(p.grad[0].pow(2).sum() for p in params))
    assert norm0 < max_norm  # untouched below the limit


def _steps_by_hand(net, cfg, objective, inputs, targets, steps: int, **changes) -> list:
    """``steps`` training steps on a copy of ``net`` with torch's Adam and torch's clipping, the
    optimizer settings of ``cfg`` with ``changes``; the parameters after them."""
    copy = type(net)(net.sizes, net.num_steps, net.params, rule=net.rule.rule)
    copy.load_state_dict(net.state_dict())
    opt = {**OmegaConf.to_container(cfg.optimizer), **changes}
    params = list(copy.parameters())
    adam = torch.optim.Adam(params, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], amsgrad=opt["amsgrad"])
    for _ in range(steps):
        adam.zero_grad()
        objective.loss(copy(inputs), targets).backward()
        torch.nn.utils.clip_grad_value_(params, opt["grad_clip_value"])
        if opt["grad_clip_norm"] is not None:
            assert torch.nn.utils.clip_grad_norm_(params, opt["grad_clip_norm"]) > 10 * opt["grad_clip_norm"]
        adam.step()
    return [p.detach() for p in params]


# each setting far from its default where the matching task's gradients make it act: eps far above
# their scale, a norm limit far below their norm, and for AMSGrad a short second-moment memory
# (beta2 = 0.5) so that some second moments fall between steps, where AMSGrad keeps the maximum
SETTINGS = {
    "eps": ["optimizer.eps=0.05"],
    "grad_clip_norm": ["optimizer.grad_clip_norm=0.02"],
    "amsgrad": ["optimizer.amsgrad=true", "optimizer.betas=[0.9,0.5]"],
}
PLAIN = {"eps": {"eps": 1e-8}, "grad_clip_norm": {"grad_clip_norm": None}, "amsgrad": {"amsgrad": False}}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_optimizer_settings_reach_the_training_step(setting, data_roots, tmp_path):
    """Three training steps equal the same steps done with torch's Adam and clipping at the
    setting, and differ from them without it (so the setting acts on these gradients)."""
    cfg = compose_config(*tiny_overrides("matching", data_roots), *SETTINGS[setting])
    device = resolve_device("cpu")
    datas, net = load_trials(cfg, device)
    initial = {key: value.clone() for key, value in net.state_dict().items()}
    trainer = Trainer(cfg, tmp_path, datas, device, net=net)
    inputs, targets = next(iter(trainer._epoch_batches()))
    for _ in range(3):
        trainer._train_step(inputs, targets)
    net0 = type(net)(net.sizes, net.num_steps, net.params, rule=net.rule.rule)
    net0.load_state_dict(initial)
    wanted = _steps_by_hand(net0, cfg, trainer.objective, inputs, targets, 3)
    plain = _steps_by_hand(net0, cfg, trainer.objective, inputs, targets, 3, **PLAIN[setting])
    for got, want in zip(trainer.net.parameters(), wanted):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)
    assert max(float((a - b).abs().max()) for a, b in zip(wanted, plain)) > 1e-5


def test_a_run_saved_without_the_new_keys_resumes_only_with_their_old_values(tmp_path, data_roots):
    cfg = compose_config(*tiny_overrides("matching", data_roots))
    saved = OmegaConf.to_container(cfg, resolve=True)
    for key in LEGACY_VALUES:
        group, name = key.split(".")
        del saved[group][name]
    check_same_run(saved, cfg, tmp_path)  # the shipped values are the old behaviour
    assert OmegaConf.create(with_legacy_values(saved)).optimizer.eps == cfg.optimizer.eps
    changed = compose_config(*tiny_overrides("matching", data_roots), "optimizer.amsgrad=true")
    with pytest.raises(ConfigError, match="optimizer.amsgrad"):
        check_same_run(saved, changed, tmp_path)


@pytest.mark.parametrize(
    "key, value",
    [
        ("optimizer.eps", "0"),
        ("optimizer.eps", "-1e-8"),
        ("optimizer.grad_clip_norm", "0"),
        ("optimizer.grad_clip_norm", "inf"),
    ],
)
def test_bad_optimizer_values_are_refused(key, value, data_roots):
    from antlr_exp.config import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose_config(*tiny_overrides("matching", data_roots), f"{key}={value}"))
