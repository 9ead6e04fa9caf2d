"""Pictures for reports: a small day-over-day bar chart as PNG bytes (matplotlib, no screen)."""

from __future__ import annotations

import io


def day_over_day_png(title: str, labels: list[str], yesterday: list[float], today: list[float],
                     day_names: tuple[str, str]) -> bytes:
    """Given metric labels and their values on two days (each metric scaled to its own maximum,
    so different units share one chart), return a PNG of grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    scaled_y, scaled_t = [], []
    for before, now in zip(yesterday, today):
        top = max(abs(before), abs(now)) or 1.0
        scaled_y.append(100 * before / top)
        scaled_t.append(100 * now / top)
    figure, axes = pyplot.subplots(figsize=(6.4, 2.8), dpi=100)
    positions = range(len(labels))
    axes.bar([p - 0.2 for p in positions], scaled_y, width=0.4, label=day_names[0], color="#9aa7b8")
    axes.bar([p + 0.2 for p in positions], scaled_t, width=0.4, label=day_names[1], color="#1f6feb")
    for position, before, now in zip(positions, yesterday, today):
        axes.annotate(f"{now:,.0f}", (position + 0.2, 100 * now / (max(abs(before), abs(now)) or 1.0)),
                      ha="center", va="bottom", fontsize=7)
    axes.set_xticks(list(positions), labels, fontsize=8)
    axes.set_ylabel("% of the larger day", fontsize=8)
    axes.set_ylim(0, 115)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()
