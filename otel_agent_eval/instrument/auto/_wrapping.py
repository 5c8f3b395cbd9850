"""What every SDK instrumentor does around a model-call method: start the step, call, record the answer.

The application's call always happens, exactly once, with its own arguments; its result or exception comes
back unchanged (a streamed result wrapped in a pass-through proxy). Failures of the recording are logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace

from .. import guard
from ..content import ContentPolicy
from ..conversation import ModelCall, recorded_by_framework
from ._streams import AsyncStreamProxy, StreamProxy

Start = Callable[[Any, Mapping[str, Any], ContentPolicy | None], ModelCall]
Finish = Callable[[ModelCall, Any], None]


def _current(call: ModelCall) -> AbstractContextManager[Any]:
    """The model call's span is current while the SDK makes the request: spans the SDK or its HTTP client
    make (some SDKs trace themselves) nest under it, and the trace context the request carries is its."""
    return trace.use_span(call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def model_call_wrapper(
    tracer: Any, policy: ContentPolicy | None, start: Start, finish: Finish, accumulate: type[Any], is_async: bool
) -> Callable[..., Any]:
    def begin(kwargs: Mapping[str, Any]) -> ModelCall | None:
        try:
            if recorded_by_framework():
                return None  # LangChain's instrumentor records this call as its own model step
            return start(tracer, kwargs, policy)
        except Exception as exc:  # the call goes ahead unrecorded
            guard.log_failure("a model request", exc)
            return None

    def end(call: ModelCall, result: Any, kwargs: Mapping[str, Any]) -> Any:
        if kwargs.get("stream"):
            if not hasattr(result, "__anext__" if is_async else "__next__"):
                call.end()  # a raw response (with_raw_response): the stream is read through it, unseen
                return result
            try:
                proxy = AsyncStreamProxy if is_async else StreamProxy
                return proxy(result, call, accumulate(kwargs))
            except Exception as exc:  # the application gets its stream, unrecorded
                guard.log_failure("a streamed response", exc)
                call.end()
                return result
        try:
            finish(call, result)
        except Exception as exc:
            guard.log_failure("a model response", exc)
            call.end()
        return result

    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = begin(kwargs)
            if call is None:
                return await wrapped(*args, **kwargs)
            try:
                with _current(call):
                    result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            return end(call, result, kwargs)

        return async_wrapper

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = begin(kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            with _current(call):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return end(call, result, kwargs)

    return sync_wrapper


def plain(value: Any) -> Any:
    """An SDK object (pydantic) as plain data; dicts and lists as they are."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
