"""SQLAlchemy's asyncio engine without the ORM that ``import sqlalchemy.ext.asyncio`` loads.

The package's ``__init__`` imports ``AsyncSession``, and with it the whole ORM: ~0.3 G
instructions, a sixth of every command's start-up, for classes the manifest never uses (it speaks
Core through ``AsyncEngine`` and ``AsyncConnection``). So the package is registered without
running its ``__init__`` and only its ``engine`` module is imported. The first look-up of any
other name of the package (by Alembic, a test, or anyone importing ``AsyncSession``) runs the
real ``__init__`` then, so nobody else sees a difference.
"""

from __future__ import annotations

import importlib.util
import sys

PACKAGE = "sqlalchemy.ext.asyncio"


def _register_without_init() -> None:
    if PACKAGE in sys.modules:
        return  # imported already (in full, or by an earlier call)
    import sqlalchemy.ext

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        return  # an unusual installation: the plain import below loads the package as usual
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def complete(name: str) -> object:
        """Any name the package defines: run its ``__init__`` now, once, and look again.

        A submodule's name is left to the import system (``from . import exc`` asks for it
        before importing it).
        """
        if importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            raise AttributeError(name)
        delattr(package, "__getattr__")
        loader.exec_module(package)
        return getattr(package, name)

    setattr(package, "__getattr__", complete)  # noqa: B010 - a module-level __getattr__
    sys.modules[PACKAGE] = package
    setattr(sqlalchemy.ext, "asyncio", package)  # noqa: B010 - as an import would bind it


_register_without_init()

from sqlalchemy.ext.asyncio.engine import (  # noqa: E402 - after the registration above
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)

__all__ = ["AsyncConnection", "AsyncEngine", "create_async_engine"]
