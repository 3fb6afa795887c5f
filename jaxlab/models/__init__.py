"""Flax model families and the one weight API: `load_pretrained` / `save_pretrained`."""

from jaxlab.models.weights import load_pretrained, save_pretrained

__all__ = ["load_pretrained", "save_pretrained"]
