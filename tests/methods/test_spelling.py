"""The CLIP spelling method: rendering, the loss, the metrics, the feature store, training through the loop."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxlab import training
from jaxlab.data import spelling_features, spelling_sources, word_images
from jaxlab.errors import UserError
from jaxlab.methods import spelling

CONFIG_FILE = Path(__file__).resolve().parents[2] / "train" / "configs" / "spelling.py"


def small_config(**overrides) -> ml_collections.ConfigDict:
  """The tiny variant shrunk further: 32 px CLIP, 128 + 48 tuples, a few dozen steps."""
  c = training.load_config(f"{CONFIG_FILE}:tiny")
  c.clip.random.update(image_size=32, patch_size=8, hidden_size=32, projection_dim=32)
  c.data.update(num_classes=4, train_size=128, val_size=48)
  c.update(out_dim=16, batch_size=32, total_steps=40, log_every=10, checkpoint_every=40, lr_step_size=20,
           compilation_cache_dir="")
  c.update(overrides)
  return c


# --------------------------------------------------------------------------------------------- rendering

def _ink(image: Image.Image) -> np.ndarray:
  return np.asarray(image.convert("L")) < 128


def test_word_is_centred_and_drawn_at_the_same_place_on_both_canvases():
  rng = np.random.default_rng(0)
  photo = Image.new("RGB", (300, 240), (40, 200, 90))
  photo_224, word_image, with_word, placement = word_images.render("spell", photo, word_images.RenderOptions(), rng)
  assert photo_224.size == word_image.size == with_word.size == (224, 224)
  assert placement.font_size == 40 and placement.color == (0, 0, 0)
  rows, cols = np.nonzero(_ink(word_image))
  assert abs((rows.min() + rows.max()) / 2 - 111.5) <= 1.5 and abs((cols.min() + cols.max()) / 2 - 111.5) <= 1.5
  solid = np.asarray(word_image).max(-1) == 0  # fully covered pixels are black on both canvases
  assert solid.sum() > 100 and (np.asarray(with_word)[solid] == 0).all()
  np.testing.assert_array_equal(np.asarray(with_word)[~_ink(word_image) & (np.asarray(word_image).min(-1) == 255)],
                                np.asarray(photo_224)[~_ink(word_image) & (np.asarray(word_image).min(-1) == 255)])


def test_random_size_position_and_colour_stay_in_range():
  rng = np.random.default_rng(1)
  options = word_images.RenderOptions(random_font_size=True, random_position=True, color=None)
  for _ in range(20):
    word = word_images.nonsense_word(rng)
    assert 3 <= len(word) <= 5 and word.isalpha() and word.islower()
    placement = word_images.place(word, options, rng)
    assert 20 <= placement.font_size < 40
    blank = word_images.draw(Image.new("RGB", (224, 224), "white"), word, placement)
    box = word_images.ImageDraw.Draw(blank).textbbox((placement.x, placement.y), word,
                                                     font=word_images.font(placement.font_size))
    assert box[0] >= 0 and box[1] >= 0 and box[2] <= 224 and box[3] <= 224


def test_word_lists_and_prompts():
  train, val = (spelling_sources.split_words(spelling_sources.REAL_WORDS, s) for s in ("train", "val"))
  assert not set(train) & set(val) and len(train) + len(val) == len(spelling_sources.REAL_WORDS)
  assert spelling_sources.class_prompt("orange_triangle") == "an image of an orange triangle"
  assert spelling_sources.class_prompt("red circle") == "an image of a red circle"


# ---------------------------------------------------------------------------------------- loss / metrics

def test_infonce_value_at_perfect_alignment_and_symmetry():
  eye = jnp.eye(4)
  # Logits are the identity: each row's cross-entropy is log(1 + 3 e^-1).
  np.testing.assert_allclose(spelling.symmetric_infonce(eye, eye), np.log(1 + 3 * np.exp(-1)), rtol=1e-6)
  a = spelling.project(None, jax.random.normal(jax.random.key(0), (6, 8)))
  b = jax.random.normal(jax.random.key(1), (6, 8))
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  np.testing.assert_allclose(spelling.symmetric_infonce(a, b), spelling.symmetric_infonce(b, a), rtol=1e-6)


def test_orthogonality_penalty_and_orthogonal_init():
  w = jax.nn.initializers.orthogonal()(jax.random.key(0), (16, 32))
  np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-5)
  q = jnp.eye(3)
  assert float(spelling.orthogonality_penalty(q)) == 0.0
  assert np.isfinite(np.asarray(jax.grad(spelling.orthogonality_penalty)(q))).all()
  np.testing.assert_allclose(spelling.orthogonality_penalty(2 * q), np.sqrt(3 * 9), rtol=1e-6)  # |1 - 4| on 3


def test_presets_weight_their_three_terms():
  c = small_config()
  assert [k for k, v in spelling.term_weights(c).items() if v] == list(spelling.PRESETS["learn"])
  c.preset = "forget"
  assert [k for k, v in spelling.term_weights(c).items() if v] == list(spelling.PRESETS["forget"])
  features = {k: jnp.eye(4, 8) for k in ("x_i", "x_t", "x_it", "y_t", "y_i")}
  loss, metrics = spelling.spelling_loss(jnp.eye(8), features, spelling.term_weights(c), reg=0.5)
  assert set(metrics) == {"orthogonality", *spelling.PRESETS["forget"]}
  np.testing.assert_allclose(loss, 3 * np.log(1 + 3 * np.exp(-1)), rtol=1e-6)


def test_top1_retrieval_on_hand_cases():
  x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)  # stored features are unit vectors
  assert spelling.top1_both_ways(x, x) == (1.0, 1.0)
  e = np.eye(3, dtype=np.float32)
  a2b, b2a = spelling.top1_both_ways(e, e[[0, 0, 2]])
  assert (a2b, b2a) == pytest.approx((2 / 3, 2 / 3))


# ------------------------------------------------------------------------- store, training, evaluation

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("spelling")
  config = small_config(typographic_dir=str(spelling_sources.write_typographic_set(root / "typo", count=12)))
  config.features_dir = str(root / "features")
  run = root / "learn"
  result = training.train(spelling.make_task(config, run), config, run)
  return config, run, result


def test_store_keeps_explicit_ids_and_aligned_tuples(trained):
  config, run, _ = trained
  directory = spelling.features_dir(config, run)
  val = spelling_features.load_split(directory, "val")
  assert val.id.tolist() == list(range(48)) and val.x_i.shape == (48, 32)
  np.testing.assert_allclose(np.linalg.norm(val.x_it, axis=1), 1, rtol=1e-5)
  assert 0 < val.real.sum() < 48
  # Re-render tuple 7 from its id and encode it: the stored row is this tuple, photo and word together.
  clip = spelling_features.FrozenCLIP(directory / "random_clip")
  source = spelling_sources.make_source(config.data, "val", config.seed)
  key, photo, class_id = source[7]
  assert (directory / "val" / "sources.txt").read_text().splitlines()[7] == key
  spec = spelling_features.tuple_spec(config.data, config.seed, "val")
  word, real, photo, word_image, with_word, _ = spelling_features.draw_tuple(7, photo, spec, "val")
  assert (word, real, class_id) == (val.words[7], bool(val.real[7]), int(val.class_id[7]))
  again = clip.pil_images([photo, word_image, with_word])
  np.testing.assert_allclose(again, np.stack([val.x_i[7], val.x_t[7], val.x_it[7]]), atol=1e-5)
  np.testing.assert_allclose(clip.texts([word])[0], val.y_t[7], atol=1e-5)
  # The same configuration reuses the store; another one is refused rather than mixed in.
  assert spelling_features.extract(config, directory, directory / "random_clip") == directory
  other = ml_collections.ConfigDict(config.to_dict())
  other.data.real_fraction = 0.9
  with pytest.raises(UserError, match="another configuration"):
    spelling_features.extract(other, directory, directory / "random_clip")


def test_training_moves_only_w_and_lowers_the_loss(trained):
  config, run, result = trained
  rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert len(losses) == 4 and losses[-1] < losses[0]
  assert set(k for r in rows for k in r if k.startswith("train/l_")) == {f"train/{t}" for t in spelling.PRESETS["learn"]}
  w = spelling._trained_projection(config, run)
  assert w.shape == (16, 32)
  assert np.abs(w @ w.T - np.eye(16)).max() > 1e-3  # it moved off its orthogonal start
  assert "eval/fake/im_it_img_t/a2b" in result and "eval/typographic/attack_rate" in result


def test_evaluation_table_and_export(trained):
  config, run, _ = trained
  metrics = spelling.evaluate(config, run)
  for prefix in ("", "clip/"):
    for subset in ("real", "fake"):
      for pair in spelling.RETRIEVAL:
        for direction in ("a2b", "b2a"):
          assert 0 <= metrics[f"{prefix}{subset}/{pair}/{direction}"] <= 1
    assert 0 <= metrics[f"{prefix}zero_shot/with_text"] <= 1
    assert 0 <= metrics[f"{prefix}typographic/accuracy"] <= 1
  paths = spelling.export(config, run)
  assert np.load(paths[0]).shape == (16, 32)
  table = paths[1].read_text()
  assert table.startswith("| metric | CLIP | learn to spell |") and "| fake/im_it_img_i/a2b |" in table


def test_typographic_set_loads_and_scores(tmp_path):
  folder = spelling_sources.write_typographic_set(tmp_path / "typo", count=5)
  files, true, attack = spelling_sources.load_typographic(folder)
  assert len(files) == 5 and all(f.is_file() for f in files) and all(t != a for t, a in zip(true, attack))
  # Scoring: features that equal the prompts of the attack labels give attack rate 1 and accuracy 0.
  directory = tmp_path / "store" / "typographic"
  directory.mkdir(parents=True)
  classes = sorted(set(true) | set(attack))
  prompts = np.eye(len(classes), 8, dtype=np.float32)
  np.save(directory / "classes.npy", prompts)
  np.save(directory / "x.npy", prompts[[classes.index(a) for a in attack]])
  np.save(directory / "true_id.npy", np.array([classes.index(t) for t in true]))
  np.save(directory / "attack_id.npy", np.array([classes.index(a) for a in attack]))
  typographic = spelling_features.load_typographic(tmp_path / "store")
  predicted = np.asarray(spelling._best_match(jnp.asarray(typographic["x"]), jnp.asarray(typographic["classes"])))
  assert (predicted == typographic["attack_id"]).all()
  (folder / "images" / files[0].name).unlink()
  with pytest.raises(UserError, match="missing"):
    spelling_sources.load_typographic(folder)


def test_configs_and_user_errors(tmp_path):
  paper = training.load_config(f"{CONFIG_FILE}:paper")
  assert (paper.batch_size, paper.learning_rate, paper.lr_step_size, paper.lr_gamma) == (128, 1e-4, 4000, 0.5)
  with pytest.raises(UserError, match="clip.path"):
    spelling.make_task(paper, tmp_path)
  paper.clip.path = str(tmp_path)
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(UserError):
    spelling.make_task(paper, tmp_path)


def test_image_folder_source_reads_imagenet_layout(tmp_path):
  for wnid, color in (("n02", "red"), ("n01", "blue")):
    (tmp_path / "val" / wnid).mkdir(parents=True)
    for i in range(2):
      Image.new("RGB", (40, 30), color).save(tmp_path / "val" / wnid / f"img{i}.JPEG")
  (tmp_path / "val" / "n01" / "notes.txt").write_text("not an image")
  (tmp_path / "imagenet_class_index.json").write_text(json.dumps({"0": ["n01", "goldfish"], "1": ["n02", "tench"]}))
  source = spelling_sources.make_source(ml_collections.ConfigDict({"source": "folder", "path": str(tmp_path)}),
                                        "val", seed=0)
  assert source.classes == ["goldfish", "tench"] and len(source) == 4
  key, image, class_id = source[2]
  assert key == "val/n02/img0.JPEG" and class_id == 1 and image.getpixel((0, 0))[0] > 200
  with pytest.raises(UserError, match="train"):
    spelling_sources.ImageFolderSource(tmp_path, "train")
