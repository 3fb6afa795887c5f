"""The video classifiers a `jaxlab train airletters`-style config names, built from that config.

`config.model_name` is `video_vit` (the VideoMAE-style ViT, optionally shaped by a local VideoMAE folder in
`config.pretrained`) or `resnext3d`; `config.model` holds its sizes. Inputs are uint8 clips `[B, T, H, W, 3]`,
ImageNet-normalised on device by `normalise`.
"""

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxlab.errors import UserError
from jaxlab.models import cnn3d, video_vit, weights

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
VIDEOMAE_CLASSES = ("VideoMAEForVideoClassification", "VideoMAEModel")  # what `config.pretrained` may hold


def make(config, num_labels: int) -> nn.Module:
  dtype = jnp.dtype(config.dtype)
  m = config.model
  if config.model_name == "video_vit":
    if config.pretrained:
      module, _ = weights.load_pretrained(config.pretrained, dtype=dtype, expect=VIDEOMAE_CLASSES)
      if module.config.num_frames != config.num_frames or module.config.image_size != config.image_size:
        raise UserError(f"{config.pretrained} expects {module.config.num_frames} frames of "
                        f"{module.config.image_size} px; set --config.num_frames / --config.image_size to match")
      vit_config = video_vit.VideoViTConfig(**{**module.config.__dict__, "num_labels": num_labels,
                                               "hidden_dropout_prob": m.get("hidden_dropout_prob", 0.0)})
    else:
      vit_config = video_vit.VideoViTConfig(
          image_size=config.image_size, num_frames=config.num_frames, num_labels=num_labels,
          patch_size=m.patch_size, tubelet_size=m.tubelet_size, hidden_size=m.hidden_size,
          num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
          intermediate_size=m.intermediate_size, hidden_dropout_prob=m.get("hidden_dropout_prob", 0.0))
    return video_vit.VideoViTClassifier(vit_config, dtype=dtype, remat_policy=config.remat_policy or None)
  if config.model_name == "resnext3d":
    return cnn3d.ResNeXt3D(
        cnn3d.ResNeXt3DConfig(layers=tuple(m.layers), widths=tuple(m.widths), cardinality=m.cardinality,
                              stem_width=m.stem_width, num_labels=num_labels, dropout=m.dropout),
        dtype=dtype, remat_policy=config.remat_policy or None)
  raise UserError(f"model_name must be 'video_vit' or 'resnext3d', not {config.model_name!r}")


def normalise(video_uint8):
  """uint8 frames -> ImageNet-normalised floats, done on device so the host ships 4x fewer bytes."""
  x = video_uint8.astype(jnp.float32) / 255.0
  return (x - IMAGENET_MEAN) / IMAGENET_STD
