"""Experiment configs: they build, validate before any data is read, and stay consistent."""

import pytest

from experiments import lm
from experiments.lm_runs import lm_config, validate
from lexlm.errors import ConfigError


def paper_size(cfg, vocab_size):
    return lm_config(cfg, vocab_size).param_count()


def test_paper_configs_are_the_paper_sized_models():
    assert 1.2e8 < paper_size(lm.get_config("150m"), 32000) < 2.2e8


@pytest.mark.parametrize("module", [lm])
def test_unknown_config_names_the_file(module):
    with pytest.raises(ValueError, match=r"experiments/.*\.py: unknown config"):
        module.get_config("nope")


def test_bad_model_field_is_named_before_anything_runs():
    cfg = lm.get_config("tiny")
    cfg.model.heads = 5
    with pytest.raises(ConfigError, match=r"^model\.heads: width 128 is not divisible by 5$"):
        validate(cfg)
