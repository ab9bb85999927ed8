"""The interactive widgets (anywidget) over the kernel API.

Imported lazily so `import curator_widgets.widgets` stays cheap; each class lives in its module:
RegionPicker, EmbeddingView, SampleGallery, SwipeLabeler, the composed CuratorApp, and
stop_until_labelled (a notebook run by a person waits for the labeler).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "RegionPicker": "region_picker",
    "EmbeddingView": "embedding_view",
    "SampleGallery": "gallery",
    "SwipeLabeler": "swipe_labeler",
    "CuratorApp": "app",
    "LabelsPending": "pending",
    "stop_until_labelled": "pending",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
