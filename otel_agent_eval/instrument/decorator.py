"""``@tool``: a plain tool function (``def`` or ``async def``) recorded as an ``execute_tool`` span.

Inside an :func:`~otel_agent_eval.instrument.agent_run` (found through the context, see the note on threads in
:mod:`.api`) each call is one step; so is a call the model asked for in a run an auto-instrumentor follows
(:mod:`.conversation`); otherwise it is a plain call. Called inside a tool step of the same run
(``run.execute(call, fn)``, ``with run.tool(...)``), it is that step, not a second one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from . import guard
from .api import AgentRunRecorder, _current_run, _tool_owner
from .conversation import followed_run

P = ParamSpec("P")
R = TypeVar("R")


def _active_run(name: str) -> AgentRunRecorder | None:
    """The run to record a call in: the current one, unless this call is already its executing tool; without
    one, the run an auto-instrumentor follows, if its model's latest answer asked for this tool."""
    run = _current_run.get() or followed_run(name)
    return None if run is None or _tool_owner.get() is run else run


@overload
def tool(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def tool(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def tool(fn: Callable[P, R] | None = None, /, *, name: str | None = None) -> Any:
    """Decorate a tool function so that each call inside an :func:`agent_run` is an ``execute_tool`` span.

    The arguments are recorded by parameter name; the return value (awaited, for ``async def``) is the
    result; an exception is the tool's error (and propagates unchanged). The span takes the call id of the
    latest model answer's first unanswered call of this tool.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        tool_name = name or func.__name__
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have none: record no arguments
            signature = None

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
            if signature is None:
                return None
            try:
                return dict(signature.bind_partial(*args, **kwargs).arguments)
            except TypeError:
                return None  # the call itself will raise the TypeError, recorded as the tool's error
            except Exception as exc:
                guard.log_failure("tool arguments", exc)
                return None

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = _active_run(tool_name)
                if run is None:
                    return await func(*args, **kwargs)
                with run.tool(tool_name, arguments=arguments(args, kwargs)) as recorder:
                    result = await func(*args, **kwargs)
                    recorder.set_result(result)
                    return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = _active_run(tool_name)
            if run is None:
                return func(*args, **kwargs)
            with run.tool(tool_name, arguments=arguments(args, kwargs)) as recorder:
                result = func(*args, **kwargs)
                recorder.set_result(result)
                return result

        return wrapper

    return decorate(fn) if fn is not None else decorate
