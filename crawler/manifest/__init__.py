"""The manifest: the queue and source of truth of a mirror (SQLite, or Postgres at scale)."""

from crawler.manifest.database import open_manifest
from crawler.manifest.models import Status
from crawler.manifest.repository import Manifest

__all__ = ["Manifest", "Status", "open_manifest"]
