"""Numeric functions: the release rebuilt exactly, seeded generation, variants, the MLP approximations."""

import collections
import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.find import dataset, mlp, numeric, source


@pytest.fixture(scope="module")
def release(shared_data):
  return dataset.load_numeric(shared_data / "find" / "numeric")


def test_release_rebuilds_every_function_exactly(shared_data, release):
  """The release's names, the means of its corruptions, and the error its writer's bugs introduced
  (`error_code_generated`: mean of written code - intended f) all follow from our rebuild, for all 1000."""
  entries = json.loads((shared_data / "find" / "numeric" / "data.json").read_text())
  assert len(release) == 1000
  for function, entry in zip(release, entries):
    assert function.spec == entry["name"]
    lo, hi = function.domain
    intended = function.intended(np.linspace(lo, hi, 100))
    assert np.mean(intended) == pytest.approx(entry["corruption_params"]["std"], rel=1e-9, abs=1e-12)
    scale = 1e-9 * max(1.0, float(np.mean(np.abs(function.intended(np.linspace(lo, hi, 1000))))))
    assert function.code_error() == pytest.approx(entry["error_code_generated"], rel=1e-6, abs=scale), function.name


def test_release_variant_mix_and_known_bugs(release):
  assert collections.Counter(f.variant for f in release) == {"clean": 483, "corrupted": 191, "noised": 176, "mlp": 150}
  assert [f.variant for f in release[:150]] == ["mlp"] * 150
  absolute = dataclasses.replace(release[0], variant="clean")   # absolute((26.8, -8.2)): the written code drops b
  assert absolute(-2.0) == pytest.approx(26.8 * 2)
  assert absolute.intended(np.array([-2.0]))[0] == pytest.approx(26.8 * 2 - 8.2)
  composite = dataclasses.replace(release[5], variant="clean")  # rectangle + square_wave: the wave became sign(x)
  assert composite(30.0) == 1 and composite(-30.0) == -1
  root = next(f for f in release if f.kind == "root" and f.params[2] == 2 and f.variant == "clean")
  assert isinstance(root(-4.0), complex)   # Python's float ** 0.5, as the released code computes it


def test_generation_follows_the_recipe():
  functions = numeric.generate(1000, seed=0)
  assert functions == numeric.generate(1000, seed=0)
  assert collections.Counter(f.variant for f in functions) == {"clean": 483, "corrupted": 191, "noised": 176, "mlp": 150}
  assert all(f.variant == "mlp" for f in functions[:150])
  composites = [f for f in functions if f.combiner]
  assert 100 < len(composites) < 200   # 15% +- 3.5 sigma
  assert {f.kind for f in functions if not f.combiner} == set(numeric.ATOMIC)
  assert {k for f in composites for k, _ in f.atoms} <= set(numeric.COMPOSABLE)
  def numbers(p):
    return [v for item in p for v in numbers(item)] if isinstance(p, list) else [] if p is None else [p]
  for f in functions:
    assert all(round(float(v), 1) == float(v) for _, p in f.atoms for v in numbers(p)), f.spec
    if f.kind in ("sin", "cos", "tanh"):
      assert -10 <= f.params[0] <= 10 and 0.1 <= f.params[1] <= 6.3 and 0.1 <= f.params[2] <= 6.3
    if f.kind == "polynomial":
      assert 3 <= len(f.params) <= 6 and all(-5 <= c <= 5 for c in f.params)
    if f.kind == "rational":
      assert len(f.params[0]) < len(f.params[1]) <= 6
    a = f.boundary[0]
    assert max(f.domain[0], -100) <= a <= 100
    if f.corruption_type == "interval_inside":
      assert a + 5 <= f.boundary[1] <= a + 25
  noise = collections.Counter(f.noise_type for f in functions)
  assert 280 < noise["normal"] < 390 and 380 < noise["uniform"] < 490 and 180 < noise["poisson"] < 270


def test_variants_behave_as_specified():
  base = numeric.NumericFunction("f00000", "linear", [2.0, 1.0], (-100.0, 100.0), corruption_type="interval_inside",
                                 corruption_mean=50.0, boundary=(10.0, 20.0))
  assert base(3.0) == 7.0
  corrupted = dataclasses.replace(base, variant="corrupted")
  assert corrupted(3.0) == 7.0 and corrupted(25.0) == 51.0
  assert abs(corrupted(15.0) - 50.0) < 1.0 and corrupted(15.0) != corrupted(15.0)
  noised = dataclasses.replace(base, variant="noised", noise_type="uniform")
  draws = np.array([noised(3.0) for _ in range(200)])
  assert np.all(np.abs(draws - 7.0) <= 1.0) and draws.std() > 0.3
  smaller = dataclasses.replace(base, variant="corrupted", corruption_type="interval_smaller", boundary=(10.0,))
  assert smaller(11.0) == 23.0 and abs(smaller(-50.0) - 50.0) < 1.0
  assert smaller.corrupted_interval() == (-128.0, 10.0)


def test_exported_script_prints_what_runs_in_process(tmp_path):
  function = numeric.NumericFunction("f00007", "relu;square_wave;multiply_two", [[-7.6, 0.9, 0.9], [2.8, 1.9]],
                                     (-100.0, 100.0))
  script = tmp_path / "function_code.py"
  script.write_text(function.source())
  args = ["-3", "0.5", "12.25", "oops"]
  printed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
  assert printed.strip() == function.run(args).strip()
  assert printed.startswith(source.PAIRS_PREFIX) and "(oops, None)" in printed


def test_mlp_recipe_trains_and_exports_the_same_network():
  target = numeric.NumericFunction("f00000", "absolute", [3.0, -20.0], (-100.0, 100.0), variant="mlp")
  (weights, loss), = mlp.fit([target], epochs=400, points=400, seed=1)
  (_, early_loss), = mlp.fit([target], epochs=5, points=400, seed=1)
  assert loss < 0.05 * early_loss
  fitted = dataclasses.replace(target, mlp=weights, approx_mse_error=loss)
  params = {"fc1": {"kernel": jnp.asarray(weights["w1"])[None, :], "bias": jnp.asarray(weights["b1"])},
            "fc2": {"kernel": jnp.asarray(weights["w2"])[:, None], "bias": jnp.asarray(weights["b2"])}}
  xs = np.array([-90.0, -3.5, 0.0, 42.0])
  expected = mlp.MLP().apply({"params": params}, jnp.asarray(xs, jnp.float32)[:, None])[:, 0]
  assert np.allclose([fitted(float(x)) for x in xs], np.asarray(expected), rtol=1e-5, atol=1e-3)
  assert "W1 = np.array(" in fitted.source()
  init = mlp.MLP().init(jax.random.key(0), jnp.zeros((1, 1)))
  assert float(np.max(np.abs(jax.tree.leaves(init)[0]))) <= 1.0   # PyTorch's U(-1/sqrt(fan_in), ...) for fan_in 1
