"""`jaxlab bench all --out DIR`: the device script. Every paper-size bench beside its PyTorch reference, then the
bf16-against-float32 check of every model family, on this machine's accelerator, into one markdown table.

`--dry-run` prints the plan and runs each bench at its tiny size (and the parity check of one family), so that
the script itself is tested on a CPU. One reference process serves every bench; the table is rewritten after
each bench, and a bench that fails is reported in it without stopping the others.
"""

import dataclasses
import time
import traceback
from pathlib import Path

import jax

from jaxlab.bench import common, hardware, parity

# (bench, config, dtype): every paper-size train step; a bench not in this checkout is reported as skipped.
SUITE = (
    ("unet2d", "paper", "bfloat16"),      # SD 1.4's UNet, 512 px (64x64 latents)
    ("vae", "paper", "bfloat16"),         # SD's VAE, 512 px
    ("video_vit", "paper", "bfloat16"),   # VideoMAE-B, 16 frames of 224 px
    ("clip", "paper", "bfloat16"),        # CLIP ViT-B/32
    ("stin", "paper", "bfloat16"),        # STIN+OIE+NL
    ("unet3d", "paper", "bfloat16"),      # the text-to-video 3D UNet (ZeroScope v2), 16 frames of 384 px
)
DRY_RUN_CONFIG = "tiny"
DRY_RUN_PARITY = ("video_vit",)


@dataclasses.dataclass
class Row:
  bench: str
  config: str
  dtype: str
  seconds: float = 0.0
  data: dict | None = None
  error: str = ""


def _run_one(bench: str, config: str, dtype: str, steps: int, out: Path) -> Row:
  from jaxlab import bench as benches
  row = Row(bench, config, dtype)
  start = time.perf_counter()
  try:
    row.data = benches.run(bench, steps=steps, dtype=dtype, config=config, out_dir=out)
  except Exception as e:  # one bench's failure must not lose the others' results
    from jaxlab.errors import UserError
    row.error = str(e).splitlines()[0] if isinstance(e, UserError) else traceback.format_exc(limit=3)
    print(f"  {bench}: {row.error.splitlines()[-1]}")
  row.seconds = time.perf_counter() - start
  return row


def _fmt(value, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None or value != value else format(value * scale, spec)


def _bench_line(row: Row) -> str:
  if row.data is None:
    reason = "not in this checkout" if "not part of this checkout" in row.error else row.error.splitlines()[-1]
    return f"| {row.bench} | {row.config} | {row.dtype} | {reason} |||||||| {row.seconds:.0f} |"
  ours, *theirs = row.data["results"]
  ref = theirs[0] if theirs else {}
  ratio = ref["step_seconds"] / ours["step_seconds"] if ref else None
  mib = lambda r: _fmt(r.get("memory_bytes"), ".0f", 2**-20)
  return (f"| {row.bench} | {row.config} | {row.dtype} | {_fmt(ours['step_seconds'], '.1f', 1e3)} | "
          f"{_fmt(ref.get('step_seconds'), '.1f', 1e3)} | {_fmt(ratio, '.2f')}x | {_fmt(ours['mfu'], '.1%')} | "
          f"{_fmt(ref.get('mfu'), '.1%')} | {mib(ours)} | {mib(ref)} | {_fmt(ours['flops_per_step'], '.1f', 1e-9)} | "
          f"{row.seconds:.0f} |")


def _parity_line(r: dict) -> str:
  return (f"| {r['family']} | {r['error']:.2e} | {r['bound']:.2e} | {r['matmuls'] - r['in_float32']}/{r['matmuls']} "
          f"| {'ok' if r['ok'] else 'FAIL'} |")


def table(rows: list[Row], parity_rows: list[dict], header: dict) -> str:
  lines = ["# jaxlab bench all", ""] + [f"- {k}: {v}" for k, v in header.items()] + [
      "", "Ratio: the reference's step time over ours (above 1: jaxlab is faster). MFU per device used, from "
      "jaxlab's FLOP count (3 x forward matmuls and convolutions).", "",
      "| bench | config | dtype | jaxlab ms | reference ms | ratio | jaxlab MFU | reference MFU | jaxlab peak MiB | "
      "reference peak MiB | GFLOP/step | seconds |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"] + [_bench_line(r) for r in rows]
  if parity_rows:
    lines += ["", "bf16 against float32 (float32 at full precision), max |y16 - y32| / max |y32|:", "",
              "| family | error | bound | matmuls in bf16 | |", "|---|---|---|---|---|"]
    lines += [_parity_line(r) for r in parity_rows]
  return "\n".join(lines) + "\n"


def plan(dry_run: bool) -> list[tuple[str, str, str]]:
  return [(b, DRY_RUN_CONFIG if dry_run else config, "float32" if dry_run else dtype) for b, config, dtype in SUITE]


def run_all(out: str | Path, steps: int = 10, dry_run: bool = False) -> Path:
  """Runs the suite (or, with `dry_run`, its tiny version); returns the markdown table's path."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  common.reserve_gpu_memory_for_the_reference()
  runs = plan(dry_run)
  families = DRY_RUN_PARITY if dry_run else tuple(parity.FAMILIES)
  steps = 1 if dry_run else steps
  print(("dry run: each bench at its tiny size, one step after the warm-up; " if dry_run else "") +
        f"{len(runs)} benches, {steps} steps each, then the bf16 check of {', '.join(families)}:")
  for bench, config, dtype in runs:
    print(f"  jaxlab bench {bench} --config {config} --dtype {dtype} --steps {steps}")
  cpu = hardware.processor()
  header = {"device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
            "processor": f"{cpu['model']}, {cpu['cores']} cores, {cpu['isa']}",
            "run": "dry run (tiny sizes)" if dry_run else f"paper sizes, {steps} steps each"}
  path = out / "bench.md"
  rows, parity_rows = [], []
  with common.shared_reference_process():
    for bench, config, dtype in runs:
      rows.append(_run_one(bench, config, dtype, steps, out))
      path.write_text(table(rows, parity_rows, header))
  for family in families:
    parity_rows.append(parity.check(family))
    path.write_text(table(rows, parity_rows, header))
  print(f"\n{path.read_text()}\nwritten to {path}")
  return path
