"""The tokenizers and word vocabularies of the grid's runs: built once per process in a
scratch folder outside the workdir, then copied into each run directory.

A model's steps come from its FLOP count, which needs its vocabulary size, so the tokenizers
exist before the runs' identities can be checked. Building them in the workdir would write
there before a changed config is refused; so ``units(cfg)`` builds them in a temporary
folder (one per set of fields, kept for the process: grids of several budgets share them),
and ``persist(cfg, run_dir)`` copies one into ``run_dir`` (``store.artifact_dir`` with the
fields that made it) once every run's identity passed its check.

    run kind      folder in the run     built from
    lm            tokenizer/            data.* (unit, vocab_size, source, ...)
    word_pooled   tokenizer/            data.*
    word          word_vocab/           data.*, vocab.min_count, vocab.max_size
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from etils import epath

from lexlm.experiment import identity as ident
from lexlm.experiment import store
from lexlm.paths import as_path

_SCRATCH: list[str] = []
_BUILT: dict[str, epath.Path] = {}
_LOADED: dict[str, object] = {}


def folder_name(cfg) -> str:
    return "word_vocab" if str(cfg.kind) == "word" else "tokenizer"


def fields(cfg) -> dict:
    """The config fields a run's tokenizer or word vocabulary is made from (a tokenizer's are
    ``lexlm.proj.lm.run.tokenizer_fields``, so the ``lm`` run kind reuses the copy)."""
    from lexlm.proj.lm.run import tokenizer_fields

    out = dict(tokenizer_fields(cfg))
    if str(cfg.kind) == "word":
        out.update({f"vocab.{k}": v for k, v in cfg.vocab.items()})
    return out


PREFIX = "lexlm-word-pooled-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale(root: str) -> None:
    """Scratch folders of processes that are gone (a SIGKILL skips ``atexit``)."""
    for name in os.listdir(root):
        pid = name[len(PREFIX) :].split("-")[0]
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _scratch() -> str:
    if not _SCRATCH:
        root = tempfile.gettempdir()
        _remove_stale(root)
        path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root)
        atexit.register(shutil.rmtree, path, True)
        _SCRATCH.append(path)
    return _SCRATCH[0]


def _build(cfg, folder: epath.Path) -> None:
    from lexlm.proj.word_pooled import data

    if str(cfg.kind) == "word":
        from lexlm.data.word_windows import SpellingModel, WordVocab

        words, _, _ = data.split_words(cfg, "train")
        WordVocab.build(words, int(cfg.vocab.min_count), int(cfg.vocab.max_size)).save(folder)
        SpellingModel.build(words).save(folder)
    else:
        from lexlm.text import build_tokenizer

        docs = data.split_docs(cfg, "train")
        tok = build_tokenizer(cfg.data.unit, docs, int(cfg.data.vocab_size) or None, folder)
        tok.save(folder)


def _key(cfg) -> str:
    from lexlm.data.config import input_fingerprints

    return f"{folder_name(cfg)}-{ident.digest([fields(cfg), input_fingerprints(cfg.data)])}"


def built(cfg) -> epath.Path:
    """The scratch folder holding this run's tokenizer or vocabulary (built on first use, on
    every process: each host has its own scratch folder)."""
    key = _key(cfg)
    if key not in _BUILT:
        folder = as_path(os.path.join(_scratch(), key))
        folder.mkdir(parents=True, exist_ok=True)
        _build(cfg, folder)
        _BUILT[key] = folder
    return _BUILT[key]


def load(cfg, folder):
    """A tokenizer (``lm`` and ``word_pooled`` runs) or a ``WordVocab`` (``word`` runs)."""
    if str(cfg.kind) == "word":
        from lexlm.data.word_windows import WordVocab

        return WordVocab.load(folder)
    from lexlm.text import load_tokenizer

    return load_tokenizer(folder)


def units(cfg):
    """This run's tokenizer or vocabulary, from the scratch folder (nothing in the workdir)."""
    key = _key(cfg)
    if key not in _LOADED:
        _LOADED[key] = load(cfg, built(cfg))
    return _LOADED[key]


def _copy_tree(src: epath.Path, dst: epath.Path) -> None:
    for child in src.iterdir():
        if child.is_dir():
            _copy_tree(child, dst / child.name)
        else:
            (dst / child.name).parent.mkdir(parents=True, exist_ok=True)
            (dst / child.name).write_bytes(child.read_bytes())


def persist(cfg, run_dir) -> epath.Path:
    """``run_dir/<tokenizer or word_vocab>``, copied from the scratch build (reused when it
    is there with equal fields; a ``StaleResultError`` when built from others)."""
    path = as_path(run_dir) / folder_name(cfg)
    return store.artifact_dir(path, fields(cfg), lambda folder: _copy_tree(built(cfg), folder))
