"""Choose components by name through one registry per kind (timm-style).

Backends, datasets, models, postprocessors and accuracy scripts register
themselves on import; configuration files name them. An unknown name raises a
``UserError`` listing the valid names.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from mlperf_bnas.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._entries: dict[str, T] = {}
        # Modules imported on first lookup, so registrations happen lazily and a
        # command that only needs the null backend never imports openvino.
        self._modules = modules
        self._lazy: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def register_lazy(self, name: str, module: str) -> None:
        """Declare that importing ``module`` registers ``name``."""
        self._lazy[name] = module

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: "
                + ", ".join(sorted(self.names()))
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._lazy))

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._lazy
