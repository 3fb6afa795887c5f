"""The cnn3d bench's PyTorch 3D ResNeXt is the same network as ours (the I3D one: tests/models/test_stin.py)."""

import jax
import numpy as np
import pytest

from jaxlab.bench import cnn3d as cnn3d_bench
from jaxlab.models import cnn3d, stin

torch = pytest.importorskip("torch")


def test_torch_resnext_matches_ours():
  c = cnn3d_bench.SIZES["tiny"]["config"]
  torch.manual_seed(0)
  reference = cnn3d_bench.torch_resnet3d(c).eval()
  video = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()
  variables = stin.i3d_variables_from_torch(reference.state_dict(), c, frames=4, size=32)
  ours = np.asarray(jax.jit(cnn3d.ResNeXt3D(c).apply)(variables, video))
  assert ours.shape == expected.shape == (2, 10)
  assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()
