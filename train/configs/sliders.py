"""Concept Sliders: a LoRA that moves one attribute of a diffusion model's images by a scale.

Variants:
  tiny      a small random SD pipeline written to WORKDIR/tiny-random, the age slider in short prompts
            (`sliders/tiny.yaml`) at 16 px with 10-step x_t chains; about a minute on a laptop CPU
  paper     SD v1.4 from a local diffusers folder (--config.pretrained=...), the original's config.yaml: LoRA rank 4,
            alpha 1, c3lier / noxattn, AdamW 2e-4 constant, 1000 iterations, batch 1, 50-step x_t chains with
            guidance 3, and the age slider (eta 4, 512 px)
  paper_xl  the same on SDXL base 1.0 (config-xl.yaml; also trained at 512 px), evaluated as generate_images_xl.py
            does (start_noise 750, guidance 5, 1024 px, one image per prompt)

  jaxlab train sliders --config sliders:paper --workdir runs/age --config.pretrained=/models/stable-diffusion-v1-4
  jaxlab train sliders --config sliders:paper --workdir runs/eyes --config.pretrained=... \
      --config.images=/data/eyesize --config.folders='small, big' --config.scales='-1, 1'

Text sliders read the original's prompts YAML (`--config.prompts`); image sliders (`--config.images`, one
sub-folder per scale with images of the same names) read it for their prompts, which are all empty by default.
The released sliders were trained with preservation attributes (`--config.attributes='white, black, asian,
hispanic, indian'`, sliders#60), each prompt of the YAML prefixed with each attribute.
"""

from pathlib import Path

import ml_collections

from jaxlab.training import base_config

PROMPTS = Path(__file__).resolve().parent / "sliders"


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  c = base_config()
  c.pretrained = ""               # a local diffusers SD or SDXL folder, or 'tiny-random' / 'tiny-random-xl'
  c.prompts = str(PROMPTS / "age.yaml")  # the prompts YAML; image sliders: "" = one entry of empty prompts
  c.attributes = ""               # e.g. 'male, female': each prompt once per attribute, one pair drawn per step
  c.images = ""                   # image sliders: the folder of the per-scale image folders
  c.folders = "verylow, low, high, veryhigh"
  c.scales = "-2, -1, 1, 2"       # one integer per folder; every scale needs its negative
  c.network = "c3lier"            # c3lier (attention + resnet / sampler convs) or lierla (attention only)
  c.train_method = "noxattn"      # noxattn, innoxattn, selfattn, xattn, xattn-strict, full, noxattn-hspace(-last)
  c.rank = 4
  c.alpha = 1.0
  c.max_denoising_steps = 50      # the DDIM chain that makes x_t
  c.start_guidance = 3.0          # its classifier-free guidance (hard-coded 3 in the original)
  c.timestep_mode = "original"    # original: query at 999 - 20 k, 19 steps above the latent's 980 - 20 k; exact
  c.resolution = 0                # 0: the prompts file's (text), 256 (SD) / 512 (SDXL) for image sliders
  c.iterations = c.get_ref("total_steps")
  c.iterations = 1000
  c.optimizer = "adamw"           # adamw or adam (torch's defaults: betas 0.9 / 0.999, eps 1e-8)
  c.lr = 2e-4
  c.weight_decay = 0.01           # torch.optim.AdamW's default
  c.lr_scheduler = "constant"     # constant or cosine (to lr / 100, as the original)
  c.batch_size = 1
  c.dtype = "float32"             # compute dtype of the UNet and text encoders; parameters stay float32
  c.remat_policy = ""             # e.g. "nothing_saveable"
  c.log_every = 50
  c.checkpoint_every = 500
  # Evaluation (`jaxlab eval sliders`): the slider's effect on fixed latents; with `eval_prompts` (the original's
  # prompt CSVs: case_number, prompt, evaluation_seed, concept) images at every scale as
  # eval/step_N/{scale}/{case}_{k}.png, and with `eval_clip` (a local CLIPModel folder) their CLIP scores.
  c.eval_scales = "-2, -1, 0, 1, 2"
  c.eval_prompts = ""
  c.eval_clip = ""
  c.eval_clip_prompt = ""         # the attribute text of the CLIP score; "" = the first entry's positive prompt
  c.eval_attributes = ""          # preserved attributes for the interference figure; "" = `attributes`
  c.eval_start_noise = 850        # the LoRA is off while the timestep is above this
  c.eval_steps = 50
  c.eval_guidance = 7.5
  c.eval_num_images = 2
  c.eval_size = 512
  c.eval_noise = "torch"          # initial latents as torch.manual_seed(evaluation_seed) draws them
  c.eval_batch_size = 4

  if arg == "tiny":
    c.pretrained = "tiny-random"
    c.prompts = str(PROMPTS / "tiny.yaml")
    c.max_denoising_steps = 10
    c.iterations = 40
    c.lr = 2e-3
    c.batch_size = 8               # one per device on the demo's 8 CPU devices
    c.log_every = 10
    c.checkpoint_every = 40
    c.eval_steps = 10
    c.eval_size = 16
    c.eval_start_noise = 1000
    c.eval_num_images = 1
  elif arg == "paper_xl":
    # generate_images_xl.py: the pipeline's defaults (guidance 5, 1024 px), one image per prompt, start_noise 750.
    c.eval_start_noise = 750
    c.eval_guidance = 5.0
    c.eval_size = 1024
    c.eval_num_images = 1
  elif arg != "paper":
    raise ValueError(f"unknown variant {arg!r}; use tiny, paper or paper_xl")
  return c
