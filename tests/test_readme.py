"""The Python examples of the README and of the projects' pages run as written."""

import math
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def page_blocks(project: str) -> list[str]:
    """The Python examples in a project page's fixed text (``report.PAGE``)."""
    from lexlm.experiment import registry

    intro = registry.module(project, "report").PAGE["intro"]
    return re.findall(r"```python\n(.*?)```", intro, flags=re.S)


def run_block(code: str, where: str) -> dict:
    namespace: dict = {}
    exec(compile(code, where, "exec"), namespace)
    return namespace


def test_readme_python_example_runs(unoptimised_xla):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    nll, inputs, targets = (np.asarray(namespace[k]) for k in ("nll", "inputs", "targets"))
    assert nll.shape == (2, 128)
    # Targets are the inputs shifted by one: the example scores next-token prediction.
    np.testing.assert_array_equal(targets[:, :-1], inputs[:, 1:])
    # At initialisation the readout fix makes the prediction near uniform over 32000 types
    # (without it the tied random readout is far from uniform: the current-token trap).
    assert abs(nll.mean() - math.log(32000)) < 0.1


def test_word_pooled_page_example_runs(unoptimised_xla):
    namespace = run_block(page_blocks("word_pooled")[0], "word_pooled page")
    words, nll, targets = (namespace[k] for k in ("words", "nll", "targets"))
    assert "".join(words) == "To be, or not to be: that is the question."
    assert nll.shape == (1, len(words) - 1, 13)
    # every target word's bytes plus its end-of-word, nothing else, is scored
    assert int((np.asarray(targets) != 0).sum()) == sum(len(w.encode()) + 1 for w in words[1:])
    assert np.asarray(namespace["new"]).shape == (1, 3, 12)
    assert isinstance(namespace["text"], str)


def test_lama_page_example_runs(unoptimised_xla):
    namespace = run_block(page_blocks("lama")[0], "lama page")
    pooled, weights = (np.asarray(namespace[k]) for k in ("pooled", "weights"))
    assert pooled.shape == (2, 8, 64) and weights.shape == (2, 8, 7)
    assert np.all(weights[1, :, 4:] == 0.0)  # padding gets no attention
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.asarray(namespace["hidden"]).shape == (1, 16, 128)
    assert namespace["cfg"].attention_param_count() < 4 * 128 * 128


def test_byte_patching_page_example_runs(unoptimised_xla):
    namespace = run_block(page_blocks("byte_patching")[0], "byte_patching page")
    # "The" + " cat" ...: a patch starts at 0 and at every space after a word
    assert namespace["starts"].tolist()[:4] == [0, 3, 7, 11]
    assert np.asarray(namespace["nll"]).shape == (1, 48)
    out, logits = np.asarray(namespace["out"]), np.asarray(namespace["logits"])
    assert out.shape == (1, 32) and logits.shape == (1, 31, 259)
    assert (out[:, :16] == np.asarray(namespace["inputs"])[:, :16]).all()
    assert isinstance(namespace["text"], str)


def test_pixel_page_example_runs(unoptimised_xla):
    namespace = run_block(page_blocks("pixel")[0], "pixel page")
    emb, mask = (np.asarray(namespace[k]) for k in ("emb", "mask"))
    assert emb.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert namespace["typo"] != namespace["text"] and mask.shape == (2, 64)
    assert -1.0 <= namespace["cosine"] <= 1.0 + 1e-6
