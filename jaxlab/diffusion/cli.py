"""`jaxlab generate`: images or videos from a local diffusers SD, SDXL or text-to-video folder, one prompt or a file.

  jaxlab generate --pipeline DIR --prompt "a photo of a cat" --seed 0 [--num-images 4] --out DIR
  jaxlab generate --pipeline DIR --prompts prompts.csv --out DIR      # <case_number>_<k>.png per row
  jaxlab generate --pipeline T2V_DIR --prompt "A clown doing the sks sign." --num-frames 16 --out DIR
      # a TextToVideoSDPipeline folder (read from model_index.json): <case>_<k>.mp4, .gif and _grid.png

`--unet DIR` swaps in another UNet folder (e.g. an ESD export), `--unet-weights FILE.safetensors` puts a file
of changed tensors (keyed by diffusers names) over the pipeline's UNet. LoRAs (diffusers/PEFT or kohya files,
e.g. a slider) go on top, each with its scale, all in one compiled sampler:

  jaxlab generate ... --lora age.safetensors:2 [--lora smile.safetensors:1] --start-noise 800
  jaxlab generate ... --lora age.safetensors --scales=-2,-1,0,1,2      # one strip per image, scales left to right
"""

from pathlib import Path
import sys

from jaxlab.errors import UserError


def register(subparsers) -> None:
  from jaxlab.cli import at_least
  p = subparsers.add_parser("generate", help="text-to-image or -video with a local diffusers folder (SD, SDXL, "
                            "text-to-video; DDIM or DPM-Solver++, CFG)")
  p.add_argument("--pipeline", required=True, help="a local diffusers pipeline folder (model_index.json, unet/, ...)")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--prompt", help="one prompt")
  source.add_argument("--prompts", help="a CSV with prompt, evaluation_seed, case_number; or a .txt of seed,prompt "
                      "lines")
  p.add_argument("--seed", type=int, default=0, help="the seed for --prompt")
  p.add_argument("--num-images", type=at_least(1), default=1, help="images (or videos) per prompt")
  p.add_argument("--steps", type=at_least(1), default=50, help="sampling steps")
  p.add_argument("--scheduler", choices=["auto", "ddim", "dpmsolver++"], default="auto",
                 help="auto: the folder's scheduler class (DPM-Solver++ for DPMSolverMultistepScheduler, else DDIM)")
  p.add_argument("--num-frames", type=at_least(1), default=16, help="frames per video (text-to-video folders)")
  p.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
  p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
  p.add_argument("--negative-prompt", default=None,
                 help="default: the empty prompt (SD), zero conditioning (SDXL), as diffusers")
  p.add_argument("--height", type=int, default=None)
  p.add_argument("--width", type=int, default=None)
  p.add_argument("--batch-size", type=at_least(1), default=1, help="prompts per compiled call")
  p.add_argument("--noise", choices=["jax", "torch"], default="jax",
                 help="initial latents from JAX's RNG, or torch.manual_seed(seed) as the papers' scripts")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="UNet/text compute dtype")
  p.add_argument("--unet", default=None, help="a UNet folder to use instead of the pipeline's")
  p.add_argument("--unet-weights", default=None, help="safetensors of changed UNet tensors (diffusers names)")
  p.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                 help="a LoRA safetensors file (diffusers/PEFT or kohya) and its scale (default 1); repeatable")
  p.add_argument("--start-noise", type=int, default=None,
                 help="LoRAs are off while the timestep is above this (the sliders' start_noise, e.g. 800)")
  p.add_argument("--scales", default=None,
                 help="scales for the LoRAs given without one, e.g. --scales=-2,-1,0,1,2: each image becomes a strip")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--overwrite", action="store_true", help="regenerate images that already exist")
  p.set_defaults(handler=_generate)


def _number_list(text: str, flag: str) -> list[float]:
  try:
    return [float(v) for v in text.split(",")]
  except ValueError:
    raise UserError(f"{flag} {text!r}: give numbers separated by commas, e.g. -2,-1,0,1,2") from None


def _lora_spec(spec: str) -> tuple[str, float | None]:
  """`FILE[:SCALE]` -> (FILE, SCALE or None)."""
  path, colon, scale = spec.rpartition(":")
  if colon and path:
    return path, _number_list(scale, f"--lora {spec}: the scale")[0]
  return spec, None


def _load_loras(pipe, specs):
  """(LoRA, params on the device, scale or None) for each `--lora`."""
  from jaxlab.diffusion import adapters, lora, pipeline
  from jaxlab.models import weights
  family = weights.family_of(pipe.unet)
  boxed = adapters.abstract_params(pipe.unet, *family.dummy_inputs(pipe.unet))
  loaded = []
  for spec in specs:
    path, scale = _lora_spec(spec)
    adapter, params = lora.LoRA.load(path, boxed, family.naming)
    loaded.append((adapter, pipeline.place(params), scale))
  return loaded


def _generate(args, overrides) -> int:
  import dataclasses

  import jax.numpy as jnp

  from jaxlab.diffusion import finetune, generate, pipeline, schedules
  from jaxlab.models import load_pretrained, weights

  # The user's files are read first: a mistake in them is found before the pipeline loads.
  if Path(args.out).is_file():
    raise UserError(f"--out {args.out} is a file; pass a folder for the images (it is created if missing)")
  scales = _number_list(args.scales, "--scales") if args.scales else None
  if scales and not args.lora:
    raise UserError("--scales sweeps the scale of a LoRA: add --lora FILE")
  if args.prompts:
    rows = generate.read_prompts(args.prompts)
  else:
    rows = [generate.PromptRow(args.prompt, args.seed, str(args.seed))]
  if args.unet:
    unet, unet_params = load_pretrained(args.unet, dtype=jnp.dtype(args.dtype),
                                        expect=("UNet2DConditionModel", "UNet3DConditionModel"))
  changed = weights.read_safetensors_file(args.unet_weights) if args.unet_weights else None
  pipe = pipeline.load_pipeline(args.pipeline, dtype=jnp.dtype(args.dtype))
  if args.unet:
    pipe = dataclasses.replace(pipe, unet=unet, params={**pipe.params, "unet": pipeline.place(unet_params)})
  if changed is not None:
    unet_params = finetune.load_subset(pipe.params["unet"], changed, weights.family_of(pipe.unet).naming,
                                       name=args.unet_weights)
    pipe = dataclasses.replace(pipe, params={**pipe.params, "unet": pipeline.place(unet_params)})
  loras = _load_loras(pipe, args.lora)

  def progress(done, total):
    print(f"\r{done}/{total} prompts", end="", file=sys.stderr, flush=True)

  paths = generate.generate_rows(
      pipe, rows, args.out, num_images=args.num_images, num_steps=args.steps, guidance_scale=args.guidance,
      noise_source=args.noise, batch_size=args.batch_size, height=args.height, width=args.width,
      negative_prompt=args.negative_prompt, loras=loras, start_noise=args.start_noise, scales=scales,
      overwrite=args.overwrite, progress=progress, num_frames=args.num_frames, fps=args.fps,
      scheduler=schedules.scheduler_from_folder(f"{args.pipeline}/scheduler", args.scheduler))
  print(file=sys.stderr)
  print(f"{len(paths)} {'videos' if pipe.is_video else 'images'} in {args.out}")
  return 0
