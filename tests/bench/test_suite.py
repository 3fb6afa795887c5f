"""`jaxlab bench all --dry-run`: the device script's plan, and every bench run at its tiny size, on CPU."""

import json

import pytest

from jaxlab import cli
from jaxlab.bench import suite

pytest.importorskip("diffusers")


def test_dry_run_runs_every_bench_tiny_and_writes_one_table(tmp_path, capsys):
  assert cli.main(["bench", "all", "--dry-run", "--out", str(tmp_path)]) == 0
  printed = capsys.readouterr().out
  for bench, config, dtype in suite.SUITE:
    assert f"jaxlab bench {bench} --config tiny" in printed   # the plan
  benches, parity = (tmp_path / "bench.md").read_text().split("bf16 against float32")
  rows = {line.split("|")[1].strip(): line for line in benches.splitlines() if line.startswith("| ")}
  for bench in ("unet2d", "vae", "video_vit", "clip", "stin", "unet3d"):
    cells = [c.strip() for c in rows[bench].split("|")[1:-1]]
    ours_ms, their_ms = float(cells[3]), float(cells[4])
    assert ours_ms > 0 and their_ms > 0 and cells[5].endswith("x"), rows[bench]
    result = json.loads((tmp_path / f"{bench}.json").read_text())
    assert result["results"][1]["memory_bytes"] > 0 and "processor" in result["setup"]
  assert "| video_vit |" in parity and "| ok |" in parity and "FAIL" not in parity
