"""FIND numeric functions: 16 atomic families, two-atom sums and products, and their benchmark variants.

A function is data (family, parameters, domain, noise and corruption settings, which variant the benchmark
uses); its behaviour is the source of its `function_code.py`, generated here and executed in-process too.

Variants (one per function in the benchmark): `clean`; `noised` (one draw of N(0,1), U(-1,1) or
Poisson(1) added per call); `corrupted` (an interval where the output is replaced by draws of
N(mean of f over the domain, 0.1)); `mlp` (a 1-64-1 ReLU MLP fitted to f, see `jaxlab.find.mlp`).

`release_bugs=True` reproduces what the released benchmark's code actually computes, which differs from
its metadata in two ways: the written `absolute` drops its `+ b`, and wherever the writer extracted only a
function's `return` line (the noised and corrupted variants, and both atoms of every sum or product) a
square wave becomes `np.where(x > 0, 1, -1)`, i.e. sign(x). The MLPs and the corruption means were computed
from the intended functions. Functions rebuilt from the release's `data.json` use `release_bugs=True`;
freshly generated ones do not.
"""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxlab.errors import UserError
from jaxlab.find import source

ATOMIC = ("linear", "polynomial", "rational", "absolute", "root", "logarithm", "step", "relu", "sin", "cos",
          "tanh", "constant", "reciprocal", "gaussian", "rectangle", "square_wave")
COMPOSABLE = ("linear", "polynomial", "step", "relu", "constant", "ceil", "floor", "rectangle", "square_wave")
COMBINERS = ("sum_two", "multiply_two")
VARIANTS = ("clean", "noised", "corrupted", "mlp")
# Which file of a released function directory is the benchmark function (`func_name_dict.json`).
RELEASE_FILES = {"function_code.py": "clean", "noised_function_code.py": "noised",
                 "corrupted_function_code.py": "corrupted", "load_mlp.py": "mlp"}
# The release's variant counts among its 850 non-MLP functions; the first 15% are MLPs.
RELEASE_MIX = {"clean": 483, "corrupted": 191, "noised": 176}
MLP_FRACTION = 0.15
P_SIMPLE = 0.85
# The interpreter may probe [-128, 128]; the scorer tests x = i + 0.5 for i in range(-128, 128).
TEST_RANGE = (-128.0, 128.0)
TEST_POINTS = tuple(i + 0.5 for i in range(-128, 128))

_NOISE_CODE = {"normal": "np.random.normal(scale=1)", "uniform": "np.random.uniform(low=-1, high=1)",
               "poisson": "np.random.poisson(lam=1)"}


def _terms(coefficients, powers) -> str:
  return " + ".join(f"{c}*x**{p}" for c, p in zip(coefficients, powers))


def atom_expression(kind: str, p, *, release_bugs: bool = False, extracted: bool = False) -> str:
  """Python/numpy expression in `x` for one atom with parameters `p` (in the release's layout).

  `extracted`: the atom's code was cut down to its `return` line by the release's writer (see module doc).
  """
  if kind == "linear":
    return f"{p[0]}*x + {p[1]}"
  if kind == "polynomial":
    return _terms(p, range(len(p) - 1, -1, -1))
  if kind == "rational":
    numerator, denominator = p
    return f"({_terms(numerator, range(len(numerator)))}) / ({_terms(denominator, range(len(denominator)))})"
  if kind == "absolute":
    return f"{p[0]}*np.abs(x)" if release_bugs else f"{p[0]}*np.abs(x) + {p[1]}"
  if kind == "root":
    # Python's float ** 0.5 of a negative number is complex; numpy's power gives nan.
    return f"{p[0]}*(x**(1.0 / {p[2]})) + {p[1]}" if release_bugs else f"{p[0]}*np.power(x, 1.0 / {p[2]}) + {p[1]}"
  if kind == "logarithm":
    return f"{p[0]}*(np.log(x) / np.log({p[2]})) + {p[1]}"
  if kind == "step":
    return f"{p[0]}*np.heaviside(x, {p[2]}) + {p[1]}"
  if kind == "relu":
    return f"{p[0]} * np.where(x > 0, x, x * {p[2]}) + {p[1]}"
  if kind in ("sin", "cos", "tanh"):
    return f"{p[0]} * np.{kind}((2 * np.pi / {p[1]})*(x-{p[2]})) + {p[3]}"
  if kind == "constant":
    return f"{p}* np.ones_like(x)"
  if kind == "reciprocal":
    return f"1 / ({p[0]} * x)"
  if kind == "gaussian":
    return f"(1 / ({p[1]} * np.sqrt(2 * np.pi))) * np.exp(-0.5 * ((x - {p[0]}) / {p[1]}) ** 2)"
  if kind == "rectangle":
    return f"np.where(abs(x) <= {p[0]}/2, 1, 0)"
  if kind == "square_wave":
    if release_bugs and extracted:
      return "np.where(x > 0, 1, -1)"
    return f"np.where(np.sin((x - {p[1]}) * (2 * np.pi / {p[0]})) > 0, 1, -1)"
  if kind in ("ceil", "floor"):
    return f"np.{kind}(x)"
  raise ValueError(f"unknown numeric family {kind!r}")


@dataclasses.dataclass(frozen=True)
class NumericFunction:
  """One benchmark function; `kind` is an atom name or `atom1;atom2;sum_two|multiply_two`."""
  name: str
  kind: str
  params: Any
  domain: tuple[float, float]
  variant: str = "clean"
  noise_type: str = "normal"
  corruption_type: str = "interval_inside"
  corruption_mean: float = 0.0
  boundary: tuple[float, ...] = (0.0, 5.0)
  release_bugs: bool = False
  mlp: dict | None = None
  approx_mse_error: Any = "not trained"

  category = "numeric"
  initial = None

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise UserError(f"{self.name}: unknown variant {self.variant!r}; one of {VARIANTS}")

  @property
  def prompt(self) -> str:
    return "numeric_mlp" if self.variant == "mlp" else "numeric"

  @property
  def atoms(self) -> list[tuple[str, Any]]:
    if ";" not in self.kind:
      return [(self.kind, self.params)]
    first, second, _ = self.kind.split(";")
    return [(first, self.params[0]), (second, self.params[1])]

  @property
  def combiner(self) -> str | None:
    return self.kind.split(";")[2] if ";" in self.kind else None

  @property
  def spec(self) -> str:
    """The release's `name` string, e.g. `absolute((26.8, -8.2))`."""
    def show(kind, p):
      if kind in ("ceil", "floor"):
        return "None"
      if kind in ("constant", "polynomial"):
        return str(p)
      return str(tuple(p)) if kind != "rational" else str((list(p[0]), list(p[1])))
    if self.combiner is None:
      if self.kind == "polynomial":
        return f"polynomial({', '.join(map(str, self.params))})"
      return f"{self.kind}({show(self.kind, self.params)})"
    return f"{self.kind}({', '.join(show(k, p) for k, p in self.atoms)})"

  def expression(self, *, extracted: bool, intended: bool = False) -> str:
    """The function's expression in `x`; `intended` ignores the release bugs."""
    bugs = self.release_bugs and not intended
    if self.combiner is None:
      return atom_expression(self.kind, self.params, release_bugs=bugs, extracted=extracted)
    first, second = (atom_expression(k, p, release_bugs=bugs, extracted=True) for k, p in self.atoms)
    return f"{first} + {second}" if self.combiner == "sum_two" else f"({first}) * ({second})"

  def intended(self, x: np.ndarray) -> np.ndarray:
    """f as its metadata defines it, vectorised over `x` (the MLP's target; the corruption mean)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
      return np.broadcast_to(eval(self.expression(extracted=False, intended=True), {"np": np, "x": x}), x.shape)

  def corrupted_interval(self) -> tuple[float, float]:
    """Where the corrupted variant replaces f, within the test range."""
    lo, hi = TEST_RANGE
    if self.corruption_type == "interval_inside":
      return self.boundary[0], self.boundary[1]
    if self.corruption_type == "interval_smaller":
      return lo, self.boundary[0]
    return self.boundary[0], hi

  def _body(self) -> tuple[str, tuple[str, ...]]:
    if self.variant == "mlp":
      if self.mlp is None:
        raise UserError(f"{self.name}: the mlp variant has no trained weights yet (jaxlab.find.mlp.fit_functions)")
      weights = {k: np.asarray(v, np.float32).ravel().tolist() for k, v in self.mlp.items()}
      arrays = "\n".join(f"{k.upper()} = np.array({weights[k]!r}, dtype=np.float32)" for k in ("w1", "b1", "w2", "b2"))
      return (f"# A 1-64-1 ReLU MLP fitted to the function (see jaxlab.find.mlp).\n{arrays}\n\n\n"
              "def function(x):\n"
              "  hidden = np.maximum(np.float32(x) * W1 + B1, np.float32(0))\n"
              "  return float(hidden @ W2 + B2[0])"), ("import numpy as np",)
    if self.variant == "clean":
      whole = self.release_bugs and self.kind == "square_wave"
      if whole:  # the release wrote this one in full: a statement, then the `return` line
        p = self.params
        lines = [f"x = np.sin((x - {p[1]}) * (2 * np.pi / {p[0]}))", "return np.where(x > 0, 1, -1)"]
      else:
        lines = [f"return {self.expression(extracted=False)}"]
    elif self.variant == "noised":
      lines = [f"return {self.expression(extracted=True)} + {_NOISE_CODE[self.noise_type]}"]
    else:
      expression, (a, *rest) = self.expression(extracted=True), self.boundary
      draw = f"np.random.normal(loc={self.corruption_mean!r}, scale=0.1, size=x.shape)"
      if self.corruption_type == "interval_inside":
        where = f"np.where((x > {a!r}) & (x < {rest[0]!r}), {draw}, {expression})"
      elif self.corruption_type == "interval_smaller":
        where = f"np.where(x > {a!r}, {expression}, {draw})"
      else:
        where = f"np.where(x < {a!r}, {expression}, {draw})"
      lines = ["x = np.asarray(x, dtype=float)", f"return {where}"]
    body = "def function(x):\n" + "".join(f"  {line}\n" for line in lines)
    return body, ("import numpy as np",)

  def source(self) -> str:
    body, imports = self._body()
    return source.script(body, output="function(float(arg))", imports=imports)

  @functools.cached_property
  def _module(self):
    return source.load(self.source(), self.name)

  def __call__(self, x: float):
    """The benchmark function at one point (a fresh noise/corruption draw on every call)."""
    with np.errstate(all="ignore"):
      return self._module.function(x)

  def run(self, args: Sequence[str]) -> str:
    """What `python function_code.py *args` prints."""
    with np.errstate(all="ignore"):
      return self._module._pairs(list(args))

  def code_error(self) -> float:
    """mean(written clean code - intended f) on the test domain: the release's `error_code_generated`."""
    x = np.linspace(self.domain[0], self.domain[1], 1000).reshape(-1, 1)
    clean = dataclasses.replace(self, variant="clean", mlp=None)
    module = source.load(clean.source())
    with np.errstate(all="ignore"):
      return float(np.mean(module.function(x) - self.intended(x)))

  def metadata(self) -> dict:
    """A `numeric/data.json` entry (the release's fields, plus `variant`, `release_bugs` and `mlp`)."""
    error = self.code_error()
    return {
        "type": "simple" if self.combiner is None else self.kind.split(";")[0], "params": self.params,
        "name": self.spec, "dir": self.name, "approx_mse_error": self.approx_mse_error,
        "corruption_type": self.corruption_type,
        "corruption_params": {"std": self.corruption_mean, "boundary": list(self.boundary)},
        "domain": list(self.domain), "noise_type": self.noise_type, "noise_params": 1, "GPT_description": "",
        "error_code_generated": error, "error_corrupted_code_generated": error,
        "variant": self.variant, "release_bugs": self.release_bugs, "mlp": self.mlp}


def parse_kind(spec: str) -> str:
  """`relu;linear;multiply_two((0.3, ...), ...)` -> `relu;linear;multiply_two`."""
  return spec.split("(", 1)[0]


def from_metadata(entry: dict, variant: str | None = None, *, release_bugs: bool | None = None) -> NumericFunction:
  """A function from a `numeric/data.json` entry: ours (with `variant`) or the release's (variant given)."""
  variant = variant or entry.get("variant")
  if variant is None:
    raise UserError(f"{entry.get('dir')}: no variant; a released data.json needs its func_name_dict.json")
  mlp = entry.get("mlp")
  error = entry.get("approx_mse_error", "not trained")
  return NumericFunction(
      name=entry["dir"].rstrip("/").rsplit("/", 1)[-1], kind=parse_kind(entry["name"]), params=entry["params"],
      domain=tuple(entry["domain"]), variant=variant, noise_type=entry["noise_type"],
      corruption_type=entry["corruption_type"], corruption_mean=float(entry["corruption_params"]["std"]),
      boundary=tuple(float(b) for b in entry["corruption_params"]["boundary"]),
      release_bugs=entry.get("release_bugs", True) if release_bugs is None else release_bugs,
      mlp=mlp, approx_mse_error=error)


def domain_of(kind: str) -> tuple[float, float]:
  """The release's domains: [1, 100] for logarithms, [0, 100] for roots, [-100, 100] otherwise."""
  if kind == "logarithm":
    return (1.0, 100.0)
  if kind == "root":
    return (0.0, 100.0)
  return (-100.0, 100.0)


def _r1(value) -> float:
  return round(float(value), 1)


def sample_atom(kind: str, rng: np.random.Generator):
  """Parameters of one atom, with the original's ranges and rounding (release layout)."""
  scale, bias = _r1(rng.uniform(-30, 30)), _r1(rng.uniform(-30, 30))
  if kind == "linear":
    return [_r1(rng.uniform(-10, 10)), _r1(rng.uniform(-10, 10))]
  if kind == "polynomial":
    return [_r1(rng.uniform(-5, 5)) for _ in range(int(rng.integers(2, 5, endpoint=True)) + 1)]
  if kind == "rational":
    numerator_order = int(rng.integers(0, 4, endpoint=True))
    denominator_order = int(rng.integers(numerator_order + 1, 5, endpoint=True))
    return [[_r1(rng.uniform(-10, 10)) for _ in range(numerator_order + 1)],
            [_r1(rng.uniform(-10, 10)) for _ in range(denominator_order + 1)]]
  if kind == "absolute":
    return [scale, bias]
  if kind == "root":
    return [scale, bias, int(rng.integers(1, 2, endpoint=True))]
  if kind == "logarithm":
    base = 1.0
    while base == 1.0:  # log(1) = 0 would make the function undefined everywhere
      base = _r1(rng.uniform(1, 10))
    return [scale, bias, base]
  if kind == "step":
    return [scale, bias, _r1(rng.uniform(-100, 100))]
  if kind == "relu":
    return [scale, bias, _r1(rng.uniform(0, 1))]
  if kind in ("sin", "cos", "tanh"):
    grid = np.linspace(0.1, 2 * np.pi, 100)
    return [_r1(rng.choice(np.linspace(-10, 10, 100))), _r1(rng.choice(grid)), _r1(rng.choice(grid)), bias]
  if kind == "constant":
    return int(rng.integers(-100, 100))
  if kind == "reciprocal":
    return [_r1(rng.uniform(-10, 10))]
  if kind == "gaussian":
    return [_r1(rng.uniform(-50, 50)), _r1(rng.uniform(1, 10))]
  if kind == "rectangle":
    return [_r1(rng.uniform(1, 10))]
  if kind == "square_wave":
    return [_r1(rng.uniform(1, 10)), _r1(rng.uniform(-5, 5))]
  if kind in ("ceil", "floor"):
    return None
  raise ValueError(f"unknown numeric family {kind!r}")


def sample_kind(rng: np.random.Generator) -> tuple[str, Any]:
  """One atom with probability 0.85, otherwise a sum or product of two composable atoms."""
  if rng.random() < P_SIMPLE:
    kind = str(rng.choice(ATOMIC))
    return kind, sample_atom(kind, rng)
  combiner = str(rng.choice(COMBINERS))
  first, second = (str(k) for k in rng.choice(COMPOSABLE, 2))
  return f"{first};{second};{combiner}", [sample_atom(first, rng), sample_atom(second, rng)]


def sample_noise(rng: np.random.Generator) -> str:
  """The original's draw: normal w.p. 0.33, else uniform w.p. 0.66, else poisson."""
  if rng.random() < 0.33:
    return "normal"
  return "uniform" if rng.random() < 0.66 else "poisson"


def sample_corruption(function: NumericFunction, rng: np.random.Generator) -> dict:
  """Corruption type, boundary and replacement mean, as the original's `sample_corruption`."""
  lo, hi = function.domain
  mean = float(np.mean(function.intended(np.linspace(lo, hi, 100))))
  a = _r1(rng.uniform(max(lo, -100), 100))
  if rng.random() < 0.5:
    kind = "interval_smaller" if rng.random() < 0.5 else "interval_larger"
    boundary = (a,)
  else:
    kind, boundary = "interval_inside", (a, float(rng.uniform(a + 5, a + 25)))
  return {"corruption_type": kind, "boundary": boundary, "corruption_mean": mean}


def variant_plan(n: int, rng: np.random.Generator) -> list[str]:
  """The release's mix: the first 15% are MLPs, the rest clean/corrupted/noised in the release's ratio."""
  n_mlp = round(MLP_FRACTION * n)
  rest = n - n_mlp
  total = sum(RELEASE_MIX.values())
  counts = {k: int(rest * v // total) for k, v in RELEASE_MIX.items()}
  counts["clean"] += rest - sum(counts.values())
  others = [k for k, c in counts.items() for _ in range(c)]
  rng.shuffle(others)
  return ["mlp"] * n_mlp + others


def generate(n: int, seed: int = 0) -> list[NumericFunction]:
  """`n` seeded functions f00000 onwards with the release's variant mix. The MLP variants still need their
  weights: `jaxlab.find.mlp.fit_functions` trains them."""
  rng = np.random.default_rng(seed)
  functions = []
  for i, variant in enumerate(variant_plan(n, rng)):
    kind, params = sample_kind(rng)
    base = NumericFunction(f"f{i:05d}", kind, params, domain_of(kind), variant=variant,
                           noise_type=sample_noise(rng))
    functions.append(dataclasses.replace(base, **sample_corruption(base, rng)))
  return functions
