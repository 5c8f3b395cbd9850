"""The collector-side processor: receive OTLP, evaluate traces off the receive path, label spans, hand on.

receivers (OTLP gRPC / HTTP) -> pipeline (inbox on disk, assembly, evaluation, labelling) -> outbox on disk ->
export (OTLP gRPC / HTTP downstream), or the embedded SQLite trace store when there is no downstream.
"""

from .server import Processor, ServeConfig

__all__ = ["Processor", "ServeConfig"]
