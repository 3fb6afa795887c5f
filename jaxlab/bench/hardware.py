"""What the bench runs on: the device's peak FLOP/s, the processor, and the thread pools of both sides.

Peaks are the vendors' dense figures (no structured sparsity) per device, keyed by the exact
`jax.devices()[0].device_kind` strings (the CUDA device name on GPUs). float32 matmuls run at the TF32 tensor
rate on NVIDIA GPUs under XLA's default precision, and as one bf16 pass on TPUs; with
`jax_default_matmul_precision='highest'` they run at the plain FP32 rate (GPU) or as six bf16 passes (TPU).
"""

import collections
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

# device_kind: (bf16 dense, TF32 dense, FP32) FLOP/s.
_GPU_PEAKS = {
    "NVIDIA H100 80GB HBM3": (989.4e12, 494.7e12, 66.9e12),   # SXM5
    "NVIDIA H100 PCIe": (756.5e12, 378.0e12, 51.2e12),
    "NVIDIA H100 NVL": (835.5e12, 417.5e12, 60.0e12),
    "NVIDIA H200": (989.4e12, 494.7e12, 66.9e12),             # SXM
    "NVIDIA H200 NVL": (835.5e12, 417.5e12, 60.0e12),
    "NVIDIA A100-SXM4-40GB": (312e12, 156e12, 19.5e12),
    "NVIDIA A100-SXM4-80GB": (312e12, 156e12, 19.5e12),
    "NVIDIA A100-PCIE-40GB": (312e12, 156e12, 19.5e12),
    "NVIDIA A100 80GB PCIe": (312e12, 156e12, 19.5e12),
    "NVIDIA L4": (121e12, 60e12, 30.3e12),
}
# device_kind: bf16 FLOP/s per chip. A v5e calls itself "TPU v5 lite", a v5p "TPU v5", a v6e "TPU v6 lite".
_TPU_PEAKS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5": 459e12, "TPU v5p": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve")


def _full_precision() -> bool:
  return str(jax.config.jax_default_matmul_precision).lower() in ("highest", "float32", "fp32")


def vendor_peak(kind: str, dtype: str) -> tuple[float, str] | None:
  """(dense peak FLOP/s of one `kind` device for `dtype` matmuls, what it is), or None for an unknown kind."""
  if kind in _GPU_PEAKS:
    bf16, tf32, fp32 = _GPU_PEAKS[kind]
    if dtype == "bfloat16":
      return bf16, f"{kind} bf16 dense vendor peak"
    if _full_precision():
      return fp32, f"{kind} FP32 vendor peak (matmul precision 'highest')"
    return tf32, f"{kind} TF32 dense vendor peak (XLA's default precision for float32)"
  if kind in _TPU_PEAKS:
    bf16 = _TPU_PEAKS[kind]
    if dtype == "bfloat16" or not _full_precision():
      note = "" if dtype == "bfloat16" else ": float32 matmuls run as one bf16 pass at default precision"
      return bf16, f"{kind} bf16 vendor peak{note}"
    return bf16 / 6, f"{kind} bf16 vendor peak / 6 (float32 at 'highest' precision: six bf16 passes)"
  return None


def peak_flops(dtype: str, kind: str | None = None) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from); on CPU the matmul rate measured here."""
  kind = jax.devices()[0].device_kind if kind is None else kind
  known = vendor_peak(kind, dtype)
  if known is not None:
    return known
  if jax.default_backend() == "cpu":
    return measured_matmul_peak(dtype), f"CPU {dtype} matmul rate measured here (all cores)"
  return float("nan"), f"no peak known for device kind {kind!r}"


def measured_matmul_peak(dtype: str, n: int = 1024, repeats: int = 5) -> float:
  import time
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  # All CPU devices share the host cores, so the per-device figure is the whole machine's.
  return 2 * n**3 / min(times)


def processor() -> dict:
  """The host CPU: model name, cores this process may use, and the vector ISA extensions it has."""
  model, flags = "unknown", set()
  cpuinfo = Path("/proc/cpuinfo")
  if cpuinfo.exists():
    for line in cpuinfo.read_text().splitlines():
      key, _, value = line.partition(":")
      key = key.strip()
      if key in ("model name", "Model", "cpu model") and model == "unknown":
        model = value.strip()
      elif key in ("flags", "Features") and not flags:
        flags = set(value.split())
  return {"model": model, "cores": len(os.sched_getaffinity(0)), "logical_cpus": os.cpu_count(),
          "isa": " ".join(f for f in _ISA_FLAGS if f in flags) or "-"}


def _busy_cpu_seconds(cpus: set[int]) -> float:
  """CPU seconds every process on the machine has used on `cpus` since boot (idle and I/O wait excluded)."""
  busy = 0
  for line in Path("/proc/stat").read_text().splitlines():
    name, *values = line.split()
    if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
      fields = [int(v) for v in values[:8]]
      busy += sum(fields) - fields[3] - fields[4]
  return busy / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int | str) -> float:
  """User + system CPU seconds of one process (0 when it is gone)."""
  try:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
  except OSError:
    return 0.0
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
  """How busy other processes kept this process's cores while a block ran: `with OtherLoad(pids) as load: ...`,
  then `load.cores` is the average number of those cores they used (`pids` count as ours, like the reference's).

  CPU ratios against PyTorch only mean something on otherwise idle cores: when they are oversubscribed,
  PyTorch's OpenMP threads slow down far more than XLA's pool (2 cores: the same video_vit bench went from
  0.78x to 2.44x as other work started). Pinned to one core, both sides single-threaded, the ratio held at
  0.76-0.81x whatever else ran, since time slices then fall on both alike."""

  def __init__(self, pids=()):
    self.pids = ["self", *pids]
    self.cpus = os.sched_getaffinity(0)
    self.cores = float("nan")

  def _sample(self):
    return time.perf_counter(), _busy_cpu_seconds(self.cpus), sum(_process_cpu_seconds(p) for p in self.pids)

  def __enter__(self):
    if Path("/proc/stat").exists():
      self._start = self._sample()
    return self

  def __exit__(self, *exc):
    if Path("/proc/stat").exists():
      (t0, busy0, ours0), (t1, busy1, ours1) = self._start, self._sample()
      self.cores = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / max(t1 - t0, 1e-9)

  def describe(self, warn: bool = True) -> str:
    """The figure, with a warning (`warn`: the steps ran on the CPU) when other work took a quarter core or more."""
    if self.cores != self.cores:
      return "unknown (no /proc/stat)"
    text = f"other processes used {self.cores:.2f} of the {len(self.cpus)} cores the bench ran on, while the steps ran"
    if warn and self.cores >= 0.25:
      text += ("; ratios to PyTorch are unreliable on busy cores, where its OpenMP threads slow down most: rerun "
               "on an idle machine, or pin both sides to one core (`taskset -c 0 jaxlab bench ...`)")
    return text


def thread_names() -> collections.Counter:
  """How many threads of this process carry each name (XLA:CPU's intra-op pool is 'tf_XLAEigen')."""
  names = collections.Counter()
  for task in Path("/proc/self/task").glob("*"):
    try:
      names[(task / "comm").read_text().strip()] += 1
    except OSError:
      continue  # a thread that just ended
  return names


def xla_threads() -> str:
  """XLA's side: the CPU intra-op pool's threads (counted, after a step ran) and the XLA flags in force."""
  pool = thread_names().get("tf_XLAEigen", 0)
  flags = os.environ.get("XLA_FLAGS", "").strip() or "none"
  return f"{pool} XLA:CPU intra-op threads (one pool for all {jax.local_device_count()} devices); XLA_FLAGS: {flags}"


def torch_threads() -> str:
  """PyTorch's side: its intra-op and inter-op thread counts, and the CPU kernels it uses."""
  import torch
  mkldnn = "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
  omp = os.environ.get("OMP_NUM_THREADS", "unset")
  return (f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads "
          f"(OMP_NUM_THREADS {omp}), {mkldnn}, torch {torch.__version__}")
