"""Zeroth-order optimisers for ECO's strength (scalar) or per-setting vector.

The objective is a plain callable `f(theta, seed) -> float`. One step evaluates it twice with
common random numbers: both probes of a step get the same `seed` (step k uses `config.seed + k`),
so the difference between them measures theta, not the noise draw.

ScalarZO searches in log theta by default (`space="log"`): strengths span decades, and a step of
the same size in log space is the same relative change at sigma 0.1 and at 1000. Near the lower
bound the estimate would be biased if the lower probe were clipped to the bound while the
difference were still divided by 2 eps, so there the step takes a one-sided (forward) difference
f(u + eps) - f(u) over eps instead. Theta never goes below `min`.

Two rules turn the estimate into a move (`rule`):
- "adaptive" (the default; a sign-based trust step, as Rprop, with a secant landing): the move
  goes the way the slope's sign says, by the trust step, which starts at `step`, doubles while that
  sign holds from one step to the next and halves when it flips (the step after a flip keeps its
  size), capped at `max_step`; but never further than where the line through the two probes
  reaches zero (mean of the probes / |slope|), so a search close to its target lands instead of
  doubling past it (the objective is read as a distance to a target, 0 there, as
  `Workbench.optimize`'s |metric - target| is; a negative mean sets no landing). The probes'
  half-width is min(eps, trust step). ECO's metric is flat for decades of sigma and then drops, so
  a move proportional to the slope crawls where the metric is flat (the gradient rule took 10 steps
  to leave sigma 0.1-0.6 on harry_potter); the sign is informative long before the slope is large.
  A step whose two probes tie does not move.
- "gradient": the move is lr * slope, clipped to `max_step` (a trust region).

`run()` drives any optimiser and yields one record per step; it stops when the stop event is set,
after `steps`, or when both probes of a step are within `tolerance`.
This module knows nothing about models.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch

SPACES = ("log", "linear")
RULES = ("adaptive", "gradient")
Objective = Callable[[float, int], float]


@dataclass
class ZOConfig:
    init: float = field(default=1.0, metadata={"help": "Starting value of the strength (sigma_0)."})
    rule: str = field(default="adaptive", metadata={
        "help": "adaptive: sign-based moves that double while the sign holds and halve when it flips, "
                "landing where the probes' line reaches zero when that is nearer; "
                "gradient: lr x slope.", "choices": RULES})
    step: float = field(default=1.0, metadata={"help": "adaptive rule: the first move, in the search space's units."})
    lr: float = field(default=4.0, metadata={"help": "gradient rule: step size (eta), in the search space's units."})
    eps: float = field(default=0.25, metadata={"help": "Finite-difference half-width (in log sigma when space=log)."})
    min: float = field(default=0.01, metadata={"help": "Lower bound of the strength."})
    max_step: float = field(default=2.0, metadata={"help": "Largest move per step (in log sigma when space=log)."})
    steps: int = field(default=10, metadata={"help": "Steps at most."})
    tolerance: float = field(default=0.05, metadata={"help": "Stop when the objective is at or below this."})
    space: str = field(default="log", metadata={"help": "Search in log sigma (log) or sigma (linear).", "choices": SPACES})
    draws: int = field(default=1, metadata={"help": "Noise draws averaged per evaluation."})
    seed: int = 0

    def validate(self) -> "ZOConfig":
        for name in ("init", "step", "lr", "eps", "min", "max_step", "tolerance"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or (v < 0 and name in ("lr", "tolerance")):
                raise ValueError(f"ZO setting {name} must be a finite number (>= 0 for lr and tolerance), got {v}.")
        if self.eps <= 0 or self.max_step <= 0 or self.step <= 0:
            raise ValueError("ZO settings eps, step and max_step must be positive.")
        if not 1 <= int(self.steps) <= 1000:
            raise ValueError(f"ZO steps must be between 1 and 1000, got {self.steps}.")
        if not 1 <= int(self.draws) <= 64:
            raise ValueError(f"ZO draws must be between 1 and 64, got {self.draws}.")
        if self.rule not in RULES:
            raise ValueError(f"Unknown ZO rule {self.rule!r}; known: {', '.join(RULES)}.")
        if self.space not in SPACES:
            raise ValueError(f"Unknown ZO space {self.space!r}; known: {', '.join(SPACES)}.")
        if self.space == "log" and (self.min <= 0 or self.init <= 0):
            raise ValueError("A search in log sigma needs init and min above 0.")
        return self


@dataclass
class ZOStep:
    step: int
    theta: float | list[float]  # value after the update
    theta_before: float | list[float]
    theta_plus: float | list[float]  # where the two probes were taken
    theta_minus: float | list[float]
    f_plus: float
    f_minus: float
    grad: float | list[float]  # in the search space
    objective: float  # mean of the two probes
    seed: int  # the noise seed both probes shared
    one_sided: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class ScalarZO:
    """One scalar, searched in log or linear space; see the module doc for the step."""

    def __init__(self, config: ZOConfig):
        self.c = config.validate()
        self.log = config.space == "log"
        self.lo = math.log(config.min) if self.log else float(config.min)
        self.u = max(self._to(float(config.init)), self.lo)
        self.delta = min(float(config.step), float(config.max_step))  # the adaptive rule's current move
        self.sign = 0  # the sign of the last slope that moved theta

    def _to(self, theta: float) -> float:
        return math.log(theta) if self.log else theta

    def _from(self, u: float) -> float:
        return math.exp(u) if self.log else u

    @property
    def theta(self) -> float:
        return self._from(self.u)

    def step(self, f: Objective, seed: int = 0) -> dict:
        adaptive = self.c.rule == "adaptive"
        eps = min(self.c.eps, self.delta) if adaptive else self.c.eps
        one_sided = self.u - eps < self.lo
        up, um = self.u + eps, (self.u if one_sided else self.u - eps)
        f_plus, f_minus = f(self._from(up), seed), f(self._from(um), seed)
        g = (f_plus - f_minus) / (up - um)
        if adaptive:
            move = self._adaptive_move(g, (f_plus + f_minus) / 2)
        else:
            move = max(-self.c.max_step, min(self.c.max_step, self.c.lr * g))
        self.u = max(self.u - move, self.lo)
        return dict(theta_plus=self._from(up), theta_minus=self._from(um), f_plus=f_plus, f_minus=f_minus,
                    grad=g, one_sided=one_sided)

    def _adaptive_move(self, g: float, f: float) -> float:
        sign = (g > 0) - (g < 0)
        if sign == 0:
            return 0.0
        if self.sign == sign:
            self.delta = min(2 * self.delta, self.c.max_step)
            self.sign = sign
        elif self.sign:  # a flip: halve, and let the step after it neither grow nor halve
            self.delta /= 2
            self.sign = 0
        else:
            self.sign = sign
        landing = f / abs(g) if f >= 0 else math.inf  # the objective is a distance to a target: 0 there
        return sign * min(self.delta, landing)


class VectorZO:
    """theta in R^n; u ~ N(0, I)/|u|; g = (f(theta+eps u) - f(theta-eps u)) / (2 eps) * u (linear space)."""

    def __init__(self, config: ZOConfig, n: int):
        self.c = config.validate()
        self.theta = torch.full((n,), float(config.init))
        self.gen = torch.Generator().manual_seed(config.seed)

    def step(self, f: Callable[[list[float], int], float], seed: int = 0) -> dict:
        u = torch.randn(self.theta.shape, generator=self.gen)
        u = u / u.norm()
        plus, minus = self.theta + self.c.eps * u, self.theta - self.c.eps * u
        f_plus, f_minus = f(plus.tolist(), seed), f(minus.tolist(), seed)
        g = (f_plus - f_minus) / (2 * self.c.eps) * u
        move = self.c.lr * g
        if move.norm() > self.c.max_step:
            move = move * (self.c.max_step / move.norm())
        self.theta = torch.clamp(self.theta - move, min=self.c.min)
        return dict(theta_plus=plus.tolist(), theta_minus=minus.tolist(), f_plus=f_plus, f_minus=f_minus,
                    grad=g.tolist(), one_sided=False)


def run(objective: Callable, optimizer: ScalarZO | VectorZO, steps: int | None = None,
        stop_event: threading.Event | None = None, tolerance: float | None = None) -> Iterator[ZOStep]:
    """Yield one ZOStep per optimisation step until done, stopped or within tolerance."""
    steps = steps or optimizer.c.steps
    tolerance = optimizer.c.tolerance if tolerance is None else tolerance
    as_value = (lambda t: t.tolist()) if isinstance(optimizer, VectorZO) else float
    for i in range(1, steps + 1):
        if stop_event is not None and stop_event.is_set():
            return
        start, before, seed = time.perf_counter(), as_value(optimizer.theta), int(optimizer.c.seed) + i
        out = optimizer.step(objective, seed)
        rec = ZOStep(step=i, theta=as_value(optimizer.theta), theta_before=before, objective=
                     (out["f_plus"] + out["f_minus"]) / 2, seed=seed, seconds=time.perf_counter() - start, **out)
        yield rec
        if max(rec.f_plus, rec.f_minus) <= tolerance:
            return


def search_strength(objective: Objective, config: ZOConfig | None = None,
                    stop_event: threading.Event | None = None) -> Iterator[dict]:
    """ScalarZO over ECO's strength: one record per step, with the best strength probed so far
    (the point, among all probes evaluated, with the lowest objective)."""
    opt = ScalarZO(config or ZOConfig())
    best = None
    for rec in run(objective, opt, stop_event=stop_event):
        d = rec.to_dict()
        for sigma, f in ((rec.theta_plus, rec.f_plus), (rec.theta_minus, rec.f_minus)):
            if best is None or f < best[1]:
                best = (sigma, f)
        d.update(best_strength=best[0], best_objective=best[1])
        yield d
