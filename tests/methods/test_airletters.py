"""The AirLetters method: metrics on a hand-computed case, and train -> eval -> export through the CLI."""

import json

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.data import airletters, airletters_synth
from jaxlab.data import cli as data_cli
from jaxlab.methods import airletters as method
from jaxlab.training.classification import classification_metrics

CONFIG = "train/configs/airletters.py:tiny"


def test_classification_metrics_on_a_hand_computed_case():
  logits = np.array([
      [9, 1, 0, 0, 0, 0],   # true 0, top-1 0
      [0, 1, 9, 8, 0, 0],   # true 3, top-1 2, in top-5
      [5, 4, 3, 2, 1, 9],   # true 1, top-1 5, in top-5
      [9, 8, 7, 6, 5, 0],   # true 5, out of top-5
  ], np.float32)
  labels = np.array([0, 3, 1, 5])
  m = classification_metrics(logits, labels, num_classes=6)
  assert m["top1"] == 0.25 and m["top5"] == 0.75 and m["num_examples"] == 4
  np.testing.assert_array_equal(m["per_class"][[0, 1, 3, 5]], [1, 0, 0, 0])
  assert np.isnan(m["per_class"][2]) and m["mean_class_accuracy"] == 0.25
  assert m["confusion"][3, 2] == 1 and m["confusion"].sum() == 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("airletters")
  labels = airletters.LABELS[:3]
  airletters_synth.write_dataset(root / "manual", {"train": 4, "validation": 1, "test": 1}, labels=labels,
                                 workers=1)
  data_cli.build("airletters", root / "manual", root / "data", "fps15_short48")
  return root / "data"


@pytest.mark.parametrize("variant", ["tiny", "tiny_cnn"])
def test_train_eval_export_through_the_cli(tmp_path, data_dir, variant):
  workdir = tmp_path / "run"
  args = ["train", "airletters", "--config", f"train/configs/airletters.py:{variant}", "--workdir", str(workdir),
          f"--config.data_dir={data_dir}", "--config.total_steps=4", "--config.batch_size=8",
          "--config.checkpoint_every=2", "--config.log_every=2", "--config.eval_batch_size=8",
          "--config.num_frames=4", "--config.image_size=16"]
  if variant == "tiny":
    args += ["--config.model.patch_size=8"]
  assert cli.main(args) == 0
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l] == [2, 4]
  assert any("eval/top1" in l for l in lines)

  assert cli.main(["eval", "airletters", "--workdir", str(workdir)]) == 0
  metrics = json.loads((workdir / "eval" / "metrics_test.json").read_text())
  assert metrics["num_examples"] == 3 and metrics["step"] == 4
  assert (workdir / "eval" / "confusion_test.png").stat().st_size > 1000
  assert len(metrics["per_class"]) == 38

  exported = workdir / "export"
  if variant == "tiny":
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from jaxlab import training
    config = training.load_saved_config(workdir)
    state = training.load_for_eval(method.make_task(config), config, workdir)
    video = np.random.default_rng(0).normal(size=(1, 4, 16, 16, 3)).astype(np.float32)
    ours = method.make_model(config).apply({"params": state["params"]}, video)
    reference = transformers.VideoMAEForVideoClassification.from_pretrained(exported / "videomae").eval()
    with torch.no_grad():
      theirs = reference(pixel_values=torch.from_numpy(video).permute(0, 1, 4, 2, 3)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)
  else:
    assert (exported / "resnext3d.safetensors").is_file()


def test_missing_dataset_is_one_clear_line(tmp_path, capsys):
  code = cli.main(["train", "airletters", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                   f"--config.data_dir={tmp_path / 'nowhere'}"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "jaxlab data build airletters" in err[0]
