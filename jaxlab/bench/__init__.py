"""`jaxlab bench MODEL`: our train step beside the PyTorch reference on the same config, in one run."""

import importlib

from jaxlab.errors import UserError

BENCHES = {
    "video_vit": "jaxlab.bench.video_vit",
    "clip": "jaxlab.bench.clip",
    "unet2d": "jaxlab.bench.unet2d",
    "stin": "jaxlab.bench.stin",
    "lora": "jaxlab.bench.lora",
    "data": "jaxlab.bench.data",
    "vae": "jaxlab.bench.vae",
    "cnn3d": "jaxlab.bench.cnn3d",
    "unet3d": "jaxlab.bench.unet3d",
}


def run_all(out, steps: int = 10, dry_run: bool = False):
  from jaxlab.bench import suite
  return suite.run_all(out, steps=steps, dry_run=dry_run)


def run(model: str, **options) -> dict:
  if model not in BENCHES:
    raise UserError(f"no benchmark for {model!r}; choose one of {', '.join(BENCHES)}, or all")
  from jaxlab.bench import common
  common.reserve_gpu_memory_for_the_reference()
  try:
    module = importlib.import_module(BENCHES[model])
  except ModuleNotFoundError as e:
    if e.name == BENCHES[model]:
      raise UserError(f"the {model} benchmark is not part of this checkout yet") from None
    raise
  return module.run(**options)
