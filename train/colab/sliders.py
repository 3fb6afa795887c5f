# Source of sliders.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # Concept Sliders: a LoRA that moves one attribute by a scale
#
# Gandikota et al., ECCV 2024: a low-rank adapter on the UNet, trained so that at scale +1 its noise prediction
# for a target prompt moves by eta x (positive - unconditional) of the frozen model, and at -1 the other way.
# This notebook trains the age slider on a small random SD pipeline (the `tiny` config), draws a scale strip,
# trains an image slider from paired image folders, composes the two, and exports the LoRA for diffusers and
# ComfyUI / A1111. Only the LoRA factors train; the UNet is a frozen input. A few minutes on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/sliders"
OVERRIDES = []  # --config.KEY=VALUE settings of the text slider, e.g. ["iterations=100"]; tiny trains 40
IMAGE_OVERRIDES = ["iterations=20"]  # those of the image slider
SCALES = [-2, -1, 0, 1, 2]

# %%
from pathlib import Path

import numpy as np
from PIL import Image

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.diffusion import adapters, pipeline, tuning
from jaxlab.methods import sliders

run = Path(WORKDIR)

# %% [markdown]
# ## A text slider
# `pretrained='tiny-random'` writes a random diffusers pipeline (16 px images) into the run folder first. The
# prompts are the original's YAML format (`train/configs/sliders/tiny.yaml`: target, positive, unconditional,
# neutral, action, guidance_scale). Each step makes x_t by a partial DDIM chain with the LoRA active, as the
# original does.

# %%
config = training.load_config("sliders:tiny", ["mesh.data=-1", *OVERRIDES])
text_run = run / "text"
training.save_config(config, text_run)
text = sliders.make_setup(config, text_run)
result = training.train(sliders.make_task(config, text_run, text), config, text_run)
print({k: round(v, 4) for k, v in result.items() if isinstance(v, float) and k.count("/") == 1})
notebook.show(notebook.plot_metrics(text_run, ["train/loss"], text_run / "loss.png"))

# %% [markdown]
# ## The scale strip
# One prompt and seed per row, the slider at each scale left to right. The LoRA is off while the timestep is
# above `start_noise` (the original's 850 for SD 1.x), so the layout is the base model's and the slider edits it.
# One compiled sampler serves every scale.

# %%
age, _ = adapters.restore(text_run, text.adapter)
age = pipeline.place(age)
prompts = [e.target for e in text.entries][:2]
shape = text.pipe.latent_shape(1, config.eval_size, config.eval_size)
noise = np.concatenate([pipeline.latent_noise(seed, shape) for seed in range(len(prompts))])
strips = [text.pipe.generate(prompts, noise, config.eval_steps, config.eval_guidance,
                             loras=[(text.adapter, age, s)], start_noise=config.eval_start_noise) for s in SCALES]
tuning.image_grid([[strip[i] for strip in strips] for i in range(len(prompts))], scale=4).save(run / "strip.png")
notebook.show(run / "strip.png", width=640)

# %% [markdown]
# ## An image slider
# Folders of paired images with the same file names, one folder per scale (here `low` at -1 and `high` at +1:
# made-up pictures, darker and brighter versions of the same random image). The loss is the original's two
# terms: the LoRA at +s regressed onto the noise added to the +s image, and at -s for the -s image, with the same
# noise for both.

# %%
pairs = run / "pairs"
rng = np.random.default_rng(0)
for name in ("a.png", "b.png", "c.png"):
  picture = rng.integers(64, 192, size=(32, 32, 3))
  for folder, shift in (("low", -60), ("high", 60)):
    (pairs / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(picture + shift, 0, 255).astype(np.uint8)).save(pairs / folder / name)

image_config = training.load_config("sliders:tiny", [
    "mesh.data=-1", "prompts=", f"images={pairs}", "folders=low, high", "scales=-1, 1", "resolution=16",
    *IMAGE_OVERRIDES])
image_run = run / "image"
training.save_config(image_config, image_run)
image = sliders.make_setup(image_config, image_run)
image_result = training.train(sliders.make_task(image_config, image_run, image), image_config, image_run)
print({k: round(v, 4) for k, v in image_result.items() if isinstance(v, float)})

# %% [markdown]
# ## Two sliders at once
# Each LoRA comes with its own scale; both apply in the same sampler run (here the age slider at +2 with the
# brightness slider at -1, 0 and +1).

# %%
brightness, _ = adapters.restore(image_run, image.adapter)
brightness = pipeline.place(brightness)
composed = [text.pipe.generate(prompts[:1], noise[:1], config.eval_steps, config.eval_guidance,
                               loras=[(text.adapter, age, 2.0), (image.adapter, brightness, s)],
                               start_noise=config.eval_start_noise)[0] for s in (-1, 0, 1)]
tuning.image_grid([composed], scale=4).save(run / "composed.png")
notebook.show(run / "composed.png", width=384)

# %% [markdown]
# ## Export
# `export/lora.safetensors` is the diffusers / PEFT layout (`pipe.load_lora_weights(folder,
# weight_name="lora.safetensors")`); `export/lora_kohya.safetensors` the `lora_unet_*` layout that ComfyUI and
# A1111 read. `jaxlab generate --lora FILE:SCALE` reads either.

# %%
paths = sliders.export(config, text_run)
print(*paths, sep="\n")
try:
  from diffusers import StableDiffusionPipeline
except ImportError:
  print("diffusers is not installed: `pip install diffusers peft` to load the export there")
else:
  reference = StableDiffusionPipeline.from_pretrained(text_run / "tiny-random")
  reference.load_lora_weights(str(text_run / "export"), weight_name="lora.safetensors", adapter_name="age")
  reference.set_adapters(["age"], adapter_weights=[1.0])
  print("loaded in diffusers:", reference.get_active_adapters())

# %% [markdown]
# ## Your weights
# A local diffusers Stable Diffusion 1.x or SDXL folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
# `tokenizer/`, `scheduler/`, safetensors weights), saved once where the network is. The paper: rank 4, alpha 1,
# `noxattn`, AdamW 2e-4, 1000 iterations, batch 1, the age slider at eta 4 (`sliders:paper`; `sliders:paper_xl`
# for SDXL base 1.0). Use an accelerator runtime.

# %%
SD_DIR = ""              # the diffusers pipeline folder
VARIANT = "paper"        # paper (SD 1.x) or paper_xl (SDXL)
if SD_DIR:
  paper = training.load_config(f"sliders:{VARIANT}", [f"pretrained={SD_DIR}"])
  paper_run = run.parent / f"sliders_{VARIANT}"
  training.save_config(paper, paper_run)
  training.train(sliders.make_task(paper, paper_run), paper, paper_run)
  print(sliders.export(paper, paper_run))
else:
  print("set SD_DIR to a Stable Diffusion folder to train a slider on the real model")
