"""ESD: parameter selection, the objective, x_t as the original code makes it, training, export and eval."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxlab import training
from jaxlab.diffusion import finetune
from jaxlab.diffusion.schedules import NoiseSchedule
from jaxlab.errors import UserError
from jaxlab.methods import esd
from jaxlab.models import load_pretrained, unet2d
from tests.methods.tiny_models import tiny_clip

CONFIG = Path(__file__).resolve().parents[2] / "train" / "configs" / "esd.py"


def sd14_names() -> set[str]:
  module = unet2d.UNet2DConditionModel(unet2d.UNet2DConfig())  # SD v1.4's architecture
  shapes = jax.eval_shape(module.init, jax.random.key(0), *unet2d.FAMILY.dummy_inputs(module))["params"]
  return set(finetune.diffusers_names(shapes, unet2d.LAYER_LISTS).values()), shapes


def test_names_are_diffusers_names():
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  with torch.device("meta"):
    reference = diffusers.UNet2DConditionModel(cross_attention_dim=768)
  names, _ = sd14_names()
  assert names == {name for name, _ in reference.named_parameters()}


def test_selection_rules():
  names, shapes = sd14_names()
  chosen = {m: {n for n in names if esd.TRAIN_METHODS[m](n)} for m in esd.TRAIN_METHODS}
  # 16 cross-attention layers, each with to_q/k/v weights and to_out.0 weight and bias.
  assert len(chosen["xattn"]) == 80 and all(".attn2." in n for n in chosen["xattn"])
  assert len(chosen["selfattn"]) == 80 and all(".attn1." in n for n in chosen["selfattn"])
  assert chosen["xattn-strict"] == {n for n in chosen["xattn"] if ".to_k." in n or ".to_v." in n}
  assert len(chosen["xattn-strict"]) == 32
  excluded_by_noxattn = names - chosen["noxattn"]
  assert excluded_by_noxattn == chosen["xattn"] | {
      "time_embedding.linear_1.weight", "time_embedding.linear_1.bias", "time_embedding.linear_2.weight",
      "time_embedding.linear_2.bias", "conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight",
      "conv_out.bias"}
  # ESD-u trains norms, resnet time projections, conv_in, self-attention, ff and the transformer projections.
  for kept in ("conv_in.weight", "down_blocks.0.resnets.0.norm1.weight", "down_blocks.0.resnets.0.time_emb_proj.weight",
               "mid_block.attentions.0.proj_in.weight", "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"):
    assert kept in chosen["noxattn"]
  assert chosen["notime"] == names - {n for n in names if n.startswith(("time_embedding", "conv_norm_out", "conv_out"))}
  assert chosen["full"] == names
  assert len(chosen["xlayer"]) == len(chosen["selflayer"]) == 10
  # The same selection as a set of Flax paths, and split/merge put the tree back together.
  selected = esd.select(shapes, "xattn")
  trainable, rest = finetune.split(shapes, selected)
  assert len(traverse_util.flatten_dict(trainable)) == 80
  assert traverse_util.flatten_dict(finetune.merge(trainable, rest)).keys() == traverse_util.flatten_dict(shapes).keys()
  with pytest.raises(UserError, match="train_method"):
    esd.select(shapes, "esd-x")


def test_target_and_concepts():
  e_base, e_c, e_0 = np.array([1.0, 2.0]), np.array([3.0, 0.0]), np.array([1.0, 1.0])
  np.testing.assert_allclose(esd.esd_target(e_base, e_c, e_0, 2.0), [1 - 2 * 2, 2 - 2 * -1])
  assert len(esd.concept_list("i2p", ",")) == 11 and esd.concept_list("i2p", ",")[-1] == "blood"
  assert esd.concept_list("i2p", "") == [esd.SHORTCUTS["i2p"]]  # as the original: no separator, one prompt
  assert esd.concept_list("allartist", ",")[0] == "Kelly Mckernan"


def test_original_x_t_chain():
  config = training.load_config(f"{CONFIG}:paper")
  schedule = NoiseSchedule.from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                        "beta_end": 0.012})
  timesteps, prev = esd.x_t_chain(config, schedule)
  # CompVis: range(0, 1000, 20) + 1 without its top step, each stepping to the one below (index 0 to abar_0).
  np.testing.assert_array_equal(timesteps, np.arange(961, 0, -20))
  np.testing.assert_array_equal(prev, np.append(np.arange(941, 0, -20), 0))
  setup = esd.Setup(None, ["a", "b"], None, {}, frozenset(), (timesteps, prev), schedule)
  rng = np.random.default_rng(0)
  draws = [esd.draw_example(config, setup, rng) for _ in range(2000)]
  for d in draws:
    t_enc = int(d["t_query"]) // 20
    # 49 steps for t_enc 0 and 1, then one fewer per index: the loop breaks after DDIM index t_enc - 1.
    assert d["chain_steps"] == 49 - max(t_enc - 1, 0)
  assert {int(d["t_query"]) for d in draws} >= {0, 999} and {int(d["concept"]) for d in draws} == {0, 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("esd")
  config = training.load_config(f"{CONFIG}:tiny", ["steps=16", "ddim_steps=4", "log_every=4", "checkpoint_every=16",
                                                   "compilation_cache_dir="])
  config.concept, config.separator = "van gogh; monet", ";"
  result = training.train(esd.make_task(config, workdir), config, workdir)
  paths = esd.export(config, workdir)
  return config, workdir, result, paths


def test_training_moves_the_concept_to_the_target(trained):
  config, workdir, result, _ = trained
  losses = [json.loads(line)["train/loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if "train/loss" in line]
  assert len(losses) == 4 and losses[-1] < losses[0]
  assert result["eval/erase_gap"] < 0.9 and result["eval/concept_shift"] > 0


def test_export_changes_only_the_selected_params(trained):
  config, workdir, _, (unet_dir, subset_file) = trained
  _, original = load_pretrained(workdir / esd.TINY_RANDOM / "unet")
  _, exported = load_pretrained(unet_dir)
  selected = esd.select(original, config.train_method)
  flat_original, flat_exported = traverse_util.flatten_dict(original), traverse_util.flatten_dict(exported)
  for path, value in flat_original.items():
    if path in selected:
      assert not np.array_equal(flat_exported[path], value), path
    else:
      np.testing.assert_array_equal(flat_exported[path], value, err_msg=str(path))
  from safetensors.numpy import load_file
  names = finetune.diffusers_names(original, unet2d.LAYER_LISTS)
  assert set(load_file(subset_file)) == {names[p] for p in selected}
  reloaded = finetune.load_subset(original, subset_file, unet2d.LAYER_LISTS)
  for path, value in traverse_util.flatten_dict(reloaded).items():
    np.testing.assert_array_equal(value, flat_exported[path])


def test_export_loads_in_diffusers(trained):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  _, workdir, _, (unet_dir, _) = trained
  reference = diffusers.UNet2DConditionModel.from_pretrained(unet_dir).eval()
  module, params = load_pretrained(unet_dir)
  rng = np.random.default_rng(0)
  x, ctx = rng.normal(size=(1, 8, 8, 4)).astype(np.float32), rng.normal(size=(1, 16, 32)).astype(np.float32)
  ours = jax.jit(module.apply)({"params": params}, x, jnp.array([500]), ctx)
  with torch.no_grad():
    theirs = reference(torch.from_numpy(x.transpose(0, 3, 1, 2)), 500, torch.from_numpy(ctx)).sample.numpy()
  assert np.abs(np.asarray(ours).transpose(0, 3, 1, 2) - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_objective_on_the_original_model(trained):
  # With theta = theta*, the prediction is e_c (paper) or e_from (erase_from): the loss is a multiple of
  # |e_c - e_0|^2 that tells the two objectives apart.
  config, workdir, _, _ = trained
  config = config.copy_and_resolve_references()
  config.negative_guidance = 2.0
  paper = esd.make_setup(config, workdir)
  config.erase_from = "a painting"
  from_setup = dataclasses.replace(paper, erase_from=["a painting"],
                                   text={**paper.text, "source": paper.pipe.encode_text(["a painting"] * 2)})
  rng = np.random.default_rng(0)
  x_t, t = rng.normal(size=(2, 8, 8, 4)).astype(np.float32), jnp.array([100, 800])
  concept = jnp.array([0, 1])
  original = paper.original

  @jax.jit
  def losses_and_gap(original, paper_text, from_text):
    uncond = jnp.broadcast_to(paper_text["uncond"], (2,) + paper_text["uncond"].shape[1:])
    e = lambda context: paper.unet.apply({"params": original}, x_t, t, context)
    gap = jnp.mean((e(paper_text["erase"][concept]) - e(uncond)) ** 2)
    return (esd.erase_loss(config, paper, original, original, paper_text, x_t, t, concept),
            esd.erase_loss(config, from_setup, original, original, from_text, x_t, t, concept), gap)

  paper_loss, from_loss, gap = losses_and_gap(original, paper.text, from_setup.text)
  np.testing.assert_allclose(paper_loss, (1 + 2.0) ** 2 * gap, rtol=1e-4)
  np.testing.assert_allclose(from_loss, 2.0 ** 2 * gap, rtol=1e-4)


def test_diffusers_mode_draws(trained):
  config, workdir, _, _ = trained
  config = config.copy_and_resolve_references()
  config.xt_mode = "diffusers"
  setup = esd.make_setup(config, workdir)
  timesteps, prev = setup.chain
  np.testing.assert_array_equal(timesteps, setup.pipe.schedule.timesteps(config.ddim_steps))
  rng = np.random.default_rng(0)
  for _ in range(50):
    d = esd.draw_example(config, setup, rng)
    assert 0 <= d["chain_steps"] < config.ddim_steps and d["t_query"] == timesteps[d["chain_steps"]]


def test_generation_harness(trained, tmp_path):
  transformers = pytest.importorskip("transformers")
  config, workdir, _, _ = trained
  config = config.copy_and_resolve_references()
  (tmp_path / "prompts.csv").write_text("case_number,prompt,evaluation_seed,label_idx\n"
                                        "0,a painting by van gogh,1,2\n1,a photograph of a city street,2,0\n")
  setup = esd.make_setup(config, workdir)
  tiny_clip(tmp_path / "clip", setup.pipe.tokenizer)
  resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
      embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=4))
  resnet.save_pretrained(tmp_path / "resnet")
  transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(tmp_path / "resnet")
  config.eval_prompts, config.eval_clip = str(tmp_path / "prompts.csv"), str(tmp_path / "clip")
  config.eval_classifier, config.eval_steps, config.eval_batch_size = f"imagenet:{tmp_path / 'resnet'}", 3, 2

  results = esd.evaluate(config, workdir)
  for name in ("original", "erased"):
    assert -1 <= results[f"clip_prompt/{name}"] <= 1 and -1 <= results[f"clip_concept/{name}"] <= 1
    assert results[f"imagenet_accuracy/{name}"] in (0.0, 0.5, 1.0)
  assert sorted(p.name for p in (workdir / "eval" / "original").iterdir()) == ["0_0.png", "1_0.png"]
  assert json.loads((workdir / "eval" / "step_16.json").read_text())["erase_gap"] == results["erase_gap"]
  # The erased model's images differ from the original's for the same seeds.
  from PIL import Image
  before, after = (np.asarray(Image.open(workdir / "eval" / d / "0_0.png")) for d in ("original", "step_16"))
  assert before.shape == (16, 16, 3) and not np.array_equal(before, after)
