"""Motion customisation: the trained-parameter rules, timestep sampling, the prior-preservation loss, and the
method end to end (train, eval, export loaded by diffusers)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util
from safetensors.numpy import load_file

from jaxlab import cli, training
from jaxlab.data import video as video_lib
from jaxlab.diffusion import finetune, tiny_video
from jaxlab.errors import UserError
from jaxlab.methods import motion
from jaxlab.models import load_pretrained, unet3d, video_classifiers
from tests.methods.tiny_models import tiny_clip

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
  # Our UNet3D at ms-1.7b's size, on abstract shapes: the same names, so the rules pick the same tensors.
  module = unet3d.UNet3DConditionModel(unet3d.UNet3DConfig(sample_size=32))
  ours = finetune.diffusers_names(unet3d.FAMILY.abstract_variables(module)["params"], unet3d.NAMING)
  assert set(ours.values()) == set(counts)
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


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_caption_dropout_outside_zero_to_one_is_refused_before_any_work(share, tmp_path):
  config = training.load_config("motion:tiny", [f"caption_dropout={share}"])
  with pytest.raises(UserError, match="caption_dropout"):
    motion.make_setup(config, tmp_path)
  assert not any(tmp_path.iterdir())


def test_prior_preservation_loss_on_a_hand_computed_case():
  prediction = jnp.array([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
  target = jnp.zeros((3, 2))
  loss, parts = motion.prior_preservation_loss(prediction, target, num_instance=1, prior_lambda=0.5)
  # instance: mean(1, 1) = 1; prior: mean(0, 4, 9, 0) = 3.25; loss = 1 + 0.5 * 3.25.
  assert float(parts["instance_mse"]) == 1.0 and float(parts["prior_mse"]) == 3.25
  assert float(loss) == 1.0 + 0.5 * 3.25
  alone, parts = motion.prior_preservation_loss(prediction[:1], target[:1], 1, 0.5)
  assert float(alone) == 1.0 and set(parts) == {"instance_mse"}


# ------------------------------------------------------------------------------------------- end to end

CONFIG = Path(__file__).resolve().parents[2] / "train" / "configs" / "motion.py"
# One level (and the mid block): every kind of trained layer, the smallest compile.
UNET = {**tiny_video.TINY_UNET3D, "block_out_channels": [16], "down_block_types": ["CrossAttnDownBlock3D"],
        "up_block_types": ["CrossAttnUpBlock3D"]}


def write_classifier_workdir(workdir: Path, labels: list[str]) -> Path:
  """A random-weight video ViT saved as a `jaxlab train airletters` run saves it (config.json + a checkpoint)."""
  config = training.load_config("train/configs/airletters.py:tiny", ["num_frames=4", "image_size=16",
                                                                     "model.patch_size=8"])
  config.labels = labels
  training.save_config(config, workdir)
  module = video_classifiers.make(config, len(labels))
  params = nn.meta.unbox(module.init(jax.random.key(3), jnp.zeros((1, 4, 16, 16, 3))))["params"]
  checkpointer = training.Checkpointer(workdir / "checkpoints", asynchronous=False)
  checkpointer.save(7, {"step": jnp.int32(7), "params": params, "opt_state": (), "model_state": {},
                        "rng": jnp.zeros(2, jnp.uint32)})
  checkpointer.close()
  return workdir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("motion")
  folder = tiny_video.write(root / "t2v", 16, unet_config=UNET, vae_widths=(16, 32))
  workdir = root / "run"
  overrides = [f"pretrained={folder}", "resolution=16", "num_frames=4", "synthetic.num_clips=2",
               "synthetic.num_frames=6", "total_steps=3", "log_every=1", "checkpoint_every=3"]
  args = ["train", "motion", "--config", f"{CONFIG}:tiny", "--workdir", str(workdir)]
  assert cli.main(args + [f"--config.{o}" for o in overrides]) == 0
  return training.load_saved_config(workdir), workdir, folder


def test_train_changes_only_the_selected_tensors_and_exports_them(trained):
  config, workdir, folder = trained
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert len(losses) == 3 and all(np.isfinite(losses))
  assert {"train/instance_mse", "train/prior_mse", "eval/instance_mse_ratio"} <= set().union(*records)
  _, base = load_pretrained(folder / "unet")
  _, tuned = load_pretrained(workdir / "export" / "unet")
  names = finetune.diffusers_names(base, unet3d.NAMING)
  rule = motion.trainable_rule(config.trainable_modules)
  flat_base, flat_tuned = traverse_util.flatten_dict(base), traverse_util.flatten_dict(tuned)
  changed = {names[p] for p in flat_base if not np.array_equal(flat_base[p], flat_tuned[p])}
  trained = {n for n in names.values() if rule(n)}
  assert changed == trained
  assert {n.split(".")[-2] for n in changed if ".attentions." in n and "temp" not in n} == {"to_k", "to_v"}
  assert any("transformer_in." in n for n in changed) and any(".temp_convs." in n for n in changed)
  subset = load_file(str(workdir / "export" / "motion.safetensors"))
  assert set(subset) == trained
  reloaded = traverse_util.flatten_dict(finetune.load_subset(base, subset, unet3d.NAMING))
  assert all(np.array_equal(reloaded[p], flat_tuned[p]) for p in flat_tuned)


def test_export_loads_in_diffusers(trained):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  _, workdir, folder = trained
  exported = diffusers.UNet3DConditionModel.from_pretrained(workdir / "export" / "unet").eval()
  base = diffusers.UNet3DConditionModel.from_pretrained(folder / "unet").eval()
  base.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(str(workdir / "export" /
                                                                          "motion.safetensors")).items()},
                       strict=False)
  x, text = torch.randn(1, 4, 3, 8, 8, generator=torch.manual_seed(0)), torch.randn(1, 5, 32)
  module, params = load_pretrained(workdir / "export" / "unet")
  with torch.no_grad():
    theirs, patched = exported(x, 500, text).sample.numpy(), base(x, 500, text).sample.numpy()
  ours = np.asarray(jax.jit(module.apply)({"params": params}, jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1)),
                                          500, jnp.asarray(text.numpy()))).transpose(0, 4, 1, 2, 3)
  np.testing.assert_array_equal(theirs, patched)  # the export = the base with the changed tensors put in
  assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def token_table(text_params) -> np.ndarray:
  flat = traverse_util.flatten_dict(text_params)
  return np.asarray(next(v for k, v in flat.items() if k[-2:] == ("token_embedding", "embedding")))


def test_latents_are_cached_and_windows_drawn_from_them(trained):
  config, workdir, _ = trained
  cached = sorted(p.name for p in (workdir / "cache").iterdir())
  assert len(cached) == 2 and cached[0].startswith("instance-") and cached[1].startswith("reg-")
  setup = motion.make_setup(config, workdir)
  assert setup.captions == ["a blob doing the sks motion", "a blob moving up and down"]
  assert [len(m) for m in setup.instance.moments] == [6, 6] and setup.instance.moments[0].shape[1:] == (8, 8, 8)
  assert len(setup.selected) > 0 and setup.unet.config.block_out_channels == (16,)
  example = motion.draw_example(config, setup, 1, np.random.default_rng(0))
  assert example["instance"].shape == example["reg"].shape == (4, 8, 8, 4)
  assert example["instance_caption"] == 0 and example["reg_caption"] == 1
  # Caption dropout (the tiny base's pretraining): the empty caption joins the table and replaces a share of them.
  dropout = config.copy_and_resolve_references()
  dropout.caption_dropout = 0.3
  dropped = motion.make_setup(dropout, workdir)
  assert dropped.captions == ["", "a blob doing the sks motion", "a blob moving up and down"]
  rng = np.random.default_rng(0)
  draws = np.array([[d["instance_caption"], d["reg_caption"]]
                    for d in (motion.draw_example(dropout, dropped, 1, rng) for _ in range(400))])
  assert set(draws[:, 0]) == {0, 1} and set(draws[:, 1]) == {0, 2}
  assert abs(np.mean(draws == 0) - 0.3) < 0.05
  # The learned-token ablation's adapter: the UNet subset and one row of the token table, nothing else.
  width = setup.text.shape[-1]
  tuned = motion.Tuned(setup.adapter.unet, token_id=5, width=width)
  zeros = tuned.init()
  assert zeros["token"].shape == (width,) and set(zeros) == {"unet", "token"}
  params = {"unet": setup.adapter.unet.initial(setup.original), "token": np.ones(width, np.float32)}
  applied = tuned.apply(params, setup.pipe.params)
  before, after = (token_table(p["text_encoder"]) for p in (setup.pipe.params, applied))
  assert np.array_equal(after[5], np.ones(width)) and np.array_equal(np.delete(after, 5, 0), np.delete(before, 5, 0))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(applied["unet"]), jax.tree.leaves(setup.original)))


def test_eval_generates_videos_and_scores_them(trained, tmp_path):
  config, workdir, _ = trained
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("3,A clown doing the {token} motion.\n\n5,a blob moving up and down\n")
  classifier = write_classifier_workdir(tmp_path / "classifier", ["circle", "line"])
  setup = motion.make_setup(config, workdir)
  tiny_clip(tmp_path / "clip", setup.pipe.tokenizer)
  overrides = {"eval_prompts": prompts, "eval_clip": tmp_path / "clip", "eval_classifier": classifier,
               "eval_motion_label": "circle", "eval_steps": 2, "eval_batch_size": 2}
  assert cli.main(["eval", "motion", "--workdir", str(workdir)] + [f"--config.{k}={v}" for k, v in overrides.items()]) == 0
  results = json.loads((workdir / "eval" / "step_3.json").read_text())
  videos = {name: sorted((workdir / "eval" / folder).glob("*.mp4")) for name, folder in
            (("base", "base"), ("tuned", "step_3"))}
  assert [p.name for p in videos["tuned"]] == ["0000_0.mp4", "0001_0.mp4"] and results["num_videos"] == 2
  assert (workdir / "eval" / "step_3" / "0000_0.gif").is_file()
  assert (workdir / "eval" / "step_3" / "0000_0_grid.png").is_file()
  frames = {n: [video_lib.read_video(p)[0] for p in paths] for n, paths in videos.items()}
  assert frames["base"][0].shape == (4, 16, 16, 3) and not np.array_equal(frames["base"][0], frames["tuned"][0])
  predicted = motion.scoring.VideoClassifier(classifier).predict(frames["tuned"])
  assert results["motion_accuracy/tuned"] == float(np.mean(predicted == 0))
  for name in ("base", "tuned"):
    assert -1 <= results[f"clip_text/{name}"] <= 1


def test_pipeline_folder_choices(tmp_path):
  config = training.load_config(f"{CONFIG}:tiny")
  config.pretrained, config.resolution = "", 16
  with pytest.raises(UserError, match="text-to-video diffusers folder"):
    motion.pipeline_folder(config, tmp_path)
  config.pretrained = "tiny-random"  # a random text-to-video folder, written once
  folder = motion.pipeline_folder(config, tmp_path)
  assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "TextToVideoSDPipeline"
  assert json.loads((folder / "unet" / "config.json").read_text())["_class_name"] == "UNet3DConditionModel"
  assert motion.pipeline_folder(config, tmp_path) == folder == tmp_path / "tiny-random"
