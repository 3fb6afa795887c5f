"""Concept Sliders: the prompts YAML, the objective and x_t, the timestep mapping, text / image / SDXL training,
exports loaded by diffusers, and the evaluation."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util
from PIL import Image

from jaxlab import cli, training
from jaxlab.diffusion import adapters, pipeline, tuning
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.errors import UserError
from jaxlab.methods import sliders
from jaxlab.models import load_pretrained, unet2d
from jaxlab.nn.layers import LORA_DOWN, LORA_UP
from tests.methods.tiny_models import tiny_clip


def tiny_config(*overrides):
  return training.load_config("sliders:tiny", ["compilation_cache_dir=", *overrides])


def write(path: Path, text: str) -> Path:
  path.write_text(text)
  return path


# ------------------------------------------------------------------------------------------------ prompts

def test_prompts_defaults_and_attributes(tmp_path):
  path = write(tmp_path / "p.yaml", "- target: a cat\n"
                                    "- target: person\n  positive: old person\n  unconditional: young person\n"
                                    "  neutral: a person\n  action: enhance\n  guidance_scale: 4\n  resolution: 768\n"
                                    "  batch_size: 2\n  dynamic_crops: true\n")
  minimal, full = sliders.read_prompts(path)
  # The original's PromptSettings defaults: positive = target, unconditional "", neutral = unconditional.
  assert minimal == sliders.PromptSettings("a cat", "a cat", "", "", "erase", 1.0, 512, False, 1, False)
  assert minimal.eta == -1.0 and full.eta == 4.0
  assert (full.positive, full.unconditional, full.neutral, full.resolution, full.batch_size) == (
      "old person", "young person", "a person", 768, 2)
  # --attributes: every entry once per attribute, `attribute + ' '` before each of its four prompts.
  expanded = sliders.with_attributes([minimal, full], sliders.split_list("male, female"))
  assert [(p.target, p.unconditional) for p in expanded] == [
      ("male a cat", "male "), ("female a cat", "female "), ("male person", "male young person"),
      ("female person", "female young person")]
  assert expanded[3].positive == "female old person" and expanded[3].neutral == "female a person"
  assert expanded[3].guidance_scale == 4.0
  assert sliders.with_attributes([minimal], []) == [minimal]


def test_prompts_keys_the_original_ignores_give_a_warning(tmp_path, capsys):
  path = write(tmp_path / "gpt.yaml", "- target: male person\n  positive: male person, old\n  guidance: 4\n"
                                      "  rank: 8\n  colour: red\n")
  entry, = sliders.read_prompts(path)
  assert entry.guidance_scale == 1.0  # ignored, as the original ignores it
  err = capsys.readouterr().err
  assert "`guidance:`" in err and "`guidance_scale:`" in err and "`rank:`" in err and "--config.rank" in err
  assert "unknown key `colour:`" in err and len(err.strip().splitlines()) == 3


@pytest.mark.parametrize("text, message", [
    ("- target: [a, b\n", r"not valid YAML at line 2"),
    ("- positive: old\n", r"entry 1 has no `target`"),
    ("", "holds no prompt entries"),
    ("target: a cat\n", "should be a list of entries"),
    ("- target: a\n- just text\n", "entry 2 is str, not a mapping"),
    ("- target: a\n  action: boost\n", "use erase or enhance"),
    ("- target: a\n  guidance_scale: high\n", "should be a number"),
    ("- target: a\n  positive: null\n", "`positive` is None"),
])
def test_prompts_errors(tmp_path, text, message):
  with pytest.raises(UserError, match=message):
    sliders.read_prompts(write(tmp_path / "p.yaml", text))


def test_cli_bad_prompts_file_is_one_line(tmp_path, capsys):
  bad = write(tmp_path / "bad.yaml", "- positive: old\n")
  args = ["train", "sliders", "--config", "sliders:tiny", "--workdir", str(tmp_path / "w")]
  assert cli.main(args + [f"--config.prompts={bad}"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "entry 1 has no `target`" in err
  assert cli.main(args + [f"--config.prompts={tmp_path / 'none.yaml'}"]) == 2
  assert "not found" in capsys.readouterr().err


def test_slider_target_by_hand():
  neutral, positive, unconditional = np.array([1.0, 2.0]), np.array([3.0, 0.0]), np.array([1.0, 1.0])
  np.testing.assert_allclose(sliders.slider_target(neutral, positive, unconditional, 4.0), [1 + 4 * 2, 2 - 4])
  np.testing.assert_allclose(sliders.slider_target(neutral, positive, unconditional, -0.5), [0.0, 2.5])


# ---------------------------------------------------------------------------------------------- timesteps

def stub_setup(schedule, steps, mode, images=None, xl=False):
  chain = tuning.ddim_chain(schedule, steps)
  pipe = pipeline.StableDiffusionXL.__new__(pipeline.StableDiffusionXL) if xl else None
  prompt = sliders.PromptSettings("a", "b", "c", "a", dynamic_crops=True)
  return sliders.Setup(pipe, [prompt], [prompt, prompt], {}, np.ones(2), 64, schedule, chain,
                       sliders.query_timesteps(schedule, steps, mode), {}, None, images)


def test_timestep_mapping_as_the_original():
  # The tiny pipeline's scheduler config is SD's (PNDM, steps_offset 1); the original builds its own DDIM.
  schedule = sliders.ddim_schedule(NoiseSchedule.from_config(pipeline.SD_SCHEDULER_CONFIG))
  timesteps, _ = tuning.ddim_chain(schedule, 50)
  k = np.arange(50)
  np.testing.assert_array_equal(timesteps, 980 - 20 * k)
  np.testing.assert_array_equal(sliders.query_timesteps(schedule, 50, "original"), 999 - 20 * k)
  np.testing.assert_array_equal(sliders.query_timesteps(schedule, 50, "exact"), 980 - 20 * k)
  diffusers = pytest.importorskip("diffusers")
  reference = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                      num_train_timesteps=1000, clip_sample=False)
  reference.set_timesteps(50)
  np.testing.assert_array_equal(timesteps, reference.timesteps.numpy())
  reference.set_timesteps(1000)  # train_lora.py: timesteps[int(timesteps_to * 1000 / max_denoising_steps)]
  expected = [int(reference.timesteps[int(i * 1000 / 50)]) for i in k]
  np.testing.assert_array_equal(sliders.query_timesteps(schedule, 50, "original"), expected)


def test_draws_per_iteration():
  schedule = sliders.ddim_schedule(NoiseSchedule.from_config(pipeline.SD_SCHEDULER_CONFIG))
  pairs = sliders.ImagePairs(Path("."), ("a", "b", "c", "d"), (-2, -1, 1, 2), ("x.png", "y.png", "z.png"))
  for images, xl, top in ((None, False, 49), (pairs, False, 48), (pairs, True, 49)):
    setup = stub_setup(schedule, 50, "original", images, xl)
    rng = np.random.default_rng(0)
    draws = [sliders.draw_iteration(setup, rng, 4) for _ in range(1500)]
    ks = {int(d["chain_steps"][0]) for d in draws}
    assert ks == set(range(1, top + 1)), (images is not None, xl)  # randint(1, S) / (1, S - 1) for SD images
    for d in draws[:50]:
      for key in ("pair", "chain_steps", "t_query"):  # one pair and one k per step
        assert len(set(d[key].tolist())) == 1
      assert d["t_query"][0] == 999 - 20 * d["chain_steps"][0]
      if xl:
        ids = d["time_ids"][0]
        assert 64 <= ids[0] < 192 and ids[0] == ids[1] and 0 <= ids[2] <= ids[0] - 64 and list(ids[4:]) == [64, 64]
      if images is not None:
        s = d["scale"][0]
        assert pairs.scales[d["low"][0]] == -s and pairs.scales[d["high"][0]] == s and d["t_noise"][0] == 980 - 20 * d["chain_steps"][0]
    if images is not None:
      assert {int(d["scale"][0]) for d in draws} == {1, 2}
      assert len({tuple(d["file"]) for d in draws}) > 1


# ------------------------------------------------------------------------------------------- text sliders

@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sliders")
  config = tiny_config("iterations=4", "max_denoising_steps=4", "log_every=2", "checkpoint_every=4",
                       "attributes=tall, short")
  setup = sliders.make_setup(config, workdir)
  # The end-of-run figures are tested through `jaxlab eval` below, which computes them again.
  training.train(dataclasses.replace(sliders.make_task(config, workdir, setup), evaluate=None), config, workdir)
  return config, workdir, setup


def trained_looking(setup, seed=0):
  """LoRA factors with a non-zero `up` (a fresh one is zero)."""
  rng = np.random.default_rng(seed)
  fresh = nn.meta.unbox(setup.adapter.init(jax.random.key(seed)))
  return jax.tree_util.tree_map_with_path(
      lambda p, v: v if p[-1].key == LORA_DOWN else (0.3 * rng.normal(size=v.shape)).astype(np.float32), fresh)


def test_training_changes_only_the_lora(text_run):
  config, workdir, setup = text_run
  assert len(setup.prompts) == 4 and setup.prompts[1].target == "short man"
  params, step = adapters.restore(workdir, setup.adapter)
  init_rng, _ = jax.random.split(jax.random.key(config.seed))  # the loop's initialisation
  initial = nn.meta.unbox(setup.adapter.init(init_rng))
  assert step == 4 and jax.tree.structure(params) == jax.tree.structure(initial)
  for path, value in traverse_util.flatten_dict(params).items():
    assert not np.array_equal(value, traverse_util.flatten_dict(initial)[path]), path
  # The frozen UNet the step read is the pipeline's, unchanged.
  _, on_disk = load_pretrained(workdir / "tiny-random" / "unet")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(setup.base), on_disk)
  losses = [json.loads(line)["train/loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if "train/loss" in line]
  assert len(losses) == 2 and all(np.isfinite(losses))


def test_loss_and_x_t_by_hand(text_run):
  config, _, setup = text_run
  params = trained_looking(setup)
  base, text = setup.base, setup.text
  etas = np.array([4.0, -2.0, 4.0, 1.5], np.float32)  # enhance and erase pairs
  batch = {"pair": np.array([0, 1, 2, 3], np.int32), "chain_steps": np.array([2, 0, 3, 1], np.int32)}
  rng = jax.random.key(7)
  t = np.array([999, 500, 120, 40], np.int32)

  @jax.jit
  def ours(params):
    folded = setup.adapter.apply(params, base, 1.0, fold=True)
    x_t = sliders.make_x_t(config, setup, folded, text, batch, rng)
    target = sliders.text_target(setup, base, text, jnp.asarray(etas), x_t, t, batch)
    return x_t, sliders.text_loss(setup, setup.adapter.apply(params, base), target, text, x_t, t, batch)

  x_t, loss = ours(params)
  # By hand: DDIM from the same noise, k steps per example, guided 3x between unconditional and target, run by
  # the UNet with the LoRA merged into its kernels; then the MSE onto neutral + eta (positive - unconditional).
  embeds = {role: np.asarray(text[role]) for role in sliders.ROLES}
  merged = setup.adapter.apply(params, base, 1.0, fold=True)
  unet = jax.jit(lambda p, x, t, c: setup.unet.apply({"params": p}, x, t, c))
  x = jax.random.normal(rng, setup.pipe.latent_shape(4, 16, 16))
  timesteps, previous = setup.chain
  for i in range(int(batch["chain_steps"].max())):
    t_i = np.full(4, timesteps[i], np.int32)
    uncond, cond = (unet(merged, x, t_i, embeds[role]) for role in ("unconditional", "target"))
    stepped = setup.schedule.ddim_step(uncond + 3.0 * (cond - uncond), timesteps[i], previous[i], x)
    x = jnp.where((i < batch["chain_steps"])[:, None, None, None], stepped, x)
  assert np.abs(np.asarray(x_t) - x).max() <= 1e-5 * np.abs(x).max()
  assert np.abs(np.asarray(x_t) - jax.random.normal(rng, x.shape)).max() > 1e-2
  e = {role: np.asarray(unet(base, x_t, t, embeds[role])) for role in ("positive", "neutral", "unconditional")}
  target = e["neutral"] + etas[:, None, None, None] * (e["positive"] - e["unconditional"])
  prediction = np.asarray(unet(merged, x_t, t, embeds["target"]))
  np.testing.assert_allclose(loss, np.mean((prediction - target) ** 2), rtol=1e-4)


def reference_unet_output(reference, inputs, scale, added=None):
  import torch
  x, t, c = inputs
  kwargs = {"added_cond_kwargs": {k: torch.from_numpy(v) for k, v in added.items()}} if added else {}
  with torch.no_grad():
    out = reference.unet(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t), torch.from_numpy(c),
                         cross_attention_kwargs={"scale": scale}, **kwargs).sample
  return out.numpy().transpose(0, 2, 3, 1)


def check_exports_in_diffusers(pipeline_class, folder, workdir, setup, added=None):
  """Both exports, loaded by diffusers' `load_lora_weights`, give our UNet's outputs at scales 1 and 0.5."""
  pytest.importorskip("peft")
  params, _ = adapters.restore(workdir, setup.adapter)
  reference = pipeline_class.from_pretrained(folder)
  rng = np.random.default_rng(0)
  context = setup.text["target"][0] if setup.xl else setup.text["target"]
  inputs = (rng.normal(size=(2,) + setup.pipe.latent_shape(1, 16, 16)[1:]).astype(np.float32),
            np.array([700, 30]), np.asarray(context[:1]).repeat(2, 0))
  ours = jax.jit(lambda params, s: setup.unet.apply({"params": setup.adapter.apply(params, setup.base, s)},
                                                    *inputs, *([added] if added else [])))
  for name in ("lora.safetensors", "lora_kohya.safetensors"):
    reference.load_lora_weights(str(workdir / "export"), weight_name=name, adapter_name=name.split(".")[0])
    for scale in (1.0, 0.5):
      expected = reference_unet_output(reference, inputs, scale, added)
      got = np.asarray(ours(params, jnp.float32(scale)))
      assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), (name, scale)
    assert np.abs(expected - reference_unet_output(reference, inputs, 0.0, added)).max() > 1e-4
    reference.delete_adapters(name.split(".")[0])


def test_exports_hold_the_checkpoint(text_run):
  # diffusers loads both layouts (the SDXL test below; test_lora for SD): here, that they hold the trained LoRA.
  from jaxlab.diffusion import lora
  config, workdir, setup = text_run
  paths = sliders.export(config, workdir)
  assert [p.name for p in paths] == ["lora.safetensors", "lora_kohya.safetensors"]
  params, _ = adapters.restore(workdir, setup.adapter)
  for path in paths:
    loaded, loaded_params = lora.LoRA.load(path, setup.boxed, unet2d.LAYER_LISTS)
    assert loaded.layers == setup.adapter.layers
    jax.tree.map(np.testing.assert_array_equal, loaded_params, params)


def test_evaluation_with_clip(text_run, tmp_path, capsys):
  transformers = pytest.importorskip("transformers")
  import torch
  config, workdir, setup = text_run
  prompts = write(tmp_path / "prompts-person.csv", "case_number,prompt,evaluation_seed,concept\n"
                                                  "0,image of a man,58583,a person\n1,a woman,54737,a person\n")
  clip = tiny_clip(tmp_path / "clip", setup.pipe.tokenizer)
  assert cli.main(["eval", "sliders", "--workdir", str(workdir), f"--config.eval_prompts={prompts}",
                   f"--config.eval_clip={clip}", "--config.eval_scales=-1, 0, 1, 2", "--config.eval_steps=2",
                   "--config.eval_attributes=man, woman", "--config.eval_start_noise=600"]) == 0
  err = capsys.readouterr().err
  assert "LPIPS is not computed" in err and "lpip_score.py" in err
  out = workdir / "eval" / "step_4"
  assert sorted(p.name for p in out.iterdir()) == ["-1", "0", "1", "2"]
  assert sorted(p.name for p in (out / "1").iterdir()) == ["0_0.png", "1_0.png"]
  results = json.loads((workdir / "eval" / "step_4.json").read_text())
  assert results["delta_clip/0"] == 0.0 and results["interference/0"] == 0.0
  assert results["delta_clip/1"] == pytest.approx(results["clip/1"] - results["clip/0"])
  assert 0 <= results["interference/-1"] <= 1 and results["attribute_shift/1"] >= 0
  # The fixed-latent figures: the slider moves the prediction along its direction, more so at scale 2.
  assert results["effect/0"] == 0.0 and 0 < results["effect/1"] < results["effect/2"]
  assert results["effect/-1"] < 0 and results["slider_gap"] < 1
  assert "| scale | effect | clip | delta_clip | interference | attribute_shift |" in \
      (workdir / "eval" / "step_4.md").read_text()
  # The scale-1 images differ from scale 0's above start_noise's switch, and their CLIP scores are transformers'
  # CLIPModel(...).logits_per_image against the attribute text (the first entry's positive prompt).
  images = {s: [Image.open(out / s / f"{c}_0.png").convert("RGB") for c in (0, 1)] for s in ("0", "1")}
  assert not np.array_equal(np.asarray(images["0"][0]), np.asarray(images["1"][0]))
  model = transformers.CLIPModel.from_pretrained(clip).eval()
  processor = transformers.CLIPProcessor(transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                                                         crop_size=32),
                                         transformers.CLIPTokenizer.from_pretrained(clip))
  with torch.no_grad():
    logits = model(**processor(text=["old man"], images=images["1"], return_tensors="pt",
                               padding=True)).logits_per_image
  assert results["clip/1"] == pytest.approx(float(logits.mean()), rel=1e-4, abs=1e-4)


# ------------------------------------------------------------------------------------------ image sliders

def paired_folders(root: Path, folders=("low", "high"), names=("a.png", "b.jpg"), size=20) -> Path:
  rng = np.random.default_rng(0)
  for folder in folders:
    (root / folder).mkdir(parents=True)
    for name in names:
      Image.fromarray(rng.integers(0, 255, size=(size, size + 4, 3), dtype=np.uint8)).save(root / folder / name)
  return root


def test_image_pairs_are_checked(tmp_path):
  root = paired_folders(tmp_path / "data", folders=("verylow", "low", "high", "veryhigh"))
  pairs = sliders.read_image_pairs(root, "verylow, low, high, veryhigh", "-2, -1, 1, 2")
  assert pairs.names == ("a.png", "b.jpg") and pairs.folder_at(-2) == 0 and pairs.folder_at(2) == 3
  pixels = sliders.load_pixels(pairs, 16)
  assert pixels.shape == (4, 2, 16, 16, 3) and -1 <= pixels.min() and pixels.max() <= 1
  cases = [("low", "-1", "two folders or more"), ("low, high", "-1, 1, 2", "2 folders but 3 scales"),
           ("low, high", "-1, 2", "scale -1 \\(folder low\\) has no folder at scale 1"),
           ("low, high", "0, 1", "none 0"), ("low, high", "-1.5, 1.5", "integers"),
           ("low, nowhere", "-1, 1", "nowhere not found")]
  for folders, scales, message in cases:
    with pytest.raises(UserError, match=message):
      sliders.read_image_pairs(root, folders, scales)
  (root / "high" / "c.png").write_bytes(b"not a png")
  with pytest.raises(UserError, match=r"low/c\.png is missing \(.*high/c\.png exists\)"):
    sliders.read_image_pairs(root, "low, high", "-1, 1")
  (root / "low" / "c.png").write_bytes(b"not a png either")
  pairs = sliders.read_image_pairs(root, "low, high", "-1, 1")
  with pytest.raises(UserError, match=r"low/c\.png cannot be read as an image"):
    sliders.load_pixels(pairs, 16)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
  root = paired_folders(tmp_path_factory.mktemp("pairs"))
  workdir = tmp_path_factory.mktemp("image-slider")
  config = tiny_config("prompts=", f"images={root}", "folders=low, high", "scales=-1, 1", "resolution=16",
                       "iterations=3", "max_denoising_steps=5", "log_every=3", "checkpoint_every=3", "lr=0.05")
  setup = sliders.make_setup(config, workdir)
  result = training.train(sliders.make_task(config, workdir, setup), config, workdir)
  return config, workdir, setup, result


def test_image_slider_trains_the_lora(image_run):
  config, workdir, setup, result = image_run
  assert setup.latents[0].shape == (2, 2, 8, 8, 4) and setup.adapter.kaiming_a == pytest.approx(np.sqrt(5))
  params, step = adapters.restore(workdir, setup.adapter)
  assert step == 3 and all(np.any(v) for p, v in traverse_util.flatten_dict(params).items() if p[-1] == LORA_UP)
  losses = [json.loads(line)["train/loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if "train/loss" in line]
  assert len(losses) == 1 and np.isfinite(losses[0])
  assert np.isfinite(result["eval/image_mse"]) and result["eval/image_gap"] > 0


def test_image_loss_by_hand(image_run):
  # The evaluation's two-term loss, recomputed with the LoRA merged into the kernels at +s for the +s image
  # (positive prompt) and -s for the -s image (neutral); with the signs swapped it is another number.
  config, _, setup, _ = image_run
  params = trained_looking(setup, seed=1)
  magnitudes, lows, highs, noise, batch = sliders.image_examples(config, setup, 4)
  loss = sliders.image_metrics_fn(config, setup, 4)(params)["image_mse"]
  unet = jax.jit(lambda p, x, t, c: setup.unet.apply({"params": p}, x, t, c))
  noisy = lambda x: setup.schedule.add_noise(x, noise, batch["t_noise"])  # the same noise on both images
  context = lambda role: np.asarray(setup.text[role])[batch["pair"]]
  at = lambda s: setup.adapter.apply(params, setup.base, s, fold=True)
  mse = lambda s, x, role: np.mean((unet(at(s), noisy(x), batch["t_query"], context(role)) - noise) ** 2)
  expected = np.mean([mse(s, high, "positive") + mse(-s, low, "neutral") for s, low, high in zip(magnitudes, lows, highs)])
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  swapped = np.mean([mse(-s, high, "positive") + mse(s, low, "neutral") for s, low, high in zip(magnitudes, lows, highs)])
  assert abs(swapped - expected) > 10 * 1e-4 * expected  # the swapped signs fall well outside the tolerance


# ------------------------------------------------------------------------------------------------- SDXL

def test_sdxl_text_slider_and_its_exports(tmp_path):
  diffusers = pytest.importorskip("diffusers")
  prompts = write(tmp_path / "xl.yaml", "- target: man\n  positive: old man\n  unconditional: young man\n"
                                        "  action: enhance\n  guidance_scale: 4\n  resolution: 16\n"
                                        "  dynamic_crops: true\n")
  workdir = tmp_path / "run"
  config = tiny_config("pretrained=tiny-random-xl", f"prompts={prompts}", "iterations=2", "max_denoising_steps=3",
                       "log_every=2", "checkpoint_every=2", "batch_size=8")
  setup = sliders.make_setup(config, workdir)
  assert setup.xl and setup.text["target"][0].shape == (1, 16, 64) and setup.text["target"][1].shape == (1, 32)
  task = dataclasses.replace(sliders.make_task(config, workdir, setup), evaluate=None)
  training.train(task, config, workdir)
  sliders.export(config, workdir)
  added = {"text_embeds": np.asarray(setup.text["target"][1]).repeat(2, 0),
           "time_ids": np.array([[16, 16, 0, 0, 16, 16]] * 2, np.float32)}
  check_exports_in_diffusers(diffusers.StableDiffusionXLPipeline, workdir / "tiny-random-xl", workdir, setup, added)
