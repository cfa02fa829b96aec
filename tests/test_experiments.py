"""Experiment configs: they build, validate before any data is read, and stay consistent."""

import pytest

from experiments import lexinv_symbols, lexinvariant, lm
from experiments.lm_runs import lm_config, validate
from lexlm.errors import ConfigError


def paper_size(cfg, vocab_size):
    return lm_config(cfg, vocab_size).param_count()


def test_paper_configs_are_the_paper_sized_models():
    assert 1.2e8 < paper_size(lm.get_config("150m"), 32000) < 2.2e8
    c = lexinvariant.get_config("paper")
    for unit, vocab in (("char", 130), ("subword", 32000)):
        for emb in ("learned", "lexinvariant"):
            cfg = lexinvariant.run_config(c, unit, emb)
            assert cfg.seq_len == 512 and cfg.data.tfds_name == "wiki40b/en"
            assert 0.9e8 < paper_size(cfg, vocab) < 2.2e8, (unit, emb)
    assert lexinvariant.run_config(c, "subword", "learned").data.vocab_size == 32000


@pytest.mark.parametrize("module", [lm, lexinvariant, lexinv_symbols])
def test_unknown_config_names_the_file(module):
    with pytest.raises(ValueError, match=r"experiments/.*\.py: unknown config"):
        module.get_config("nope")


@pytest.mark.parametrize("arg", ["tiny", "small"])
def test_lexinvariant_cpu_configs_validate(arg):
    validate(lm.get_config("tiny"))
    lexinvariant.validate_experiment(lexinvariant.get_config(arg))


def test_lexinvariant_runs_take_their_corpus_and_the_readout_fix():
    c = lexinvariant.get_config("small")
    code = lexinvariant.run_config(c, "char", "lexinvariant", "code")
    assert code.data.source == "python_stdlib"
    assert code.seq_len == 512
    assert lm_config(code, 83).learned_logit_scale
    prose_std = lexinvariant.run_config(c, "char", "learned", "prose")
    assert prose_std.data.source == "default"
    assert not lm_config(prose_std, 83).learned_logit_scale  # the standard LM: plain readout
    assert lexinvariant.run_name("code", "char", "learned") == "learned_code_char"
    with pytest.raises(ValueError, match="corpora"):
        lexinvariant.run_config(c, "char", "learned", "poetry")


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
