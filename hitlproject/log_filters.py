"""What the console output (the web server's log) shows."""

import logging


class RefusalsOnOneLine(logging.Filter):
    """A refused request is one line: Django logs a 403 or 400 raised as an exception
    (``PermissionDenied``, ``BadRequest``, a suspicious request) with its whole traceback,
    which says nothing about a refusal that the code meant. The line keeps the status, the
    path and the refusal's own words. A server error (5xx) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and status is not None and status < 500:
            refusal = record.exc_info[1]
            reason = refusal.args[0] if refusal is not None and refusal.args else ""
            message = record.getMessage()
            if isinstance(reason, str) and reason and reason not in message:
                record.msg, record.args = f"{message} ({' '.join(reason.split())})", ()
            record.exc_info = record.exc_text = None
        return True
