# Source of spelling.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # CLIP spelling: learning and forgetting to read
#
# Materzynska et al., CVPR 2022 ("Disentangling visual and written concepts in CLIP"): one linear projection W
# of frozen CLIP features, trained on (photo, class prompt, word image, word, photo with the word drawn on it)
# tuples, either ties written words to their images ("learn to spell") or makes a photo with a word on it look
# like the plain photo ("forget to spell", which defends against typographic attacks). This notebook encodes
# generated tuples with a small random CLIP, trains W with both presets on the same stored features and
# compares them with raw CLIP. About 2 minutes on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/spelling"
OVERRIDES = []  # --config.KEY=VALUE settings, e.g. ["total_steps=200"]; the tiny config trains 600 steps

# %%
from pathlib import Path

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.data import spelling_sources
from jaxlab.methods import spelling

workdir = Path(WORKDIR)
features = workdir / "features"
typographic = spelling_sources.write_typographic_set(workdir / "typographic", count=24)

# %% [markdown]
# ## Train W twice on one feature store
# The first run encodes the tuples once into `features/` (ids, strings and image keys beside them); the second
# reuses it. `export` writes `projection.npy` (z = x @ W.T, then L2-normalise) and `results.md`.

# %%
runs = {}
for preset in ("learn", "forget"):
  config = training.load_config("spelling:tiny", [f"features_dir={features}", f"typographic_dir={typographic}",
                                                  f"preset={preset}", "mesh.data=-1", *OVERRIDES])
  runs[preset] = workdir / preset
  training.save_config(config, runs[preset])
  training.train(spelling.make_task(config, runs[preset]), config, runs[preset])
  print(spelling.export(config, runs[preset]))

# %% [markdown]
# ## What the tuples look like

# %%
notebook.show(spelling.sample_sheet(features, workdir / "samples.png"))

# %% [markdown]
# ## Results
# Top-1 in percent on the validation tuples, raw CLIP beside each projection (a2b: the first of the pair is the
# query). Learn-to-spell ties the photo with a word to the word image; forget-to-spell ties it to the plain
# photo. A random CLIP knows no classes, so zero-shot accuracy of raw CLIP sits at chance.

# %%
for preset, run in runs.items():
  notebook.show_markdown(f"### {spelling.PRESET_NAMES[preset]}\n\n" + (run / "results.md").read_text())
notebook.show(notebook.plot_metrics(runs["learn"], ["train/loss"], workdir / "loss.png"))

# %% [markdown]
# ## Your data and weights
# The paper's setting: ViT-B/32 from a local transformers folder (it brings its own tokenizer), ImageNet as
# `<path>/{train,val}/<wnid>/*.JPEG` (or `data.source=tfds` with a TFDS data_dir), and optionally the
# typographic-attack set (`annotations.json` + `images/`). Set the paths and run the cell.

# %%
CLIP_DIR = ""         # e.g. a local openai/clip-vit-base-patch32 (config.json + model.safetensors)
IMAGENET_DIR = ""     # <path>/train/<wnid>/*.JPEG and <path>/val/<wnid>/*.JPEG
FEATURES_DIR = ""     # where the encoded features go (shared by both presets)
if CLIP_DIR and IMAGENET_DIR and FEATURES_DIR:
  paper = training.load_config("spelling:paper", [f"clip.path={CLIP_DIR}", f"data.path={IMAGENET_DIR}",
                                                  f"features_dir={FEATURES_DIR}", "preset=forget"])
  paper_run = workdir / "paper_forget"
  training.save_config(paper, paper_run)
  training.train(spelling.make_task(paper, paper_run), paper, paper_run)
  print(spelling.export(paper, paper_run))
else:
  print("set CLIP_DIR, IMAGENET_DIR and FEATURES_DIR to train on ImageNet with a real CLIP")
