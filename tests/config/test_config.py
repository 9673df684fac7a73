"""The configs: paper defaults, typed keys, validation before any data is read."""

from __future__ import annotations

import pytest
from helpers.runs import compose_config
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from antlr_exp.cli.train import group_options
from antlr_exp.config import CONF_DIR, validate
from antlr_exp.errors import ConfigError, DatasetNotFoundError
from antlr_exp.training.run import run

METHODS = ("activation", "activation_rnn", "timing", "antlr")


def test_default_is_the_matching_task_of_the_paper():
    cfg = compose_config()
    validate(cfg)
    assert (cfg.task.name, cfg.method.name, cfg.loss.name) == ("matching", "antlr", "spike_train")
    assert list(cfg.task.hidden_sizes) == [50, 50] and cfg.task.num_steps == 100
    assert (cfg.task.options.num_inputs, cfg.task.options.num_outputs, cfg.task.options.input_spikes) == (10, 5, 3)
    assert cfg.trainer.batch_size == 1 and cfg.trainer.max_epochs is None and cfg.trainer.val_every_n_steps > 0
    assert (cfg.method.lambda_act, cfg.method.lambda_tim) == (1.0, 1.0)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.grad_clip_value) == ("adam", 1e-3, 1.0)
    assert (cfg.seed, cfg.single_spike, cfg.device, cfg.resume) == (0, False, "auto", False)


@pytest.mark.parametrize("task", ["mnist", "nmnist"])
def test_classification_tasks_follow_the_paper(task):
    cfg = compose_config(f"task={task}")
    assert list(cfg.task.hidden_sizes) == [800] and cfg.task.num_steps == (100 if task == "mnist" else 300)
    trainer = cfg.trainer
    assert (trainer.max_epochs, trainer.max_steps, trainer.batch_size, trainer.test_batch_size) == (20, None, 16, 256)
    assert (trainer.lr_decay_epochs, trainer.lr_decay_factor, trainer.monitor) == (10, 0.1, "val_accuracy")
    losses = {m: compose_config(f"task={task}", f"method={m}").loss for m in METHODS}
    assert losses["timing"].name == losses["antlr"].name == "latency"
    assert losses["timing"].decision == losses["antlr"].decision == "earliest_spike"
    assert (losses["timing"].lambda_ns, losses["antlr"].lambda_ns) == (0.0, 0.1)
    n_true = 1.0 if task == "mnist" else 10.0
    for m in ("activation", "activation_rnn"):
        assert (losses[m].name, losses[m].decision, losses[m].n_true, losses[m].n_false) == (
            "count",
            "most_spike",
            n_true,
            0.0,
        )
    assert compose_config(f"task={task}", "method=timing").method.no_spike_penalty == 100.0


def test_nmnist_count_target_drops_to_one_with_single_spike():
    cfg = compose_config("task=nmnist", "method=activation", "single_spike=true")
    validate(cfg)
    assert cfg.loss.n_true == 1.0


def test_a_named_loss_replaces_the_paper_default():
    cfg = compose_config("task=mnist", "method=antlr", "loss=count", "loss.n_true=2")
    validate(cfg)
    assert (cfg.loss.name, cfg.loss.n_true, cfg.loss.decision) == ("count", 2.0, "most_spike")


# The names users type (README), each set on the command line and read back.
USER_KEYS = {
    "method": ("timing", lambda c: c.method.name),
    "method.lambda_act": (0.5, lambda c: c.method.lambda_act),
    "method.lambda_tim": (2.0, lambda c: c.method.lambda_tim),
    "loss": ("count", lambda c: c.loss.name),
    "task": ("mnist", lambda c: c.task.name),
    "seed": (7, lambda c: c.seed),
    "single_spike": (True, lambda c: c.single_spike),
    "device": ("cpu", lambda c: c.device),
    "resume": (True, lambda c: c.resume),
    "trainer.max_epochs": (3, lambda c: c.trainer.max_epochs),
    "trainer.max_steps": (5, lambda c: c.trainer.max_steps),
    "trainer.batch_size": (4, lambda c: c.trainer.batch_size),
    "optimizer.lr": (0.01, lambda c: c.optimizer.lr),
    "data.root": ("somewhere", lambda c: c.data.root),
    "data.download": (True, lambda c: c.data.download),
    "data.limit_train": (10, lambda c: c.data.limit_train),
    "data.limit_test": (20, lambda c: c.data.limit_test),
    "logger": ("wandb", lambda c: c.logger.name),
}


@pytest.mark.parametrize("key", sorted(USER_KEYS))
def test_documented_keys_exist(key):
    value, read = USER_KEYS[key]
    text = str(value).lower() if isinstance(value, bool) else str(value)
    assert read(compose_config(f"{key}={text}")) == value


@pytest.mark.parametrize(
    "override, key",
    [
        ("method.lamda_act=2", "lamda_act"),  # misspelt
        ("method=timing method.lambda_act=2", "lambda_act"),  # not a key of that method
        ("trainer.max_step=3", "max_step"),
        ("trainer.max_steps=ten", "ten"),  # wrong type
        ("single_spike=maybe", "maybe"),
    ],
)
def test_typed_configs_refuse_unknown_keys_and_wrong_types(override, key):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(*override.split())
    assert isinstance(caught.value.__cause__, OmegaConfBaseException)
    assert key in str(caught.value.__cause__)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["method=timing", "loss=count"], ["method=timing", "loss=count", "accepted methods"]),
        (["method=activation", "loss=latency"], ["method=activation", "loss=latency", "timing, antlr"]),
        (["method=activation_rnn", "loss=latency"], ["method=activation_rnn", "loss=latency"]),
        (["task=matching", "loss=count"], ["loss=count", "task=matching", "spike_train"]),
        (["task=mnist", "loss=spike_train"], ["loss=spike_train", "task=mnist", "loss.label_steps=null"]),
        (["task=mnist", "loss=spike_train", "loss.label_steps=[100]"], ["loss.label_steps=[100]", "0..99"]),
        (["task=mnist", "loss=spike_train", "loss.label_steps=[10,10]"], ["loss.label_steps=[10, 10]", "repeated"]),
        (
            ["task=mnist", "loss=spike_train", "loss.label_steps=[10]", "loss.other_steps=[-1]"],
            ["loss.other_steps=[-1]", "0..99"],
        ),
        (
            ["task=mnist", "loss=spike_train", "single_spike=true", "loss.label_steps=[10,20]"],
            ["loss.label_steps=[10, 20]", "single_spike=true"],
        ),
        (["task=matching", "loss.label_steps=[3]"], ["loss.label_steps=[3]", "task=matching", "label_steps=null"]),
        (["method=antlr", "task=mnist", "method.lambda_tim=0"], ["lambda_tim"]),
        (["task.hidden_sizes=[50,0]"], ["task.hidden_sizes[1]=0", ">= 1"]),
        (["task.hidden_sizes=[]"], ["task.hidden_sizes"]),
        (["task.num_steps=0"], ["task.num_steps=0"]),
        (["trainer.batch_size=-2"], ["trainer.batch_size=-2"]),
        (["trainer.max_steps=0"], ["trainer.max_steps=0"]),
        (["trainer.max_steps=null"], ["trainer.max_epochs=null", "trainer.max_steps=null"]),
        (["optimizer.lr=0"], ["optimizer.lr=0"]),
        (["optimizer.grad_clip_value=-1"], ["optimizer.grad_clip_value"]),
        (["data.limit_train=0"], ["data.limit_train=0"]),
        (["loss.decay=1.5"], ["loss.decay=1.5", "(0, 1)"]),
        (["loss.decision=first"], ["loss.decision='first'", "most_spike, earliest_spike"]),
        (["device=tpu"], ["device='tpu'", "auto, cpu, cuda"]),
        (["neuron.theta=0"], ["neuron.theta"]),
        (["neuron.alpha_V=1.5"], ["neuron.alpha_V"]),
        (["trainer.monitor=val_accuracy"], ["trainer.monitor", "val_loss"]),  # matching has no accuracy
        (
            ["task=nmnist", "method=activation", "single_spike=true", "loss.n_true=10"],
            ["loss.n_true=10", "single_spike"],
        ),
        (["logger=wandb", "logger.mode=sometimes"], ["logger.mode", "offline"]),
        (["resume=true", "evaluate=somewhere"], ["resume", "evaluate"]),
        (["+trainer.patience=3"], ["trainer.patience", "max_epochs"]),  # Hydra lets '+' add keys
        (["+method.lambda_ns=3"], ["method.lambda_ns", "lambda_act"]),
        (["+colour=red"], ["colour", "the config"]),
    ],
)
def test_bad_values_fail_with_one_line_naming_key_and_accepted(overrides, words):
    with pytest.raises(ConfigError) as caught:
        validate(compose_config(*overrides))
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_validation_happens_before_any_data_is_read(tmp_path):
    # the data folder does not exist: a data error would be DatasetNotFoundError
    bad = compose_config("task=mnist", "data.root=/nonexistent", "method=timing", "loss=count")
    with pytest.raises(ConfigError):
        run(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetNotFoundError):
        run(compose_config("task=mnist", "data.root=/nonexistent", "trainer.progress_bar=false"), tmp_path)


def test_group_options_list_the_choices():
    assert group_options("method") == sorted(METHODS)
    assert {"count", "spike_train", "latency", "paper/mnist_antlr"} <= set(group_options("loss"))
    for task in ("matching", "mnist", "nmnist"):  # every task/method pair has a paper default
        for method in METHODS:
            assert f"paper/{task}_{method}" in group_options("loss")


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_preset_and_its_sweep_is_valid(experiment):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        full = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = full.hydra.sweeper.params or {}
    methods = str(params.get("method", full.method.name)).split(",")
    for method in methods:
        validate(compose_config(f"experiment={experiment}", f"method={method}"))
    if "fig7" in experiment or "fig8" in experiment:
        assert methods == ["activation", "timing", "antlr"] and full.trials == 16 and "seed" not in params
        assert full.single_spike == experiment.endswith("single_spike")


@pytest.mark.parametrize(
    "experiment", ["fig7a_mnist", "fig7b_mnist_single_spike", "fig8a_nmnist", "fig8b_nmnist_single_spike"]
)
def test_paper_presets_count_the_timing_rules_silence_up_to_the_training_early_stop(experiment):
    """The authors' code stops latency-loss training once every output fired and counts silence
    up to there: the Fig. 7/8 presets' timing job does the same; the other rules and a run
    without the preset keep their own settings."""
    timing = compose_config(f"experiment={experiment}", "method=timing")
    assert timing.method.penalty_window == "early_stop" and timing.loss.name == "latency"
    validate(timing)
    assert "penalty_window" not in compose_config(f"experiment={experiment}", "method=antlr").method
    task = "nmnist" if "nmnist" in experiment else "mnist"
    assert compose_config(f"task={task}", "method=timing").method.penalty_window == "full"
    # the command line still wins over the preset
    assert (
        compose_config(f"experiment={experiment}", "method=timing", "method.penalty_window=full").method.penalty_window
        == "full"
    )


@pytest.mark.parametrize("single", ["false", "true"])
def test_n_mnist_same_loss_activation_job_is_fig8s_activation_job(single):
    """docs/results/same_loss.md reuses Fig. 8's activation job as the activation row of the N-MNIST same-loss
    study: the two presets must give that job the same configuration."""
    from omegaconf import OmegaConf

    same = compose_config("experiment=same_loss_nmnist", "method=activation", f"single_spike={single}")
    fig8 = compose_config("experiment=fig8a_nmnist", "method=activation", f"single_spike={single}")
    assert OmegaConf.to_container(same, resolve=True) == OmegaConf.to_container(fig8, resolve=True)
    # and ANTLR's job differs from Fig. 8's ANTLR job in the loss alone
    antlr = OmegaConf.to_container(
        compose_config("experiment=same_loss_nmnist", "method=antlr", f"single_spike={single}"), resolve=True
    )
    paper = OmegaConf.to_container(
        compose_config("experiment=fig8a_nmnist", "method=antlr", f"single_spike={single}"), resolve=True
    )
    assert antlr["loss"] == OmegaConf.to_container(same.loss, resolve=True) and antlr["loss"] != paper["loss"]
    assert {k: v for k, v in antlr.items() if k != "loss"} == {k: v for k, v in paper.items() if k != "loss"}
