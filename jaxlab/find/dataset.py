"""The benchmark on disk, in the release's layout, and back.

```
DIR/numeric/fNNNNN/function_code.py           the benchmark variant of each function (a runnable script)
DIR/numeric/data.json, func_name_dict.json    metadata (ours adds `variant`, `release_bugs`, `mlp`)
DIR/strings/fNNNNN/function_code.py; data.json; unit_test_data.json
DIR/neurons_{entities,relations}/fNNNNN/{function_code.py, initial.json}; data.json; unit_test_data.json
```
`function_code.py` prints `Function input - output pairs: ...` for its command-line inputs, so tools
written for the original benchmark run on these folders. A released `numeric/data.json` (with its
`func_name_dict.json`) loads too, and rebuilds the released functions.
"""

import json
from pathlib import Path
from collections.abc import Sequence

from jaxlab.errors import UserError, read_json
from jaxlab.find import neurons, numeric, strings

CATEGORIES = ("numeric", "strings", "neurons_entities", "neurons_relations")
_RELEASE_FILE = {v: k for k, v in numeric.RELEASE_FILES.items()}


def _write_functions(folder: Path, functions, extra=None) -> None:
  for function in functions:
    (folder / function.name).mkdir(parents=True, exist_ok=True)
    (folder / function.name / "function_code.py").write_text(function.source())
    if extra:
      extra(function)


def write(root: str | Path, category: str, functions: Sequence, unit_tests: list[dict] | None = None) -> Path:
  """Writes one category's folder; returns it."""
  folder = Path(root) / category
  folder.mkdir(parents=True, exist_ok=True)
  if category.startswith("neurons"):
    _write_functions(folder, functions, lambda f: (folder / f.name / "initial.json").write_text(json.dumps(f.initial)))
  else:
    _write_functions(folder, functions)
  (folder / "data.json").write_text(json.dumps([f.metadata() for f in functions]))
  if category == "numeric":
    (folder / "func_name_dict.json").write_text(json.dumps({f.name: _RELEASE_FILE[f.variant] for f in functions}))
  if unit_tests is not None:
    (folder / "unit_test_data.json").write_text(json.dumps(unit_tests))
  return folder


def load_numeric(folder: str | Path) -> list[numeric.NumericFunction]:
  """Our `numeric/data.json`, or the release's (variants from `func_name_dict.json`, release bugs on)."""
  folder = Path(folder)
  entries = read_json(folder / "data.json")
  if entries and "variant" in entries[0]:
    return [numeric.from_metadata(e) for e in entries]
  files = read_json(folder / "func_name_dict.json")
  functions = []
  for entry in entries:
    name = entry["dir"].rstrip("/").rsplit("/", 1)[-1]
    if files.get(name) not in numeric.RELEASE_FILES:
      raise UserError(f"{folder / 'func_name_dict.json'}: no known variant for {name}")
    functions.append(numeric.from_metadata(entry, numeric.RELEASE_FILES[files[name]], release_bugs=True))
  return functions


def load(root: str | Path, category: str, *, neuron_lm=None) -> list:
  """The functions of one category of a benchmark folder."""
  if category not in CATEGORIES:
    raise UserError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)}")
  folder = Path(root) / category
  if category == "numeric":
    return load_numeric(folder)
  entries = read_json(folder / "data.json")
  if category == "strings":
    if entries and "steps" not in entries[0]:
      raise UserError(f"{folder / 'data.json'} has no function code (the release ships only five string "
                      "functions); generate a string set with `jaxlab find build`")
    return [strings.StringFunction.from_metadata(e) for e in entries]
  return [neurons.from_metadata(category, e, neuron_lm) for e in entries]


def load_unit_tests(root: str | Path, category: str) -> dict[str, dict]:
  """`unit_test_data.json` by function name (empty if the category has none)."""
  path = Path(root) / category / "unit_test_data.json"
  return {entry["name"]: entry for entry in read_json(path)} if path.is_file() else {}


def categories_in(root: str | Path) -> list[str]:
  return [c for c in CATEGORIES if (Path(root) / c / "data.json").is_file()]
