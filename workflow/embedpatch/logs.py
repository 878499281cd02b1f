"""Logging set-up shared by the rule scripts."""

import logging


def log_to(path: str) -> None:
    """Send this process's log records (INFO and up) to the rule's log file."""
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
