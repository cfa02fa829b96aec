"""What the byte-patching grid measures besides its runs: the byte n-gram count reference and
SpaceByte's patching of the data; and ``evaluate_run`` for any of its run directories.

The grid's runs are ``lm`` runs (MegaByte, SpaceByte, the byte and subword Transformers:
``lexlm.proj.lm.evaluate``) and ``word_pooled`` / ``word`` runs
(``lexlm.proj.word_pooled.evaluate``); ``evaluate_run`` dispatches on the run's kind, like
``python -m lexlm.evaluate``. The two references are computed once per workdir and config
(``Workdir.cached``).
"""

from __future__ import annotations

from lexlm.data.config import input_fingerprints
from lexlm.experiment import identity as ident
from lexlm.experiment import registry, store
from lexlm.proj.word_pooled import data, kinds


def evaluate_run(run_dir, split: str | None = None, step: int | None = None) -> dict:
    """The evaluation of one run of the grid, by its run kind."""
    kind = str(store.load_run_config(run_dir).get("kind", ""))
    return registry.evaluator(kind).evaluate_run(run_dir, split, step)


def _data_fields(c) -> dict:
    fields = {f"data.{k}": v for k, v in ident.fields(c.data).items()}
    fields.update({f"inputs.{k}": v for k, v in input_fingerprints(c.data).items()})
    return fields


def count_reference(c, wd: store.Workdir) -> dict:
    """The byte n-gram count model (``lexlm.eval.byte_ngram.select_and_score``): orders
    1..``ngram_order`` fitted on the training split, the order selected on validation, the
    test split scored (every order's test bits too, as a diagnostic)."""
    from lexlm.eval.byte_ngram import select_and_score

    split = str(c.eval.split)
    fields = {**_data_fields(c), "ngram_order": int(c.ngram_order), "split": split}

    def compute():
        docs = {s: data.split_docs(c, s) for s in ("train", "validation", split)}
        return select_and_score(docs["train"], docs["validation"], docs[split], int(c.ngram_order))

    return wd.cached("count_reference", fields, compute)


def spacebyte_patching(c, wd: store.Workdir) -> dict:
    """SpaceByte's patching of back-to-back windows of the training and evaluation splits:
    bytes per patch and the bytes past the global cap (``lexlm.text.patching.window_stats``;
    training windows are drawn at random offsets, so the training split's figure is the
    expected rate, not a count of the bytes trained on)."""
    from lexlm.proj.lm.evaluate import eval_windows
    from lexlm.text.patching import window_stats
    from lexlm.text.tokenizers import ByteTokenizer

    cfg = kinds.run_config(c, "spacebyte", steps=1)
    cap, split = int(cfg.model.cap), str(c.eval.split)
    fields = {**_data_fields(c), "seq_len": int(cfg.seq_len), "cap": cap, "split": split}

    def compute():
        out = {}
        for s in ("train", split):
            w = eval_windows(cfg, ByteTokenizer(), s)
            out[s] = window_stats(w["inputs"], w["mask"], cap)
        return out

    return wd.cached("spacebyte_patching", fields, compute)
