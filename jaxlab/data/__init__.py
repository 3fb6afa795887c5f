"""Input pipelines: video decoding and sampling, grain datasets, tokenizers, image preprocessing."""
