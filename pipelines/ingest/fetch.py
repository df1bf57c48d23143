"""Reading an API: in threads while the caller writes in its own (:func:`fetch_in_order`), in
batches of bounded size (:func:`batches`); a repo that cannot be read, quarantined while the
others load (:func:`is_one_repo_problem`, :func:`unreadable_repo`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pipelines.http import ApiError, AuthError
from pipelines.ingest.contract import Part

# What a host answers about one repo that the others do not share: not found (or not visible to the
# token), empty, gone, paged past its limit, withheld for legal reasons.
ONE_REPO_STATUSES = frozenset({404, 409, 410, 422, 451})


def is_one_repo_problem(exc: ApiError) -> bool:
    """A repo the host answers for with one of ``ONE_REPO_STATUSES``: quarantined, and the other
    repos load. Anything else is everyone's problem and fails the run: a rejected token (401, 403:
    AuthError), a limit the retries could not wait out (429), a request the host refuses (400,
    405: a bug to see, not a repo to skip), an unreachable or failing API (no status, 5xx)."""
    return not isinstance(exc, AuthError) and exc.status in ONE_REPO_STATUSES


def unreadable_repo(repo: str, exc: ApiError) -> Part:
    """The part of a repo that could not be read: its quarantine record, with the API's reason."""
    return Part(rejects=[({"repo": repo}, "repo_unreadable", str(exc))])

_END = object()


def fetch_in_order(items: list, fetch: Callable[[Any], Any], workers: int):
    """``(item, fetch(item))`` for each item, in order, with up to ``workers`` fetches running at
    once in threads and at most ``2 * workers`` results waiting, so memory stays bounded. The caller
    (the DuckDB writes) stays in its own thread. A fetch that raises ends the iteration with its
    exception, once the fetches in flight have finished (the queued ones are cancelled)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, int(workers or 1))
    if workers == 1 or len(items) <= 1:
        for item in items:
            yield item, fetch(item)
        return
    import threading

    failed = threading.Event()

    def guarded(item: Any) -> Any:
        if failed.is_set():  # an earlier fetch failed the run: ask nothing more (never consumed)
            return None
        try:
            return fetch(item)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-fetch")
    pending: deque = deque()
    queue = iter(items)
    try:
        for item in queue:
            pending.append((item, pool.submit(guarded, item)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, future = pending.popleft()
            following = next(queue, _END)
            if following is not _END:
                pending.append((following, pool.submit(guarded, following)))
            yield item, future.result()  # raises the fetch's exception, after the finally below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def batches(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``records`` in lists of ``size`` (the last one shorter, none empty)."""
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
