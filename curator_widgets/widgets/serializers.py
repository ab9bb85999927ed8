"""Binary ndarray traits: numpy arrays cross the widget comm as raw buffers, never as JSON lists.

Wire format (the one jupyter-scatter and lonboard use, extended with chunks):
``{"dtype": "float32", "shape": [n, 2], "view": <buffer>}`` or, past ``chunk_bytes``,
``{"dtype": ..., "shape": ..., "chunks": [<buffer>, <buffer>, ...]}`` (C order, split on whole
rows). The JS twin is ``js/src/shared/arrays.ts``.

Why chunks: Jupyter Server (tornado) refuses any websocket message from the browser larger than
``websocket_max_message_size`` (10 MiB by default), so browser->kernel arrays (selections) are
sent as several messages of at most ``chunk_bytes`` each and reassembled by
:class:`ChunkAssembler`. Kernel->browser messages have no such limit, but splitting large
buffers keeps each one modest for front ends that copy messages (VS Code, Colab) and lets the
browser fill its typed arrays incrementally.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import traitlets

from ..errors import CuratorError
from ._base import TraitValueError

#: Largest buffer put in one piece; 4 MiB keeps every chunked message well under tornado's 10 MiB.
CHUNK_BYTES = 4 * 1024 * 1024
#: Jupyter Server's default limit for one browser->server websocket message (tornado default).
WEBSOCKET_MAX_MESSAGE_SIZE = 10 * 1024 * 1024

SUPPORTED_DTYPES = ("float32", "float64", "uint8", "int8", "uint16", "int16", "uint32", "int32")


def _check_dtype(dtype: str) -> np.dtype:
    if str(dtype) not in SUPPORTED_DTYPES:
        raise CuratorError(f"dtype {dtype} cannot be sent to the browser",
                           f"convert the array to one of {', '.join(SUPPORTED_DTYPES)} (e.g. arr.astype('float32'))")
    return np.dtype(dtype).newbyteorder("<")


def split_rows(arr: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> list[memoryview]:
    """Little-endian C-order buffers of whole rows, each at most `chunk_bytes` (one row minimum)."""
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    if arr.ndim == 0:
        arr = arr.reshape(1)
    row_bytes = max(1, arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    rows_per = max(1, chunk_bytes // row_bytes)
    n = arr.shape[0]
    if n == 0:
        return [memoryview(b"")]
    return [memoryview(arr[i:i + rows_per]).cast("B") for i in range(0, n, rows_per)]


def array_to_json(arr: np.ndarray | None, widget: Any = None, chunk_bytes: int | None = None) -> dict | None:
    """Serialize an ndarray trait as {dtype, shape, view} or {dtype, shape, chunks}."""
    if arr is None:
        return None
    arr = np.asarray(arr)
    _check_dtype(str(arr.dtype))
    limit = int(chunk_bytes or getattr(widget, "chunk_bytes", None) or CHUNK_BYTES)
    parts = split_rows(arr, limit)
    out: dict[str, Any] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
    if len(parts) == 1:
        out["view"] = parts[0]
    else:
        out["chunks"] = parts
    return out


def _as_bytes(buf: Any) -> bytes | memoryview:
    if isinstance(buf, (bytes, bytearray)):
        return buf
    return memoryview(buf).cast("B")


def array_from_json(value: dict | None, widget: Any = None) -> np.ndarray | None:
    """Inverse of :func:`array_to_json`; accepts either form and checks the byte count."""
    if value is None:
        return None
    if not isinstance(value, dict) or "dtype" not in value or "shape" not in value:
        raise CuratorError(f"binary array message is malformed (keys {sorted(value) if isinstance(value, dict) else type(value).__name__})",
                           "send {dtype, shape, view} or {dtype, shape, chunks} as js/src/shared/arrays.ts does")
    dtype = _check_dtype(value["dtype"])
    shape = tuple(int(s) for s in value["shape"])
    if "chunks" in value:
        data = b"".join(bytes(_as_bytes(c)) for c in value["chunks"])
    else:
        data = _as_bytes(value.get("view", b""))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise CuratorError(f"binary array has {len(data)} bytes but {value['dtype']}{list(shape)} needs {expected}",
                           "resend the whole array; a chunk was lost or the shape is wrong")
    # a writable native-order copy: users sort or edit selections in place
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


#: Pass as ``.tag(sync=True, **array_serialization)`` on a trait holding an ndarray.
array_serialization = {"to_json": array_to_json, "from_json": array_from_json}


class NDArray(traitlets.TraitType):
    """A trait holding a numpy array of a fixed dtype and number of dimensions (or None)."""

    info_text = "a numpy array"

    def __init__(self, dtype: str, ndim: int | None = None, default_value: Any = traitlets.Undefined, **kwargs: Any):
        self.dtype = np.dtype(dtype)
        self.ndim = ndim
        if default_value is traitlets.Undefined:
            default_value = np.zeros((0,) * (ndim or 1), dtype=self.dtype)
        super().__init__(default_value=default_value, **kwargs)

    def validate(self, obj: Any, value: Any) -> np.ndarray | None:
        if value is None and self.allow_none:
            return None
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - any unconvertible object is the same user error
            self.error(obj, value)
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise TraitValueError(
                f"{type(obj).__name__}.{self.name} needs a numeric array ({self.dtype}), got {arr.dtype}",
                "pass a numpy array of numbers")
        if arr.size == 0 and self.ndim:
            arr = arr.reshape((0,) * self.ndim) if arr.ndim != self.ndim else arr
        if self.ndim is not None and arr.ndim != self.ndim:
            raise TraitValueError(
                f"{type(obj).__name__}.{self.name} needs a {self.ndim}-D array, got shape {arr.shape}",
                "reshape it (e.g. arr.reshape(-1) for indices, arr.reshape(-1, 2) for coordinates)")
        if np.issubdtype(self.dtype, np.integer) and arr.size and np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise TraitValueError(f"{type(obj).__name__}.{self.name} needs integers, got fractional values",
                                      "pass whole numbers (point or chip indices)")
        if np.issubdtype(self.dtype, np.unsignedinteger) and arr.size and np.issubdtype(arr.dtype, np.signedinteger):
            if arr.min() < 0:
                raise TraitValueError(f"{type(obj).__name__}.{self.name} needs non-negative values",
                                      "indices start at 0; drop the negative ones")
        try:
            return np.ascontiguousarray(arr, dtype=self.dtype)
        except (TypeError, ValueError):
            raise TraitValueError(
                f"{type(obj).__name__}.{self.name} needs numbers convertible to {self.dtype}, got {arr.dtype}",
                f"pass an array that converts with np.asarray(a, dtype='{self.dtype}')") from None

    def make_dynamic_default(self) -> np.ndarray:
        return np.array(self.default_value, dtype=self.dtype, copy=True)


class ChunkAssembler:
    """Reassembles an array the browser sent as several messages (to stay under the 10 MiB limit).

    Messages: ``{"seq", "index", "count", "dtype", "shape"}`` + one buffer each. Chunks of an
    older `seq` are dropped when a newer transfer starts, so a quick second lasso wins.
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.parts: dict[int, bytes] = {}
        self.meta: dict[str, Any] = {}

    def add(self, msg: dict, buffers: Iterable[Any]) -> np.ndarray | None:
        """Feed one chunk message; returns the full array once every chunk of `seq` has arrived."""
        seq, index, count = int(msg["seq"]), int(msg["index"]), int(msg["count"])
        if count < 1 or not (0 <= index < count):
            raise CuratorError(f"chunk {index} of {count} is out of range", "send chunks numbered 0..count-1")
        if self.seq is not None and seq < self.seq:
            return None
        if seq != self.seq:
            self.seq, self.parts, self.meta = seq, {}, {"dtype": msg["dtype"], "shape": msg["shape"], "count": count}
        bufs = list(buffers)
        self.parts[index] = bytes(_as_bytes(bufs[0])) if bufs else b""
        if len(self.parts) < self.meta["count"]:
            return None
        value = {"dtype": self.meta["dtype"], "shape": self.meta["shape"],
                 "chunks": [self.parts[i] for i in range(self.meta["count"])]}
        self.parts = {}
        return array_from_json(value)


def chunk_count(nbytes: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """How many messages an array of `nbytes` needs."""
    return max(1, math.ceil(nbytes / chunk_bytes))
