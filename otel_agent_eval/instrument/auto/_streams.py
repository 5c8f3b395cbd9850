"""Streamed answers: the SDK's stream object, passed through, with the span ended when the stream is.

The application gets the SDK's own stream (a ``wrapt`` proxy: ``isinstance`` checks, attributes and methods
are the stream's), reads it as it would, and each item is also handed to an accumulator, which keeps only
the pieces of the answer. The span ends when the answer's last item has been read (the accumulator says so:
a stream left right after it, as the SDKs' ``stream()`` helpers do, still ends it), or when the stream is
exhausted, closed, left through ``with``, or garbage-collected unread; an error while reading ends it as
failed and propagates unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import wrapt

from .. import guard
from ..conversation import ModelCall


class Accumulator(Protocol):
    def add(self, item: Any) -> bool | None:
        """Take one streamed item; true once the answer is complete (its last item)."""
        ...

    def finish(self, call: ModelCall) -> None:
        """Record what was accumulated as the answer (ends the span)."""
        ...


if TYPE_CHECKING:
    _Proxy = wrapt.ObjectProxy[Any]
else:  # wrapt before 2.0 has no subscriptable proxy
    _Proxy = wrapt.ObjectProxy


class _Ending:
    """What both proxies share: feed the accumulator, end the call once."""

    _self_call: ModelCall
    _self_acc: Accumulator
    _self_done: bool

    def _self_add(self, item: Any) -> None:
        if self._self_done:
            return
        try:
            complete = self._self_acc.add(item)
        except Exception as exc:  # a chunk we cannot read is our problem, never the application's
            guard.log_failure("a streamed chunk", exc)
            return
        if complete:
            self._self_finish()

    def _self_finish(self) -> None:
        if self._self_done:
            return
        self._self_done = True
        try:
            self._self_acc.finish(self._self_call)
        except Exception as exc:
            guard.log_failure("a streamed answer", exc)
            self._self_call.end()

    def _self_fail(self, exc: BaseException) -> None:
        if not self._self_done:
            self._self_done = True
            self._self_call.fail(exc)


class StreamProxy(_Ending, _Proxy):
    def __init__(self, stream: Any, call: ModelCall, accumulator: Accumulator) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_acc = accumulator
        self._self_done = False

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_fail(exc)
            raise
        self._self_add(item)
        return item

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_finish()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_finish()

    def __del__(self) -> None:
        self._self_finish()


class AsyncStreamProxy(_Ending, _Proxy):
    def __init__(self, stream: Any, call: ModelCall, accumulator: Accumulator) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_acc = accumulator
        self._self_done = False

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_fail(exc)
            raise
        self._self_add(item)
        return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_finish()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_finish()

    def __del__(self) -> None:
        self._self_finish()
