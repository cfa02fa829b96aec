"""Layers. Importing this never imports the data stack (grain, tensorflow-datasets)."""

from lexlm.nn import lexinvariant
from lexlm.nn.attention import dot_product_attention
from lexlm.nn.transformer import Block, LMConfig, TransformerLM

__all__ = ["Block", "LMConfig", "TransformerLM", "dot_product_attention", "lexinvariant"]
