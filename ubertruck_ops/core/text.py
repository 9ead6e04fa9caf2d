"""Small formatting helpers for reports and notices."""


def human_bytes(size: float) -> str:
    """Return a size such as '48.2 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_seconds(seconds: float) -> str:
    """Return a duration such as '2m 05s' or '3.4 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def one_line(exc: BaseException) -> str:
    """Return an exception as one line for notices and logs: 'Type: message', at most 1500 characters."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:1500]
