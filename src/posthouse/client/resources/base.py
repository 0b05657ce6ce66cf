"""What every resource class holds (the I/O layer of the client it belongs to), and paging through a search."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Sequence
from typing import TypeVar

from posthouse.client.http import AsyncHttp, SyncHttp

__all__ = ["MAX_PAGE_SIZE", "SEARCH_WINDOW", "AsyncResource", "SyncResource", "pages", "pages_async"]

MAX_PAGE_SIZE = 500  # the most one page of a search may hold
SEARCH_WINDOW = 10_000  # a search answers count + offset up to 10,000 only (Postmark's rule)

T = TypeVar("T")
Fetch = Callable[[int, int], tuple[int, Sequence[T]]]  # (count, offset) → (total that match, one page)


class AsyncResource:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http


class SyncResource:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http


def _check(offset: int, page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    if not 0 <= offset < SEARCH_WINDOW:
        raise ValueError(f"offset must be at least 0 and below {SEARCH_WINDOW}")


def _next(offset: int, page: Sequence[object], total: int) -> int | None:
    """The offset of the page after this one, or None when the search is done (or its window is)."""
    offset += len(page)
    return offset if page and offset < min(total, SEARCH_WINDOW) else None


def pages(fetch: Fetch[T], key: Callable[[T], Hashable], *, offset: int, page_size: int) -> Iterator[T]:
    """Every item of a search, page after page. Items are newest first, so one that arrives meanwhile pushes
    the rest one place on: an item seen on an earlier page is not given twice (`key` tells them apart)."""
    _check(offset, page_size)
    seen: set[Hashable] = set()
    at: int | None = offset
    while at is not None:
        total, page = fetch(min(page_size, SEARCH_WINDOW - at), at)
        for item in page:
            if key(item) not in seen:
                seen.add(key(item))
                yield item
        at = _next(at, page, total)


async def pages_async(fetch: Callable[[int, int], Awaitable[tuple[int, Sequence[T]]]], key: Callable[[T], Hashable],
                      *, offset: int, page_size: int) -> AsyncIterator[T]:
    """`pages` for the async clients."""
    _check(offset, page_size)
    seen: set[Hashable] = set()
    at: int | None = offset
    while at is not None:
        total, page = await fetch(min(page_size, SEARCH_WINDOW - at), at)
        for item in page:
            if key(item) not in seen:
                seen.add(key(item))
                yield item
        at = _next(at, page, total)
