"""The interactive widgets (anywidget) over the kernel API.

Imported lazily so `import curator_widgets.widgets` stays cheap; each class lives in its module:
RegionPicker, EmbeddingView, SampleGallery, SwipeLabeler, and the composed CuratorApp.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "RegionPicker": "region_picker",
    "EmbeddingView": "embedding_view",
    "SampleGallery": "gallery",
    "SwipeLabeler": "swipe_labeler",
    "CuratorApp": "app",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
