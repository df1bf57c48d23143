"""Errors that are the user's to fix, and how a failed run is told on the terminal.

A :class:`UserFacingError` says in its message what is wrong and what to do (a setting to change,
a file to write, a command to run first). The CLI prints such a failure as one line and keeps the
stack trace for the log file; any other failure is a bug or an outage, printed as one line per
failed step with the path of the log that holds the whole trace.
"""

from __future__ import annotations

import re


class UserFacingError(Exception):
    """A failure the user can fix; the message names the cause and the fix."""


def user_facing_class_names() -> frozenset[str]:
    """Names of every :class:`UserFacingError` subclass: Dagster hands a step's error back as a
    serialized copy that keeps only the class name."""
    names, todo = set(), [UserFacingError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


def step_failures(result) -> list[tuple[str, str, str]]:
    """``(step key, class name of the innermost error, its message)`` for every failed step of a
    Dagster run result (the innermost cause is where our message is, not Dagster's wrapping)."""
    out = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err.cause is not None:
                err = err.cause
            out.append((event.step_key, err.cls_name or "", err.message.strip()))
    return out


def failure_lines(failures: list[tuple[str, str, str]], log_path: str | None) -> list[str]:
    """What the terminal shows for a failed run: one line per distinct user-fixable problem (the
    same rejected token fails every step that uses it: said once), else one line per failed step,
    then where the stack traces are."""
    user = user_facing_class_names()
    lines: list[str] = []
    for step, cls_name, message in failures:
        first = message.splitlines()[0] if message else cls_name
        if cls_name in user:
            line = f"error: {_without_class_prefix(first, cls_name)}"
        else:
            line = f"error in {step}: {first}"
        if line not in lines:
            lines.append(line)
    if failures and log_path and any(cls not in user for _, cls, _ in failures):
        lines.append(f"stack traces: {log_path}")
    return lines


def _without_class_prefix(message: str, cls_name: str) -> str:
    """``pipelines.ownership.OwnershipError: x`` (or without the module) -> ``x``."""
    return re.sub(rf"^(?:[\w.]+\.)?{re.escape(cls_name)}: ", "", message)
