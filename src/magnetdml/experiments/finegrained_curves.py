"""What ``finegrained`` reads pass by pass: its convergence and its curves.

**Convergence** (paper Fig. 5), per seed, on the validation drawers (the runs score no test
split between passes: they are the benchmark's): ``e_T`` triplet's best validation error
(own protocol, the pass whose model was scored); ``t_T`` the first pass at which triplet's
validation error was at most ``e_T``; ``t_M`` the first at which Magnet's (kNC) was; the
speed-up ``t_T / t_M`` in iterations and in images (``M * D`` images per Magnet step,
``P * K`` per triplet step).
"""

from __future__ import annotations

from pathlib import Path

from ..losses import loss_spec
from ..reporting import plots
from ..training import Config
from .classification import own_metric, own_protocol
from .classification_tuned import _mean_curve
from .runner import RunOutcome, mean_std, metric


def val_key(loss: str) -> str:
    """The per-pass validation error of the loss's own protocol (``val_knc_error``...)."""
    return f"val_{own_metric(loss)}"


def _curve(outcome: RunOutcome) -> list[tuple[float, float]]:
    key = val_key(outcome.spec.group["loss"])
    return [(float(r["iteration"]), float(r[key])) for r in outcome.history if key in r]


def _batch(outcome: RunOutcome) -> int:
    o, sampler = outcome.spec.overrides, Config().sampler
    if loss_spec(outcome.spec.group["loss"]).uses_index:  # M x D neighbourhoods
        return int(o.get("sampler.clusters_per_batch", sampler.clusters_per_batch)) * int(
            o.get("sampler.examples_per_cluster", sampler.examples_per_cluster)
        )
    return int(o.get("sampler.classes_per_batch", sampler.classes_per_batch)) * int(
        o.get("sampler.examples_per_class", sampler.examples_per_class)
    )


def speed(target: str, by_loss: dict[str, list[RunOutcome]]) -> list[dict]:
    """The convergence row of one target (see the module docstring); none without both."""
    triplet = {o.spec.group["seed"]: o for o in by_loss.get("triplet", [])}
    magnet = {o.spec.group["seed"]: o for o in by_loss.get("magnet", [])}
    iterations, images, reached = [], [], 0
    seeds = sorted(set(triplet) & set(magnet))
    for s in seeds:
        t_curve, m_curve = _curve(triplet[s]), _curve(magnet[s])
        if not t_curve or not m_curve:
            continue
        best = min(error for _, error in t_curve)
        t_hit = plots.first_iteration_reaching(t_curve, best + 1e-12)
        m_hit = plots.first_iteration_reaching(m_curve, best + 1e-12)
        if t_hit is None or m_hit is None:
            continue
        reached += 1
        iterations.append(t_hit / m_hit)
        images.append(t_hit * _batch(triplet[s]) / (m_hit * _batch(magnet[s])))
    if not seeds:
        return []

    def own(outcome: RunOutcome) -> float | None:
        return metric(outcome, own_metric(outcome.spec.group["loss"]))

    return [
        {
            "target": target,
            "seeds": len(seeds),
            "magnet_reached": reached,
            "triplet_final_error": mean_std([own(triplet[s]) for s in seeds])[0],
            "magnet_final_error": mean_std([own(magnet[s]) for s in seeds])[0],
            "speedup_iterations": mean_std(iterations)[0],
            "speedup_iterations_std": mean_std(iterations)[1],
            "speedup_images": mean_std(images)[0],
        }
    ]


def target_figures(out_dir: Path, target: str, by_loss: dict[str, list[RunOutcome]]) -> list[dict]:
    """Test Error@1 over seeds, and the mean validation curves, of one target's losses."""
    drawn = []
    bars = {
        f"{loss} ({own_protocol(loss)})": [metric(o, own_metric(loss)) for o in group]
        for loss, group in by_loss.items()
    }
    path = out_dir / f"errors_{target}.png"
    plots.plot_error_bars(bars, path, title=f"Test Error@1, {target} (pretrained start)")
    drawn.append({"title": f"Test Error@1 over seeds, {target}", "path": path.name})
    curves = {loss: _mean_curve(group, val_key(loss)) for loss, group in by_loss.items()}
    curves = {loss: c for loss, c in curves.items() if c}
    if curves:
        path = out_dir / f"learning_curves_{target}.png"
        plots.plot_error_curves(
            curves,
            path,
            ylabel="validation error (own protocol)",
            title=f"Validation error per pass, {target} (mean over seeds, up to the shortest run)",
        )
        drawn.append({"title": f"Learning curves, {target}", "path": path.name})
    return drawn
