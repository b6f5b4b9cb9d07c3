"""The report's figures: matplotlib with the Agg backend (no display), returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from mlperf_bnas.report.collect import PERCENTILE_KEYS, NasResult, PerfRun  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def latency_plot(run: PerfRun, title: str) -> bytes | None:
    """Histogram of every query's latency (trace), else LoadGen's percentile points as a curve."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if run.query_latencies_ms:
        ax.hist(run.query_latencies_ms, bins=60, color="tab:blue", alpha=0.85)
        ax.set_ylabel("queries")
        ax.set_xlabel("latency (ms)")
        for name in ("p50", "p99"):
            if name in run.percentiles_ms:
                ax.axvline(run.percentiles_ms[name], color="0.3", ls=":", lw=1)
                ax.text(run.percentiles_ms[name], ax.get_ylim()[1] * 0.92, f" {name}", fontsize=8)
    else:
        points = [(run.percentiles_ms[name], pct) for name, _key, pct in PERCENTILE_KEYS if name in run.percentiles_ms]
        if not points:
            plt.close(fig)
            return None
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, "-o", color="tab:blue", ms=4)
        for (x, y), (name, _k, _p) in zip(sorted(points), [k for k in PERCENTILE_KEYS if k[0] in run.percentiles_ms]):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_ylabel("percentile of queries (%)")
        ax.set_xlabel("latency (ms)")
    if run.latency_bound_ms:
        ax.axvline(run.latency_bound_ms, color="tab:red", lw=1.5, label=f"bound {run.latency_bound_ms:g} ms")
        ax.legend(loc="lower right" if not run.query_latencies_ms else "upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def tuning_offline_plot(trials: list[dict[str, Any]], chosen: dict[str, Any], title: str) -> bytes | None:
    rows = [t for t in trials if t.get("purpose") == "grid" and t.get("samples_per_s")]
    if not rows:
        return None
    labels = [" ".join(f"{k}={v}" for k, v in sorted(t["backend_options"].items())) or "defaults" for t in rows]
    values = [t["samples_per_s"] for t in rows]
    colors = ["tab:orange" if t["backend_options"] == chosen else "tab:blue" for t in rows]
    fig, ax = plt.subplots(figsize=(6.4, max(2.2, 0.32 * len(rows) + 1)))
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Offline samples/s (short LoadGen run)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def tuning_server_plot(trials: list[dict[str, Any]], chosen_qps: float, bound_ms: float | None,
                       title: str) -> bytes | None:
    rows = [t for t in trials if t.get("scenario") == "Server" and t.get("latency_ms", {}).get("p99") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for valid, color, label in ((True, "tab:green", "VALID"), (False, "tab:red", "INVALID")):
        sel = [t for t in rows if bool(t.get("valid")) == valid]
        if sel:
            ax.scatter([t["conf_values"]["target_qps"] for t in sel], [t["latency_ms"]["p99"] for t in sel],
                       c=color, label=label, zorder=3)
    for t in rows:
        ax.annotate(f"#{t['number']}", (t["conf_values"]["target_qps"], t["latency_ms"]["p99"]),
                    textcoords="offset points", xytext=(3, 3), fontsize=7)
    if bound_ms:
        ax.axhline(bound_ms, color="tab:red", ls="--", lw=1, label=f"bound {bound_ms:g} ms")
    if chosen_qps > 0:
        ax.axvline(chosen_qps, color="tab:orange", lw=1.2, label=f"chosen {chosen_qps:.1f} QPS")
    ax.set_xlabel("target QPS")
    ax.set_ylabel("p99 latency (ms)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def nas_plot(nas: NasResult, x_metric: str) -> bytes | None:
    pts = [r for r in nas.records if r.get(x_metric) is not None and r.get("accuracy") is not None]
    front = [r for r in nas.front if r.get(x_metric) is not None and r.get("accuracy") is not None]
    if not pts and not front:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if pts:
        ax.scatter([r[x_metric] for r in pts], [r["accuracy"] for r in pts], s=10, c="0.6", alpha=0.7,
                   label=f"evaluated sub-networks ({len(pts)})")
    if front:
        front = sorted(front, key=lambda r: r[x_metric])
        ax.plot([r[x_metric] for r in front], [r["accuracy"] for r in front], "-o", ms=4, c="tab:blue",
                label=f"Pareto front ({len(front)})")
    if nas.reference and nas.reference.get(x_metric) is not None:
        ax.scatter([nas.reference[x_metric]], [nas.reference["accuracy"]], marker="s", s=80, c="tab:red",
                   edgecolors="k", zorder=5, label="original model")
    if nas.best and nas.best.get(x_metric) is not None:
        ax.scatter([nas.best[x_metric]], [nas.best["accuracy"]], marker="*", s=220, c="gold", edgecolors="k",
                   zorder=6, label="chosen sub-network")
    ax.set_xlabel(x_metric)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title("NAS search: accuracy vs " + x_metric, fontsize=10)
    return _png(fig)
