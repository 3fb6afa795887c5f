"""The text-to-image pipeline: a folder we write loads in diffusers, and both make the same images."""

import numpy as np
import pytest

from jaxlab.diffusion import pipeline
from jaxlab.errors import UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return pipeline.write_tiny_random(tmp_path_factory.mktemp("sd") / "pipe", sample_size=8)


def test_same_images_as_diffusers(tiny):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  ours = pipeline.StableDiffusion.load(tiny)
  prompts = ["a painting of the sea", "van gogh"]
  noise = pipeline.latent_noise(7, ours.latent_shape(2), source="torch")
  images = ours.generate(prompts, noise, num_steps=4, guidance_scale=7.5)
  assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8

  reference = diffusers.StableDiffusionPipeline.from_pretrained(tiny, safety_checker=None)
  reference.scheduler = diffusers.DDIMScheduler.from_config(reference.scheduler.config)
  reference.set_progress_bar_config(disable=True)
  assert reference.tokenizer(prompts[1]).input_ids == [int(i) for i in ours.tokenizer(prompts[1])["input_ids"][0][:8]]
  expected = reference(prompts, num_inference_steps=4, guidance_scale=7.5, output_type="np",
                       latents=torch.from_numpy(noise.transpose(0, 3, 1, 2).copy())).images
  assert np.abs(images.astype(np.float32) - np.round(expected * 255)).max() <= 1


def test_torch_noise_is_the_eval_scripts_noise():
  torch = pytest.importorskip("torch")
  expected = torch.randn((2, 4, 3, 5), generator=torch.manual_seed(42)).numpy()
  np.testing.assert_array_equal(pipeline.latent_noise(42, (2, 3, 5, 4), "torch"), expected.transpose(0, 2, 3, 1))


def test_bad_folder(tmp_path):
  with pytest.raises(UserError, match="model_index.json"):
    pipeline.StableDiffusion.load(tmp_path)


def test_generate_cli(tiny, tmp_path):
  from jaxlab import cli
  (tmp_path / "prompts.csv").write_text('prompt,evaluation_seed,case_number\n"a cat, sitting",3,7\nthe sea,5,12\n')
  out = tmp_path / "images"
  args = ["generate", "--pipeline", str(tiny), "--steps", "2", "--out", str(out), "--num-images", "2"]
  assert cli.main(args + ["--prompts", str(tmp_path / "prompts.csv"), "--batch-size", "2"]) == 0
  assert sorted(p.name for p in out.iterdir()) == ["12_0.png", "12_1.png", "7_0.png", "7_1.png"]
  assert cli.main(args + ["--prompt", "a dog", "--seed", "4"]) == 0
  assert (out / "4_1.png").is_file()
  (tmp_path / "bad.csv").write_text("text,seed\nx,1\n")
  assert cli.main(args + ["--prompts", str(tmp_path / "bad.csv")]) == 2


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
  return pipeline.write_tiny_random_xl(tmp_path_factory.mktemp("sdxl") / "pipe", sample_size=8)


def test_sdxl_prompt_encoding_matches_diffusers(tiny_xl):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  ours = pipeline.load_pipeline(tiny_xl)
  assert isinstance(ours, pipeline.StableDiffusionXL)
  prompts = ["a painting of the sea!", "van gogh"]
  embeds, pooled = ours.encode_text(prompts)
  reference = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_xl)
  with torch.no_grad():
    expected, _, expected_pooled, _ = reference.encode_prompt(prompts, do_classifier_free_guidance=False)
  for got, want in ((embeds, expected), (pooled, expected_pooled)):
    assert np.abs(np.asarray(got) - want.numpy()).max() <= 1e-4 * np.abs(want.numpy()).max()


def test_sdxl_generate_cli_gives_diffusers_images(tiny_xl, tmp_path):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  from PIL import Image

  from jaxlab import cli
  args = ["generate", "--pipeline", str(tiny_xl), "--prompt", "a cat on the sea", "--seed", "7", "--noise", "torch",
          "--steps", "3", "--guidance", "5", "--out", str(tmp_path)]
  assert cli.main(args) == 0
  image = np.asarray(Image.open(tmp_path / "7_0.png"), np.float32)
  assert image.shape == (16, 16, 3)

  reference = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_xl)
  reference.scheduler = diffusers.DDIMScheduler.from_config(reference.scheduler.config)
  reference.set_progress_bar_config(disable=True)
  noise = pipeline.latent_noise(7, (1, 8, 8, 4), source="torch")
  expected = reference("a cat on the sea", num_inference_steps=3, guidance_scale=5.0, output_type="np",
                       latents=torch.from_numpy(noise.transpose(0, 3, 1, 2).copy())).images[0]
  assert np.abs(image - np.round(expected * 255)).max() <= 1
