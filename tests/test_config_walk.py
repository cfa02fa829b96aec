"""A config value walks from the command line to its use through at most three files.

The lm run is started through the command line with a few fields overridden, and every read
of a config key (attribute, item or ``get``) is recorded with the file that made it. A field's
walk is the set of files that read it or its block. Not counted: the command line and the
driver, which hand the whole config on; the identity and store modules, which hash every
field alike; and the config file, where the value is defined."""

from __future__ import annotations

import collections
import os
import sys

import pytest
from ml_collections.config_dict import config_dict as cd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_COUNTED = (
    "lexlm/experiment/cli.py",
    "lexlm/experiment/driver.py",
    "lexlm/experiment/identity.py",
    "lexlm/experiment/store.py",
    "lexlm/proj/lm/config.py",
)
FIELDS = ("train.lr", "train.steps", "data.files", "data.unit", "model.width", "eval.max_windows")


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """(node id, key) -> files that read it, during one small lm run."""
    root = tmp_path_factory.mktemp("walk")
    text = root / "text.txt"
    text.write_text("\n\n".join(f"Paragraph {i}: a few words to read." * 10 for i in range(30)))
    seen: dict = collections.defaultdict(set)
    ids: dict = {}
    original = (cd.ConfigDict.__getattr__, cd.ConfigDict.__getitem__, cd.ConfigDict.get)

    def caller() -> str | None:
        frame = sys._getframe(3)
        while frame is not None:
            path = os.path.relpath(frame.f_code.co_filename, REPO)
            if path.startswith("lexlm/"):
                return path
            if "ml_collections" not in path and "site-packages" not in path:
                return None
            frame = frame.f_back
        return None

    def record(self, key):
        where = caller()
        if where is not None:
            seen[(id(self), key)].add(where)

    def getattr_(self, key):
        value = original[0](self, key)
        record(self, key)
        return value

    def getitem_(self, key):
        value = original[1](self, key)
        record(self, key)
        return value

    def get_(self, key, default=None):
        record(self, key)
        return original[2](self, key, default)

    cd.ConfigDict.__getattr__, cd.ConfigDict.__getitem__, cd.ConfigDict.get = (
        getattr_, getitem_, get_)  # fmt: skip
    try:
        from lexlm.experiment import cli

        argv = ["--config=lm:tiny", f"--workdir={root / 'w'}", "--config.train.steps=2",
                "--config.data.source=files", f"--config.data.files={text}",
                "--config.seq_len=16", "--config.train.batch_size=4", "--config.eval.max_windows=4",
                "--config.eval.batch_size=4", "--config.train.progress=False"]  # fmt: skip
        fv = cli.parse(["lexlm.run", *argv], cli._run_flags, need_config=True)
        config = fv.config
        ids["root"] = id(config)
        for block in ("train", "data", "model", "eval"):
            ids[block] = id(original[0](config, block))
        from lexlm.experiment.driver import run_experiment

        run_experiment(config, fv.workdir)
    finally:
        cd.ConfigDict.__getattr__, cd.ConfigDict.__getitem__, cd.ConfigDict.get = original
    return seen, ids


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_is_read_in_at_most_three_files(reads, field):
    seen, ids = reads
    block, key = field.split(".")
    files = (seen[(ids["root"], block)] | seen[(ids[block], key)]) - set(NOT_COUNTED)
    assert seen[(ids[block], key)], f"{field} was never read"
    assert len(files) <= 3, (field, sorted(files))
