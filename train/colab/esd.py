# Source of esd.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # ESD: erasing a concept from Stable Diffusion
#
# Gandikota et al., ICCV 2023: fine-tune part of the UNet so that its prediction for a concept becomes the frozen
# model's prediction guided away from that concept (ESD-x trains the cross-attention, ESD-u everything else).
# This notebook erases "van gogh" from a small random SD pipeline (the `tiny` config), shows images before and
# after, and exports the erased UNet for diffusers. The frozen UNet is never copied: only the selected
# parameters train. About 2 minutes on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/esd"
OVERRIDES = []  # --config.KEY=VALUE settings, e.g. ["steps=50"]; the tiny config trains 100 steps

# %%
from pathlib import Path

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.diffusion import adapters
from jaxlab.methods import esd

run = Path(WORKDIR)

# %% [markdown]
# ## Train ESD-x on the tiny random pipeline
# `pretrained='tiny-random'` writes a random diffusers pipeline (16 px images) into the run folder first.
# Each step makes x_t by partial DDIM with guidance, as the original code does.

# %%
config = training.load_config("esd:tiny", ["mesh.data=-1", *OVERRIDES])
training.save_config(config, run)
setup = esd.make_setup(config, run)
result = training.train(esd.make_task(config, run, setup), config, run)
print({k: round(v, 4) for k, v in result.items() if isinstance(v, float)})
notebook.show(notebook.plot_metrics(run, ["train/loss"], run / "loss.png"))

# %% [markdown]
# ## Before and after
# Top row: the original UNet; bottom row: the erased one, from the same noise, for the concept (left two) and
# for `preserve_prompt` (right two). `erase_gap` is the ESD loss on fixed latents over its value before training.

# %%
trainable, step = adapters.restore(run, setup.adapter)
grid, prompts = esd.before_after(config, setup, trainable, run / "before_after.png")
print(prompts)
notebook.show(grid, width=512)

# %% [markdown]
# ## Export to diffusers
# `export/unet/` loads with `UNet2DConditionModel.from_pretrained`; `export/esd.safetensors` holds the changed
# tensors alone, for `unet.load_state_dict(tensors, strict=False)`.

# %%
for path in esd.export(config, run):
  print(path)
# from diffusers import UNet2DConditionModel
# unet = UNet2DConditionModel.from_pretrained(run / "export" / "unet")

# %% [markdown]
# ## Your weights
# A local diffusers Stable Diffusion folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
# `scheduler/`, safetensors weights), e.g. `StableDiffusionPipeline.from_pretrained("CompVis/stable-diffusion-v1-4")
# .save_pretrained(DIR)` run once where the network is. The paper: ESD-x, eta 1, 1000 Adam steps at 1e-5,
# batch 1, 512 px. Use an accelerator runtime.

# %%
SD_DIR = ""              # the diffusers pipeline folder
CONCEPT = "Van Gogh"
if SD_DIR:
  paper = training.load_config("esd:paper", [f"pretrained={SD_DIR}", f"concept={CONCEPT}"])
  paper_run = run.parent / "esd_paper"
  training.save_config(paper, paper_run)
  training.train(esd.make_task(paper, paper_run), paper, paper_run)
  print(esd.export(paper, paper_run))
else:
  print("set SD_DIR to a Stable Diffusion folder to erase a concept from the real model")
