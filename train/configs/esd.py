"""ESD concept erasure.

Variants:
  tiny    a small random SD pipeline written to WORKDIR/tiny-random (`pretrained='tiny-random'`), ESD-x on
          "van gogh" at 16 px; about a minute on a laptop CPU
  paper   SD v1.4 from a local diffusers folder (--config.pretrained=...), the paper's settings: ESD-x
          (train_method 'xattn'; 'noxattn' is ESD-u, used for nudity), eta 1, 1000 steps of Adam at 1e-5,
          batch 1, x_t from 50-step DDIM with guidance 3 at 512 px

  jaxlab train esd --config train/configs/esd.py:paper --workdir runs/esd-vangogh \
      --config.pretrained=/models/stable-diffusion-v1-4 --config.concept="Van Gogh"
"""

import ml_collections

from jaxlab.training import base_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  c = base_config()
  c.pretrained = ""               # a local diffusers Stable Diffusion folder, or 'tiny-random'
  c.concept = "Van Gogh"          # or a shortcut of the original code: i2p, allartist, artifact
  c.separator = ""                # e.g. "," to erase each listed concept (one drawn per example)
  c.erase_from = ""               # erase the concept from this one (same separator); "" = the paper's objective
  c.train_method = "xattn"        # xattn (ESD-x), noxattn (ESD-u), selfattn, full, notime, xattn-strict, ...
  c.negative_guidance = 1.0       # eta
  c.start_guidance = 3.0          # CFG scale of the partial sampling that makes x_t
  c.ddim_steps = 50               # length of the DDIM chain that makes x_t
  c.xt_mode = "original"          # 'original' (CompVis train-esd.py) or 'diffusers' (esd_sd.py)
  c.steps = c.get_ref("total_steps")
  c.steps = 1000
  c.lr = 1e-5
  c.batch_size = 1
  c.image_size = 512
  c.dtype = "float32"             # compute dtype of the UNet and text encoder; parameters stay float32
  c.remat_policy = ""             # e.g. "nothing_saveable"
  c.log_every = 50
  c.checkpoint_every = 500
  # Evaluation (`jaxlab eval esd`): erasure metrics on fixed latents, and with `eval_prompts` images before and
  # after, CLIP-scored with `eval_clip` (a local CLIPModel folder) and an optional classifier
  # ('imagenet:DIR' or 'nudenet:DIR').
  c.preserve_prompt = "a photograph of a city street"
  c.eval_prompts = ""             # CSV: prompt, evaluation_seed, case_number
  c.eval_clip = ""
  c.eval_classifier = ""
  c.eval_steps = 50
  c.eval_guidance = 7.5
  c.eval_num_images = 1
  c.eval_noise = "torch"          # initial latents as torch.manual_seed(evaluation_seed) draws them
  c.eval_batch_size = 4

  if arg == "tiny":
    c.pretrained = "tiny-random"
    c.concept = "van gogh"
    c.image_size = 16
    c.ddim_steps = 10
    c.steps = 100
    c.lr = 1e-3
    c.batch_size = 8               # one per device on the demo's 8 CPU devices
    c.log_every = 10
    c.checkpoint_every = 100
    c.eval_steps = 10
  elif arg != "paper":
    raise ValueError(f"unknown variant {arg!r}; use tiny or paper")
  return c
