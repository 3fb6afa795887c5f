"""Timing, FLOP counting, MFU and memory for `jaxlab bench`.

FLOPs come from XLA's cost analysis of the compiled step. MFU divides achieved FLOP/s by the device's peak:
the vendor's dense peak for GPUs and TPUs, and on CPU (which has no published figure) the rate this machine
reaches on a large matmul of the same dtype, measured in the same run and labelled as such.
"""

import dataclasses
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# Dense peak FLOP/s per device (vendor figures, no sparsity).
_PEAKS = {
    ("H100", "bfloat16"): 989e12, ("H100", "float32"): 67e12,
    ("H200", "bfloat16"): 989e12, ("H200", "float32"): 67e12,
    ("A100", "bfloat16"): 312e12, ("A100", "float32"): 19.5e12,
    ("TPU v4", "bfloat16"): 275e12, ("TPU v5 lite", "bfloat16"): 197e12, ("TPU v5e", "bfloat16"): 197e12,
    ("TPU v5p", "bfloat16"): 459e12, ("TPU v6 lite", "bfloat16"): 918e12, ("TPU v6e", "bfloat16"): 918e12,
}


def peak_flops(dtype: str) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  kind = jax.devices()[0].device_kind
  for (name, dt), peak in _PEAKS.items():
    if name in kind and dt == dtype:
      return peak, f"{kind} {dtype} vendor peak"
  if jax.default_backend() == "cpu":
    return measured_matmul_peak(dtype), f"CPU {dtype} matmul rate measured here"
  return float("nan"), f"no peak known for {kind}"


def measured_matmul_peak(dtype: str, n: int = 1024, repeats: int = 5) -> float:
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


def compiled_flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", float("nan"))) if analysis else float("nan")


def compiled_memory_bytes(compiled) -> int | None:
  """Peak device bytes of the step: arguments + outputs + temporaries (XLA's memory analysis)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def time_calls(fn, steps: int, warmup: int = 2) -> list[float]:
  """Wall-clock seconds of `steps` calls of `fn` (which must block until its work is done)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return times


@dataclasses.dataclass
class Result:
  name: str
  step_seconds: float
  examples_per_second: float
  flops_per_step: float = float("nan")
  mfu: float = float("nan")
  memory_bytes: int | None = None
  note: str = ""


def summarize(name: str, times: list[float], batch: int, flops: float = float("nan"),
              peak: float = float("nan"), memory: int | None = None, note: str = "") -> Result:
  step = statistics.median(times)
  devices = jax.device_count() if jax.default_backend() != "cpu" else 1
  mfu = flops / step / (peak * devices) if np.isfinite(flops) and np.isfinite(peak) else float("nan")
  return Result(name, step, batch / step, flops, mfu, memory, note)


def report(title: str, results: list[Result], setup: dict, out_dir: Path = Path("runs/bench")) -> dict:
  """Prints the side-by-side table (with the ratio to the first row) and writes it as JSON."""
  print(f"\n{title}")
  for key, value in setup.items():
    print(f"  {key}: {value}")
  header = f"{'implementation':<34}{'step ms':>10}{'ex/s':>10}{'GFLOP/step':>12}{'MFU':>8}{'mem MiB':>10}"
  print(header)
  print("-" * len(header))
  for r in results:
    mem = f"{r.memory_bytes / 2**20:.0f}" if r.memory_bytes else "-"
    mfu = f"{100 * r.mfu:.1f}%" if np.isfinite(r.mfu) else "-"
    gflop = f"{r.flops_per_step / 1e9:.2f}" if np.isfinite(r.flops_per_step) else "-"
    print(f"{r.name:<34}{1e3 * r.step_seconds:>10.1f}{r.examples_per_second:>10.1f}{gflop:>12}{mfu:>8}{mem:>10}")
  if len(results) > 1:
    for r in results[1:]:
      print(f"  {results[0].name} is {r.step_seconds / results[0].step_seconds:.2f}x the speed of {r.name}")
  for r in results:
    if r.note:
      print(f"  note ({r.name}): {r.note}")
  data = {"title": title, "setup": setup, "results": [dataclasses.asdict(r) for r in results]}
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / (title.split()[0].lower() + ".json")
  path.write_text(json.dumps(data, indent=2, default=str))
  print(f"  written to {path}")
  return data


def jax_train_step(task, local_batch, devices=None):
  """The loop's own compiled train step for `task` on `local_batch` (one device by default), as a blocking
  no-argument call, with its XLA FLOPs and peak memory bytes."""
  from jaxlab import parallel
  from jaxlab.training import loop

  devices = devices or jax.devices()[:1]
  mesh = parallel.make_mesh({"data": len(devices)}, devices=devices)
  init_state, rng, abstract, shardings = loop.state_layout(task, mesh, seed=0)
  with parallel.mesh_context(mesh):
    state = jax.jit(init_state, out_shardings=shardings)(rng)
  frozen = loop.place_frozen(task, mesh)
  step_fn, batch_shardings = loop.compile_train_step(task, mesh, abstract, shardings, frozen, local_batch)
  batch = parallel.global_batch(local_batch, batch_shardings)
  holder = {"state": state}

  def one():
    holder["state"], metrics = step_fn(holder["state"], frozen, batch)
    jax.block_until_ready(metrics)

  return one, compiled_flops(step_fn), compiled_memory_bytes(step_fn)


def time_in_turns(steps: int, *fns) -> list[list[float]]:
  """Warms each call up, then times them in turns, so that load from other processes falls on all alike."""
  for fn in fns:
    time_calls(fn, 1, warmup=1)
  times = [[] for _ in fns]
  for _ in range(steps):
    for fn, out in zip(fns, times):
      out.extend(time_calls(fn, 1, warmup=0))
  return times


def side_by_side(title: str, setup: dict, *, steps: int, batch_size: int, dtype: str, ours: tuple,
                 reference=None, devices=None) -> dict:
  """Times our compiled train step and, when given, the PyTorch reference in turns, and reports both.

  `ours` is `(name, task, local_batch)`. `reference` is `(name, note, make)`, where `make()` returns the
  reference step as `(blocking call, peak-memory function, device)`. Both rows share our step's FLOP count.
  """
  name, task, batch = ours
  step, flops, memory = jax_train_step(task, batch, devices)
  calls = [step]
  if reference is not None:
    their_name, note, make = reference
    theirs, their_memory, device = make()
    calls.append(theirs)
  times = time_in_turns(steps, *calls)
  # The CPU peak is measured after the timing: on a CPU, the threads of that large XLA matmul slow PyTorch's
  # later steps down several-fold.
  peak, peak_source = peak_flops(dtype)
  results = [summarize(name, times[0], batch_size, flops, peak, memory)]
  if reference is not None:
    results.append(summarize(f"{their_name} ({device})", times[1], batch_size, flops, peak, their_memory(),
                             note=note))
  setup = {**setup, "batch": batch_size, "dtype": dtype, "device": jax.devices()[0].device_kind,
           "peak": f"{peak / 1e12:.2f} TFLOP/s ({peak_source})",
           "timing": f"median of {steps} steps each, taken in turns after one warm-up step"}
  return report(title, results, setup)


def torch_threads() -> int:
  import os
  return len(os.sched_getaffinity(0))


def torch_device() -> str:
  """The PyTorch reference's device (CUDA when present), with one thread per core this process may use."""
  import torch
  torch.set_num_threads(torch_threads())
  return "cuda" if torch.cuda.is_available() else "cpu"


def torch_train_step(loss_fn, model, optimizer, device: str, dtype: str, clip_norm: float | None = None):
  """A PyTorch reference step (zero grads, `loss_fn()` under bf16 autocast when asked, backward, optional
  gradient clipping, optimizer step) as one blocking call, and a function giving its peak device memory."""
  import torch
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def one():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_fn()
    loss.backward()
    if clip_norm is not None:
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    if device == "cuda":
      torch.cuda.synchronize()

  memory = lambda: torch.cuda.max_memory_allocated() if device == "cuda" else None
  return one, memory
