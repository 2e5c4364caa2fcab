"""allen-mirror: a polite, resumable, never-corrupt bulk mirror of the Allen Brain Atlas API."""

__version__ = "0.1.0"
