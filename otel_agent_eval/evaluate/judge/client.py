"""A small client of the OpenAI chat-completions API, as vLLM, Ollama, OpenAI and evaluation models serve it.

Only what a judge needs: one ``POST {base_url}/chat/completions`` with a JSON answer asked for, a timeout, and
retries of what is worth retrying (429 after its ``Retry-After``, 5xx, a refused or dropped connection, a
timeout), all within the caller's deadline. The API key is sent as a bearer token and never appears in an
exception, a log line or a repr.

>>> client = ChatClient("http://127.0.0.1:9/v1", "selene-mini", api_key="sk-secret", retries=0, timeout=0.2)
>>> client
ChatClient('http://127.0.0.1:9/v1', model='selene-mini', api_key=set)
>>> try:
...     client.complete([{"role": "user", "content": "hi"}])
... except JudgeUnavailable as exc:
...     print(exc.reason)
connection
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

FailureReason = Literal["timeout", "connection", "rate_limited", "server_error", "refused", "bad_response"]

MAX_ANSWER_BYTES = 1 << 20
"""An answer larger than this is not read further (a server need not respect ``max_tokens``)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is refused, not followed: following it would send the API key to whatever host it names."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class JudgeUnavailable(Exception):
    """The endpoint gave no usable answer: ``reason`` says why, for metrics (never the key or the prompt)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


@dataclass(frozen=True)
class ChatReply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    """Wall time of the call that answered (retries and waits not included)."""
    attempts: int = 1


def check_base_url(base_url: str) -> str:
    """The base URL, checked: http(s), a host, no credentials in it (a key goes in AGENT_EVAL_JUDGE_API_KEY).

    >>> check_base_url("http://localhost:11434/v1/")
    'http://localhost:11434/v1'
    >>> check_base_url("localhost:8000")
    Traceback (most recent call last):
    ...
    ValueError: judge base URL (scheme 'localhost'): must be http:// or https://
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"judge base URL (scheme {parts.scheme or 'none'!r}): must be http:// or https://")
    if not parts.hostname:
        raise ValueError("judge base URL: no host")
    if parts.username or parts.password:
        raise ValueError("judge base URL: holds credentials; give the key in AGENT_EVAL_JUDGE_API_KEY instead")
    if parts.query or parts.fragment:
        # A query would hold whatever was put there (a key, often), and /chat/completions is joined after it.
        raise ValueError("judge base URL: has a query or a fragment; give the base path only (.../v1)")
    return base_url.rstrip("/")


class ChatClient:
    """``complete(messages)`` against an OpenAI-compatible endpoint (thread-safe: no shared connection)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.model = model
        key = (api_key or "").strip()
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in key):
            # Said without the key: an HTTP header cannot carry it, and http.client's error would quote it.
            raise ValueError("judge API key: holds spaces or control characters")
        self._api_key = key or None
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self._json_schema_refused = False
        """The endpoint refused ``response_format: json_schema`` once (some servers only know json_object)."""

    def __repr__(self) -> str:
        return f"ChatClient({self.base_url!r}, model={self.model!r}, api_key={'set' if self._api_key else 'none'})"

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 1024,
        deadline: float | None = None,
    ) -> ChatReply:
        """The assistant's answer to ``messages`` (temperature 0). ``schema``: the JSON schema the answer must
        follow, asked for as ``response_format`` (``json_object`` where the server refuses schemas).
        ``deadline``: a ``clock()`` time no attempt or wait goes past. Raises :class:`JudgeUnavailable`."""
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is not None and remaining <= 0:
                raise JudgeUnavailable("timeout", "the judge's time ran out before it answered")
            timeout = self.timeout if remaining is None else min(self.timeout, remaining)
            try:
                return self._post(messages, schema, max_tokens, timeout, attempt)
            except _Retry as retry:
                if attempt > self.retries:
                    raise JudgeUnavailable(retry.reason, f"{retry} (after {attempt} attempts)") from None
                wait = retry.after if retry.after is not None else _backoff(attempt)
                wait = min(wait, self.max_retry_wait)
                if deadline is not None and self._clock() + wait >= deadline:
                    raise JudgeUnavailable(retry.reason, f"{retry}; no time left to retry") from None
                self._sleep(wait)

    def _post(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Mapping[str, Any] | None,
        max_tokens: int,
        timeout: float,
        attempt: int,
    ) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if schema is not None:
            body["response_format"] = (
                {"type": "json_object"}
                if self._json_schema_refused
                else {"type": "json_schema", "json_schema": {"name": "findings", "schema": dict(schema)}}
            )
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        started = time.perf_counter()
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                raw = self._read(response, time.monotonic() + timeout)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                said = exc.read(4096).decode("utf-8", "replace").lower()
            except Exception:  # the error's body is only read to tell a refused schema from other refusals
                said = ""
            exc.close()
            if status == 429:
                raise _Retry("rate_limited", "the judge answered 429", _retry_after(exc.headers)) from None
            if status >= 500:
                raise _Retry("server_error", f"the judge answered {status}", _retry_after(exc.headers)) from None
            refused_schema = "response_format" in said or "json_schema" in said or "schema" in said
            if status == 400 and schema is not None and not self._json_schema_refused and refused_schema:
                # A server that knows only response_format json_object (or none) refuses the schema: ask again.
                self._json_schema_refused = True
                return self._post(messages, schema, max_tokens, timeout, attempt)
            if 300 <= status < 400:
                raise JudgeUnavailable("refused", f"the judge answered {status} (a redirect, not followed)") from None
            raise JudgeUnavailable("refused", f"the judge answered {status}") from None
        except TimeoutError:
            raise _Retry("timeout", f"no answer from the judge in {timeout:.1f}s") from None
        except (urllib.error.URLError, ConnectionError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise _Retry("timeout", f"no answer from the judge in {timeout:.1f}s") from None
            raise _Retry("connection", f"cannot reach the judge: {type(reason).__name__}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise JudgeUnavailable("bad_response", f"the judge's answer is over {MAX_ANSWER_BYTES} bytes")
        seconds = time.perf_counter() - started
        return _reply(raw, seconds, attempt, body)

    @staticmethod
    def _read(response: Any, until: float) -> bytes:
        """The body, read in pieces, up to ``MAX_ANSWER_BYTES + 1`` bytes and no later than ``until``: the
        socket's timeout bounds each read, not the whole (a server sending a byte at a time could hold a call
        for ever)."""
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_ANSWER_BYTES:
            if time.monotonic() > until:
                raise TimeoutError
            chunk = response.read1(64 * 1024) if hasattr(response, "read1") else response.read(64 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


class _Retry(Exception):
    def __init__(self, reason: FailureReason, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.after = after


def _backoff(attempt: int) -> float:
    """Full jitter, from 0.5 s doubling: what a crowd of judges retrying at once needs."""
    return random.uniform(0, 0.5 * 2 ** (attempt - 1))


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date); ``None`` when absent or unreadable."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reply(raw: bytes, seconds: float, attempts: int, body: Mapping[str, Any]) -> ChatReply:
    try:
        data = json.loads(raw)
        message = data["choices"][0]["message"]
        content = message.get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        raise JudgeUnavailable("bad_response", "the judge's answer is not a chat completion") from None
    if not isinstance(content, str):
        raise JudgeUnavailable("bad_response", "the judge's answer has no text content")
    usage = data.get("usage") if isinstance(data, dict) else None
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return ChatReply(
        content=content,
        prompt_tokens=_count(prompt) or estimate_tokens(json.dumps(body["messages"])),
        completion_tokens=_count(completion) or estimate_tokens(content),
        seconds=seconds,
        attempts=attempts,
    )


def _count(value: Any) -> int | None:
    """A token count the server reported, if it is one (a positive integer of a sane size)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40:
        return value
    return None


CHARS_PER_TOKEN = 4
"""About four characters a token, English and JSON: what budgets use before the server says."""


def estimate_tokens(text: str) -> int:
    """The tokens of ``text``, by :data:`CHARS_PER_TOKEN`."""
    return max(1, len(text) // CHARS_PER_TOKEN)
