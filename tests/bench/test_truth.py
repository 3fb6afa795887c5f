"""What `jaxlab bench` reports: peaks by exact device kind, jaxlab's FLOP count, MFU per device used."""

import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.bench import common, flops, hardware
from jaxlab.nn import attention


@pytest.mark.parametrize("kind,dtype,peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4e12),   # SXM
    ("NVIDIA H100 80GB HBM3", "float32", 494.7e12),    # TF32 under XLA's default precision
    ("NVIDIA H100 PCIe", "bfloat16", 756.5e12),
    ("NVIDIA H100 NVL", "bfloat16", 835.5e12),
    ("NVIDIA H200", "bfloat16", 989.4e12),
    ("NVIDIA A100-SXM4-40GB", "float32", 156e12),
    ("NVIDIA A100 80GB PCIe", "bfloat16", 312e12),
    ("NVIDIA L4", "bfloat16", 121e12),
    ("TPU v4", "bfloat16", 275e12),
    ("TPU v5 lite", "bfloat16", 197e12),                # v5e
    ("TPU v5", "bfloat16", 459e12),                     # v5p
    ("TPU v6 lite", "float32", 918e12),                 # v6e; float32 as one bf16 pass
])
def test_vendor_peaks_by_exact_device_kind(kind, dtype, peak):
  with jax.default_matmul_precision("default"):  # the tests' own setting is 'highest' (conftest)
    assert hardware.vendor_peak(kind, dtype)[0] == peak


def test_full_precision_float32_peaks_and_unknown_kinds():
  with jax.default_matmul_precision("highest"):
    assert hardware.vendor_peak("NVIDIA H100 80GB HBM3", "float32")[0] == 66.9e12
    assert hardware.vendor_peak("TPU v5", "float32")[0] == 459e12 / 6
  assert hardware.vendor_peak("NVIDIA H100", "bfloat16") is None   # not a real kind: no substring matches
  assert hardware.vendor_peak("Tesla T4", "bfloat16") is None


def test_flop_count_multiplies_scanned_bodies_and_sees_through_remat():
  w = jnp.ones((6, 32, 48))
  x = jnp.ones((5, 32))

  def layer(h, w_i):
    return jnp.tanh(h @ w_i[:, :32]), None

  scanned = lambda x, w: jax.lax.scan(jax.checkpoint(layer), x, w)[0].sum()
  assert flops.forward_flops(scanned, x, w) == 6 * 2 * 5 * 32 * 32

  kernel = jnp.ones((3, 3, 3, 4, 8))  # a 3x3x3 conv, 4 -> 8 channels, grouped in 2 below
  video = jnp.ones((2, 4, 6, 6, 4))
  conv = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO",
                                                                                               "NDHWC"))
  assert flops.forward_flops(conv, video, kernel) == 2 * (2 * 4 * 6 * 6 * 8) * (27 * 4)
  grouped = lambda v, k: jax.lax.conv_general_dilated(v, k[..., :2, :], (1, 1, 1), "SAME", feature_group_count=2,
                                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  assert flops.forward_flops(grouped, video, kernel) == 2 * (2 * 4 * 6 * 6 * 8) * (27 * 2)


def test_attention_is_counted_as_xla_attention_whatever_the_kernel(monkeypatch):
  monkeypatch.setattr(attention, "platform", lambda: ("tpu", None))
  q = jnp.ones((1, 256, 2, 32))
  f = lambda q: attention.dot_product_attention(q, q, q)
  assert attention.choose_implementation(q, q, q) == "tpu_flash"
  assert flops.forward_flops(f, q) == 2 * (2 * 256 * 256 * 2 * 32)  # q.k and p.v, per head


def test_mfu_is_per_device_used():
  one = common.summarize("x", [0.5], batch=8, flops=4e12, peak=1e12, devices=1)
  eight = common.summarize("x", [0.5], batch=8, flops=4e12, peak=1e12, devices=8)
  assert one.mfu == pytest.approx(8.0) and eight.mfu == pytest.approx(1.0)
  assert eight.tflops_per_device == pytest.approx(1.0)


def test_processor_and_threads_are_read_from_this_machine():
  cpu = hardware.processor()
  assert cpu["cores"] >= 1 and cpu["model"]
  jnp.ones(4).block_until_ready()
  assert "XLA:CPU intra-op threads" in hardware.xla_threads()


def test_convolutions_rewritten_on_cpu_are_counted_as_convolutions():
  from jaxlab import nn as jnn
  from flax import linen as nn
  layer = jnn.conv(8, (3, 3, 3), padding=[(1, 1)] * 3, feature_group_count=4)
  x = jnp.ones((1, 4, 6, 6, 8))
  params = nn.meta.unbox(jax.eval_shape(layer.init, jax.random.key(0), x))
  assert flops.forward_flops(layer.apply, params, x) == 2 * (4 * 6 * 6 * 8) * (27 * 2)


def test_other_load_counts_other_processes_but_not_the_reference():
  spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 2\nwhile time.time() < end: pass"])
  try:
    time.sleep(0.3)  # the interpreter has started and spins
    # One window for both, so that whatever else runs on the machine counts in each alike.
    with hardware.OtherLoad() as other, hardware.OtherLoad([spinner.pid]) as without_spinner:
      time.sleep(1.0)
  finally:
    spinner.wait()
  # The spinner takes up to one core (less when the machine is busy), the reference exclusion removes it all.
  assert other.cores - without_spinner.cores >= 0.3, (other.cores, without_spinner.cores)
  assert "unreliable" in other.describe() and "unreliable" not in other.describe(warn=False)
