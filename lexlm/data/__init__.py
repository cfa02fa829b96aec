"""Text corpora as TFDS array_record datasets, read with grain into language-model batches.

`import lexlm.data` needs only ml_collections and numpy: the config block and its validation
(``lexlm.data.config``) work on machines without the data stack. TensorFlow Datasets is
imported when a split is opened or a builder is used, grain when a pipeline is built.

    cfg = default_data_config()                 # the `data` block of a config
    validate_data_config(cfg)                   # before compiling anything
    train = open_split(cfg, "train")            # [{'text': ...}, ...], random access
    tok = build_tokenizer(cfg.unit, read_documents(train), cfg.vocab_size or None)
    ds = lm_train_dataset(train, tok, seq_len=256, batch_size=32, seed=cfg.seed)
    batches = iter(ds)                          # get_state()/set_state() for checkpoints
    val = lm_eval_windows(open_split(cfg, "validation"), tok, seq_len=256)
"""

from lexlm.data.config import (
    DOC_SPLITS,
    EMBEDDED,
    FORMATS,
    SOURCES,
    SPLITS,
    default_data_config,
    default_data_dir,
    input_fingerprints,
    resolve_text_files,
    validate_data_config,
)
from lexlm.data.pipeline import (
    lm_eval_documents,
    lm_eval_windows,
    lm_train_dataset,
    read_documents,
)
from lexlm.data.sources import (
    ChunkedSource,
    TextFieldSource,
    chunk_bounds,
    open_split,
    tfds_builder,
)

# These subclass TFDS or grain classes, so they are imported on first use (and documented in
# their own modules: lexlm.data.builders, lexlm.data.code_corpus, lexlm.data.packing).
_LAZY = {
    "LeeCorpus": "builders",
    "LocalText": "builders",
    "PythonStdlib": "code_corpus",
    "python_stdlib_manifest": "code_corpus",
    "lee_corpus_path": "builders",
    "lee_split_indices": "builders",
    "read_lee_lines": "builders",
    "PackIterDataset": "packing",
    "PackStats": "packing",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"lexlm.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lexlm.data' has no attribute {name!r}")


__all__ = [
    "DOC_SPLITS",
    "EMBEDDED",
    "FORMATS",
    "SOURCES",
    "SPLITS",
    "ChunkedSource",
    "TextFieldSource",
    "chunk_bounds",
    "default_data_config",
    "default_data_dir",
    "input_fingerprints",
    "lm_eval_documents",
    "lm_eval_windows",
    "lm_train_dataset",
    "open_split",
    "read_documents",
    "resolve_text_files",
    "tfds_builder",
    "validate_data_config",
]
