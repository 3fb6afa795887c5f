"""`jaxlab bench lora`: a LoRA train step beside a full fine-tune of the same SD UNet, in one run.

Both steps regress the UNet's noise prediction onto the noise (MSE) on the same batch, then update: the full
fine-tune every UNet parameter with Adam, the LoRA step only its factors (rank 4, alpha 1, the sliders'
`c3lier` / `noxattn` layers) with AdamW, the UNet a frozen input. Memory is XLA's figure for the compiled step
(arguments + outputs + temporaries): for LoRA it has the frozen UNet but no gradient or optimiser state for it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import training
from jaxlab.bench import common, hardware
from jaxlab.diffusion import adapters, lora
from jaxlab.diffusion.pipeline import random_params
from jaxlab.models import unet2d

SIZES = {
    # SD 1.x's structure (4 levels, 2 layers each, cross-attention on 3) made narrow enough for a CPU.
    "small": dict(config=unet2d.UNet2DConfig(
        sample_size=32, block_out_channels=(32, 64, 128, 128), attention_head_dim=(4, 4, 4, 4)), batch_size=2),
    "paper": dict(config=unet2d.UNet2DConfig(), batch_size=1),  # SD v1.4's UNet at 512 px, the sliders' batch
}
TEXT_LENGTH = 77


def _loss(module, params, batch):
  prediction = module.apply({"params": params}, batch["x_t"], batch["t"], batch["text"])
  return jnp.mean((prediction - batch["noise"]) ** 2)


def full_task(module) -> training.Task:
  def loss_fn(params, model_state, frozen, batch, rng):
    return _loss(module, params, batch), ({}, model_state)

  return training.Task(init_variables=lambda rng: module.init(rng, *unet2d.FAMILY.dummy_inputs(module)),
                       loss_fn=loss_fn, optimizer=optax.adam(1e-5), train_data=lambda: None)


def lora_task(module, base, adapter: lora.LoRA) -> training.Task:
  def loss_fn(params, model_state, frozen, batch, rng):
    return _loss(module, adapter.apply(params, frozen, 1.0), batch), ({}, model_state)

  return training.Task(init_variables=lambda rng: {"params": adapter.init(rng)}, loss_fn=loss_fn,
                       optimizer=optax.adamw(2e-4), train_data=lambda: None, frozen=base,
                       frozen_specs=jax.tree.map(lambda _: jax.sharding.PartitionSpec(), base))


def run(batch_size=None, steps=10, dtype="float32", config="small", rank=4, reference=None) -> dict:
  """Times both steps in turns and reports step time, FLOPs, MFU and memory, and the two ratios.
  (`reference` is what `jaxlab bench` passes every bench; both rows here are jaxlab's, there is no PyTorch side.)"""
  size = SIZES[config]
  c = size["config"]
  batch_size = batch_size or size["batch_size"]
  module = unet2d.UNet2DConditionModel(c, dtype=jnp.dtype(dtype))
  inputs = unet2d.FAMILY.dummy_inputs(module)
  boxed = adapters.abstract_params(module, *inputs)
  adapter = lora.LoRA.create(boxed, lora.targets("c3lier", "noxattn"), rank=rank, layer_lists=unet2d.LAYER_LISTS)
  base = random_params(module, *inputs)
  rng = np.random.default_rng(0)
  latents = (batch_size, c.sample_size, c.sample_size, c.in_channels)
  batch = {"x_t": rng.normal(size=latents).astype(np.float32), "noise": rng.normal(size=latents).astype(np.float32),
           "t": rng.integers(0, 1000, size=batch_size).astype(np.int32),
           "text": rng.normal(size=(batch_size, TEXT_LENGTH, c.cross_attention_dim[0])).astype(np.float32)}
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  lora_params = count(jax.eval_shape(adapter.init, jax.random.key(0)))

  rows = []
  for name, task in ((f"LoRA r{rank} c3lier/noxattn ({len(adapter.layers)} layers)", lora_task(module, base, adapter)),
                     ("full UNet fine-tune", full_task(module))):
    step, flops, memory = common.jax_train_step(task, batch)
    rows.append((name, step, flops, memory))
  times = common.time_in_turns(steps, *(step for _, step, _, _ in rows))
  peak, peak_source = hardware.peak_flops(dtype)
  results = [common.summarize(name, t, batch_size, flops, peak, memory=(memory, "XLA's estimate of the step"))
             for (name, _, flops, memory), t in zip(rows, times)]
  setup = {"model": f"SD UNet {config}: channels {c.block_out_channels}, {count(base) / 1e6:.1f}M params, "
                    f"{c.sample_size}x{c.sample_size} latents, {TEXT_LENGTH} text tokens",
           "LoRA": f"{lora_params / 1e6:.3f}M trained params; the UNet is frozen", "batch": batch_size,
           "dtype": dtype, "device": jax.devices()[0].device_kind,
           "peak": f"{peak / 1e12:.2f} TFLOP/s ({peak_source})",
           "timing": f"median of {steps} steps each, taken in turns after one warm-up step",
           "memory": "XLA memory analysis of the compiled step: arguments + outputs + temporaries"}
  data = common.report("lora train step", results, setup)
  if all(r.memory_bytes for r in results):
    ratio = results[1].memory_bytes / results[0].memory_bytes
    print(f"  the full fine-tune's step needs {ratio:.2f}x the memory of the LoRA step "
          f"({results[1].memory_bytes / 2**20:.0f} vs {results[0].memory_bytes / 2**20:.0f} MiB)")
    data["memory_ratio"] = ratio
  data["time_ratio"] = results[1].step_seconds / results[0].step_seconds
  return data
