"""`jaxlab generate`: images from a local diffusers SD or SDXL folder, one prompt or a prompt CSV.

  jaxlab generate --pipeline DIR --prompt "a photo of a cat" --seed 0 [--num-images 4] --out DIR
  jaxlab generate --pipeline DIR --prompts prompts.csv --out DIR      # <case_number>_<k>.png per row

`--unet DIR` swaps in another UNet folder (e.g. an ESD export), `--unet-weights FILE.safetensors` puts a file
of changed tensors (keyed by diffusers names) over the pipeline's UNet.
"""

import sys


def register(subparsers) -> None:
  p = subparsers.add_parser("generate", help="text-to-image with a local Stable Diffusion (XL) folder (DDIM + CFG)")
  p.add_argument("--pipeline", required=True, help="a local diffusers pipeline folder (model_index.json, unet/, ...)")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--prompt", help="one prompt")
  source.add_argument("--prompts", help="a CSV with prompt, evaluation_seed, case_number")
  p.add_argument("--seed", type=int, default=0, help="the seed for --prompt")
  p.add_argument("--num-images", type=int, default=1, help="images per prompt")
  p.add_argument("--steps", type=int, default=50, help="DDIM steps")
  p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
  p.add_argument("--negative-prompt", default=None,
                 help="default: the empty prompt (SD), zero conditioning (SDXL), as diffusers")
  p.add_argument("--height", type=int, default=None)
  p.add_argument("--width", type=int, default=None)
  p.add_argument("--batch-size", type=int, default=1, help="prompts per compiled call")
  p.add_argument("--noise", choices=["jax", "torch"], default="jax",
                 help="initial latents from JAX's RNG, or torch.manual_seed(seed) as the papers' scripts")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="UNet/text compute dtype")
  p.add_argument("--unet", default=None, help="a UNet folder to use instead of the pipeline's")
  p.add_argument("--unet-weights", default=None, help="safetensors of changed UNet tensors (diffusers names)")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--overwrite", action="store_true", help="regenerate images that already exist")
  p.set_defaults(handler=_generate)


def _generate(args, overrides) -> int:
  import dataclasses

  import jax.numpy as jnp

  from jaxlab.diffusion import finetune, generate, pipeline
  from jaxlab.models import load_pretrained, unet2d

  if args.prompts:  # read first: a mistake in the prompt file is found before the models load
    rows = generate.read_prompt_csv(args.prompts)
  else:
    rows = [generate.PromptRow(args.prompt, args.seed, str(args.seed))]
  pipe = pipeline.load_pipeline(args.pipeline, dtype=jnp.dtype(args.dtype))
  if args.unet:
    unet, unet_params = load_pretrained(args.unet, dtype=jnp.dtype(args.dtype))
    pipe = dataclasses.replace(pipe, unet=unet, params={**pipe.params, "unet": unet_params})
  if args.unet_weights:
    unet_params = finetune.load_subset(pipe.params["unet"], args.unet_weights, unet2d.LAYER_LISTS)
    pipe = dataclasses.replace(pipe, params={**pipe.params, "unet": unet_params})

  def progress(done, total):
    print(f"\r{done}/{total} prompts", end="", file=sys.stderr, flush=True)

  paths = generate.generate_rows(
      pipe, rows, args.out, num_images=args.num_images, num_steps=args.steps, guidance_scale=args.guidance,
      noise_source=args.noise, batch_size=args.batch_size, height=args.height, width=args.width,
      negative_prompt=args.negative_prompt, overwrite=args.overwrite, progress=progress)
  print(file=sys.stderr)
  print(f"{len(paths)} images in {args.out}")
  return 0
