"""gusher: a self-hosted real-time push server (master HTTP API + WebSocket slaves over Redis)."""

import platform

__version__ = "0.1.0"


def version_info(role: str) -> dict[str, str]:
    """What `/version` answers: gusher's version, the role, and the Python running it."""
    return {"version": __version__, "role": role, "runtime_version": f"Python {platform.python_version()}"}
