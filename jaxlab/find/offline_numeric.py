"""The offline interpreter for numeric functions: probe, detect noise and a corrupted interval, fit families.

Experiments (each one `PYTHON(...)` command): a grid of the integers in [-128, 128] plus 256 random points,
twice. Points whose two outputs differ reveal the benchmark's perturbations: all (or scattered) points
differ for an additive-noise function, one contiguous block differs for a corrupted interval (its values
are fresh N(mean, 0.1) draws). Noisy functions get more repeats to average; jumps and the corrupted
interval's ends are bracketed by further probes.

Fitting: the 16 atomic families and the two-atom sums and products of the composable ones, mostly as linear
least squares over feature sets (with a grid over the few non-linear parameters: period, phase, width,
centre), rational functions by a linearised SVD, all robust (Huber IRLS) for noisy data. The simplest model
that explains the data (exactly for a deterministic function, to the noise level for a noisy one) wins. If
none does (e.g. an MLP approximation), the code interpolates the probes instead (`fallback`), and says so.
"""

import dataclasses
import json
import math
from collections.abc import Callable

import numpy as np

from jaxlab.find.numeric import TEST_RANGE

LO, HI = TEST_RANGE
EXACT = 1e-6        # relative error under which a deterministic function's output is reproduced exactly
MISFIT = 0.005      # ... at all but this fraction of points (probes that land exactly on a jump are arbitrary)
GOOD = 1e-2         # ... under which a fit is kept rather than interpolation
PERIOD_GRID = np.round(np.arange(1, 64) * 0.1, 1)     # sin/cos/tanh periods and phases: 0.1 .. 6.3
WIDTH_GRID = np.round(np.arange(10, 101) * 0.1, 1)    # rectangle widths, square-wave periods: 1.0 .. 10.0


# --------------------------------------------------------------------------------------------------------
# Probing plan


def grid(seed: int) -> list[float]:
  rng = np.random.default_rng(seed)
  random_points = np.round(rng.uniform(LO, HI, 256), 3)
  return sorted(set(float(v) for v in np.arange(LO, HI + 1)) | set(float(v) for v in random_points))


def parse_value(text: str):
  """A printed output: float, complex (a release quirk, see `numeric`), or nan for 'None'/garbage."""
  text = text.strip()
  try:
    return float(text)
  except ValueError:
    pass
  try:
    return complex(text.replace(" ", ""))
  except ValueError:
    return math.nan


@dataclasses.dataclass
class Observations:
  values: dict = dataclasses.field(default_factory=dict)   # x -> list of outputs

  def add(self, xs, ys):
    for x, y in zip(xs, ys):
      self.values.setdefault(float(x), []).append(y)

  def arrays(self):
    xs = np.array(sorted(self.values))
    return xs, [self.values[x] for x in xs]


def _real(y) -> float:
  return y if isinstance(y, float) else math.nan


def _differ(a, b) -> bool:
  if a == b or isinstance(a, complex) or isinstance(b, complex):
    return a != b
  if math.isnan(a) and math.isnan(b):
    return False
  return not (abs(a - b) <= 1e-12 * (1 + abs(a)))


@dataclasses.dataclass
class Analysis:
  x: np.ndarray              # points used for fitting
  y: np.ndarray              # their (mean) real values; nan where undefined
  noisy: bool
  noise_std: float
  repeats: int
  corrupted: tuple[float, float] | None   # the interval (clipped to the test range)
  corrupted_value: float
  complex_below_zero: bool
  jumps: list[float]


def analyze(obs: Observations, jumps: list[float] = ()) -> Analysis:
  xs, ys = obs.arrays()
  first = np.array([_real(v[0]) for v in ys])
  varying = np.array([len(v) > 1 and any(_differ(v[0], w) for w in v[1:]) for v in ys])
  complex_below_zero = any(isinstance(v[0], complex) for x, v in zip(xs, ys) if x < 0)
  n = len(xs)
  corrupted, value, noisy = None, 0.0, False
  # Where f is undefined (nan) a noisy function stays undefined: the block statistics use defined points.
  defined = np.flatnonzero([any(isinstance(w, float) and math.isfinite(w) for w in v) for v in ys])
  if varying.any():
    idx = np.flatnonzero(varying[defined])
    block = slice(idx[0], idx[-1] + 1)
    density = varying[defined][block].mean()
    if density >= 0.9 and idx[-1] - idx[0] + 1 < 0.97 * len(defined):
      first_i, last_i = defined[idx[0]], defined[idx[-1]]
      lo = LO if first_i == 0 else (xs[first_i - 1] + xs[first_i]) / 2
      hi = HI if last_i == n - 1 else (xs[last_i] + xs[last_i + 1]) / 2
      corrupted = (float(lo), float(hi))
      value = float(np.mean([_real(w) for i in defined[idx] for w in ys[i]]))
    else:
      noisy = varying[defined].mean() > 0.2
  if noisy:
    y = np.array([np.mean([_real(w) for w in v]) for v in ys])
    spread = [np.var([_real(w) for w in v], ddof=1) for v in ys if len(v) > 1]
    noise_std = float(np.sqrt(np.nanmean(spread))) if spread else 0.0
    repeats = int(np.median([len(v) for v in ys]))
    keep = np.ones(n, bool)
  else:
    y, noise_std, repeats = first, 0.0, 1
    keep = ~varying if corrupted else np.ones(n, bool)
  return Analysis(xs[keep], y[keep], noisy, noise_std, repeats, corrupted, value, complex_below_zero, list(jumps))


def find_jumps(x: np.ndarray, y: np.ndarray, limit: int = 150) -> list[tuple[float, float]]:
  """Brackets (x_i, x_i+1) across which y changes much more than its neighbouring slopes predict."""
  finite = np.isfinite(y)
  x, y = x[finite], y[finite]
  if len(x) < 4:
    return []
  dx, dy = np.diff(x), np.abs(np.diff(y))
  slope = dy / np.maximum(dx, 1e-12)
  left = np.concatenate([[np.inf], slope[:-1]])
  right = np.concatenate([slope[1:], [np.inf]])
  expected = np.minimum(left, right) * dx
  scale = 1e-9 * (1 + np.abs(y[:-1]))
  jump = dy > 3 * expected + scale
  idx = np.flatnonzero(jump)
  # A floor or ceiling jumps at every integer; those brackets end on an integer probe and matter least.
  at_integer = np.isclose(x[idx + 1], np.round(x[idx + 1])) | np.isclose(x[idx], np.round(x[idx]))
  idx = idx[np.lexsort((-dy[idx], at_integer))][:limit]
  return sorted((float(x[i]), float(x[i + 1])) for i in idx)


def interior(brackets, points: int = 8) -> list[float]:
  out = []
  for a, b in brackets:
    out.extend(float(v) for v in np.round(np.linspace(a, b, points + 2)[1:-1], 9))
  return out


def narrow(brackets, obs: Observations, varying: bool = False) -> list[tuple[float, float]]:
  """Each bracket shrunk to the sub-interval of its probes where the change happens."""
  out = []
  for a, b in brackets:
    xs = sorted(x for x in obs.values if a <= x <= b)
    if len(xs) < 3:
      out.append((a, b))
      continue
    if varying:  # the boundary between points that repeat and points that do not
      flags = [any(_differ(obs.values[x][0], w) for w in obs.values[x][1:]) for x in xs]
      k = next((i for i in range(len(xs) - 1) if flags[i] != flags[i + 1]), None)
    else:
      ys = [_real(obs.values[x][0]) for x in xs]
      steps = [abs(ys[i + 1] - ys[i]) if np.isfinite(ys[i]) and np.isfinite(ys[i + 1]) else -1
               for i in range(len(xs) - 1)]
      k = int(np.argmax(steps))
    out.append((xs[k], xs[k + 1]) if k is not None else (a, b))
  return out


# --------------------------------------------------------------------------------------------------------
# Models


def _fmt(v: float) -> str:
  return f"{v:.10g}"


@dataclasses.dataclass
class Model:
  family: str
  expression: str          # numpy expression in `x`
  n_params: int
  text: str                # the description
  rel: float = math.inf    # relative RMS error on the fit data
  rss: float = math.inf
  misfit: float = 1.0      # fraction of points it does not reproduce (to 1e-6 of the data's RMS)

  def predict(self, x):
    with np.errstate(all="ignore"):
      value = eval(self.expression, {"np": np, "x": np.asarray(x, float)})
    return np.broadcast_to(np.asarray(value, float), np.shape(x))


def _column(expression: str, x, cache: dict | None = None):
  """One feature evaluated on `x`; products `(a)*(b)` of cached features are multiplied, not re-evaluated."""
  if cache is not None and expression in cache:
    return cache[expression]
  with np.errstate(all="ignore"):
    value = np.broadcast_to(np.asarray(eval(expression, {"np": np, "x": x}), float), x.shape)
  if cache is not None:
    cache[expression] = value
  return value


def _features(expressions, x, cache=None):
  return np.stack([_column(e, x, cache) for e in expressions], 1)


def _lstsq(A, y, robust: bool, iterations: int = 8):
  """Least squares with columns scaled to unit norm; Huber-reweighted when `robust`."""
  norms = np.linalg.norm(A, axis=0)
  norms[norms == 0] = 1
  As = A / norms
  w = np.ones(len(y))
  for _ in range(iterations if robust else 1):
    sw = np.sqrt(w)
    coef = _solve(As * sw[:, None], y * sw)
    if not robust:
      break
    r = y - As @ coef
    s = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-12
    u = np.abs(r) / (1.345 * s)
    w = np.where(u <= 1, 1.0, 1 / np.maximum(u, 1e-12))
  return coef / norms


def _solve(A, y):
  """QR (fast); the SVD's minimum-norm solution when A is rank-deficient."""
  q, r = np.linalg.qr(A)
  diagonal = np.abs(np.diag(r))
  if len(diagonal) == 0 or diagonal.min() < 1e-10 * max(diagonal.max(), 1e-300):
    return np.linalg.lstsq(A, y, rcond=None)[0]
  return np.linalg.solve(r, q.T @ y)


MAX_FIT_POINTS = 600


def _fit_rows(n: int) -> np.ndarray:
  """Rows the coefficients are fitted on (an even stride when there are many); errors use all rows."""
  return np.arange(n) if n <= MAX_FIT_POINTS else np.linspace(0, n - 1, MAX_FIT_POINTS).astype(int)


def _linear_model(family, expressions, x, y, robust, describe: Callable[[np.ndarray], str], extra_params=0,
                  columns=None):
  A = _features(expressions, x) if columns is None else columns
  if not np.all(np.isfinite(A)):
    return None
  rows = _fit_rows(len(y))
  coef = _lstsq(A[rows], y[rows], robust)
  if not robust:
    # Exact data but for a few points (probes on a jump): fit again without them.
    residual = np.abs(A[rows] @ coef - y[rows])
    wrong = residual > max(EXACT * (math.sqrt(float(np.mean(y[rows] ** 2))) + 1e-12), 10 * np.median(residual))
    if 0 < wrong.mean() < 0.1:
      coef = _lstsq(A[rows][~wrong], y[rows][~wrong], robust)
  expression = " + ".join(f"{_fmt(c)}*{e}" if e != ONE else _fmt(c) for c, e in zip(coef, expressions))
  text = describe(coef)
  if family in ("sum", "product"):
    text += f" Fitted: f(x) = {expression}."
  model = Model(family, expression, len(expressions) + extra_params, text)
  return _score(model, x, y, A @ coef)


def _score(model: Model | None, x, y, pred=None) -> Model | None:
  if model is None:
    return None
  pred = model.predict(x) if pred is None else pred
  if not np.all(np.isfinite(pred)):
    return None
  model.rss = float(np.sum((pred - y) ** 2))
  rms = math.sqrt(float(np.mean(y ** 2))) + 1e-12
  model.rel = math.sqrt(model.rss / len(y)) / rms
  wrong = np.abs(pred - y) > EXACT * rms
  model.misfit = float(np.mean(wrong))
  if MISFIT < model.misfit < 0.1:
    # A probe exactly on one of the model's jumps (a square wave crossing an integer, say) has an arbitrary
    # value on either side: such points do not count against it.
    delta = 1e-9 * np.maximum(1.0, np.abs(x[wrong]))
    on_jump = np.abs(model.predict(x[wrong] + delta) - model.predict(x[wrong] - delta)) > EXACT * rms
    model.misfit = float(np.sum(wrong & ~np.isin(np.arange(len(y)), np.flatnonzero(wrong)[on_jump])) / len(y))
  return model


ONE = "1"
H = "np.heaviside(x, 0.5)"
XPOS, XNEG = "np.where(x > 0, x, 0)", "np.where(x > 0, 0, x)"


def _poly(d):
  return [f"x**{k}" if k > 1 else "x" if k == 1 else ONE for k in range(d, -1, -1)]


def _poly_text(coef, d):
  return " + ".join(f"{_fmt(c)}*x^{d - i}" if d - i > 1 else f"{_fmt(c)}*x" if d - i == 1 else _fmt(c)
                    for i, c in enumerate(coef))


def _rect(w):
  return f"np.where(np.abs(x) <= {_fmt(w / 2)}, 1, 0)"


def _square(period, shift):
  return f"np.where(np.sin((x - {_fmt(shift)}) * (2 * np.pi / {_fmt(period)})) > 0, 1, -1)"


def atomic_models(a: Analysis, robust: bool):
  """Candidate models of the atomic families, in order of complexity."""
  x, y = a.x, a.y
  root = "x**0.5" if a.complex_below_zero else "np.sqrt(x)"
  positive = x > 0
  yield _linear_model("constant", [ONE], x, y, robust, lambda c: f"f(x) is constant: f(x) = {_fmt(c[0])}.")
  yield _linear_model("linear", ["x", ONE], x, y, robust,
                      lambda c: f"f(x) is linear with slope {_fmt(c[0])} and intercept {_fmt(c[1])}: "
                                f"f(x) = {_fmt(c[0])}*x + {_fmt(c[1])}.")
  yield _linear_model("step", [H, ONE], x, y, robust,
                      lambda c: f"f(x) is a step function: {_fmt(c[1])} for x < 0 and {_fmt(c[0] + c[1])} for x > 0.")
  yield _linear_model("absolute", ["np.abs(x)", ONE], x, y, robust,
                      lambda c: f"f(x) = {_fmt(c[0])}*|x| + {_fmt(c[1])}: a V shape with its vertex at x = 0.")
  if positive.any():
    yield _linear_model("root", [root, ONE], x, y, robust,
                        lambda c: f"f(x) = {_fmt(c[0])}*sqrt(x) + {_fmt(c[1])} (a square root, defined for x >= 0).")
    yield _linear_model("logarithm", ["np.log(x)", ONE], x, y, robust,
                        lambda c: f"f(x) = {_fmt(c[0])}*ln(x) + {_fmt(c[1])} (a logarithm, defined for x > 0).")
  yield _linear_model("reciprocal", ["1 / x"], x, y, robust,
                      lambda c: f"f(x) = {_fmt(c[0])}/x (a reciprocal, undefined at x = 0).")
  yield _linear_model("reciprocal", ["1 / x", ONE], x, y, robust,
                      lambda c: f"f(x) = {_fmt(c[0])}/x + {_fmt(c[1])} (a reciprocal, undefined at x = 0).")
  yield _linear_model("relu", [XPOS, XNEG, ONE], x, y, robust,
                      lambda c: f"f(x) is piecewise linear with a kink at x = 0 (like a leaky ReLU): slope "
                                f"{_fmt(c[0])} for x > 0, slope {_fmt(c[1])} for x < 0, value {_fmt(c[2])} at 0.")
  for d in (2, 3):
    yield _linear_model("polynomial", _poly(d), x, y, robust,
                        lambda c, d=d: f"f(x) is a polynomial of degree {d}: f(x) = {_poly_text(c, d)}.")
  yield _best(_rectangles(a, robust))
  yield _best(_square_waves(a, robust))
  yield _best(_sinusoids(x, y, robust))
  yield _tanh(x, y, robust)
  yield _gaussian(x, y, robust)
  for d in (4, 5):
    yield _linear_model("polynomial", _poly(d), x, y, robust,
                        lambda c, d=d: f"f(x) is a polynomial of degree {d}: f(x) = {_poly_text(c, d)}.")
  for model in _rationals(x, y):
    yield model


def _best(models):
  models = [m for m in models if m is not None]
  return min(models, key=lambda m: m.rss) if models else None


def _widths(a: Analysis) -> list[float]:
  """Rectangle widths suggested by jumps symmetric about 0 (snapped to the generator's 0.1 grid)."""
  out = set()
  for j in a.jumps:
    if 0.3 < abs(j) <= 6:
      w = 2 * abs(j)
      out.add(round(w, 1) if abs(w - round(w, 1)) < 0.02 else w)
  return sorted(out)


def _rectangles(a: Analysis, robust: bool):
  for w in _widths(a):
    yield _linear_model("rectangle", [_rect(w), ONE], a.x, a.y, robust,
                        lambda c, w=w: f"f(x) is a rectangular pulse of width {_fmt(w)} centred at 0: "
                                       f"{_fmt(c[0] + c[1])} for |x| <= {_fmt(w / 2)} and {_fmt(c[1])} elsewhere.",
                        extra_params=1)


def _square_candidates(a: Analysis, limit: int = 8) -> list[tuple[float, float]]:
  """(period, shift) pairs whose zero crossings line up with many of the jumps (a jump at 0 and, when most
  integers are jumps, the integer jumps of a floor or ceiling are left out)."""
  jumps = np.array([j for j in a.jumps if abs(j) > 1e-3])
  at_integers = np.abs(jumps - np.round(jumps)) < 1e-3
  if at_integers.sum() > 100:
    jumps = jumps[~at_integers]
  if len(jumps) < 3:
    return []
  scored = []
  for anchor in jumps[np.argsort(np.abs(jumps))[:3]]:
    for period in WIDTH_GRID:
      phase = (jumps - anchor) / (period / 2)
      consistent = float(np.mean(np.abs(phase - np.round(phase)) < 0.02))
      if consistent >= 0.2:
        scored.append((-consistent, -period, float(period), float(anchor)))
  chosen = {}
  for *_, period, anchor in sorted(scored):
    chosen.setdefault(period, anchor)
  return list(chosen.items())[:limit]


def _shifts(period: float, anchor: float) -> list[float]:
  """The generator's shifts (multiples of 0.1 in [-5, 5]) with zero crossings where `anchor`'s are. They
  describe the same wave, but a probe exactly on a crossing rounds differently for each, so all are tried."""
  half = period / 2
  shifts = [round(anchor + k * half, 1) for k in range(-30, 31) if -5 <= anchor + k * half <= 5]
  return [s for s in dict.fromkeys(shifts) if abs((s - anchor) / half - round((s - anchor) / half)) < 1e-6] or [anchor]


def _square_waves(a: Analysis, robust: bool):
  for period, anchor in _square_candidates(a):
    for shift in _shifts(period, anchor):
      yield _linear_model("square_wave", [_square(period, shift), ONE], a.x, a.y, robust,
                          lambda c, p=period: f"f(x) is a square wave with period {_fmt(p)}, alternating between "
                                              f"{_fmt(c[1] + c[0])} and {_fmt(c[1] - c[0])}.",
                          extra_params=2)


def _sinusoids(x, y, robust):
  for period in PERIOD_GRID:
    w = 2 * np.pi / period
    features = [f"np.sin({_fmt(w)}*x)", f"np.cos({_fmt(w)}*x)", ONE]

    def text(c, period=period):
      amplitude = math.hypot(c[0], c[1])
      return (f"f(x) is a sinusoid with period {_fmt(period)}, amplitude {_fmt(amplitude)} and offset "
              f"{_fmt(c[2])}: it oscillates between {_fmt(c[2] - amplitude)} and {_fmt(c[2] + amplitude)}.")
    yield _linear_model("sinusoid", features, x, y, robust, text, extra_params=1)


def _subsample(x, y, lo, hi, stride=8):
  """All points in [lo, hi] and every `stride`-th one elsewhere: enough to rank grid candidates quickly."""
  keep = ((x >= lo) & (x <= hi)) | (np.arange(len(x)) % stride == 0)
  return x[keep], y[keep]


def _tanh(x_all, y_all, robust):
  """A*tanh(2*pi/P*(x - c)) + d over the generator's (P, c) grid, A and d in closed form."""
  x, y = _subsample(x_all, y_all, -20, 30)
  best = None
  ym = y - y.mean()
  for period in PERIOD_GRID:
    t = np.tanh((2 * np.pi / period) * (x[None, :] - PERIOD_GRID[:, None]))
    tm = t - t.mean(1, keepdims=True)
    denominator = np.sum(tm * tm, 1)
    amplitude = np.where(denominator > 0, np.sum(tm * ym, 1) / np.maximum(denominator, 1e-300), 0)
    rss = np.sum((ym - amplitude[:, None] * tm) ** 2, 1)
    k = int(np.argmin(rss))
    if best is None or rss[k] < best[0]:
      best = (rss[k], period, float(PERIOD_GRID[k]))
  _, period, centre = best
  feature = f"np.tanh({_fmt(2 * np.pi / period)}*(x - {_fmt(centre)}))"
  return _linear_model("tanh", [feature, ONE], x_all, y_all, robust,
                       lambda c: f"f(x) is a smooth step (a tanh) centred at x = {_fmt(centre)}, rising over about "
                                 f"{_fmt(period / 2)} units from {_fmt(c[1] - c[0])} to {_fmt(c[1] + c[0])}.",
                       extra_params=2)


def _gaussian(x_all, y_all, robust):
  """A*exp(-(x - m)^2 / (2 s^2)) + d: m near the extremum, s on the generator's grid."""
  peak = float(x_all[np.argmax(np.abs(y_all - np.median(y_all)))])
  x, y = _subsample(x_all, y_all, peak - 35, peak + 35)
  means = np.round(peak + np.arange(-20, 21) * 0.1, 1)
  best = None
  ym = y - y.mean()
  for mean in means:
    g = np.exp(-0.5 * ((x[None, :] - mean) / WIDTH_GRID[:, None]) ** 2)
    gm = g - g.mean(1, keepdims=True)
    denominator = np.sum(gm * gm, 1)
    amplitude = np.sum(gm * ym, 1) / np.maximum(denominator, 1e-300)
    rss = np.sum((ym - amplitude[:, None] * gm) ** 2, 1)
    k = int(np.argmin(rss))
    if best is None or rss[k] < best[0]:
      best = (rss[k], float(mean), float(WIDTH_GRID[k]))
  _, mean, std = best
  feature = f"np.exp(-0.5*((x - {_fmt(mean)}) / {_fmt(std)})**2)"

  def text(c):
    pdf = abs(c[0] * std * math.sqrt(2 * math.pi) - 1) < 1e-3 and abs(c[1]) < 1e-6
    shape = "the normal probability density" if pdf else "a bell curve (Gaussian)"
    return (f"f(x) is {shape} centred at x = {_fmt(mean)} with standard deviation {_fmt(std)}: peak value "
            f"{_fmt(c[0] + c[1])}, approaching {_fmt(c[1])} far from the centre.")
  return _linear_model("gaussian", [feature, ONE], x_all, y_all, robust, text, extra_params=2)


def _rationals(x, y):
  """P(x)/Q(x) with deg P < deg Q <= 5, by the linearised system y*Q(x) - P(x) = 0 (smallest singular vector)."""
  finite = np.isfinite(y)
  x, y = x[finite], y[finite]
  rows = _fit_rows(len(y))
  t = x[rows] / 128.0
  for total in range(2, 11):
    for p in range(0, 5):
      q = total - p - 1
      if not p < q <= 5:
        continue
      numerator = np.stack([t ** i for i in range(p + 1)], 1)
      denominator = np.stack([t ** j for j in range(q + 1)], 1)
      M = np.concatenate([numerator, -y[rows, None] * denominator], 1)
      M = M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-300)
      v = np.linalg.svd(M, full_matrices=False)[2][-1]
      a = v[:p + 1] / 128.0 ** np.arange(p + 1)
      b = v[p + 1:] / 128.0 ** np.arange(q + 1)
      scale = b[np.argmax(np.abs(b))]
      a, b = a / scale, b / scale
      expression = (f"({' + '.join(f'{_fmt(c)}*x**{i}' for i, c in enumerate(a))}) / "
                    f"({' + '.join(f'{_fmt(c)}*x**{i}' for i, c in enumerate(b))})")
      yield _score(Model("rational", expression, p + q + 1,
                         f"f(x) is a rational function (a ratio of polynomials of degrees {p} and {q}): "
                         f"f(x) = {expression.replace('**', '^')}."), x, y)


# Composable atoms as feature sets (for a sum: their union; for a product: pairwise products).
def _atoms(a: Analysis):
  names = ("constant", "linear function", "quadratic", "cubic", "quartic", "quintic")
  atoms = [(names[d], _poly(d)) for d in range(6)]
  atoms += [("step", [H, ONE]), ("leaky ReLU", [XPOS, XNEG, ONE]), ("ceil", ["np.ceil(x)"]), ("floor", ["np.floor(x)"])]
  atoms += [(f"rectangle of width {_fmt(w)}", [_rect(w)]) for w in _widths(a)]
  atoms += [(f"square wave of period {_fmt(p)}", [_square(p, s)]) for p, s in _square_candidates(a)]
  return atoms


def composite_models(a: Analysis, robust: bool):
  atoms, cache = _atoms(a), {}
  for i, (name1, f1) in enumerate(atoms):
    for name2, f2 in atoms[i:]:
      features = list(dict.fromkeys(f1 + f2 + [ONE]))
      yield _linear_model("sum", features, a.x, a.y, robust,
                          lambda c, n1=name1, n2=name2: f"f(x) is the sum of a {n1} and a {n2}.",
                          columns=_features(features, a.x, cache))
      pairs = {}
      for e1 in f1:
        for e2 in f2:
          expression = e1 if e2 == ONE else e2 if e1 == ONE else f"({e1})*({e2})"
          pairs.setdefault(expression, (e1, e2))
      columns = np.stack([_column(e1, a.x, cache) * _column(e2, a.x, cache) for e1, e2 in pairs.values()], 1)
      yield _linear_model("product", list(pairs), a.x, a.y, robust,
                          lambda c, n1=name1, n2=name2: f"f(x) is the product of a {n1} and a {n2}.", columns=columns)


def select(a: Analysis) -> Model | None:
  """The simplest model that explains the data; otherwise the best one found."""
  if not np.any(np.isfinite(a.y)):
    return None
  # x = 0 is left out: the scorer never tests it, and a step's value there is a parameter of its own.
  finite = np.isfinite(a.y) & (a.x != 0)
  data = dataclasses.replace(a, x=a.x[finite], y=a.y[finite])
  robust = a.noisy
  # The noise floor: residual variance of a correct model fitted to means of `repeats` noisy draws.
  floor = (a.noise_std ** 2 / max(a.repeats, 1)) if a.noisy else 0.0
  n = len(data.y)

  def explains(m: Model) -> bool:
    if a.noisy:
      return m.rss / n <= 1.5 * floor + 1e-12
    return m.misfit <= MISFIT

  best = None
  for generator in (atomic_models(data, robust), composite_models(data, robust)):
    for model in generator:
      if model is None:
        continue
      if explains(model):
        return model
      if best is None or _bic(model, n, floor) < _bic(best, n, floor):
        best = model
  return best


def _bic(m: Model, n: int, floor: float) -> float:
  return n * math.log(m.rss / n + floor + 1e-300) + m.n_params * math.log(n)


# --------------------------------------------------------------------------------------------------------
# The reply


def _domain_text(a: Analysis, undefined: str) -> str:
  parts = [f"The function was tested on [{LO:g}, {HI:g}]. {undefined}".strip()]
  if a.corrupted:
    lo, hi = a.corrupted
    parts.append(f"There is an interval of unexpected behaviour: in the interval [{lo:.4g}, {hi:.4g}] the function "
                 f"ignores the rule above and returns an approximately constant value of {a.corrupted_value:.4g} "
                 f"(with small random fluctuations, standard deviation about 0.1).")
  else:
    parts.append("No interval of unexpected behaviour was found.")
  return " ".join(parts)


def _undefined_text(obs: Observations) -> str:
  xs, ys = obs.arrays()
  bad = np.array([not (isinstance(v[0], float) and math.isfinite(v[0])) for v in ys])
  if not bad.any():
    return "It is defined everywhere there."
  if bad.all():
    return "It returned no numeric output anywhere."
  complex_ = np.array([isinstance(v[0], complex) for v in ys])
  if complex_.any():
    return (f"For x < {xs[~complex_].min():.4g} the outputs are complex numbers (the code takes a power of a "
            "negative number).")
  return f"It is undefined (no finite output) at {int(bad.sum())} of the {len(xs)} tested points, " \
         f"between {xs[bad].min():.4g} and {xs[bad].max():.4g}."


def reply(obs: Observations, jumps: list[float], *, mlp: bool, fallback: bool) -> str:
  a = analyze(obs, jumps)
  model = select(a)
  explained = model is not None and (model.misfit <= MISFIT or model.rel <= GOOD)
  interpolate = fallback and not a.noisy and not explained
  lines = []
  if model is None:
    text = "The function returned no usable numeric output."
  elif interpolate:
    text = (f"No simple formula fits f(x) exactly; the closest family found is a {model.family} model "
            f"(relative error {model.rel:.2g}). {model.text} The code below interpolates the measured values.")
  elif a.noisy:
    text = (f"{model.text} The outputs are noisy: repeated calls on the same input differ, with a standard "
            f"deviation of about {a.noise_std:.2g} around this curve.")
  else:
    text = model.text
  if mlp and model is not None:
    text = "f(x) is implemented by an MLP; it behaves approximately as follows. " + text
  lines.append(f"[DESCRIPTION]: {text}")
  lines.append(f"[DOMAIN]: {_domain_text(a, _undefined_text(obs))}")
  lines.append(f"[CODE]:\n```python\n{_code(a, model, interpolate)}```")
  return "\n".join(lines)


def _code(a: Analysis, model: Model | None, interpolate: bool) -> str:
  if model is None or interpolate:
    finite = np.isfinite(a.y)
    xs, ys = a.x[finite], a.y[finite]
    table = f"XS = np.array({json.dumps([float(v) for v in xs])})\nYS = np.array({json.dumps([float(v) for v in ys])})\n\n\n"
    body = "  y = np.interp(x, XS, YS)\n" if len(xs) else "  y = 0.0 * x\n"
  else:
    table, body = "", f"  y = {model.expression}\n"
  if a.corrupted:
    lo, hi = a.corrupted
    if lo <= LO:
      condition = f"x < {_fmt(hi)}"
    elif hi >= HI:
      condition = f"x > {_fmt(lo)}"
    else:
      condition = f"(x > {_fmt(lo)}) & (x < {_fmt(hi)})"
    body += f"  y = np.where({condition}, {_fmt(a.corrupted_value)}, y)\n"
  return f"import numpy as np\n\n\n{table}def f(x):\n{body}  return y\n"


def plan(seed: int, *, mlp: bool, fallback: bool):
  """The experiments, as a generator: yields lists of inputs, receives the printed outputs, returns the reply."""
  obs = Observations()

  def probe(points):
    outputs = yield points
    obs.add(points, [parse_value(o) for o in outputs])

  points = grid(seed)
  for _ in range(2):
    yield from probe(points)
  if analyze(obs).noisy:  # average more draws
    yield from probe(points * 3)
    return reply(obs, [], mlp=mlp, fallback=fallback)
  a = analyze(obs)
  xs, ys = obs.arrays()
  first = np.array([_real(v[0]) for v in ys])
  keep = np.array([not any(_differ(v[0], w) for w in v[1:]) for v in ys])
  jumps = find_jumps(xs[keep], first[keep])
  edges = []
  if a.corrupted:
    for end in a.corrupted:
      if LO < end < HI:
        edges.append((float(xs[xs < end].max()), float(xs[xs > end].min())))
  for _ in range(3):
    # Twice each: a point inside the corrupted interval shows itself by not repeating.
    probes = (interior(jumps) + interior(edges)) * 2
    if not probes:
      break
    yield from probe(probes)
    jumps, edges = narrow(jumps, obs), narrow(edges, obs, varying=True)
  return reply(obs, [snap((lo + hi) / 2) for lo, hi in jumps], mlp=mlp, fallback=fallback)


def snap(x: float) -> float:
  """The generator rounds shifts, widths and periods to 0.1, so its jumps lie on multiples of 0.05: a
  located jump that close to one is taken to be there."""
  grid_point = round(x * 20) / 20
  return grid_point if abs(x - grid_point) < 0.002 else x
