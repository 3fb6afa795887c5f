"""The Something-Else method on a small generated release: STIN training, few-shot head fine-tuning, late
ensembles, and the I3D fusion with a frozen checkpoint."""

import json

import jax
import numpy as np
import pytest
from flax import linen as nn

pytest.importorskip("tensorflow_datasets")

from jaxlab import training  # noqa: E402
from jaxlab.data import cli as data_cli  # noqa: E402
from jaxlab.data import something_else_synth as synth  # noqa: E402
from jaxlab.methods import something_else as method  # noqa: E402
from jaxlab.models import cnn3d, stin  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("something_else")
  release = synth.write_dataset(root / "release", {"train": 24, "validation": 8}, seed=1)
  for name in ("compositional_boxes", "fewshot_boxes", "compositional"):
    data_cli.build("something_else", release, root / "tfds", name)
  return str(root / "tfds")


def tiny(data_dir, variant="tiny", **overrides):
  config = training.load_config(f"something_else:{variant}")
  config.data_dir = data_dir
  config.compilation_cache_dir = ""
  config.async_checkpointing = False
  config.update(overrides)
  return config


def losses(run) -> list[float]:
  records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  return [r["train/loss"] for r in records if "train/loss" in r]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  config = tiny(data_dir, epochs=30, log_every=10, checkpoint_every=1000)
  run = tmp_path_factory.mktemp("stin_run")
  training.save_config(config, run)
  result = training.train(method.make_task(config, run), config, run)
  return config, run, result


def test_stin_learns_the_box_motions(trained):
  config, run, result = trained
  assert config.total_steps == 30 * (6 * 24 // 32)
  history = losses(run)
  assert history[-1] < 0.5 * history[0]
  chance = 1 / len(synth.CLASSES)
  assert result["eval/top1"] > 3 * chance

  metrics = method.evaluate(config, run)
  assert metrics["validation/top1"] == pytest.approx(result["eval/top1"])
  assert metrics["validation/num_examples"] == 6 * 8
  # Ensembled with itself, a run predicts what it predicts alone.
  config.ensemble_with = (str(run),)
  metrics = method.evaluate(config, run)
  assert metrics["ensemble/validation/top1"] == pytest.approx(metrics["validation/top1"])
  saved = json.loads((run / "eval" / "metrics_validation.json").read_text())
  assert np.array(saved["confusion"]).sum() == 48


def test_fewshot_trains_only_a_new_head(trained, data_dir, tmp_path):
  base_config, base_run, _ = trained
  config = tiny(data_dir, "tiny_fewshot", fine_tune_from=str(base_run), epochs=6, log_every=2)
  task = method.make_task(config, tmp_path)
  base = training.load_for_eval(method.make_task(base_config), base_config, base_run)
  # Everything but the last layer is the base run's, batch norms included; the head is new (2 novel classes).
  assert "classifier_4" not in task.frozen["params"]
  for path, value in jax.tree_util.tree_leaves_with_path(task.frozen["params"]):
    expected = base["params"]
    for key in path:
      expected = expected[key.key]
    np.testing.assert_array_equal(value, np.asarray(expected))
  np.testing.assert_array_equal(task.frozen["batch_stats"]["coord_to_feature_1"]["mean"],
                                np.asarray(base["model_state"]["batch_stats"]["coord_to_feature_1"]["mean"]))
  result = training.train(task, config, tmp_path)
  state = training.load_for_eval(task, config, tmp_path)
  assert set(state["params"]) == {"classifier_4"} and state["model_state"] == {}
  assert state["params"]["classifier_4"]["kernel"].shape == (512, 2)
  assert 0 <= result["eval/top1"] <= 1
  history = losses(tmp_path)
  assert history[-1] < history[0]


def test_ensemble_averages_probabilities_by_video():
  logits_a = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]))
  logits_b = np.log(np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]]))   # videos 30, 10, 40
  run_a = (logits_a, np.array([0, 1, 2]), np.array([10, 20, 30]))
  run_b = (logits_b, np.array([2, 0, 1]), np.array([30, 10, 40]))
  result = method.ensemble_metrics([run_a, run_b])
  # Videos 10 and 30: means (0.45, 0.3, 0.25) -> class 0 (label 0, right); (0.1, 0.15, 0.75) -> 2 (right).
  assert result["num_examples"] == 2 and result["top1"] == 1.0
  run_b_wrong = (logits_b, np.array([2, 1, 1]), np.array([30, 10, 40]))
  with pytest.raises(Exception, match="disagree"):
    method.ensemble_metrics([run_a, run_b_wrong])


TINY_I3D = dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=4, temporal_kernels=((3,), (3,), (1,), (3,)))


@pytest.mark.slow
def test_i3d_fusion_with_a_frozen_kinetics_checkpoint(data_dir, tmp_path):
  from safetensors.numpy import save_file
  config = tiny(data_dir, dataset="something_else/compositional", model_name="i3d_stin_oie", num_frames=4,
                image_size=32, batch_size=8, eval_batch_size=8, epochs=1, log_every=1)
  config.i3d.update(TINY_I3D)
  # A "Kinetics" checkpoint in the original's state-dict layout, from a random I3D.
  backbone = cnn3d.ResNeXt3D(method.i3d_config(config))
  i3d = jax.jit(backbone.init)(jax.random.key(1), np.zeros((1, 4, 32, 32, 3), np.float32))
  i3d = jax.tree.map(np.asarray, nn.meta.unbox(i3d))
  state = stin.variables_to_torch({k: {"i3D": v} for k, v in i3d.items()})
  save_file({f"module.{k}": v for k, v in state.items()}, str(tmp_path / "kinetics.safetensors"))
  config.i3d.checkpoint = str(tmp_path / "kinetics.safetensors")

  task = method.make_task(config, tmp_path / "run")
  config.total_steps = 3
  batch = next(iter(task.train_data()))
  assert batch["video"].shape == (8, 4, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert batch["boxes"].shape == (8, 2, 4, 4) and "video_id" not in batch
  result = training.train(task, config, tmp_path / "run")
  assert np.isfinite(result["loss"]) and 0 <= result["eval/top1"] <= 1
  trained = training.load_for_eval(task, config, tmp_path / "run")
  assert "i3D" not in trained["params"] and "i3D" not in trained["model_state"]["batch_stats"]
  np.testing.assert_array_equal(task.frozen["params"]["i3D"]["conv1"]["kernel"], i3d["params"]["conv1"]["kernel"])
