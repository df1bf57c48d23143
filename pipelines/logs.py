"""The code location's Dagster loggers: a terminal that shows progress, a file that keeps everything.

- ``console``: progress lines and warnings at the configured level, one line each. Engine events
  and errors (step failures with their stack traces, the "not executed" line of every step
  downstream of a failure) are not printed: the CLI sums a failed run up in a line or two
  (``pipelines/errors.py``) and the traces are in the file below and the Dagster UI.
- ``file``: every record, engine events and stack traces included, appended to ``path`` (the CLI
  writes ``<data dir>/logs/<command>-<UTC time>.log``). Without a path it writes nothing.

The run's event log in the Dagster instance (the UI) is written whatever these do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _is_engine_event(record: logging.LogRecord) -> bool:
    return has_log_record_metadata(record) and get_log_record_metadata(record).get("dagster_event") is not None


def _plain_message(record: logging.LogRecord) -> str:
    """The message as the code logged it, without Dagster's ``job - run id - step -`` prefix."""
    if has_log_record_metadata(record):
        return str(get_log_record_metadata(record).get("orig_message") or record.getMessage())
    return record.getMessage()


class _ConsoleHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        if _is_engine_event(record) or record.levelno >= logging.ERROR:
            return  # failures: the CLI's summary line, the file and the UI tell them
        lines = _plain_message(record).splitlines()
        line = logging.makeLogRecord(record.__dict__)  # a copy: the file logger gets the same record
        line.msg, line.args, line.exc_info, line.exc_text = (lines[0] if lines else ""), (), None, None
        super().emit(line)


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="INFO", description="DEBUG, INFO, WARNING, ERROR"),
        "name": dg.Field(str, default_value="incident_metrics"),
    },
    description="The pipeline's own progress lines and warnings on stderr; engine events and stack traces "
                "go to the file logger and the Dagster UI.",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    cfg = init_context.logger_config
    log = logging.Logger(cfg["name"], level=cfg["log_level"].upper())
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
    log.addHandler(handler)
    return log


@dg.logger(
    config_schema={
        "path": dg.Field(dg.Noneable(str), default_value=None, description="log file; none: no file"),
        "log_level": dg.Field(str, default_value="DEBUG"),
    },
    description="Every record of the run, stack traces included, appended to a file.",
)
def file_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    cfg = init_context.logger_config
    log = logging.Logger("incident_metrics.file", level=cfg["log_level"].upper())
    if cfg["path"]:
        path = Path(cfg["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        log.addHandler(handler)
    else:
        log.addHandler(logging.NullHandler())
    return log


LOGGERS = {"console": console_logger, "file": file_logger}
