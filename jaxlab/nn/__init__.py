"""Shared layers: the attention function, logically-annotated layers."""

from jaxlab.nn.attention import dot_product_attention
from jaxlab.nn.layers import ACTIVATIONS, batch_norm, conv, constrain, dense, embed, group_norm, layer_norm
from jaxlab.nn.stack import repeat_layers

__all__ = [
    "dot_product_attention", "repeat_layers", "ACTIVATIONS", "batch_norm", "conv", "constrain", "dense", "embed",
    "group_norm", "layer_norm",
]
