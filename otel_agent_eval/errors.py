"""Errors about bad input, each naming where the problem is: the file, the run and the field."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be read: a malformed file, a run with a missing field, an unknown role, ...

    >>> str(InputError("role 'robot' is not user, assistant, tool or system", file="runs.json", run=3,
    ...                field="traj[4].role"))
    "runs.json: run 3: traj[4].role: role 'robot' is not user, assistant, tool or system"
    """

    def __init__(
        self, message: str, *, file: str | None = None, run: int | str | None = None, field: str | None = None
    ) -> None:
        self.message = message
        self.file = file
        self.run = run
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.run is not None:
            where.append(f"run {self.run}")
        if self.field:
            where.append(self.field)
        return ": ".join([*where, self.message])

    def located(self, *, file: str | None = None, run: int | str | None = None) -> InputError:
        """The same error with the file and run filled in where they were not known yet."""
        return InputError(
            self.message,
            file=self.file if self.file is not None else file,
            run=self.run if self.run is not None else run,
            field=self.field,
        )
