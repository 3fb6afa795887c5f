"""CLIP (Radford et al. 2021) in Flax, matching transformers' `CLIPModel` and its text-only / vision-only classes.

Both towers are pre-LN transformers (QuickGELU or GELU MLPs, biased q/k/v/out projections, no dropout):

  text:   token + learned position embeddings -> causal layers -> final LayerNorm -> pool at the end-of-text
          token -> (text_projection)
  vision: patch conv (no bias) -> [class token; patches] + learned positions -> pre-LayerNorm -> layers ->
          post-LayerNorm on the class token -> (visual_projection)

`CLIPModel` L2-normalises both embeddings and scales their cosine similarities by `exp(logit_scale)`.
Images are channels-last `[B, H, W, C]`, already normalised (`jaxlab.data.clip_images`); token ids come from
`jaxlab.data.clip_tokenizer`. The module and parameter names mirror transformers 5 (`pre_layrnorm` included),
so `jaxlab.models.load_pretrained` reads its folders and `save_pretrained` writes them back.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.errors import UserError
from jaxlab.models import weights

_HIDDEN = ("activation_batch", "activation_length", "activation_embed")
_MLP_HIDDEN = ("activation_batch", "activation_length", "activation_mlp")
_POSITIONS = (None, "embed")  # 77 or 50 rows: too few, and too odd, to split
# The pooling rule of configs written before transformers PR #24773, whose `eos_token_id` is 2: the
# end-of-text token is the largest id, so its position is the argmax of the ids.
_LEGACY_EOS_TOKEN_ID = 2


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
  """The fields of transformers' `CLIPTextConfig` that define the text tower (defaults: ViT-B/32's)."""
  vocab_size: int = 49408
  hidden_size: int = 512
  intermediate_size: int = 2048
  projection_dim: int = 512
  num_hidden_layers: int = 12
  num_attention_heads: int = 8
  max_position_embeddings: int = 77
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  pad_token_id: int = 1
  bos_token_id: int = 49406
  eos_token_id: int = 49407


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
  """The fields of transformers' `CLIPVisionConfig` that define the vision tower (defaults: ViT-B/32's)."""
  hidden_size: int = 768
  intermediate_size: int = 3072
  projection_dim: int = 512
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  num_channels: int = 3
  image_size: int = 224
  patch_size: int = 32
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5

  @property
  def num_positions(self) -> int:
    return (self.image_size // self.patch_size) ** 2 + 1


# -------------------------------------------------------------------------------------------------- outputs

@flax.struct.dataclass
class CLIPTowerOutput:
  """A tower's per-token states and its pooled vector (transformers' `BaseModelOutputWithPooling`); with
  `output_hidden_states`, the embeddings and each layer's output (SDXL reads `hidden_states[-2]`)."""
  last_hidden_state: jax.Array
  pooler_output: jax.Array
  hidden_states: tuple[jax.Array, ...] | None = None


@flax.struct.dataclass
class CLIPTextModelOutput:
  last_hidden_state: jax.Array
  pooler_output: jax.Array
  text_embeds: jax.Array
  hidden_states: tuple[jax.Array, ...] | None = None


@flax.struct.dataclass
class CLIPVisionModelOutput:
  last_hidden_state: jax.Array
  pooler_output: jax.Array
  image_embeds: jax.Array


@flax.struct.dataclass
class CLIPOutput:
  """`logits_per_image [B_img, B_txt]`, its transpose, and the L2-normalised embeddings."""
  logits_per_image: jax.Array
  logits_per_text: jax.Array
  text_embeds: jax.Array
  image_embeds: jax.Array
  text_model_output: CLIPTowerOutput
  vision_model_output: CLIPTowerOutput


# ------------------------------------------------------------------------------------------------- layers

class _Attention(nn.Module):
  config: Any  # CLIPTextConfig | CLIPVisionConfig
  causal: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, mask):
    c = self.config
    heads, head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    dense = functools.partial(jnn.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    split = lambda t: t.reshape(t.shape[:-1] + (heads, head_dim))
    q = split(dense(c.hidden_size, ("embed", "heads"), name="q_proj")(x))
    k = split(dense(c.hidden_size, ("embed", "heads"), name="k_proj")(x))
    v = split(dense(c.hidden_size, ("embed", "heads"), name="v_proj")(x))
    out = jnn.dot_product_attention(q, k, v, mask=mask, is_causal=self.causal)
    out = out.reshape(out.shape[:-2] + (c.hidden_size,))
    return dense(c.hidden_size, ("heads", "embed"), name="out_proj")(out)


class _MLP(nn.Module):
  config: Any
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.config
    dense = functools.partial(jnn.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    h = dense(c.intermediate_size, ("embed", "mlp"), name="fc1")(x)
    h = jnn.constrain(jnn.ACTIVATIONS[c.hidden_act](h), _MLP_HIDDEN)
    return dense(c.hidden_size, ("mlp", "embed"), name="fc2")(h)


class CLIPEncoderLayer(nn.Module):
  """One pre-LN layer; `(x, mask) -> (x, x or None)` so that `nn.scan` can stack it (the mask is broadcast) and,
  with `output_hidden`, stack its outputs."""
  config: Any
  causal: bool = False
  output_hidden: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    c = self.config
    norm = functools.partial(jnn.layer_norm, epsilon=c.layer_norm_eps, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = x + _Attention(c, self.causal, self.dtype, self.param_dtype, name="self_attn")(
        norm(name="layer_norm1")(x), mask)
    x = x + _MLP(c, self.dtype, self.param_dtype, name="mlp")(norm(name="layer_norm2")(x))
    x = jnn.constrain(x, _HIDDEN)
    return x, x if self.output_hidden else None


class _Encoder(nn.Module):
  """The layer stack: one scanned (optionally rematerialised) layer, or a Python loop of layers.

  Returns the last states, or with `output_hidden_states` transformers' `hidden_states` too: the input and
  every layer's output (before the final LayerNorm).
  """
  config: Any
  causal: bool
  dtype: Any
  param_dtype: Any
  scan_layers: bool
  remat_policy: str | None
  output_hidden_states: bool = False

  @nn.compact
  def __call__(self, x, mask):
    c = self.config
    out, layers = jnn.repeat_layers(
        CLIPEncoderLayer, c.num_hidden_layers, x, mask, name="layers", scan=self.scan_layers,
        remat_policy=self.remat_policy, stack_outputs=True, config=c, causal=self.causal,
        output_hidden=self.output_hidden_states, dtype=self.dtype, param_dtype=self.param_dtype)
    if not self.output_hidden_states:
      return out, None
    return out, (x, *(layers[i] for i in range(c.num_hidden_layers)))


def _projection(features: int, dtype, param_dtype, name: str) -> nn.Dense:
  # The second axis stays unsharded: the shared embedding is small and both towers' outputs meet in it.
  return jnn.dense(features, ("embed", None), use_bias=False, dtype=dtype, param_dtype=param_dtype, name=name)


# ----------------------------------------------------------------------------------------------- the towers

class _TextEmbeddings(nn.Module):
  config: CLIPTextConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, input_ids):
    c = self.config
    length = input_ids.shape[-1]
    if length > c.max_position_embeddings:
      raise ValueError(f"{length} tokens exceed the text model's {c.max_position_embeddings} positions")
    embed = functools.partial(jnn.embed, dtype=self.dtype, param_dtype=self.param_dtype)
    tokens = embed(c.vocab_size, c.hidden_size, name="token_embedding")(input_ids)
    positions = embed(c.max_position_embeddings, c.hidden_size, axes=_POSITIONS, name="position_embedding")(
        jnp.arange(length))
    return tokens + positions


class CLIPTextModel(nn.Module):
  """The text tower: `apply(v, input_ids [B, L], attention_mask=None) -> CLIPTowerOutput`.

  `attention_mask` (1 = token, 0 = padding) masks padded keys on top of the causal mask; the pooled vector is
  the final state at the end-of-text token (the first `eos_token_id`, or the largest id for legacy configs).
  """
  config: CLIPTextConfig = CLIPTextConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None  # a `jax.checkpoint_policies` name, e.g. 'nothing_saveable'

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, output_hidden_states: bool = False) -> CLIPTowerOutput:
    c = self.config
    x = _TextEmbeddings(c, self.dtype, self.param_dtype, name="embeddings")(input_ids)
    x = jnn.constrain(x, _HIDDEN)
    mask = None if attention_mask is None else attention_mask.astype(bool)[:, None, None, :]
    x, hidden_states = _Encoder(c, True, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy,
                                output_hidden_states, name="encoder")(x, mask)
    x = jnn.layer_norm(epsilon=c.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="final_layer_norm")(x)
    if c.eos_token_id == _LEGACY_EOS_TOKEN_ID:
      eot = jnp.argmax(input_ids, axis=-1)
    else:
      eot = jnp.argmax(input_ids == c.eos_token_id, axis=-1)  # the first end-of-text token
    pooled = x[jnp.arange(x.shape[0]), eot]
    return CLIPTowerOutput(last_hidden_state=x, pooler_output=pooled, hidden_states=hidden_states)


class _VisionEmbeddings(nn.Module):
  config: CLIPVisionConfig
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, pixel_values):
    c = self.config
    b, h, w, ch = pixel_values.shape
    if (h, w, ch) != (c.image_size, c.image_size, c.num_channels):
      raise ValueError(f"images of shape {(h, w, ch)} do not match the model's "
                       f"{(c.image_size, c.image_size, c.num_channels)} (height, width, channels)")
    patches = jnn.conv(c.hidden_size, (c.patch_size, c.patch_size), strides=c.patch_size, padding="VALID",
                       use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="patch_embedding")(pixel_values.astype(self.dtype))
    patches = patches.reshape(b, -1, c.hidden_size)  # row-major over the patch grid, as torch's flatten(2)
    cls = self.param("class_embedding",
                     nn.with_logical_partitioning(nn.initializers.normal(c.hidden_size ** -0.5), ("embed",)),
                     (c.hidden_size,), self.param_dtype)
    cls = jnp.broadcast_to(cls.astype(self.dtype), (b, 1, c.hidden_size))
    positions = jnn.embed(c.num_positions, c.hidden_size, axes=_POSITIONS, dtype=self.dtype,
                          param_dtype=self.param_dtype, name="position_embedding")(jnp.arange(c.num_positions))
    return jnp.concatenate([cls, patches], axis=1) + positions


class CLIPVisionModel(nn.Module):
  """The vision tower: `apply(v, pixel_values [B, H, W, C]) -> CLIPTowerOutput` (pooled = normed class token)."""
  config: CLIPVisionConfig = CLIPVisionConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, pixel_values) -> CLIPTowerOutput:
    c = self.config
    norm = functools.partial(jnn.layer_norm, epsilon=c.layer_norm_eps, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = _VisionEmbeddings(c, self.dtype, self.param_dtype, name="embeddings")(pixel_values)
    x = jnn.constrain(norm(name="pre_layrnorm")(x), _HIDDEN)  # sic: transformers' parameter name
    x, _ = _Encoder(c, False, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy,
                    name="encoder")(x, None)
    return CLIPTowerOutput(last_hidden_state=x, pooler_output=norm(name="post_layernorm")(x[:, 0]))


# ------------------------------------------------------------------------------------------ the full models

class CLIPTextModelWithProjection(nn.Module):
  """`apply(v, input_ids, attention_mask=None) -> CLIPTextModelOutput` with the projected `text_embeds`."""
  config: CLIPTextConfig = CLIPTextConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, output_hidden_states: bool = False) -> CLIPTextModelOutput:
    out = CLIPTextModel(self.config, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy,
                        name="text_model")(input_ids, attention_mask, output_hidden_states)
    embeds = _projection(self.config.projection_dim, self.dtype, self.param_dtype, "text_projection")(
        out.pooler_output)
    return CLIPTextModelOutput(out.last_hidden_state, out.pooler_output, embeds.astype(jnp.float32),
                               out.hidden_states)


class CLIPVisionModelWithProjection(nn.Module):
  """`apply(v, pixel_values) -> CLIPVisionModelOutput` with the projected `image_embeds`."""
  config: CLIPVisionConfig = CLIPVisionConfig()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, pixel_values) -> CLIPVisionModelOutput:
    out = CLIPVisionModel(self.config, self.dtype, self.param_dtype, self.scan_layers, self.remat_policy,
                          name="vision_model")(pixel_values)
    embeds = _projection(self.config.projection_dim, self.dtype, self.param_dtype, "visual_projection")(
        out.pooler_output)
    return CLIPVisionModelOutput(out.last_hidden_state, out.pooler_output, embeds.astype(jnp.float32))


def contrastive_loss(logits):
  """CLIP's symmetric cross-entropy: row k's match is column k, averaged over rows and over columns."""
  labels = jnp.arange(logits.shape[0])
  return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean())


def _normalize(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class CLIPModel(nn.Module):
  """Both towers, their projections and the logit scale.

  `apply(v, input_ids=..., pixel_values=..., attention_mask=None) -> CLIPOutput`;
  `apply(v, input_ids, method='get_text_features')` and `apply(v, pixel_values, method='get_image_features')`
  return a `CLIPTowerOutput` whose `pooler_output` is the projected (unnormalised) embedding, as in
  transformers 5.
  """
  text_config: CLIPTextConfig = CLIPTextConfig()
  vision_config: CLIPVisionConfig = CLIPVisionConfig()
  projection_dim: int = 512
  logit_scale_init_value: float = 2.6592
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = True
  remat_policy: str | None = None

  def setup(self):
    tower = dict(dtype=self.dtype, param_dtype=self.param_dtype, scan_layers=self.scan_layers,
                 remat_policy=self.remat_policy)
    self.text_model = CLIPTextModel(self.text_config, **tower)
    self.vision_model = CLIPVisionModel(self.vision_config, **tower)
    self.text_projection = _projection(self.projection_dim, self.dtype, self.param_dtype, None)
    self.visual_projection = _projection(self.projection_dim, self.dtype, self.param_dtype, None)
    self.logit_scale = self.param(
        "logit_scale", nn.with_logical_partitioning(nn.initializers.constant(self.logit_scale_init_value), ()),
        (), self.param_dtype)

  def get_text_features(self, input_ids, attention_mask=None) -> CLIPTowerOutput:
    out = self.text_model(input_ids, attention_mask)
    return out.replace(pooler_output=self.text_projection(out.pooler_output).astype(jnp.float32))

  def get_image_features(self, pixel_values) -> CLIPTowerOutput:
    out = self.vision_model(pixel_values)
    return out.replace(pooler_output=self.visual_projection(out.pooler_output).astype(jnp.float32))

  def __call__(self, input_ids, pixel_values, attention_mask=None) -> CLIPOutput:
    text = self.get_text_features(input_ids, attention_mask)
    image = self.get_image_features(pixel_values)
    text_embeds, image_embeds = _normalize(text.pooler_output), _normalize(image.pooler_output)
    logits_per_text = text_embeds @ image_embeds.T * jnp.exp(self.logit_scale.astype(jnp.float32))
    return CLIPOutput(logits_per_image=logits_per_text.T, logits_per_text=logits_per_text,
                      text_embeds=text_embeds, image_embeds=image_embeds, text_model_output=text,
                      vision_model_output=image)


# ------------------------------------------------------------------------------------- reference layout

def _config_fields(cls, config: dict) -> dict:
  fields = {f.name: config[f.name] for f in dataclasses.fields(cls) if config.get(f.name) is not None}
  for key in ("image_size", "patch_size"):
    if isinstance(fields.get(key), (list, tuple)):
      if len(set(fields[key])) != 1:
        raise UserError(f"non-square {key} {fields[key]} is not supported")
      fields[key] = fields[key][0]
  if "hidden_act" in fields and fields["hidden_act"] not in jnn.ACTIVATIONS:
    raise UserError(f"hidden_act {fields['hidden_act']!r} is not supported; use one of "
                    f"{', '.join(sorted(jnn.ACTIVATIONS))}")
  return fields


def _text_config(config: dict) -> CLIPTextConfig:
  return CLIPTextConfig(**_config_fields(CLIPTextConfig, config))


def _vision_config(config: dict) -> CLIPVisionConfig:
  return CLIPVisionConfig(**_config_fields(CLIPVisionConfig, config))


def _tower_config(tower, model_type: str, architecture: str) -> dict:
  return dict(dataclasses.asdict(tower), model_type=model_type, architectures=[architecture])


def _sub_config(config: dict, name: str) -> dict:
  # Early CLIP configs carry `<name>_dict`, which transformers lets override `<name>`.
  return {**(config.get(name) or {}), **(config.get(f"{name}_dict") or {})}


def _drop_stale(key: str) -> str | None:
  # Checkpoints from transformers < 4.31 stored the `position_ids` buffers.
  return None if key.endswith("embeddings.position_ids") else key


def _strip_prefix(prefix: str):
  """transformers 5 saves the bare towers without the `text_model.` / `vision_model.` prefix of older files."""
  def rename(key: str) -> str | None:
    key = _drop_stale(key)
    return key[len(prefix):] if key is not None and key.startswith(prefix) else key
  return rename


NAMING = weights.Naming(frozenset({"layers"}))


def _ids(c: CLIPTextConfig):
  return jnp.zeros((1, c.max_position_embeddings), jnp.int32)


def _pixels(c: CLIPVisionConfig, dtype):
  return jnp.zeros((1, c.image_size, c.image_size, c.num_channels), dtype)


_TOWER_TYPES = {
    "CLIPTextModel": (CLIPTextModel, _text_config, "clip_text_model", _strip_prefix("text_model.")),
    "CLIPTextModelWithProjection": (CLIPTextModelWithProjection, _text_config, "clip_text_model", _drop_stale),
    "CLIPVisionModel": (CLIPVisionModel, _vision_config, "clip_vision_model", _strip_prefix("vision_model.")),
    "CLIPVisionModelWithProjection": (CLIPVisionModelWithProjection, _vision_config, "clip_vision_model",
                                      _drop_stale),
}


def _register_tower(name: str) -> weights.Family:
  module_type, read_config, model_type, rename_in = _TOWER_TYPES[name]
  is_text = read_config is _text_config
  return weights.register(weights.Family(
      class_names=(name,),
      module_types=(module_type,),
      from_config=lambda config, dtype=jnp.float32, param_dtype=jnp.float32: module_type(
          read_config(config), dtype=dtype, param_dtype=param_dtype),
      to_config=lambda module: _tower_config(module.config, model_type, name),
      dummy_inputs=lambda module: (_ids(module.config),) if is_text else (_pixels(module.config, module.dtype),),
      naming=NAMING,
      rename_in=rename_in,
  ))


TOWER_FAMILIES = {name: _register_tower(name) for name in _TOWER_TYPES}


def _clip_from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> CLIPModel:
  return CLIPModel(
      text_config=_text_config(_sub_config(config, "text_config")),
      vision_config=_vision_config(_sub_config(config, "vision_config")),
      projection_dim=config.get("projection_dim", 512),
      logit_scale_init_value=config.get("logit_scale_init_value", 2.6592),
      dtype=dtype, param_dtype=param_dtype)


def _clip_to_config(module: CLIPModel) -> dict:
  text = dataclasses.replace(module.text_config, projection_dim=module.projection_dim)
  vision = dataclasses.replace(module.vision_config, projection_dim=module.projection_dim)
  return dict(
      architectures=["CLIPModel"], model_type="clip", projection_dim=module.projection_dim,
      logit_scale_init_value=module.logit_scale_init_value,
      text_config=_tower_config(text, "clip_text_model", "CLIPTextModel"),
      vision_config=_tower_config(vision, "clip_vision_model", "CLIPVisionModel"))


CLIP_FAMILY = weights.register(weights.Family(
    class_names=("CLIPModel",),
    module_types=(CLIPModel,),
    from_config=_clip_from_config,
    to_config=_clip_to_config,
    dummy_inputs=lambda m: (_ids(m.text_config), _pixels(m.vision_config, m.dtype)),
    naming=NAMING,
    rename_in=_drop_stale,
))
