"""plots: bench/run.py's figures, with Debian's python3-matplotlib (imported here only, so
that the runs work without it).

  tradeoff.png       slowdown against reclamation ratio, a panel per application, every mode
                     (the headline figure: up and to the left is better)
  held-APP.png       memory the VM holds on this host over time, a line per mode
  fault-latency.png  p50 and p99 of Blowfish's fault service time, per run
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MiB = 1 << 20
STYLE = {"all-local": ("k", "o"), "blowfish": ("tab:blue", "s"),
         "host-swap": ("tab:red", "^"), "host-zram": ("tab:orange", "v"),
         "balloon": ("tab:green", "D")}


def _family(mode):
    return mode.split(":")[0]


def draw(runs, out_dir):
    """Draws the figures of @runs into @out_dir; returns their paths."""
    apps = sorted({r["app"] for r in runs})
    paths = []

    fig, axes = plt.subplots(1, len(apps), figsize=(4.5 * len(apps), 4), squeeze=False)
    for ax, app in zip(axes[0], apps):
        seen = set()
        for r in runs:
            if r["app"] != app or r.get("slowdown") is None:
                continue
            color, marker = STYLE[_family(r["mode"])]
            label = _family(r["mode"]) if _family(r["mode"]) not in seen else None
            seen.add(_family(r["mode"]))
            ax.scatter(r["slowdown"] * 100, r["reclamation_ratio"] * 100, c=color,
                       marker=marker, label=label)
            ax.annotate(r["mode"].partition(":")[2], (r["slowdown"] * 100,
                                                      r["reclamation_ratio"] * 100),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(app)
        ax.set_xlabel("slowdown vs all-local (%)")
        ax.set_ylabel("reclamation ratio (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "tradeoff.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    for app in apps:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in runs:
            if r["app"] != app:
                continue
            color, _ = STYLE[_family(r["mode"])]
            style = "--" if r["mode"] == "all-local" else "-"
            ax.plot([s["t"] for s in r["samples"]], [s["held"] / MiB for s in r["samples"]],
                    style, color=color, label=r["mode"], linewidth=1)
        ax.set_title(f"{app}: guest RAM held on this host")
        ax.set_xlabel("seconds since the application was ready")
        ax.set_ylabel("MiB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, f"held-{app}.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    latency = [r for r in runs if "fault_latency_ns" in r]
    if latency:
        fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(latency)), 4))
        names = [f"{r['app']}\n{r['mode']}" for r in latency]
        xs = range(len(latency))
        ax.bar([x - 0.2 for x in xs], [r["fault_latency_ns"]["p50-ns"] / 1000 for r in latency],
               0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], [r["fault_latency_ns"]["p99-ns"] / 1000 for r in latency],
               0.4, label="p99")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=6)
        ax.set_ylabel("fault service time (us)")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "fault-latency.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
