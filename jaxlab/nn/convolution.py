"""`lax.conv_general_dilated` with exact rewrites of the 3D convolutions that XLA:CPU runs slowly.

XLA:CPU hands 2D convolutions to tuned kernels, but it emits 3D ones as generic loops. Measured on 2 cores
(AMD EPYC, AVX-512, fp32; forward / kernel gradient / input gradient):
  7x7x7 stem (3 -> 64, stride 1,2,2), 8 x 112² frames: 1403 / 1834 / 138963 ms; as a sum over its 7 temporal
      taps of 2D convolutions over all frames at once: 200 / 250 / 565 ms (PyTorch: 148 / 157 / 590 ms).
  grouped 3x3x3 (128 channels in 32 groups of 4), 2 x 16 x 28² frames: 4720 / 7615 / 7366 ms; as a sum over its
      27 taps of per-group channel mixes (a broadcast multiply and sum each, one XLA fusion per tap): the
      forward and both gradients in 5.2 s instead of about 19.7 s (PyTorch: 88 / ~1600 / ~100 ms). Spelled out
      channel by channel it runs in 3.4 s but compiles 3.5x slower (7.8 s of CPU per convolution).
  I3D's (1,3,3) spatial convolution (64 channels, 2 x 8 x 28² frames, 1 core): forward / both gradients 43 / 144 ms
      as a 3D convolution, 13 / 43 ms as one 2D convolution over all frames (the temporal-taps rewrite with its
      single tap); its (3,1,1) temporal one: 16 / 44 ms, 6 / 29 ms as a 2D convolution over (frames, pixels).
The rewrites only reorder the sums of the same products. A 1x1x1 convolution stays one (as a matmul its
gradients ran slower), and so does anything on a GPU or TPU, where the convolution kernels are good.
"""

import contextlib

import jax
import jax.numpy as jnp

_LAYOUT = ("NDHWC", "DHWIO", "NDHWC")
MAX_GROUP_CHANNELS = 8   # input channels per group up to which the grouped rewrite is used
_plain: list[bool] = []


@contextlib.contextmanager
def plain_convolutions():
  """Convolutions traced inside stay convolutions (the bench counts their FLOPs, which a rewrite hides)."""
  _plain.append(True)
  try:
    yield
  finally:
    _plain.pop()


def _rewrite(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers, groups) -> str | None:
  """Which rewrite applies to this convolution, if any."""
  if _plain or jax.default_backend() != "cpu" or lhs.ndim != 5 or isinstance(padding, str) or \
      dimension_numbers is None:
    return None
  numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _LAYOUT):
    return None
  if any(d != 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())):
    return None
  kt, kh, kw, group_channels, _ = rhs.shape
  if groups == 1 and kh * kw > 1:
    return "temporal_taps"  # with kt == 1, one 2D convolution over all frames
  if groups == 1 and kt > 1 and kh == kw == 1 and all(tuple(p) == (0, 0) for p in padding[1:]):
    return "temporal_rows"
  if groups > 1 and group_channels <= MAX_GROUP_CHANNELS and kt * kh * kw > 1:
    return "grouped_taps"
  return None


def _tap(x, start, size, stride):
  """`size` steps of `stride` along axes 1..3 of `x` from `start`."""
  limit = [s + st * (n - 1) + 1 for s, n, st in zip(start, size, stride)]
  return jax.lax.slice(x, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *stride, 1))


def _output_size(x, kernel, strides):
  return [(n - k) // s + 1 for n, k, s in zip(x.shape[1:4], kernel, strides)]


def _temporal_taps(x, k, strides, padding, precision, preferred_element_type):
  """Sum over the kernel's temporal taps of one 2D convolution each, over all frames as one batch."""
  x = jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))
  b, _, h, w, c = x.shape
  t_out = (x.shape[1] - k.shape[0]) // strides[0] + 1
  out = None
  for dt in range(k.shape[0]):
    frames = _tap(x, (dt, 0, 0), (t_out, h, w), (strides[0], 1, 1)).reshape(b * t_out, h, w, c)
    y = jax.lax.conv_general_dilated(frames, k[dt], strides[1:], padding[1:],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
                                     preferred_element_type=preferred_element_type)
    out = y if out is None else out + y
  return out.reshape(b, t_out, *out.shape[1:])


def _temporal_rows(x, k, strides, padding, precision, preferred_element_type):
  """A (kt,1,1) convolution as one 2D convolution over (frames, pixels), the pixels of a clip laid out in a row."""
  x = x[:, :, ::strides[1], ::strides[2]]  # a 1x1 window without padding reads every stride-th pixel
  b, t, h, w, c = x.shape
  y = jax.lax.conv_general_dilated(x.reshape(b, t, h * w, c), k[:, 0], (strides[0], 1), [padding[0], (0, 0)],
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
                                   preferred_element_type=preferred_element_type)
  return y.reshape(b, y.shape[1], h, w, y.shape[-1])


def _grouped_taps(x, k, strides, padding, groups, preferred_element_type):
  """Sum over kernel taps of per-group channel mixes, each one broadcast multiply and sum (one XLA fusion),
  accumulated in float32 as a convolution accumulates."""
  out_dtype = preferred_element_type or jnp.result_type(x, k)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  *window, group_channels, features = k.shape
  size = _output_size(x, window, strides)
  # [*window, groups, group_channels, features per group]
  kernel = k.reshape(*window, group_channels, groups, features // groups).swapaxes(-3, -2).astype(jnp.float32)
  out = None
  for dt in range(window[0]):
    for dh in range(window[1]):
      for dw in range(window[2]):
        tap = _tap(x, (dt, dh, dw), size, strides).reshape(x.shape[0], *size, groups, group_channels)
        y = jnp.sum(tap[..., None].astype(jnp.float32) * kernel[dt, dh, dw], axis=-2)
        out = y if out is None else out + y
  return out.reshape(x.shape[0], *size, features).astype(out_dtype)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`jax.lax.conv_general_dilated`, with the 3D convolutions above rewritten on CPU (same values)."""
  rewrite = None if batch_group_count != 1 else _rewrite(
      lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
  if rewrite == "temporal_taps":
    return _temporal_taps(lhs, rhs, tuple(window_strides), [tuple(p) for p in padding], precision,
                          preferred_element_type)
  if rewrite == "temporal_rows":
    return _temporal_rows(lhs, rhs, tuple(window_strides), [tuple(p) for p in padding], precision,
                          preferred_element_type)
  if rewrite == "grouped_taps":
    return _grouped_taps(lhs, rhs, tuple(window_strides), [tuple(p) for p in padding], feature_group_count,
                         preferred_element_type)
  return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                      dimension_numbers, feature_group_count, batch_group_count, precision,
                                      preferred_element_type)
