"""Experiment configs: they build, validate before any data is read, and stay consistent."""

import pytest

from experiments import lexinv_symbols, lexinvariant, lm
from experiments.lm_runs import validate
from lexlm.errors import ConfigError


@pytest.mark.parametrize(
    "module,arg",
    [
        (lm, "tiny"),
        (lm, "150m"),
        (lexinvariant, "tiny"),
        (lexinvariant, "small"),
        (lexinvariant, "paper"),
        (lexinv_symbols, "tiny"),
        (lexinv_symbols, "paper"),
    ],
)
def test_configs_build(module, arg):
    assert module.get_config(arg) is not None


@pytest.mark.parametrize("module", [lm, lexinvariant, lexinv_symbols])
def test_unknown_config_names_the_file(module):
    with pytest.raises(ValueError, match=r"experiments/.*\.py: unknown config"):
        module.get_config("nope")


def test_tiny_configs_validate():
    validate(lm.get_config("tiny"))
    c = lexinvariant.get_config("tiny")
    for unit in c.units:
        for emb in ("learned", "lexinvariant"):
            validate(lexinvariant.run_config(c, unit, emb))


def test_main_job_may_reuse_the_baseline_as_the_standard_char_lm():
    """experiments.main hands its baseline run to the lexinvariant experiment as the standard
    character LM; that is only fair if the two configs train the same model the same way."""
    baseline = lm.get_config("tiny").to_dict()
    standard = lexinvariant.run_config(lexinvariant.get_config("tiny"), "char", "learned")
    standard = standard.to_dict()
    for key in ("data", "seq_len", "model", "train"):
        assert standard[key] == baseline[key], key
    lexinv = lexinvariant.run_config(lexinvariant.get_config("tiny"), "char", "lexinvariant")
    assert lexinv.model.embedding == "lexinvariant"
    assert lexinv.train.to_dict() == baseline["train"]


def test_bad_model_field_is_named_before_anything_runs():
    cfg = lm.get_config("tiny")
    cfg.model.heads = 5
    with pytest.raises(ConfigError, match=r"^model\.heads: width 128 is not divisible by 5$"):
        validate(cfg)
