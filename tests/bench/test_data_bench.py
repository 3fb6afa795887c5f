"""`jaxlab bench data` at its smallest: every pipeline, worker count and the two tiny steps are measured."""

import json

from jaxlab import cli
from jaxlab.bench import data as data_bench


def test_cpu_seconds_count_this_process():
  start = data_bench._cpu_seconds()
  sum(i * i for i in range(2_000_000))
  assert data_bench._cpu_seconds() - start > 0.01


def test_bench_data_smoke(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert cli.main(["bench", "data", "--config", "tiny", "--steps", "2"]) == 0
  results = json.loads((tmp_path / "runs" / "bench" / "data.json").read_text())
  assert set(results["pipelines"]) == {"airletters", "something_else (boxes)", "something_else (frames + boxes)"}
  for name, rows in results["pipelines"].items():
    assert set(rows) == {"clips", "grain, 0 workers", "grain, 1 workers", "grain, 2 workers", "PyAV loop, 1 process"}
    assert rows["clips"] > 0
    assert all(r["clips_per_s"] > 0 and r["clips_per_cpu_s"] > 0 for k, r in rows.items() if k != "clips")
  for method in ("airletters", "something_else"):
    step = results["steps"][method]
    assert step["devices"] == 8 and step["step_s"] > 0 and step["input_s"] > 0
  out = capsys.readouterr().out
  assert out.count("waits on input") + out.count("input keeps up") == 2
