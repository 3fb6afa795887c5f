"""Writes each `train/colab/<method>.ipynb` from its source `train/colab/<method>.py`.

  python train/colab/notebooks.py        # after editing a source; the suite checks the two agree

A source is Python in the "percent" cell format (as jupytext reads it): `# %% [markdown]` starts a markdown cell
(its lines without the leading `# `), `# %%` a code cell, and `# %% parameters` the code cell of settings that
the test suite (tests/test_notebooks.py) follows with smaller ones. The first cell is the title; the one
install cell that every notebook shares is put after it. Notebooks are stored without outputs.
"""

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent

INSTALL = '''\
# One step to a working environment. On Colab: clone jaxlab and pip-install it with the `demo` extra, plus
# CLIP's BPE vocabulary from open_clip_torch without its dependencies (a few minutes; if pip changed numpy,
# restart the runtime and run on). Anywhere else the kernel's own environment is used: install jaxlab there
# first (`pip install '<checkout>[demo]'`, or `make venv` in a checkout).
import importlib.util
import subprocess
import sys

REPOSITORY = "https://github.com/YOUR-ORG/jaxlab.git"  # where your copy of jaxlab is hosted
if "google.colab" in sys.modules and importlib.util.find_spec("jaxlab") is None:
  subprocess.run(f"git clone -q --depth 1 {REPOSITORY} /content/jaxlab && "
                 "pip install -q '/content/jaxlab[demo]' && pip install -q --no-deps open_clip_torch==3.3.0",
                 shell=True, check=True)
  importlib.invalidate_caches()
import jaxlab  # noqa: E402  (fails here if jaxlab is not installed in this kernel's environment)'''


def sources() -> list[Path]:
  return sorted(p for p in FOLDER.glob("*.py") if p.name != Path(__file__).name)


def parse_cells(text: str) -> list[dict]:
  """The cells of a percent-format source."""
  cells = []
  for line in text.splitlines():
    if line.startswith("# %%"):
      marker = line[4:].strip()
      cells.append({"kind": "markdown" if marker == "[markdown]" else "code",
                    "tags": ["parameters"] if marker == "parameters" else [], "lines": []})
    elif cells:
      cells[-1]["lines"].append(line)
  return cells


def _cell(kind: str, source: str, tags=()) -> dict:
  cell = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {}, "source": source.splitlines(True)}
  if kind == "code":
    cell.update(execution_count=None, outputs=[])
  return cell


def _markdown(lines: list[str]) -> str:
  return "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines).strip()


def notebook(source: Path) -> dict:
  """The notebook (nbformat 4 JSON) for one source."""
  cells = []
  for cell in parse_cells(source.read_text()):
    if cell["kind"] == "markdown":
      cells.append(_cell("markdown", _markdown(cell["lines"])))
    else:
      cells.append(_cell("code", "\n".join(cell["lines"]).strip(), cell["tags"]))
    if len(cells) == 1:
      cells.append(_cell("code", INSTALL))
  for i, cell in enumerate(cells):
    cell["id"] = f"cell-{i}"
  return {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
      "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
      "language_info": {"name": "python"}, "colab": {"provenance": []}}}


def render(source: Path) -> str:
  return json.dumps(notebook(source), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
  for source in sources():
    out = source.with_suffix(".ipynb")
    out.write_text(render(source))
    print(f"wrote {out.relative_to(FOLDER.parents[1])}")


if __name__ == "__main__":
  main()
