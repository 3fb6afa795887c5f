"""AirLetters video classification.

Variants:
  tiny            a small video ViT on 16 frames of 32 px, synthetic data; a few minutes on a laptop CPU
  tiny_cnn        the same with a small 3D ResNeXt (XLA's 3D convolutions are slow on CPU: use an accelerator)
  paper           VideoMAE-B, 16 frames, 224 px (optionally --config.pretrained=/path/to/videomae folder)
  resnext101      3D ResNeXt-101, 32 frames, 112 px

Paths: `data_dir` is the TFDS data dir holding `airletters/<config>` built by
`jaxlab data build airletters --manual-dir M --data-dir D --config fps15_short128`.
"""

import ml_collections

from jaxlab.training import base_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  c = base_config()
  c.data_dir = "runs/data"
  c.dataset = "airletters/fps15_short128"
  c.train_split = "train"
  c.eval_split = "validation"
  c.data_workers = 0            # grain decoding processes (0: threads in the main process)
  c.eval_batch_size = 64
  c.num_frames = 16
  c.image_size = 224
  c.label_smoothing = 0.1
  c.crop_scale = (0.7, 1.0)     # random resized crop: fraction of the frame's area kept (training)
  c.lr = 1e-3
  c.final_lr_fraction = 0.01
  c.warmup_steps = 500
  c.weight_decay = 0.05
  c.adam_b2 = 0.999
  c.grad_clip = 1.0
  c.dtype = "bfloat16"          # compute dtype; parameters stay float32
  c.remat_policy = ""           # e.g. "nothing_saveable" to trade compute for memory
  c.pretrained = ""             # a local transformers VideoMAE folder to start from (video_vit only)
  c.model_name = "video_vit"
  c.model = ml_collections.ConfigDict()

  if arg in ("tiny", "tiny_cnn"):
    c.dataset = "airletters/fps15_short48"
    c.num_frames = 16
    c.image_size = 32
    c.batch_size = 32
    c.eval_batch_size = 64
    c.total_steps = 1000
    c.warmup_steps = 50
    c.log_every = 25
    c.checkpoint_every = 200
    c.dtype = "float32"
    c.mesh.data = 8
    if arg == "tiny_cnn":
      c.lr = 2e-3
      c.weight_decay = 1e-4
      c.model_name = "resnext3d"
      c.model = ml_collections.ConfigDict(dict(
          layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), cardinality=4, stem_width=16, dropout=0.2))
    else:
      c.model = ml_collections.ConfigDict(dict(
          patch_size=8, tubelet_size=2, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
          intermediate_size=128, hidden_dropout_prob=0.0))
  elif arg == "paper":
    # VideoMAE-B fine-tuning recipe (VideoMAE's SSv2 settings; the AirLetters paper does not state its own).
    c.batch_size = 64
    # Keep the layers' matmul outputs, recompute norms, GELU and attention: XLA's estimate of the step's
    # temporaries at 8 clips per device (bf16) drops from 13.8 to 5.4 GiB (2.1 GiB with 'nothing_saveable'),
    # so the paper batch fits 16 GiB chips (v5e) on 8 of them.
    c.remat_policy = "dots_with_no_batch_dims_saveable"
    c.total_steps = 40 * 128_745 // 64   # 40 epochs of the 128,745 training clips
    c.warmup_steps = 5 * 128_745 // 64
    c.lr = 5e-4 * c.batch_size / 256
    c.checkpoint_every = 2000
    c.log_every = 100
    c.eval_every = 10_000
    c.model = ml_collections.ConfigDict(dict(
        patch_size=16, tubelet_size=2, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_dropout_prob=0.0))
  elif arg == "resnext101":
    c.model_name = "resnext3d"
    c.num_frames = 32
    c.image_size = 112
    c.batch_size = 64
    c.lr = 1e-3
    c.weight_decay = 1e-4
    c.total_steps = 60 * 128_745 // 64
    c.warmup_steps = 2 * 128_745 // 64
    c.checkpoint_every = 2000
    c.log_every = 100
    c.eval_every = 10_000
    c.model = ml_collections.ConfigDict(dict(
        layers=(3, 4, 23, 3), widths=(128, 256, 512, 1024), cardinality=32, stem_width=64, dropout=0.5))
  else:
    raise ValueError(f"unknown variant {arg!r}; use tiny, tiny_cnn, paper or resnext101")
  return c
