"""The training configs, one file per method: `get_config(variant)` returning an `ml_collections.ConfigDict`.

This folder is also the package `jaxlab.configs` (`jaxlab/configs` is a link to it, and the wheel carries it
as that package), so `--config METHOD:VARIANT` finds `train/configs/METHOD.py` in a checkout and in an
installed jaxlab alike, while `--config train/configs/METHOD.py:VARIANT` (or any other file) reads a file.
Adding a method's config: add `train/configs/<method>.py` with variants `tiny` and `paper`; nothing else.
"""
