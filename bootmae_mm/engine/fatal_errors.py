"""The error that ends a run, written to the run's log file as well."""
import logging
import traceback
from contextlib import contextmanager


@contextmanager
def log_fatal_errors(logger: logging.Logger):
    """Write an exception leaving the block (a non-finite loss, a full
    disk, no readable image, a bad setting) with its traceback to the log
    files of ``logger`` (the run's ``work_dir/<time>/<time>.log``), then
    re-raise it: the console shows it once, as Python prints it."""
    try:
        yield
    except Exception as error:
        text = ''.join(traceback.format_exception(
            type(error), error, error.__traceback__))
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 0,
            f'The run stopped on this error:\n{text.rstrip()}', None, None)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        raise
