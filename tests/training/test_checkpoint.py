"""A checkpoint that cannot be read says that it is truncated or corrupt, in one line."""

from __future__ import annotations

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.errors import ConfigError
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.run import run


@pytest.mark.parametrize("keep", [0, 10, 0.5, -10])  # bytes kept (a float: that share of the file)
def test_a_cut_checkpoint_is_called_truncated_or_corrupt(tmp_path, keep):
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"weight": torch.zeros(2000)}, "step": 3}, whole)
    data = whole.read_bytes()
    cut = tmp_path / "last.pt"
    cut.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ConfigError) as caught:
        ckpt.load(cut)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {cut} is truncated or corrupt and cannot be read (")
    assert "\n" not in message and message.count(". ") == 0  # torch's paragraph of advice is left out


def test_resuming_from_a_truncated_last_pt_says_truncated(data_roots, tmp_path):
    overrides = tiny_overrides("mnist", data_roots, steps=2)
    run(compose_config(*overrides), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) - 64])  # cut inside the last record: torch reads past the end
    with pytest.raises(ConfigError, match=rf"checkpoint {last} is truncated or corrupt and cannot be read \(\w+"):
        run(compose_config(*overrides, "resume=true", "trainer.max_steps=3"), tmp_path)
