"""The HTTP service: Segment-compatible ingestion, the lead and feedback API (FastAPI)."""

from __future__ import annotations

from qualify.api.app import create_app
from qualify.api.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
