"""Errors: an RFC 9457 problem from the server as BitfleetError (status, title, detail, field),
and a server that could not be reached after every retry as ConnectionFailed."""


class BitfleetError(Exception):
    """A problem+json answer: `status` (HTTP), `title`, `detail`, `field` (the request field at fault,
    e.g. "hyperparameters.learning_rate", or None), `type` (a URN)."""

    def __init__(self, status, title, detail, field=None, type=None, body=None):
        self.status, self.title, self.detail, self.field, self.type = status, title, detail, field, type
        self.body = body
        where = f" [{field}]" if field else ""
        super().__init__(f"{status} {title}{where}: {detail}")

    @classmethod
    def from_response(cls, response):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(response.status_code, body.get("title"), body.get("detail", ""), body.get("field"),
                       body.get("type"), body)
        return cls(response.status_code, response.reason or "error", response.text[:500])


class ConnectionFailed(Exception):
    """The server could not be reached (or kept failing with 5xx) through every retry."""
