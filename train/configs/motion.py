"""Motion customisation of a text-to-video model (Materzynska et al., arXiv 2312.04966).

Variants:
  tiny    synthetic clips under WORKDIR/synthetic: a blob tracing a circle ("a blob doing the sks motion"),
          regularisation clips of it moving up and down; a small text-to-video base model made under
          WORKDIR/tiny-synthetic (a VAE trained on the clips' frames, a 2-level UNet3D pretrained on the
          up-and-down clips, a random text encoder); 8 frames of 32 px on 8 CPU devices
  paper   ZeroScope v2 576w from a local diffusers folder (--config.pretrained=...) and the original's settings:
          temporal layers + temporal convs + cross-attention K/V, prior preservation with lambda 0.5, high-level
          timestep sampling, AdamW 5e-6 (weight decay 0.01, grad clip 1), 3000 steps of 1 instance + 1
          regularisation clip, 16 frames of 384 px at 24 fps, bf16 compute, remat

  jaxlab train motion --config train/configs/motion.py:paper --workdir runs/motion-drum \
      --config.pretrained=/models/zeroscope_v2_576w --config.videos=/data/drumming_fingers \
      --config.reg_videos=/data/jester_prior
  jaxlab eval motion --workdir runs/motion-drum --config.eval_prompts=prompts.txt --config.eval_clip=/models/clip \
      --config.eval_classifier=runs/jester-classifier --config.eval_motion_label="Drumming Fingers"
"""

import ml_collections

from jaxlab.training import base_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  c = base_config()
  c.pretrained = ""                 # a local TextToVideoSDPipeline folder, 'tiny-synthetic' or 'tiny-random'
  # Data: folders of clips (captions in clip.txt beside clip.mp4, else text.json, else the fallback).
  c.videos = ""                     # the motion's clips, or 'synthetic'
  c.reg_videos = ""                 # regularisation clips (caption: sidecar, else the file name, _ as spaces)
  c.fallback_prompt = ""            # caption of instance clips without one; "{token}" stands for the token
  c.token = "sks"                   # the motion's rare word; every instance caption must hold it
  c.on_bad_clip = "skip"            # an undecodable or caption-less clip: 'skip' (listed) or 'fail'
  c.num_frames = 16
  c.resolution = 384                # short side resized to this, then a centre square crop
  c.fps = 24.0                      # frames taken every round(native fps / fps) frames
  c.vae_batch = 8                   # frames per VAE call when the clips are encoded (once, cached)
  # The method.
  c.trainable_modules = ("cross", "temporal", "temp_convs")   # and 'all'
  c.caption_dropout = 0.0           # share of clips trained with the empty caption (the tiny base's pretraining)
  c.prior_lambda = 0.5              # 0 (or no reg_videos): no prior preservation
  c.timestep_sampling = "high-level"  # p(t) ~ 1 - 0.5 cos(pi t / T); 'low-level', 'uniform'
  c.learned_token_init = ""         # ablation: learn the token's input embedding, initialised from this word
  c.lr = 5e-6                       # constant, no warm-up
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.weight_decay = 0.01
  c.grad_clip = 1.0
  c.total_steps = 3000
  c.batch_size = 1                  # instance clips per step (each with one regularisation clip)
  c.mesh.data = 1
  c.dtype = "bfloat16"              # compute dtype of the UNet and the text encoder; parameters stay float32
  c.remat_policy = "nothing_saveable"
  c.log_every = 50
  c.checkpoint_every = 500
  # Evaluation (`jaxlab eval motion`): videos for `eval_prompts` (lines 'seed,prompt') from the tuned and the base
  # model, CLIP text alignment with `eval_clip` (a local CLIPModel folder) and motion accuracy with
  # `eval_classifier` (the workdir of a `jaxlab train airletters`-style run) for class `eval_motion_label`.
  c.eval_prompts = ""
  c.eval_clip = ""
  c.eval_classifier = ""
  c.eval_motion_label = ""
  c.eval_scheduler = "dpmsolver++"  # or 'ddim', 'auto' (the folder's)
  c.eval_steps = 50
  c.eval_guidance = 9.0
  c.eval_noise = "torch"            # initial latents as torch.manual_seed(seed) draws them (diffusers' pipeline)
  c.eval_batch_size = 1
  c.eval_fps = 8.0                  # frame rate of the written videos
  # `videos='synthetic'` and `pretrained='tiny-synthetic'` (the tiny variant).
  c.synthetic = ml_collections.ConfigDict(dict(
      num_clips=8, num_frames=16, caption="a blob doing the {token} motion", reg_caption="a blob moving up and down"))
  # The tiny base: its VAE, then its UNet pretrained on the regularisation clips with 10% empty captions (so that
  # classifier-free guidance has an unconditional model to steer from; without them guidance amplifies noise).
  c.tiny_pipeline = ml_collections.ConfigDict(dict(vae_widths=(16, 32, 32), vae_steps=100, vae_batch_size=32,
                                                   vae_lr=2e-3, unet_widths=(16, 32), unet_steps=200,
                                                   caption_dropout=0.1, seed=0))

  if arg == "tiny":
    c.pretrained = "tiny-synthetic"
    c.videos = "synthetic"
    c.num_frames = 8
    c.resolution = 32
    c.fps = 8.0
    c.vae_batch = 32
    c.lr = 2e-3
    c.weight_decay = 0.0
    c.total_steps = 140
    c.batch_size = 8                # one instance and one regularisation clip per CPU device
    c.mesh.data = 8
    c.dtype = "float32"
    c.remat_policy = ""
    c.log_every = 20
    c.checkpoint_every = 140
    c.eval_steps = 10
    c.eval_guidance = 3.0
    c.eval_batch_size = 8
  elif arg != "paper":
    raise ValueError(f"unknown variant {arg!r}; use tiny or paper")
  return c
