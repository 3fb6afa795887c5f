"""Our DDPM schedule and jitted DDIM / DPM-Solver++ samplers against diffusers' schedulers on the same model and
noise."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxlab.diffusion import sampler, schedules  # noqa: E402
from jaxlab.diffusion.schedules import NoiseSchedule  # noqa: E402
from jaxlab.errors import UserError  # noqa: E402
from jaxlab.models import load_pretrained  # noqa: E402

# SD 1.x's scheduler_config.json (a PNDM config; DDIM reads its beta fields and offset).
SD_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
                "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False}


def torch_ddim(**overrides):
  return diffusers.DDIMScheduler.from_config({**SD_SCHEDULER, **overrides})


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("leading", 0), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("steps", [50, 7])
def test_timesteps(spacing, offset, steps):
  overrides = dict(timestep_spacing=spacing, steps_offset=offset)
  reference = torch_ddim(**overrides)
  reference.set_timesteps(steps)
  ours = NoiseSchedule.from_config({**SD_SCHEDULER, **overrides})
  np.testing.assert_array_equal(ours.timesteps(steps), reference.timesteps.numpy())
  np.testing.assert_array_equal(ours.alphas_cumprod, reference.alphas_cumprod.numpy())


def test_ddim_defaults_from_a_pndm_config():
  # Missing keys take DDIMScheduler's defaults, as `DDIMScheduler.from_config(pndm_config)` does.
  config = {k: v for k, v in SD_SCHEDULER.items() if k != "clip_sample"}
  assert NoiseSchedule.from_config(config).clip_sample == torch_ddim(clip_sample=True).config.clip_sample is True


def test_forward_process():
  reference = diffusers.DDPMScheduler.from_config(SD_SCHEDULER)
  ours = NoiseSchedule.from_config(SD_SCHEDULER)
  gen = torch.Generator().manual_seed(0)
  x0, noise, t = torch.randn(3, 4, 5, 5, generator=gen), torch.randn(3, 4, 5, 5, generator=gen), torch.tensor([0, 420, 999])
  np.testing.assert_allclose(ours.add_noise(x0.numpy(), noise.numpy(), t.numpy()),
                             reference.add_noise(x0, noise, t).numpy(), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ours.velocity(x0.numpy(), noise.numpy(), t.numpy()),
                             reference.get_velocity(x0, noise, t).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_step(prediction_type, clip_sample):
  overrides = dict(prediction_type=prediction_type, clip_sample=clip_sample)
  reference = torch_ddim(**overrides)
  reference.set_timesteps(20)
  ours = NoiseSchedule.from_config({**SD_SCHEDULER, **overrides})
  gen = torch.Generator().manual_seed(0)
  x, out = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(2, 4, 3, 3, generator=gen)
  for t in (int(reference.timesteps[0]), 501, int(reference.timesteps[-1])):
    expected = reference.step(out, t, x).prev_sample.numpy()
    got = ours.ddim_step(jnp.asarray(out.numpy()), t, t - 50, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cfg_trajectory_matches_diffusers(tmp_path):
  torch.manual_seed(0)
  unet = diffusers.UNet2DConditionModel(
      sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
      attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
  with torch.no_grad():
    for p in unet.parameters():
      p.add_(torch.randn_like(p) * 0.05)
  unet.save_pretrained(tmp_path)
  gen = torch.Generator().manual_seed(1)
  latents, cond, uncond = (torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 5, 32, generator=gen),
                           torch.randn(1, 5, 32, generator=gen))
  steps, scale = 8, 7.5

  reference = torch_ddim()
  reference.set_timesteps(steps)
  x, expected = latents.clone(), []
  with torch.no_grad():
    for t in reference.timesteps:
      out_uncond, out_cond = unet(torch.cat([x, x]), t, torch.cat([uncond, cond])).sample.chunk(2)
      x = reference.step(out_uncond + scale * (out_cond - out_uncond), t, x).prev_sample
      expected.append(x.numpy().transpose(0, 2, 3, 1))

  schedule = NoiseSchedule.from_config(SD_SCHEDULER)
  np.testing.assert_array_equal(schedule.timesteps(steps), reference.timesteps.numpy())
  module, params = load_pretrained(tmp_path)

  @jax.jit
  def run(params, x_T, cond, uncond):
    denoise = sampler.guided(module, params, cond, uncond, scale)
    return sampler.ddim_sample(denoise, schedule, x_T, schedule.timesteps(steps), return_trajectory=True)

  final, trajectory = run(params, jnp.asarray(latents.numpy().transpose(0, 2, 3, 1)), jnp.asarray(cond.numpy()),
                          jnp.asarray(uncond.numpy()))
  expected = np.stack(expected)
  assert trajectory.shape == (steps,) + expected.shape[1:]
  assert np.abs(trajectory - expected).max() <= 1e-4 * np.abs(expected).max()
  np.testing.assert_array_equal(final, trajectory[-1])
  # ddim_partial stops each example after its own number of steps.
  t = schedule.timesteps(steps)
  cond2, uncond2 = (jnp.asarray(np.concatenate([a.numpy()] * 2)) for a in (cond, uncond))
  denoise = sampler.guided(module, params, cond2, uncond2, scale)
  x_T = jnp.asarray(np.concatenate([latents.numpy()] * 2).transpose(0, 2, 3, 1))
  partial = jax.jit(lambda x, n: sampler.ddim_partial(denoise, schedule, x, t, schedule.previous_timesteps(t), n))
  stopped = partial(x_T, jnp.array([3, steps]))
  assert np.abs(stopped[0] - trajectory[2][0]).max() <= 1e-4 * np.abs(trajectory[2]).max()
  assert np.abs(stopped[1] - final[0]).max() <= 1e-4 * np.abs(final).max()


# ModelScope / ZeroScope's scheduler_config.json: a DDIM config, which the paper samples with DPM-Solver++.
MS_SCHEDULER = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
                "steps_offset": 1, "clip_sample": False, "prediction_type": "epsilon"}


def toy_model(x, t, lib):
  """A smooth, nonlinear stand-in for a UNet, written once for torch and for jax.numpy."""
  return 0.8 * lib.sin(1.3 * x + t / 300.0) + 0.1 * x


def torch_trajectory(scheduler, latents, steps):
  scheduler.set_timesteps(steps)
  x, out = latents.clone(), []
  for t in scheduler.timesteps:
    x = scheduler.step(toy_model(x, float(t), torch), t, x).prev_sample
    out.append(x.numpy())
  return scheduler.timesteps.numpy(), np.stack(out)


@pytest.mark.parametrize("spacing", [None, "leading", "trailing"])
@pytest.mark.parametrize("steps", [25, 7, 1])
def test_dpm_timesteps(spacing, steps):
  config = {**MS_SCHEDULER, **({"timestep_spacing": spacing} if spacing else {})}
  reference = diffusers.DPMSolverMultistepScheduler.from_config(config)
  reference.set_timesteps(steps)
  ours = schedules.DPMSolver.from_config(config)
  np.testing.assert_array_equal(ours.timesteps(steps), reference.timesteps.numpy())
  np.testing.assert_allclose(ours.sigmas(ours.timesteps(steps)), reference.sigmas.numpy(), rtol=1e-6)


DPM_CASES = {
    "ms-1.7b": {},                                        # linspace spacing, 2M, lower_order_final, epsilon
    "v-trailing": {"prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    "heun-sigma-min": {"solver_type": "heun", "final_sigmas_type": "sigma_min", "timestep_spacing": "leading"},
    "order-1": {"solver_order": 1},
    "ddim": None,
}


@pytest.mark.parametrize("case", DPM_CASES)
@pytest.mark.parametrize("steps", [20, 8])
def test_full_trajectory_on_video_latents(case, steps):
  # [B, C, F, H, W] latents: the schedulers act element-wise, so the layout is any.
  latents = torch.randn(2, 4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
  if DPM_CASES[case] is None:
    reference = diffusers.DDIMScheduler.from_config(MS_SCHEDULER)
    chain = NoiseSchedule.from_config(MS_SCHEDULER).chain(steps)
  else:
    config = {**MS_SCHEDULER, "_class_name": "DPMSolverMultistepScheduler", **DPM_CASES[case]}
    reference = diffusers.DPMSolverMultistepScheduler.from_config(config)
    chain = schedules.DPMSolver.from_config(config).chain(steps)
  timesteps, expected = torch_trajectory(reference, latents, steps)
  np.testing.assert_array_equal(chain.timesteps, timesteps)
  denoise = lambda x, t: toy_model(x, t.astype(jnp.float32), jnp)
  final, trajectory = jax.jit(lambda c, x: sampler.sample(denoise, c, x, return_trajectory=True))(
      chain, jnp.asarray(latents.numpy()))
  assert np.abs(trajectory - expected).max() <= 1e-5 * np.abs(expected).max()
  np.testing.assert_array_equal(final, trajectory[-1])


def test_scheduler_from_folder(tmp_path):
  (tmp_path / "scheduler_config.json").write_text(json.dumps(MS_SCHEDULER))
  assert isinstance(schedules.scheduler_from_folder(tmp_path), NoiseSchedule)
  dpm = schedules.scheduler_from_folder(tmp_path, "dpmsolver++")
  assert isinstance(dpm, schedules.DPMSolver) and dpm.schedule.timestep_spacing == "linspace"
  (tmp_path / "scheduler_config.json").write_text(json.dumps({**MS_SCHEDULER, "_class_name":
                                                               "DPMSolverMultistepScheduler", "thresholding": True}))
  with pytest.raises(UserError, match="thresholding"):
    schedules.scheduler_from_folder(tmp_path)
  with pytest.raises(UserError, match="scheduler 'euler'"):
    schedules.scheduler_from_folder(tmp_path, "euler")
