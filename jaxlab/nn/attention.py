"""The one attention function every model calls, and the kernel it picks for the backend.

  GPU (CUDA, Ampere or later), bf16/fp16: cuDNN's flash-attention kernel (`jax.nn.dot_product_attention`,
      implementation 'cudnn') for head sizes that are multiples of 8 up to 128, or 256 from Hopper (sm90) on.
      A key-padding mask goes to cuDNN as per-example key lengths when it is a prefix (the usual right
      padding); a causal mask as `is_causal`.
  TPU: the Pallas flash-attention kernel (`jax.experimental.pallas.ops.tpu.flash_attention`) for sequences of
      at least one block; a key-padding mask becomes segment ids.
  CPU: long unmasked sequences go a block of queries at a time (`_blocked_attention`).
  Otherwise (a dense mask, a bias, float32 on GPU, short sequences): XLA's attention.

Every implementation computes the logits and the softmax in float32 and multiplies the probabilities, cast to
the input dtype, with the values. That is what diffusers' `upcast_attention` asks of bf16 attention (SD 2.x),
so half-precision inputs need no upcast: the float32 logits stay inside the kernel instead of materialising.
"""

import contextlib
import functools

import jax
import jax.extend
import jax.numpy as jnp

_HALF = (jnp.bfloat16, jnp.float16)
QUERY_BLOCK = 128   # CPU blocked path: queries per block
TPU_BLOCK = 128     # Pallas TPU kernel: the smallest sequence tile, and the lane width head sizes pad to
IMPLEMENTATIONS = ("xla", "cudnn", "tpu_flash", "blocked")
_forced: list[str] = []


@contextlib.contextmanager
def forced_implementation(implementation: str):
  """Every attention traced inside runs `implementation` (the bench counts FLOPs through XLA's attention,
  whose matmuls a jaxpr shows, where the kernels are opaque calls)."""
  _forced.append(implementation)
  try:
    yield
  finally:
    _forced.pop()


def platform() -> tuple[str, tuple[int, int] | None]:
  """The default backend, and the CUDA compute capability of its first device (None when not CUDA)."""
  backend = jax.default_backend()
  if backend != "gpu":
    return backend, None
  capability = getattr(jax.devices()[0], "compute_capability", None)
  if capability is None or "cuda" not in jax.extend.backend.get_backend().platform_version.lower():
    return backend, None  # ROCm
  major, minor = (int(p) for p in str(capability).split(".")[:2])
  return backend, (major, minor)


def cudnn_max_head_dim(capability: tuple[int, int]) -> int:
  """cuDNN flash attention's largest head size (jax's `check_is_flash_attention`: 256 from Hopper on)."""
  return 256 if capability >= (9, 0) else 128


def _key_mask(mask, batch: int, key_length: int):
  """`mask` as `[B, S]` when it masks keys only (shape `[B|1, 1, 1, S]`), else None."""
  if mask is None or mask.ndim != 4 or mask.shape[1:3] != (1, 1) or mask.shape[3] != key_length:
    return None
  return jnp.broadcast_to(mask[:, 0, 0, :], (batch, key_length))


def _cudnn_applies(q, k, v, bias, mask, capability) -> bool:
  if capability is None or capability < (8, 0) or bias is not None:
    return False
  if q.dtype not in _HALF or not q.dtype == k.dtype == v.dtype or q.shape[-1] != v.shape[-1]:
    return False
  head_dim = q.shape[-1]
  if head_dim % 8 or head_dim > cudnn_max_head_dim(capability):
    return False
  return mask is None or _key_mask(mask, q.shape[0], k.shape[1]) is not None


def _tpu_flash_applies(q, k, v, bias, mask) -> bool:
  if bias is not None or not q.dtype == k.dtype == v.dtype or q.shape[-1] != v.shape[-1]:
    return False
  if k.shape[1] < TPU_BLOCK:
    return False  # below one tile XLA's fused attention is as good, and the logits are small
  return mask is None or _key_mask(mask, q.shape[0], k.shape[1]) is not None


def _blocked_applies(q, bias, mask, is_causal: bool) -> bool:
  return q.shape[1] > QUERY_BLOCK and bias is None and mask is None and not is_causal


def choose_implementation(q, k, v, *, mask=None, bias=None, is_causal: bool = False) -> str:
  """The implementation `dot_product_attention` runs for these inputs on this backend."""
  backend, capability = platform()
  if backend == "gpu" and _cudnn_applies(q, k, v, bias, mask, capability):
    return "cudnn"
  if backend == "tpu" and _tpu_flash_applies(q, k, v, bias, mask):
    return "tpu_flash"
  if backend == "cpu" and _blocked_applies(q, bias, mask, is_causal):
    return "blocked"
  return "xla"


def _blocked_attention(q, k, v, scale: float):
  """Attention over blocks of `QUERY_BLOCK` queries in a `lax.map`, each block recomputed in the backward pass.

  XLA:CPU materialises the whole `[B, H, Lq, Lk]` logits, which for long sequences fall out of cache; one
  block's logits stay in it. Measured on 2 cores, fp32, SD UNet's 1024-token level (4 heads of 8): forward
  33 -> 4 ms, forward+backward 122 -> 22 ms; never slower above one block.
  """
  b, length, heads, head_dim = q.shape
  blocks = -(-length // QUERY_BLOCK)
  padded = jnp.pad(q * jnp.asarray(scale, q.dtype), ((0, 0), (0, blocks * QUERY_BLOCK - length), (0, 0), (0, 0)))
  padded = padded.reshape(b, blocks, QUERY_BLOCK, heads, head_dim).swapaxes(0, 1)

  @jax.checkpoint
  def one_block(q_block):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q_block, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)

  out = jax.lax.map(one_block, padded).swapaxes(0, 1)
  return out.reshape(b, blocks * QUERY_BLOCK, heads, v.shape[-1])[:, :length]


def _cudnn_attention(q, k, v, mask, is_causal: bool, scale: float):
  """cuDNN flash attention; a key-padding mask goes as key lengths, or (when it is not a prefix) to XLA."""
  cudnn = functools.partial(jax.nn.dot_product_attention, scale=scale, is_causal=is_causal,
                            implementation="cudnn")
  keys = _key_mask(mask, q.shape[0], k.shape[1])
  if keys is None:
    return cudnn(q, k, v)
  lengths = keys.sum(axis=-1, dtype=jnp.int32)
  is_prefix = jnp.all(keys == (jnp.arange(keys.shape[1]) < lengths[:, None]))
  # Right padding (what tokenizers produce) takes the kernel; any other pattern the dense mask.
  return jax.lax.cond(
      is_prefix,
      lambda q, k, v, m: cudnn(q, k, v, key_value_seq_lengths=lengths),
      lambda q, k, v, m: jax.nn.dot_product_attention(q, k, v, mask=m, scale=scale, is_causal=is_causal,
                                                      implementation="xla"),
      q, k, v, mask)


def _pad_axis(x, axis: int, multiple: int):
  pad = -x.shape[axis] % multiple
  if not pad:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def _tpu_block(length: int) -> int:
  return next(b for b in (512, 256, TPU_BLOCK) if length % b == 0)


def _tpu_flash_attention(q, k, v, mask, is_causal: bool, scale: float):
  """The Pallas TPU flash kernel on `[B, L, H, D]`: sequences padded to whole tiles (padded keys masked out
  through segment ids, as is a key-padding mask) and head sizes to the 128-lane width (zeros: exact)."""
  from jax.experimental.pallas.ops.tpu import flash_attention as tpu

  b, q_len, _, head_dim = q.shape
  k_len = k.shape[1]
  keys = _key_mask(mask, b, k_len)
  to_kernel = lambda x: _pad_axis(_pad_axis(x, 3, TPU_BLOCK), 1, TPU_BLOCK).swapaxes(1, 2)  # [B, H, L, D]
  qp, kp, vp = to_kernel(q), to_kernel(k), to_kernel(v)
  segments = None
  if keys is not None or k_len % TPU_BLOCK:
    valid_keys = jnp.ones((b, k_len), bool) if keys is None else keys
    segments = tpu.SegmentIds(q=_pad_axis(jnp.ones((b, q_len), jnp.int32), 1, TPU_BLOCK),
                              kv=_pad_axis(valid_keys.astype(jnp.int32), 1, TPU_BLOCK))
  block_q, block_k = _tpu_block(qp.shape[2]), _tpu_block(kp.shape[2])
  blocks = tpu.BlockSizes(
      block_q=block_q, block_k_major=block_k, block_k=block_k, block_b=1,
      block_q_major_dkv=block_q, block_k_major_dkv=block_k, block_k_dkv=block_k, block_q_dkv=block_q,
      block_k_major_dq=block_k, block_k_dq=block_k, block_q_dq=block_q)
  out = tpu.flash_attention(qp, kp, vp, segment_ids=segments, causal=is_causal, sm_scale=scale,
                            block_sizes=blocks)
  return out.swapaxes(1, 2)[:, :q_len, :, :head_dim]


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, mask: jax.Array | None = None,
                          bias: jax.Array | None = None, is_causal: bool = False,
                          scale: float | None = None, implementation: str | None = None) -> jax.Array:
  """Multi-head attention on `[batch, length, heads, head_dim]` inputs.

  Args:
    q, k, v: queries `[B, Lq, H, D]`, keys and values `[B, Lk, H, D]`.
    mask: boolean, broadcastable to `[B, H, Lq, Lk]`; True where attention is allowed.
    bias: additive logits bias, broadcastable to `[B, H, Lq, Lk]`.
    is_causal: mask out keys after each query.
    scale: logits scale; default `D ** -0.5`.
    implementation: force one of `IMPLEMENTATIONS`; by default `choose_implementation` picks.

  Returns:
    `[B, Lq, H, D]`.
  """
  if implementation is None and _forced:
    implementation = _forced[-1]
  if implementation is None:
    implementation = choose_implementation(q, k, v, mask=mask, bias=bias, is_causal=is_causal)
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  if implementation == "blocked":
    if bias is not None or mask is not None or is_causal:
      raise ValueError("blocked attention takes no mask, bias or causal masking")
    return _blocked_attention(q, k, v, scale)
  if implementation in ("cudnn", "tpu_flash") and bias is not None:
    raise ValueError(f"{implementation} attention takes no bias here; use implementation='xla'")
  if implementation in ("cudnn", "tpu_flash") and mask is not None and \
      _key_mask(mask, q.shape[0], k.shape[1]) is None:
    raise ValueError(f"{implementation} attention takes a key-padding mask [B|1, 1, 1, Lk] only")
  if implementation == "cudnn":
    return _cudnn_attention(q, k, v, mask, is_causal, scale)
  if implementation == "tpu_flash":
    return _tpu_flash_attention(q, k, v, mask, is_causal, scale)
  return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                                      implementation="xla")
