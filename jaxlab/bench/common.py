"""Timing, FLOP counting, MFU and memory for `jaxlab bench`.

Each bench times the train loop's own compiled step beside the PyTorch reference of the same model and batch,
in turns, the reference in a process of its own (`jaxlab.bench.reference`), both on one device. FLOPs are
jaxlab's count of the step (`jaxlab.bench.flops`; XLA's cost analysis is printed beside it), and MFU divides
the achieved FLOP/s per device by that device's peak (`jaxlab.bench.hardware`): the vendor's dense figure for
GPUs and TPUs, and on a CPU the rate this machine reaches on a large matmul, measured in the same run.
"""

import contextlib
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab.bench import flops as flops_lib
from jaxlab.bench import hardware
from jaxlab.bench import reference as reference_lib
from jaxlab.errors import UserError

OUT_DIR = Path("runs/bench")
# JAX preallocates 75% of a GPU's memory; the reference needs room beside it on the same GPU.
JAX_GPU_MEMORY_FRACTION = "0.45"


def reserve_gpu_memory_for_the_reference() -> None:
  """Caps JAX's GPU preallocation (if the user has not), before JAX starts its GPU client."""
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", JAX_GPU_MEMORY_FRACTION)


def size(sizes: dict, config: str, bench: str) -> dict:
  """The bench's `config` entry of `sizes`, or a one-line error naming the choices."""
  if config not in sizes:
    raise UserError(f"no {bench} size {config!r}; choose {', '.join(sizes)}")
  return sizes[config]


def compiled_flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", float("nan"))) if analysis else float("nan")


def compiled_memory_bytes(compiled) -> int | None:
  """Device bytes of the step: arguments + outputs + temporaries (XLA's memory analysis)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def device_peak_memory(device) -> int | None:
  """The device allocator's peak bytes in use (GPU, TPU); None where it keeps no statistics (CPU)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def time_calls(fn, steps: int, warmup: int = 2) -> list[float]:
  """Seconds of `steps` calls of `fn`, which blocks until its work is done; a call that returns a float
  reports its own duration (a step timed in another process)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    reported = fn()
    times.append(reported if isinstance(reported, float) else time.perf_counter() - t)
  return times


def time_in_turns(steps: int, *fns) -> list[list[float]]:
  """Warms each call up, then times them in turns, so that load from other processes falls on all alike."""
  for fn in fns:
    time_calls(fn, 1, warmup=1)
  times = [[] for _ in fns]
  for _ in range(steps):
    for fn, out in zip(fns, times):
      out.extend(time_calls(fn, 1, warmup=0))
  return times


@dataclasses.dataclass
class Result:
  name: str
  step_seconds: float
  examples_per_second: float
  flops_per_step: float = float("nan")
  devices: int = 1
  tflops_per_device: float = float("nan")
  mfu: float = float("nan")
  memory_bytes: int | None = None
  memory_source: str = ""
  note: str = ""


def summarize(name: str, times: list[float], batch: int, flops: float = float("nan"),
              peak: float = float("nan"), devices: int = 1, memory: tuple = (None, ""), note: str = "") -> Result:
  """One row: median step time, throughput, and FLOP/s and MFU per device of the `devices` the step used."""
  step = statistics.median(times)
  per_device = flops / step / devices
  mfu = per_device / peak if np.isfinite(flops) and np.isfinite(peak) else float("nan")
  return Result(name, step, batch / step, flops, devices, per_device / 1e12, mfu, memory[0], memory[1], note)


def report(title: str, results: list[Result], setup: dict, out_dir: Path = OUT_DIR) -> dict:
  """Prints the side-by-side table (with the ratio to the first row) and writes it as JSON."""
  print(f"\n{title}")
  for key, value in setup.items():
    print(f"  {key}: {value}")
  header = (f"{'implementation':<40}{'step ms':>10}{'ex/s':>10}{'GFLOP/step':>12}{'TFLOP/s/dev':>13}{'MFU':>8}"
            f"{'peak MiB':>10}")
  print(header)
  print("-" * len(header))
  for r in results:
    mem = f"{r.memory_bytes / 2**20:.0f}" if r.memory_bytes else "-"
    mfu = f"{100 * r.mfu:.1f}%" if np.isfinite(r.mfu) else "-"
    gflop = f"{r.flops_per_step / 1e9:.2f}" if np.isfinite(r.flops_per_step) else "-"
    rate = f"{r.tflops_per_device:.3f}" if np.isfinite(r.tflops_per_device) else "-"
    print(f"{r.name:<40}{1e3 * r.step_seconds:>10.1f}{r.examples_per_second:>10.1f}{gflop:>12}{rate:>13}{mfu:>8}"
          f"{mem:>10}")
  for r in results[1:]:
    print(f"  {results[0].name} is {r.step_seconds / results[0].step_seconds:.2f}x the speed of {r.name}")
  for r in results:
    if r.memory_source:
      print(f"  memory ({r.name}): {r.memory_source}")
    if r.note:
      print(f"  note ({r.name}): {r.note}")
  data = {"title": title, "setup": setup, "results": [dataclasses.asdict(r) for r in results]}
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / (title.split()[0].lower() + ".json")
  path.write_text(json.dumps(data, indent=2, default=str))
  print(f"  written to {path}")
  return data


def _compiled_step(task, local_batch, devices):
  """(the loop's compiled train step as a blocking no-argument call, the compiled step, the abstract state)."""
  from jaxlab import parallel
  from jaxlab.training import loop

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

  return one, step_fn, abstract


def jax_train_step(task, local_batch, devices=None):
  """The loop's own compiled train step for `task` on `local_batch` (one device by default), as a blocking
  no-argument call, with XLA's FLOP count and memory estimate of the compiled step."""
  one, step_fn, _ = _compiled_step(task, local_batch, devices or jax.devices()[:1])
  return one, compiled_flops(step_fn), compiled_memory_bytes(step_fn)


def model_flops(task, local_batch, abstract=None) -> float:
  """jaxlab's FLOP count of one train step of `task` on `local_batch` (3 x its forward pass)."""
  from jaxlab import parallel
  from jaxlab.training import loop
  if abstract is None:
    _, _, abstract, _ = loop.state_layout(task, parallel.make_mesh({"data": 1}, devices=jax.devices()[:1]), 0)
  loss = lambda params, model_state, frozen, batch: task.loss_fn(params, model_state, frozen, batch,
                                                                 jax.random.key(0))[0]
  return flops_lib.train_step_flops(loss, abstract["params"], abstract["model_state"], task.frozen, local_batch)


_shared_reference: list = []


@contextlib.contextmanager
def shared_reference_process():
  """One reference process for every bench run inside (PyTorch is imported once)."""
  process = reference_lib.ReferenceProcess()
  _shared_reference.append(process)
  try:
    yield process
  finally:
    _shared_reference.pop()
    process.close()


@contextlib.contextmanager
def _reference_runner(make):
  if not reference_lib.picklable(make):
    yield reference_lib.InProcessReference()
  elif _shared_reference:
    yield _shared_reference[-1]
  else:
    process = reference_lib.ReferenceProcess()
    try:
      yield process
    finally:
      process.close()


def _our_memory(step_memory: int | None) -> tuple:
  # XLA's estimate is the step's own; the allocator's peak (GPU, TPU) spans every bench run in this process.
  source = "XLA's estimate of the step (arguments + outputs + temporaries)"
  process_peak = device_peak_memory(jax.devices()[0])
  if process_peak is not None:
    source += f"; device allocator's peak in this process so far {process_peak / 2**20:.0f} MiB"
  return step_memory, source


def _flops_note(model: float, xla: float, devices: int) -> str:
  share = f", per device of {devices}" if devices > 1 else ""
  return (f"{model / 1e9:.2f} GFLOP per step, jaxlab's count (3 x the forward pass's matmuls and convolutions); "
          f"XLA's cost analysis of the compiled step says {xla / 1e9:.2f} GFLOP{share} (loop bodies counted "
          "once, custom calls not at all, recomputation included)")


def side_by_side(title: str, setup: dict, *, steps: int, batch_size: int, dtype: str, ours: tuple,
                 reference=None, devices=None, out_dir: Path = OUT_DIR) -> dict:
  """Times our compiled train step and, when given, the PyTorch reference in turns, and reports both.

  `ours` is `(name, task, local_batch)`. `reference` is `(name, note, make)`, where `make()` returns the
  reference step as `(blocking call, peak-memory function, device)`; `make` should be picklable (a module-level
  function or a `functools.partial` of one) so that it runs in the reference process; anything else runs here.
  Both rows share our step's FLOP count.
  """
  name, task, batch = ours
  devices = devices or jax.devices()[:1]
  step, step_fn, abstract = _compiled_step(task, batch, devices)
  flops = model_flops(task, batch, abstract)
  with contextlib.ExitStack() as stack:
    calls, reference_pids = [step], []
    if reference is not None:
      their_name, note, make = reference
      runner = stack.enter_context(_reference_runner(make))
      their_device, their_threads = runner.load(make)
      calls.append(runner.step)
      reference_pids = [runner.pid] if isinstance(runner, reference_lib.ReferenceProcess) else []
    with hardware.OtherLoad(reference_pids) as load:
      times = time_in_turns(steps, *calls)
    # Thread counts after the steps ran (pools start lazily); the CPU peak after the timing: its large matmul
    # would leave XLA's threads busy while the reference's first steps run.
    our_threads = hardware.xla_threads() if jax.default_backend() == "cpu" else "-"
    peak, peak_source = hardware.peak_flops(dtype)
    results = [summarize(name, times[0], batch_size, flops, peak, len(devices),
                         _our_memory(compiled_memory_bytes(step_fn)))]
    if reference is not None:
      results.append(summarize(f"{their_name} ({their_device})", times[1], batch_size, flops, peak, 1,
                               runner.memory(), note=note))
  cpu = hardware.processor()
  setup = {**setup, "batch": batch_size, "dtype": dtype,
           "device": f"{jax.devices()[0].device_kind} x{len(devices)} of {jax.device_count()} (MFU per device used)",
           "processor": f"{cpu['model']}, {cpu['cores']} cores, {cpu['isa']}",
           "threads (ours)": our_threads,
           "machine load": load.describe(warn=jax.default_backend() == "cpu"),
           **({"threads (reference)": their_threads} if reference is not None else {}),
           "flops": _flops_note(flops, compiled_flops(step_fn), len(devices)),
           "peak": f"{peak / 1e12:.2f} TFLOP/s per device ({peak_source})",
           "timing": f"median of {steps} steps each, taken in turns after one warm-up step"
                     + ("; the reference in its own process" if reference is not None else "")}
  return report(title, results, setup, out_dir)


def torch_threads() -> int:
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
