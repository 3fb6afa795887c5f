"""Input pipelines: video decoding and sampling, grain datasets, tokenization."""
