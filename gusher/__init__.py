"""gusher: a self-hosted real-time push server (master HTTP API + WebSocket slaves over Redis)."""

__version__ = "0.1.0"
