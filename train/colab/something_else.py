# Source of something_else.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # Something-Else: actions from how the boxes move (STIN)
#
# Materzynska et al., CVPR 2020: the Spatial-Temporal Interaction Network classifies Something-Something V2
# actions from the tracks of the hand and object boxes alone, and generalises to objects it has not seen with
# that action (the compositional split). This notebook writes a synthetic release in the layout of the real one
# (box annotations, frames, the split files), builds the `compositional_boxes` TFDS config, trains the `tiny`
# STIN+OIE+NL, evaluates it on objects it did not see in training and exports the weights in the original
# code's PyTorch names. About 2 minutes on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/something_else"
CLIPS_PER_CLASS = {"train": 48, "validation": 16}  # the demo's synthetic release (6 actions)
OVERRIDES = []  # --config.KEY=VALUE settings, e.g. ["epochs=10"]; the tiny config trains 40 epochs

# %%
from pathlib import Path
import json

import pandas as pd

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.data import cli as data_cli
from jaxlab.data import something_else_synth as synth
from jaxlab.data import video
from jaxlab.methods import something_else

workdir = Path(WORKDIR)
release, data_dir, run = workdir / "release", workdir / "tfds", workdir / "run"

# %% [markdown]
# ## A synthetic release
# Six SSv2 actions (pushing left / right, putting onto, taking from, moving closer / apart) that differ only in
# how the boxes move; validation clips use the other half of the object nouns. Frames are drawn from the boxes.

# %%
synth.write_dataset(release, CLIPS_PER_CLASS)
print(sorted(p.name for p in release.iterdir()))
clip = sorted((release / "frames").iterdir())[0]
frames = [video.decode_jpeg(p.read_bytes()) for p in sorted(clip.glob("*.jpg"))]
notebook.show(notebook.write_gif(frames, workdir / "clip.gif", fps=12, scale=2))

# %% [markdown]
# ## Build the TFDS dataset
# The `_boxes` configs store the box tracks without pixels (what the box models read); `compositional` keeps
# the frames too. Same builder as `tfds build datasets/something_else --config compositional_boxes`.

# %%
print(data_cli.build("something_else", release, data_dir, "compositional_boxes"))

# %% [markdown]
# ## Train the tiny config
# STIN+OIE+NL with d=64 on 4 boxes x 8 frames, SGD as the original recipe, on every device of this runtime.

# %%
config = training.load_config("something_else:tiny", [f"data_dir={data_dir}", "mesh.data=-1", *OVERRIDES])
training.save_config(config, run)
training.train(something_else.make_task(config, run), config, run)
notebook.show(notebook.plot_metrics(run, ["train/loss"], workdir / "loss.png"))

# %% [markdown]
# ## Results on the compositional validation split
# Top-1 / top-5 and the confusion matrix (rows: true action, columns: predicted), from `run/eval/`.

# %%
print(something_else.evaluate(config, run))
record = json.loads((run / "eval" / "metrics_validation.json").read_text())
names = list(record["per_class"])
pd.DataFrame(record["confusion"], index=names, columns=names)

# %% [markdown]
# ## Export to PyTorch
# A safetensors state dict with the original code's module names (`coord_to_feature.0.weight`, ...).

# %%
exported, = something_else.export(config, run)
print(exported)

# %% [markdown]
# ## Your data
# Something-Something V2 videos (or frames at 12 fps) with the Something-Else box annotations and split files:

# %%
print(data_cli.load_builder_class("something_else").MANUAL_DOWNLOAD_INSTRUCTIONS)

# %% [markdown]
# Set the paths and run the cell: it builds `compositional_boxes` and trains the paper's STIN+OIE+NL (d=256,
# SGD lr 0.01 for 50 epochs, batch 72). For I3D fusion use the `paper_i3d` config on the `compositional` build
# with `i3d.checkpoint=<kinetics-res50.safetensors>`.

# %%
SMTH_DIR = ""   # the manual folder laid out as printed above
TFDS_DIR = ""   # where the built dataset goes
if SMTH_DIR and TFDS_DIR:
  data_cli.build("something_else", SMTH_DIR, TFDS_DIR, "compositional_boxes")
  paper = training.load_config("something_else:paper", [f"data_dir={TFDS_DIR}"])
  paper_run = workdir / "paper"
  training.save_config(paper, paper_run)
  training.train(something_else.make_task(paper, paper_run), paper, paper_run)
  print(something_else.evaluate(paper, paper_run))
else:
  print("set SMTH_DIR and TFDS_DIR to train on Something-Something V2")
