"""Logging set-up shared by the rule scripts."""

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def log_to(path: str) -> None:
    """Send this process's log records (INFO and up) to the rule's log file."""
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # a line per frame otherwise


def run_logged(log_path: str, step: Callable[..., Any], **arguments: Any) -> Any:
    """Run one pipeline step with its log going to `log_path`; a failure is logged, then
    re-raised so the rule fails. The step's arguments are passed by name: a rule script
    says which of its inputs, outputs and params is which parameter."""
    log_to(log_path)
    try:
        return step(**arguments)
    except Exception:
        log.exception("%s failed", step.__name__)
        raise
