"""Text-to-video: a tiny folder we write loads in diffusers' `TextToVideoSDPipeline`, and both make the same
videos from the same noise with DDIM and with DPM-Solver++; the CLI writes MP4, GIF and a frame grid."""

import numpy as np
import pytest
from PIL import Image

from jaxlab import cli
from jaxlab.data import video as video_lib
from jaxlab.diffusion import generate, pipeline, schedules, tiny_video

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

PROMPTS = ["a blob doing the sks motion", "the sea"]
FRAMES, STEPS, GUIDANCE = 3, 4, 9.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_video.write(tmp_path_factory.mktemp("t2v") / "pipe", 16, vae_widths=(16, 32),
                          unet_config={**tiny_video.TINY_UNET3D, "block_out_channels": [16, 32]})


@pytest.fixture(scope="module")
def reference(tiny):
  pipe = diffusers.TextToVideoSDPipeline.from_pretrained(tiny)
  pipe.set_progress_bar_config(disable=True)
  return pipe


@pytest.fixture(scope="module")
def ours(tiny):
  return pipeline.dataclasses.replace(pipeline.StableDiffusion.load(tiny), decode_chunk=2)  # 6 frames: 3 VAE calls


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver++"])
def test_same_videos_as_diffusers(ours, tiny, reference, kind):
  assert ours.is_video
  scheduler = schedules.scheduler_from_folder(tiny / "scheduler", kind)
  reference.scheduler = (diffusers.DPMSolverMultistepScheduler if kind == "dpmsolver++" else
                         diffusers.DDIMScheduler).from_config(reference.scheduler.config)
  noise = np.concatenate([pipeline.latent_noise(seed, ours.latent_shape(1, num_frames=FRAMES), "torch")
                          for seed in (3, 4)])
  assert noise.shape == (2, FRAMES, 8, 8, 4)
  # Per-prompt generators, as diffusers draws a batch's latents with them: our noise of seeds 3 and 4.
  run = lambda **kw: reference(PROMPTS, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                               generator=[torch.Generator().manual_seed(s) for s in (3, 4)], **kw).frames
  expected_latents = run(output_type="latent").numpy().transpose(0, 2, 3, 4, 1)

  latents = np.asarray(ours.sample(PROMPTS, noise, STEPS, GUIDANCE, scheduler=scheduler))
  assert np.abs(latents - expected_latents).max() <= 1e-4 * np.abs(expected_latents).max()

  videos = ours.generate(PROMPTS, noise, STEPS, GUIDANCE, scheduler=scheduler)  # the same compiled sampler
  expected = np.stack(run(output_type="np"))
  assert videos.shape == expected.shape == (2, FRAMES, 16, 16, 3) and videos.dtype == np.uint8
  assert np.abs(videos.astype(np.float32) - np.round(expected * 255)).max() <= 1


def test_generate_cli_writes_videos(tiny, tmp_path):
  (tmp_path / "prompts.txt").write_text("3,A clown doing the sks sign.\n7,a blob, moving\n")
  out = tmp_path / "videos"
  args = ["generate", "--pipeline", str(tiny), "--steps", "2", "--num-frames", "4", "--fps", "4", "--out", str(out),
          "--scheduler", "dpmsolver++", "--noise", "torch"]
  assert cli.main(args + ["--prompts", str(tmp_path / "prompts.txt"), "--batch-size", "2"]) == 0
  assert sorted(p.name for p in out.iterdir()) == ["0000_0.gif", "0000_0.mp4", "0000_0_grid.png", "0001_0.gif",
                                                   "0001_0.mp4", "0001_0_grid.png"]
  frames, fps = video_lib.read_video(out / "0000_0.mp4")
  assert frames.shape == (4, 16, 16, 3) and fps == 4
  gif = Image.open(out / "0000_0.gif")
  assert gif.n_frames == 4 and gif.size == (16, 16)
  assert Image.open(out / "0000_0_grid.png").size == (32, 32)  # 2 x 2 frames
  rows = generate.read_prompts(tmp_path / "prompts.txt")
  assert [(r.seed, r.prompt, r.case) for r in rows] == [(3, "A clown doing the sks sign.", "0000"),
                                                        (7, "a blob, moving", "0001")]
  (tmp_path / "bad.txt").write_text("A clown without a seed\n")
  assert cli.main(args + ["--prompts", str(tmp_path / "bad.txt")]) == 2


def test_frame_grid_tiles_row_by_row():
  frames = np.arange(5)[:, None, None, None] * np.ones((1, 2, 3, 3), np.uint8)
  grid = generate.frame_grid(frames)
  assert grid.shape == (4, 9, 3)  # ceil(sqrt(5)) = 3 columns of 3 px, 2 rows of 2 px
  np.testing.assert_array_equal(grid[::2, ::3, 0], [[0, 1, 2], [3, 4, 0]])
