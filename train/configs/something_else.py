"""Something-Else: STIN (+OIE, +NL), the I3D baseline and their fusion, on Something-Something boxes.

Variants:
  tiny               STIN+OIE+NL (d=64) on the synthetic release's `compositional_boxes`; under a minute on a CPU
  tiny_fewshot_base  the same on the synthetic few-shot base classes (`fewshot_boxes`)
  tiny_fewshot       a new head on the synthetic 5-shot set (--config.fine_tune_from=<tiny_fewshot_base run>)
  paper              STIN+OIE+NL, d=256, 4 boxes x 8 frames, on `compositional_boxes` (the paper's recipe)
  paper_i3d          I3D ResNet-50 + STIN+OIE+NL on `compositional` frames (--config.i3d.checkpoint=kinetics.safetensors)
  fewshot_base       STIN+OIE+NL on the 88 base classes (`fewshot_boxes`, base_train / base_validation)
  fewshot_5shot      the new head on the 5-shot set of the 86 novel classes (--config.fine_tune_from=BASE_RUN)
  fewshot_10shot     the same on the 10-shot set

The shuffled and one-object splits: `--config.dataset=something_else/shuffled_boxes` (or `oneobject_boxes`).
Override `--config.model_name` with stin | stin_oie | stin_oie_nl | i3d | i3d_stin_oie | i3d_stin_oie_nl, and
`--config.ensemble_with='["runs/a","runs/b"]'` at `jaxlab eval` for the late ensemble. `data_dir` is the TFDS
data dir holding `something_else/<config>`, built with
`jaxlab data build something_else --manual-dir M --data-dir D --config compositional_boxes`.
"""

import ml_collections

from jaxlab.training import base_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  c = base_config()
  c.data_dir = "runs/data"
  c.dataset = "something_else/compositional_boxes"
  c.train_split = "train"
  c.eval_split = "validation"
  c.data_workers = 0
  c.model_name = "stin_oie_nl"
  c.coord_feature_dim = 256
  c.num_boxes = 4
  c.num_frames = 16             # RGB frames of the I3D (every 2nd frame); STIN sees num_frames // 2 box frames
  c.image_size = 224
  c.dtype = "float32"
  # The original train.py: SGD, lr 0.01 divided by 10 at epochs 24, 35 and 45 of 50, batch 72.
  c.batch_size = 72
  c.eval_batch_size = 72
  c.epochs = 50                 # total_steps = epochs x (training clips // batch_size), set by the method
  c.lr = 0.01
  c.lr_steps = (24, 35, 45)
  c.lr_decay = 0.1
  c.momentum = 0.9
  c.weight_decay = 1e-4
  c.grad_clip = 5.0
  c.fine_tune_from = ""         # a base run's workdir: train only a new last classifier layer
  c.ensemble_with = ()          # other runs' workdirs, averaged with this one at evaluation
  c.i3d = ml_collections.ConfigDict(dict(
      checkpoint="",            # safetensors of the Kinetics I3D ResNet-50 state dict; frozen when given
      layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), stem_width=64,
      temporal_kernels=((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1))))
  c.log_every = 100
  c.checkpoint_every = 2000
  c.eval_every = 0

  if arg in ("tiny", "tiny_fewshot_base", "tiny_fewshot"):
    c.dataset = "something_else/compositional_boxes"
    c.coord_feature_dim = 64
    c.batch_size = 32
    c.eval_batch_size = 32
    c.epochs = 40
    c.lr = 0.05
    c.lr_steps = (30,)
    c.log_every = 20
    c.checkpoint_every = 1000
    if arg == "tiny_fewshot_base":
      c.dataset = "something_else/fewshot_boxes"
      c.train_split = "base_train"
      c.eval_split = "base_validation"
    elif arg == "tiny_fewshot":
      c.dataset = "something_else/fewshot_boxes"
      c.train_split = "novel_5shot_train"
      c.eval_split = "novel_5shot_validation"
      c.batch_size = 8
      c.eval_batch_size = 8
      c.epochs = 100              # 10 clips: one step per epoch
      c.lr_steps = ()
  elif arg == "paper":
    pass
  elif arg == "paper_i3d":
    c.dataset = "something_else/compositional"
    c.model_name = "i3d_stin_oie_nl"
    c.data_workers = 16
    c.dtype = "bfloat16"
  elif arg == "fewshot_base":
    c.dataset = "something_else/fewshot_boxes"
    c.train_split = "base_train"
    c.eval_split = "base_validation"
  elif arg in ("fewshot_5shot", "fewshot_10shot"):
    shots = arg.removeprefix("fewshot_")
    c.dataset = "something_else/fewshot_boxes"
    c.train_split = f"novel_{shots}_train"
    c.eval_split = f"novel_{shots}_validation"
  else:
    raise ValueError(f"unknown variant {arg!r}; use tiny, tiny_fewshot_base, tiny_fewshot, paper, paper_i3d, "
                     "fewshot_base, fewshot_5shot or fewshot_10shot")
  return c
