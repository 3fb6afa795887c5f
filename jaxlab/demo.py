"""`jaxlab demo`: every method's tiny config end to end, then one report (markdown + PNGs) in the workdir."""

import os
from pathlib import Path
import sys
import time
import traceback


def use_eight_cpu_devices() -> None:
  """The tiny configs run sharded over 8 CPU devices; the flag must be set before JAX starts."""
  flag = "--xla_force_host_platform_device_count"
  if flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {flag}=8").strip()


def run(workdir, only: list[str] | None = None) -> int:
  use_eight_cpu_devices()
  from jaxlab import methods
  from jaxlab.errors import UserError

  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  names = only or methods.available()
  for name in names:
    if name not in methods.METHODS:
      raise UserError(f"unknown method {name!r}; methods: {', '.join(methods.available())}")
  sections, failures = [], []
  for name in names:
    print(f"\n=== {name} ===", flush=True)
    start = time.time()
    try:
      section = methods.get(name).demo(workdir / name)
    except Exception:  # one method failing must not hide the others' results
      failures.append(name)
      trace = traceback.format_exc()
      print(trace, file=sys.stderr)
      sections.append((name, None, trace, time.time() - start))
      continue
    sections.append((name, section, None, time.time() - start))
    for key, value in section.figures.items():
      print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")

  lines = ["# jaxlab demo report", "", "| method | status | seconds | headline |", "|---|---|---|---|"]
  for name, section, trace, seconds in sections:
    headline = "; ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                         for k, v in (section.figures.items() if section else []))
    lines.append(f"| {name} | {'ok' if section else 'FAILED'} | {seconds:.0f} | {headline} |")
  for name, section, trace, _ in sections:
    lines += ["", f"## {section.title if section else name}", ""]
    lines.append(section.markdown if section else f"```\n{trace}\n```")
  report = workdir / "report.md"
  report.write_text("\n".join(lines) + "\n")
  print(f"\nreport: {report}")
  if failures:
    print(f"jaxlab: demo failed for {', '.join(failures)}", file=sys.stderr)
    return 1
  return 0
