"""Input pipelines: tokenizers, image preprocessing, grain datasets."""
