"""`jaxlab find build | interpret | score` end to end on a small generated benchmark."""

import json
import subprocess
import sys

from jaxlab import cli


def test_build_interpret_score(tmp_path, shared_data, capsys):
  data, results = tmp_path / "data", tmp_path / "results"
  assert cli.main(["find", "build", "--out", str(data), "--numeric", "8", "--strings", "6", "--mlp-epochs", "20",
                   "--release", str(shared_data / "find"), "--categories", "strings,neurons_entities"]) == 0
  assert cli.main(["find", "build", "--out", str(data), "--numeric", "8", "--mlp-epochs", "20",
                   "--categories", "numeric"]) == 0
  assert sorted(p.name for p in data.iterdir()) == ["neurons_entities", "numeric", "strings"]
  names = json.loads((data / "numeric" / "func_name_dict.json").read_text())
  assert names["f00000"] == "load_mlp.py" and len(names) == 8
  printed = subprocess.run([sys.executable, str(data / "numeric" / "f00003" / "function_code.py"), "1", "2.5"],
                           capture_output=True, text=True, check=True).stdout
  assert printed.startswith("Function input - output pairs: (1, ")
  assert json.loads((data / "neurons_entities" / "f00000" / "initial.json").read_text())[2] == "NFL"

  for category in ("numeric", "strings"):
    assert cli.main(["find", "interpret", "--dataset", str(data), "--category", category, "--out", str(results)]) == 0
  assert (results / "numeric" / "f00000" / "history.json").is_file()
  capsys.readouterr()
  assert cli.main(["find", "interpret", "--dataset", str(data), "--category", "strings", "--out", str(results)]) == 0
  assert "0 interpreted, 6 already done" in capsys.readouterr().out
  assert cli.main(["find", "interpret", "--dataset", str(data), "--category", "neurons_entities",
                   "--out", str(results)]) == 2   # LM-backed: needs --neuron-lm

  tests = json.loads((data / "strings" / "unit_test_data.json").read_text())
  replies = tmp_path / "judge.json"
  replies.write_text(json.dumps(["[ANSWER]: 1"] * 60))
  assert cli.main(["find", "score", "--dataset", str(data), "--results", str(results), "--judge",
                   f"scripted:{replies}"]) == 0
  summaries = json.loads((results / "scores.json").read_text())
  expected = sum(k == 1 for entry in tests for k in entry["correct_inx"]) / 60
  assert abs(summaries["strings"]["unit_test"] - expected) < 1e-9
  assert summaries["strings"]["code"] > 0.5 and summaries["numeric"]["n"] == 8
  table = (results / "table.md").read_text()
  assert table.startswith("| category | n | code |") and "| numeric | 8 |" in table


def test_demo(tmp_path):
  from jaxlab.find import demo
  section = demo.demo(tmp_path)
  assert set(section.figures) >= {"numeric code", "strings code"}
  assert all(0.0 <= v <= 1.0 for v in section.figures.values())
  assert "| numeric | 20 |" in section.markdown and section.files[0].is_file()
