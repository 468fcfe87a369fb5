"""Every error Qualify raises on purpose, with messages written for the user who must act.

The hierarchy, so that callers (the CLI, later the HTTP API) can map errors to exit codes and
statuses in one place::

    QualifyError
     ├── ModelError            a model file is wrong: every problem with file, line and column
     ├── IngestError           a message cannot be ingested (malformed JSON, missing ids, ...)
     │    └── MessageError     one message is malformed; carries the reason
     ├── LeadNotFound          no lead with that id
     ├── TransitionNotAllowed  a lifecycle action is illegal for the lead's stage
     ├── NoActiveModel         the store has no active scoring model yet
     └── StoreError            the database cannot be opened or migrated
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "IngestError",
    "LeadNotFound",
    "MessageError",
    "ModelError",
    "ModelProblem",
    "NoActiveModel",
    "QualifyError",
    "StoreError",
    "SubscriptionNotFound",
    "TransitionNotAllowed",
]


class QualifyError(Exception):
    """Base of every error that Qualify raises deliberately; its text is for the user."""


@dataclass(frozen=True, slots=True)
class ModelProblem:
    """One problem in a model file; line and column are 1-based, as editors show them."""

    line: int
    column: int
    message: str

    def render(self, filename: str, lines: Sequence[str]) -> str:
        """`file:line:col: message`, then the offending line and a caret under the spot."""
        head = f"{filename}:{self.line}:{self.column}: {self.message}"
        if 1 <= self.line <= len(lines):
            source = lines[self.line - 1].rstrip("\n")
            caret = " " * (self.column - 1) + "^"
            return f"{head}\n    {source}\n    {caret}"
        return head


class ModelError(QualifyError):
    """A model file is invalid. Holds every problem found, not just the first."""

    def __init__(self, filename: str, text: str, problems: Sequence[ModelProblem]) -> None:
        self.filename = filename
        self.text = text
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.message))
        super().__init__(self.render())

    def render(self) -> str:
        lines = self.text.splitlines()
        return "\n".join(p.render(self.filename, lines) for p in self.problems)


class IngestError(QualifyError):
    """Input messages could not be ingested."""


class MessageError(IngestError):
    """One message is malformed; `reason` says what is wrong with it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LeadNotFound(QualifyError):
    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id
        super().__init__(f"no lead `{lead_id}`: check the id with `qualify leads`")


class SubscriptionNotFound(QualifyError):
    def __init__(self, sub_id: int) -> None:
        self.sub_id = sub_id
        super().__init__(f"no active webhook subscription #{sub_id}: see `qualify webhooks list`")


class TransitionNotAllowed(QualifyError):
    """A lifecycle action that the lead's current stage does not allow."""

    def __init__(
        self, lead_id: str, stage: str, action: str, allowed: Sequence[str], why: str = ""
    ) -> None:
        self.lead_id = lead_id
        self.stage = stage
        self.action = action
        self.allowed = tuple(allowed)
        options = ", ".join(self.allowed) if self.allowed else "none"
        if why and action in self.allowed:  # the stage allows it; a guard said no
            message = f"cannot `{action}` lead `{lead_id}` (stage `{stage}`): {why}"
        else:
            reason = f" ({why})" if why else ""
            message = (
                f"cannot `{action}` lead `{lead_id}`: it is in stage `{stage}`{reason}; "
                f"allowed actions there: {options}"
            )
        super().__init__(message)


class NoActiveModel(QualifyError):
    def __init__(self) -> None:
        super().__init__(
            "the store has no active scoring model: run `qualify model activate MODEL.yaml` first"
        )


class StoreError(QualifyError):
    """The database could not be opened, migrated or written."""
