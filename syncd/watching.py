"""Watch the desired dir: file events, a symlink swapped to a new checkout, a dir removed,
and a commit (its Git ``HEAD`` moved: the revision changed, though no desired file may have).

:class:`DesiredWatcher` calls back ``reload(why)`` whenever what the daemon
reads may have changed; it never reads the files itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import watchfiles

from syncd import events
from syncd.desired import DEFAULTS_FILE, SUFFIXES
from syncd.logs import get_logger
from syncd.revision import git_dirs, names_a_ref

__all__ = ["DesiredWatcher"]

#: How often the desired dir's real path is checked (a symlink swapped by git-sync).
LINK_CHECK = 0.5


class DesiredWatcher:
    """Calls ``reload(why)`` when a YAML file (or a defaults file) under the desired dir changes."""

    def __init__(
        self,
        desired_dir: Path,
        *,
        reload: Callable[[str], Awaitable[None]],
        stopping: asyncio.Event,
    ) -> None:
        self._dir = desired_dir
        self._reload = reload
        self._stopping = stopping

    def _realpath(self) -> Path:
        return Path(os.path.realpath(self._dir))

    async def run(self) -> None:
        first = True
        reported_missing = False
        why = "desired dir relinked"
        while not self._stopping.is_set():
            target = self._realpath()
            identity = _dir_identity(target)
            if identity is None:
                # Removed (rm -rf and a fresh clone, say): keep the last state until it is back.
                first = False
                if not reported_missing:
                    reported_missing = True
                    await self._reload("desired dir missing")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), LINK_CHECK)
                continue
            reported_missing = False
            # Relinked, replaced, back, or a batch lost: what changed while unwatched counts too.
            why = await self._watch(target, identity, catch_up=None if first else why)
            first = False

    async def _watch(self, target: Path, identity: tuple[int, int], *, catch_up: str | None) -> str:
        """Reload on each batch of file events until the dir is relinked or replaced.

        With ``catch_up``, reload once for that reason as soon as the watcher is in
        place, so a change made meanwhile is either read or seen. Returns why the watch
        ended: the reason of the catch-up reload of the next watch.
        """
        stop_watch = asyncio.Event()
        relinked = asyncio.create_task(self._watch_link(target, identity, stop_watch))
        commits = asyncio.create_task(self._watch_commits(target, stop_watch))
        batches = _batches(target, stop=stop_watch, keep=_desired_filter)
        # Runs once the loop is free: awatch sets its watcher up before its first wait.
        reload = asyncio.ensure_future(self._reload(catch_up)) if catch_up else None
        try:
            async for _ in batches:
                if self._stopping.is_set():
                    break
                await self._reload("files changed")
        except (RuntimeError, OSError, ExceptionGroup) as exc:
            error = _watch_error(exc)
            if _UNDECODABLE in str(error):
                # A file whose name is not UTF-8 ended the batch, unread: watch again at
                # once; the reload reads the tree and names that file as invalid.
                return "files changed"
            events.desired_watch_failed(get_logger(), error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)
        finally:
            for task in (relinked, commits):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if reload is not None:
                await reload
        return "desired dir relinked"

    async def _watch_commits(self, target: Path, stop_watch: asyncio.Event) -> None:
        """Reload when the Git ``HEAD`` of the work tree holding the desired dir moves: a
        commit, checkout or pull that changed no desired file still changes the revision.
        A Git dir inside the desired dir is seen by its own watch; a watch that fails
        leaves the backstop reload to notice."""
        real = (Path(os.path.realpath(d)) for d in git_dirs(target))
        roots = tuple(d for d in real if not d.is_relative_to(target))
        if not roots:
            return
        moves = _batches(*roots, stop=stop_watch, keep=lambda _, path: names_a_ref(path, roots))
        with contextlib.suppress(RuntimeError, OSError, ExceptionGroup):
            async for _ in moves:
                if self._stopping.is_set():
                    return
                await self._reload("commit")

    async def _watch_link(
        self, target: Path, identity: tuple[int, int], stop_watch: asyncio.Event
    ) -> None:
        """Stop the watcher when the desired dir resolves elsewhere (symlink swap) or is
        no longer the directory watched (removed, or replaced by a new one)."""
        while not self._stopping.is_set():
            await asyncio.sleep(LINK_CHECK)
            if self._realpath() != target or _dir_identity(target) != identity:
                break
        stop_watch.set()


def _batches(
    *paths: Path, stop: asyncio.Event, keep: Callable[[watchfiles.Change, str], bool]
) -> AsyncIterator[set[tuple[watchfiles.Change, str]]]:
    """Batches of file events under ``paths`` (recursively) that ``keep`` keeps, until ``stop``.

    A batch ends once the tree has been quiet for ``step`` ms (at most ``debounce`` ms
    after it began). A tree rewritten in place file by file (``sed -i`` over 10,000
    files: 3 s of writes with sub-millisecond gaps) is one batch, not a load every
    400 ms of a half-written tree, whose canary files were not rewritten yet: each of
    those partial loads started a rollout without its canary. 100 ms of quiet is what
    a single save waits more than it did (30 ms).
    """
    return watchfiles.awatch(
        *paths,
        stop_event=stop,
        debounce=10_000,
        step=100,
        watch_filter=keep,
        recursive=True,
        ignore_permission_denied=True,
    )


#: How watchfiles says that a changed file's name is not UTF-8 (it then drops the batch).
_UNDECODABLE = "Unable to decode path"


def _watch_error(exc: BaseException) -> BaseException:
    """The error itself: watchfiles raises its watcher thread's errors inside a group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _dir_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``path``; None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _desired_filter(change: watchfiles.Change, path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith("."):
        # Editors and git write through hidden temp files, then rename into place;
        # the rename shows up as an event on the real name.
        return False
    return name.endswith(SUFFIXES) or name == DEFAULTS_FILE or "." not in name
