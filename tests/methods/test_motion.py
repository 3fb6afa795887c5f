"""Motion customisation: the trained-parameter rules, timestep sampling, the prior-preservation loss, and the
method end to end (train, eval, export loaded by diffusers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.errors import UserError
from jaxlab.methods import motion

# diffusers' UNet3DConditionModel as text-to-video-ms-1.7b / ZeroScope v2 configure it.
MS_UNET = dict(sample_size=32, block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
               cross_attention_dim=1024, attention_head_dim=64,
               down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
               up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3)


def ms_parameter_counts() -> dict[str, int]:
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  with torch.device("meta"):
    reference = diffusers.UNet3DConditionModel(**MS_UNET)
  return {name: p.numel() for name, p in reference.named_parameters()}


def test_trained_parameter_rules_on_the_ms_1_7b_names():
  counts = ms_parameter_counts()
  chosen = {m: {n for n in counts if motion.TRAINABLE_MODULES[m](n)} for m in ("temporal", "temp_convs", "cross")}
  size = {m: sum(counts[n] for n in names) for m, names in chosen.items()}
  assert sum(counts.values()) == 1_411_233_860
  # The spec's "temporal layers: 545,323,136" are the temporal transformers and the temporal convolutions.
  assert size["temporal"] == 278_431_616 and size["temp_convs"] == 266_891_520
  assert size["temporal"] + size["temp_convs"] == 545_323_136
  assert size["cross"] == 25_559_040
  # 17 temporal transformers, 22 temporal convolutions, 16 spatial cross-attention K/V pairs.
  assert len({n.split(".transformer_blocks")[0] for n in chosen["temporal"] if "transformer_blocks" in n}) == 17
  assert len({n.split(".conv1")[0] for n in chosen["temp_convs"] if ".conv1.0.weight" in n}) == 22
  assert len(chosen["cross"]) == 32 and all(".attentions." in n and ".attn2.to_" in n for n in chosen["cross"])
  assert not chosen["cross"] & chosen["temporal"] and not chosen["temp_convs"] & chosen["temporal"]
  rule = motion.trainable_rule(("cross", "temporal", "temp_convs"))
  assert sum(c for n, c in counts.items() if rule(n)) == 570_882_176
  with pytest.raises(UserError, match="trainable_modules"):
    motion.trainable_rule(("spatial",))


def test_timestep_distributions():
  T = 1000
  high, low, uniform = (motion.timestep_probabilities(s, T) for s in motion.TIMESTEP_SAMPLING)
  t = np.arange(T)
  np.testing.assert_allclose(high.sum(), 1, rtol=1e-6)
  np.testing.assert_allclose(high, (1 - 0.5 * np.cos(np.pi * t / T)) / np.sum(1 - 0.5 * np.cos(np.pi * t / T)),
                             rtol=1e-6)
  assert np.all(np.diff(high) > 0) and np.all(np.diff(low) < 0) and np.ptp(uniform) == 0
  np.testing.assert_allclose(high[-1] / high[0], 3, rtol=1e-3)     # 1.5/T at t = T vs 0.5/T at t = 0
  np.testing.assert_allclose(high * T, 1 - 0.5 * np.cos(np.pi * t / T), rtol=1e-3)
  np.testing.assert_allclose(high + low, 2 / T, rtol=1e-3)          # the two are mirror images
  # Mean t: (0.5 + a 2 / pi^2) T for high-level, its mirror for low-level.
  assert abs(np.sum(t * high) - (0.5 + 0.5 * 2 / np.pi**2) * T) < 1.0
  assert abs(np.sum(t * low) - (0.5 - 0.5 * 2 / np.pi**2) * T) < 1.0
  # The step draws from it with jax.random.choice: the empirical quartile masses match.
  draws = np.asarray(jax.random.choice(jax.random.key(0), T, (200_000,), p=jnp.asarray(high)))
  masses = np.histogram(draws, bins=4, range=(0, T))[0] / draws.size
  expected = [high[i * 250:(i + 1) * 250].sum() for i in range(4)]
  np.testing.assert_allclose(masses, expected, atol=0.005)
  with pytest.raises(UserError, match="timestep_sampling"):
    motion.timestep_probabilities("coarse", T)


def test_prior_preservation_loss_on_a_hand_computed_case():
  prediction = jnp.array([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
  target = jnp.zeros((3, 2))
  loss, parts = motion.prior_preservation_loss(prediction, target, num_instance=1, prior_lambda=0.5)
  # instance: mean(1, 1) = 1; prior: mean(0, 4, 9, 0) = 3.25; loss = 1 + 0.5 * 3.25.
  assert float(parts["instance_mse"]) == 1.0 and float(parts["prior_mse"]) == 3.25
  assert float(loss) == 1.0 + 0.5 * 3.25
  alone, parts = motion.prior_preservation_loss(prediction[:1], target[:1], 1, 0.5)
  assert float(alone) == 1.0 and set(parts) == {"instance_mse"}
