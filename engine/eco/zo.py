"""Zeroth-order optimisers for ECO's strength (scalar) or per-setting vector, as in the reference.

One step evaluates the objective twice, at theta + eps and theta - eps (clipped to a floor),
estimates the gradient by central differences, and moves theta by -lr * g, never below `min`.
`run()` drives any objective f(theta) -> float and yields one record per step; it stops when
the stop event is set, after `steps`, or when the objective reaches `tolerance`.
This module knows nothing about models: the objective is a plain callable.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch


@dataclass
class ZOConfig:
    # The reference's WMDP run used init 0.1, lr 100, eps 0.0999, min 0.1 on a noisy objective; on
    # cloze-probe accuracy with fixed noise that start sits on a flat plateau (zero gradient), so
    # Lethe starts higher with a wider difference.
    init: float = field(default=1.0, metadata={"help": "Starting value of the strength (sigma_0)."})
    lr: float = field(default=100.0, metadata={"help": "Step size (eta)."})
    eps: float = field(default=0.5, metadata={"help": "Finite-difference half-width."})
    min: float = field(default=0.1, metadata={"help": "Lower bound of the strength."})
    steps: int = field(default=8, metadata={"help": "Steps at most."})
    tolerance: float = field(default=0.05, metadata={"help": "Stop when the objective is at or below this."})
    seed: int = 0

    def validate(self) -> "ZOConfig":
        for name in ("init", "lr", "eps", "min", "tolerance"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or (v < 0 and name in ("lr", "tolerance")):
                raise ValueError(f"ZO setting {name} must be a finite number (>= 0 for lr and tolerance), got {v}.")
        if self.eps <= 0:
            raise ValueError("ZO setting eps must be positive.")
        if not 1 <= int(self.steps) <= 1000:
            raise ValueError(f"ZO steps must be between 1 and 1000, got {self.steps}.")
        return self


@dataclass
class ZOStep:
    step: int
    theta: float | list[float]  # value after the update
    theta_before: float | list[float]
    f_plus: float
    f_minus: float
    grad: float | list[float]
    objective: float  # objective at theta_before (mean of the two probes)
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class ScalarZO:
    """theta <- max(theta - lr * (f(theta+eps) - f(max(theta-eps, 1e-8))) / (2 eps), min)."""

    def __init__(self, config: ZOConfig):
        self.c = config.validate()
        self.theta = float(config.init)

    def step(self, f: Callable[[float], float]) -> tuple[float, float, float]:
        plus, minus = self.theta + self.c.eps, max(self.theta - self.c.eps, 1e-8)
        f_plus, f_minus = f(plus), f(minus)
        g = (f_plus - f_minus) / (2 * self.c.eps)
        self.theta = max(self.theta - self.c.lr * g, self.c.min)
        return f_plus, f_minus, g


class VectorZO:
    """theta in R^n; u ~ N(0, I)/|u|; g = (f(theta+eps u) - f(theta-eps u)) / (2 eps) * u."""

    def __init__(self, config: ZOConfig, n: int):
        self.c = config.validate()
        self.theta = torch.full((n,), float(config.init))
        self.gen = torch.Generator().manual_seed(config.seed)

    def step(self, f: Callable[[list[float]], float]):
        u = torch.randn(self.theta.shape, generator=self.gen)
        u = u / u.norm()
        f_plus = f((self.theta + self.c.eps * u).tolist())
        f_minus = f((self.theta - self.c.eps * u).tolist())
        g = (f_plus - f_minus) / (2 * self.c.eps) * u
        self.theta = torch.clamp(self.theta - self.c.lr * g, min=self.c.min)
        return f_plus, f_minus, g.tolist()


def run(objective: Callable, optimizer: ScalarZO | VectorZO, steps: int | None = None,
        stop_event: threading.Event | None = None, tolerance: float | None = None) -> Iterator[ZOStep]:
    """Yield one ZOStep per optimisation step until done, stopped or within tolerance."""
    steps = steps or optimizer.c.steps
    tolerance = optimizer.c.tolerance if tolerance is None else tolerance
    as_value = (lambda t: t.tolist()) if isinstance(optimizer, VectorZO) else float
    for i in range(1, steps + 1):
        if stop_event is not None and stop_event.is_set():
            return
        start, before = time.perf_counter(), as_value(optimizer.theta)
        f_plus, f_minus, g = optimizer.step(objective)
        rec = ZOStep(step=i, theta=as_value(optimizer.theta), theta_before=before, f_plus=f_plus,
                     f_minus=f_minus, grad=g, objective=(f_plus + f_minus) / 2,
                     seconds=time.perf_counter() - start)
        yield rec
        if max(f_plus, f_minus) <= tolerance:
            return


def search_strength(objective: Callable[[float], float], config: ZOConfig | None = None,
                    stop_event: threading.Event | None = None) -> Iterator[dict]:
    """ScalarZO over ECO's strength: one record per step, with the best strength probed so far
    (the point, among all f(theta +- eps) evaluated, with the lowest objective)."""
    opt = ScalarZO(config or ZOConfig())
    best = None
    for rec in run(objective, opt, stop_event=stop_event):
        d = rec.to_dict()
        for sigma, f in ((rec.theta_before + opt.c.eps, rec.f_plus),
                         (max(rec.theta_before - opt.c.eps, 1e-8), rec.f_minus)):
            if best is None or f < best[1]:
                best = (sigma, f)
        d.update(best_strength=best[0], best_objective=best[1])
        yield d
