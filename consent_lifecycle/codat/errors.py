"""The one exception the Codat client raises."""

from __future__ import annotations


class CodatError(Exception):
    """A Codat call that failed: an error status, an unreachable API, or a response we cannot trust.

    Carries Codat's `statusCode`, `correlationId` and `error` text when Codat sent them. The message names
    the method and the path (never the query string's values or any header), so it is safe to log.
    """

    def __init__(
        self,
        error: str,
        *,
        status_code: int | None = None,
        correlation_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        can_be_retried: str | None = None,
    ) -> None:
        self.error = error
        self.status_code = status_code
        self.correlation_id = correlation_id
        self.method = method
        self.path = path
        self.can_be_retried = can_be_retried
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.path}" if self.method else "Codat"
        status = f" -> {self.status_code}" if self.status_code is not None else ""
        correlation = f" (correlationId {self.correlation_id})" if self.correlation_id else ""
        return f"Codat {where}{status}: {self.error}{correlation}"

    @property
    def is_not_found(self) -> bool:
        return self.status_code == 404

    def __repr__(self) -> str:
        return f"CodatError({self._describe()!r})"
