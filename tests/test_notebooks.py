"""The notebooks in train/colab/: generated from their sources, stored without outputs, and each one runs top to
bottom in a kernel of this environment (with the smaller settings below, so the set fits the suite's time)."""

import importlib.util
import json
from pathlib import Path
import sys
import time

import pytest

from jaxlab import methods

COLAB = Path(__file__).resolve().parents[1] / "train" / "colab"
_spec = importlib.util.spec_from_file_location("colab_notebooks", COLAB / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)

NOTEBOOKS = sorted(p.stem for p in COLAB.glob("*.ipynb"))
# Methods whose notebook lands with them (train/colab/README.md says what each should show).
PENDING = set()
# Run after each notebook's `parameters` cell: a few steps on a few clips; the cells stay the same.
SUITE_SETTINGS = {
    "airletters": 'CLIPS_PER_CLASS = {"train": 2, "validation": 1, "test": 1}\n'
                  'OVERRIDES = ["total_steps=6", "warmup_steps=2", "log_every=3", "checkpoint_every=6"]',
    "something_else": 'CLIPS_PER_CLASS = {"train": 8, "validation": 2}\nOVERRIDES = ["epochs=3", "log_every=1"]',
    "spelling": 'OVERRIDES = ["data.train_size=64", "data.val_size=32", "total_steps=8", "log_every=4", '
                '"checkpoint_every=8"]',
    "esd": 'OVERRIDES = ["steps=4", "ddim_steps=4", "eval_steps=4", "log_every=2", "checkpoint_every=4"]',
    "sliders": 'OVERRIDES = ["iterations=2", "max_denoising_steps=3", "eval_steps=3", "log_every=1", '
               '"checkpoint_every=2"]\nIMAGE_OVERRIDES = ["iterations=2", "max_denoising_steps=3", "log_every=1", '
               '"checkpoint_every=2"]\nSCALES = [-1, 0, 1]',
    "find": "N_NUMERIC, N_STRINGS = 4, 4\nMLP_EPOCHS = 20",
    "audit": "N_SITES = 300\nRESAMPLES = 10",
    "motion": 'NUM_VIDEOS, CLASSIFIER_STEPS = 2, 2\nCLASSIFIER_CLIPS = {"train": 16, "validation": 2, "test": 2}\n'
              'OVERRIDES = ["synthetic.num_clips=2", "synthetic.num_frames=4", "num_frames=4", "resolution=16", '
              '"tiny_pipeline.vae_steps=0", "tiny_pipeline.unet_steps=0", '
              '"total_steps=2", "log_every=1", "checkpoint_every=2", "eval_steps=2", "eval_batch_size=2"]',
}
CELL_TIMEOUT_S = 300


def test_every_method_has_a_notebook_or_is_pending():
  missing = set(methods.METHODS) - set(NOTEBOOKS)
  print(f"notebooks: {', '.join(NOTEBOOKS)}; no notebook yet: {', '.join(sorted(missing))}")
  assert missing == PENDING, "add the notebook (train/colab/README.md) or update PENDING"
  assert set(SUITE_SETTINGS) <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_its_source_without_outputs(name):
  stored = (COLAB / f"{name}.ipynb").read_text()
  assert stored == notebooks.render(COLAB / f"{name}.py"), "run `python train/colab/notebooks.py`"
  cells = json.loads(stored)["cells"]
  assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
  assert sum("parameters" in c["metadata"].get("tags", []) for c in cells) == 1


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory) -> str:
  """A kernel spec running this interpreter (so the notebooks see this environment, not a global Jupyter's)."""
  folder = tmp_path_factory.mktemp("jupyter") / "kernels" / "jaxlab-suite"
  folder.mkdir(parents=True)
  (folder / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "jaxlab suite", "language": "python"}))
  return str(folder.parents[1])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, jupyter_path, tmp_path, monkeypatch):
  import nbclient
  import nbformat
  monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
  nb = nbformat.reads((COLAB / f"{name}.ipynb").read_text(), as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  if name in SUITE_SETTINGS:
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(SUITE_SETTINGS[name]))
  start = time.time()
  nbclient.NotebookClient(nb, kernel_name="jaxlab-suite", timeout=CELL_TIMEOUT_S,
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  print(f"{name}.ipynb ran in {time.time() - start:.1f} s")
  shown = [kind for c in nb.cells for o in c.get("outputs", []) for kind in o.get("data", {})
           if kind.startswith("image/") or kind == "text/markdown"]
  assert shown, "the notebook showed no figure or table inline"
  for cell in nb.cells:
    timing = cell.metadata.get("execution", {})
    if "shell.execute_reply" in timing:
      print(f"  {cell.id}: {_seconds(timing['iopub.execute_input'], timing['shell.execute_reply']):.1f} s")


def _seconds(start: str, end: str) -> float:
  from datetime import datetime
  return (datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))).total_seconds()
