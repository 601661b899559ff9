"""plots: bench/run.py's figures, with Debian's python3-matplotlib (imported here only, so
that the runs work without it).

  tradeoff.png       reclamation ratio against slowdown (top) and against stall (bottom), a
                     panel per application: each mode's medians joined from the highest limit
                     to the lowest, each run faint (the headline figure: up and to the left is
                     better)
  held-APP.png       memory the VM holds on this host over time, a line per mode
  fault-latency.png  the distribution of Blowfish's fault service time while the application
                     ran: a panel per application, a curve per run (the share of faults
                     served within a time)
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MiB = 1 << 20
STYLE = {"all-local": ("k", "o"), "blowfish": ("tab:blue", "s"),
         "blowfish-idle": ("tab:purple", "P"),
         "host-swap": ("tab:red", "^"), "host-zram": ("tab:orange", "v"),
         "balloon": ("tab:green", "D")}


def _family(mode):
    return mode.split(":")[0]


def _share(mode):
    return float(mode.partition(":")[2] or 1)


def _tradeoff_panel(ax, app, runs, points, cost):
    for r in runs:
        if r["app"] == app and r.get(cost) is not None:
            color, marker = STYLE[_family(r["mode"])]
            ax.scatter(r[cost] * 100, r["reclamation_ratio"] * 100, c=color, marker=marker,
                       s=12, alpha=0.3)
    for family, (color, marker) in STYLE.items():
        curve = sorted((p for p in points.get(app, []) if _family(p["mode"]) == family and
                        p[cost] is not None), key=lambda p: -_share(p["mode"]))
        if not curve:
            continue
        xs = [p[cost] * 100 for p in curve]
        ys = [p["reclamation_ratio"] * 100 for p in curve]
        ax.plot(xs, ys, "-", color=color, marker=marker, label=family)
        for p, x, y in zip(curve, xs, ys):
            label = p["mode"].partition(":")[2] + (" s" if family == "blowfish-idle" else "")
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for bound in (5, 10):
        ax.axvline(bound, color="grey", linewidth=0.5, linestyle=":")
    ax.set_title(app)
    ax.set_ylabel("reclamation ratio (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw(runs, points, out_dir):
    """Draws the figures of @runs, and of @points (each mode's medians, by application), into
    @out_dir; returns their paths."""
    apps = sorted({r["app"] for r in runs})
    paths = []

    fig, axes = plt.subplots(2, len(apps), figsize=(4.5 * len(apps), 8), squeeze=False)
    for row, (cost, what) in enumerate((("slowdown", "slowdown vs all-local (%)"),
                                        ("stall_share", "stall: time lost waiting (%)"))):
        for ax, app in zip(axes[row], apps):
            _tradeoff_panel(ax, app, runs, points, cost)
            ax.set_xlabel(what)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "tradeoff.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    for app in apps:
        fig, ax = plt.subplots(figsize=(7, 4))
        labelled = set()
        for r in runs:
            if r["app"] != app:
                continue
            color, _ = STYLE[_family(r["mode"])]
            style = "--" if r["mode"] == "all-local" else "-"
            ax.plot([s["t"] for s in r["samples"]], [s["held"] / MiB for s in r["samples"]],
                    style, color=color, linewidth=1,
                    label=r["mode"] if r["mode"] not in labelled else None)
            labelled.add(r["mode"])
        ax.set_title(f"{app}: guest RAM held on this host")
        ax.set_xlabel("seconds since the application was ready")
        ax.set_ylabel("MiB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, f"held-{app}.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    latency = [r for r in runs if r.get("fault_latency_histogram")]
    if latency:
        apps_timed = sorted({r["app"] for r in latency})
        fig, axes = plt.subplots(1, len(apps_timed), figsize=(4.5 * len(apps_timed), 4),
                                 squeeze=False)
        for ax, app in zip(axes[0], apps_timed):
            modes = sorted({r["mode"] for r in latency if r["app"] == app})
            labelled = set()
            for r in latency:
                if r["app"] != app:
                    continue
                hist = r["fault_latency_histogram"]
                total, seen, xs, ys = sum(c for _, c in hist), 0, [], []
                for upper, count in hist:
                    seen += count
                    xs.append(upper / 1000)
                    ys.append(100 * seen / total)
                ax.step(xs, ys, where="post", linewidth=1,
                        color=plt.get_cmap("tab10")(modes.index(r["mode"]) % 10),
                        label=r["mode"] if r["mode"] not in labelled else None)
                labelled.add(r["mode"])
            ax.set_title(app)
            ax.set_xscale("log")
            ax.set_xlabel("fault service time (us)")
            ax.set_ylabel("faults served within it (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "fault-latency.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
