# Source of airletters.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # AirLetters: classifying characters drawn in the air
#
# Dagli et al., 2024 (arXiv 2410.02921): 161,652 videos of people tracing one of 36 letters and digits (plus
# two contrast classes) in the air. This notebook writes a synthetic release in the same layout, builds it as a
# TFDS dataset, trains the `tiny` config (a small video ViT) on every device of this runtime, evaluates it and
# exports it for transformers. The last cells point the same steps at the real release and VideoMAE weights.
# On a 2-core CPU runtime the whole notebook takes about 5 minutes.

# %% parameters
WORKDIR = "runs/colab/airletters"
CLIPS_PER_CLASS = {"train": 100, "validation": 6, "test": 8}  # the demo's synthetic release (38 classes)
OVERRIDES = []  # --config.KEY=VALUE settings, e.g. ["total_steps=300"]; the tiny config trains 1000 steps

# %%
from pathlib import Path

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.data import airletters_synth, video
from jaxlab.data import cli as data_cli
from jaxlab.methods import airletters

workdir = Path(WORKDIR)
manual, data_dir, run = workdir / "manual", workdir / "data", workdir / "run"

# %% [markdown]
# ## A synthetic release
# A hand traces each character over a textured room, written as `videos/*.mp4` with `train.csv`, `val.csv` and
# `test.csv`, exactly the layout of the download.

# %%
airletters_synth.write_dataset(manual, CLIPS_PER_CLASS)
print((manual / "train.csv").read_text().splitlines()[:3])
frames, fps = video.read_video(sorted((manual / "videos").glob("*.mp4"))[0])
notebook.show(notebook.write_gif(frames, workdir / "clip.gif", fps, scale=3))

# %% [markdown]
# ## Build the TFDS dataset
# The same builder as `tfds build datasets/airletters` (or `jaxlab data build airletters`): frames resampled to
# 15 fps, short side 48 px, stored as JPEG bytes in array_record files.

# %%
config = training.load_config("airletters:tiny", [f"data_dir={data_dir}", "mesh.data=-1", *OVERRIDES])
print(data_cli.build("airletters", manual, data_dir, config.dataset.split("/")[-1]))

# %% [markdown]
# ## Train the tiny config
# `mesh.data=-1` spreads the batch over every device this runtime has. Metrics go to `run/metrics.jsonl` and
# TensorBoard files; running the cell again resumes from the last checkpoint.

# %%
training.save_config(config, run)
training.train(airletters.make_task(config, run), config, run)

# %% [markdown]
# ## Results
# Top-1 / top-5 on the validation and test splits, the training curve and the test confusion matrix.

# %%
result = airletters.evaluate(config, run)
print({k: round(v, 4) for k, v in result.items()})
notebook.show(airletters.plot_training_curve(run / "metrics.jsonl", workdir / "training_curve.png"))
notebook.show(run / "eval" / "confusion_test.png", width=600)

# %% [markdown]
# ## Export to PyTorch
# `run/export/videomae/` is a transformers `VideoMAEForVideoClassification` folder.

# %%
exported, = airletters.export(config, run)
print(exported, sorted(p.name for p in exported.iterdir()))
# from transformers import VideoMAEForVideoClassification
# model = VideoMAEForVideoClassification.from_pretrained(exported)

# %% [markdown]
# ## Your data and weights
# Download the release from https://www.qualcomm.com/developer/software/airletters-dataset. The builder expects:

# %%
print(data_cli.load_builder_class("airletters").MANUAL_DOWNLOAD_INSTRUCTIONS)

# %% [markdown]
# Set the paths below and run the cell: it builds the 15 fps / 128 px dataset and trains VideoMAE-B (`paper`:
# 16 frames of 224 px), optionally from a local transformers VideoMAE folder. Use an accelerator runtime.

# %%
AIRLETTERS_DIR = ""    # the extracted release: videos/, train.csv, val.csv, test.csv
TFDS_DIR = ""          # where the built dataset goes
VIDEOMAE_DIR = ""      # optional: a transformers VideoMAE folder (config.json + *.safetensors)
if AIRLETTERS_DIR and TFDS_DIR:
  data_cli.build("airletters", AIRLETTERS_DIR, TFDS_DIR, "fps15_short128")
  paper = training.load_config("airletters:paper", [f"data_dir={TFDS_DIR}", f"pretrained={VIDEOMAE_DIR}"])
  paper_run = workdir / "paper"
  training.save_config(paper, paper_run)
  training.train(airletters.make_task(paper, paper_run), paper, paper_run)
  print(airletters.evaluate(paper, paper_run))
else:
  print("set AIRLETTERS_DIR and TFDS_DIR to train on the real release")
