"""What a reviewer may change of an action before approving it, as fields of its own.

Each action type names its edit form (``ActionType.edit_form``), as it names its payload
serializer. A form is prefilled from the proposal's payload and only collects: the payload it
makes goes to ``proposal_approve(edited_payload=...)``, which checks it by the action type's
rules. A refusal comes back to the form (``add_refusal``), each message beside the field it is
about, with what the reviewer typed kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django import forms
from django.forms.boundfield import BoundField

from approvals import action_types
from hitlproject.errors import DomainError, InvalidInput
from hitlproject.validation import with_lf_line_breaks
from hitlproject.vocabulary import NOTE_MAX_LENGTH

if TYPE_CHECKING:
    from approvals.models import Proposal

# A payload path as a serializer reports it: field names and list indexes, outermost first.
Path = tuple[str | int, ...]


class MoneyField(forms.CharField):
    """An amount in the account's currency, typed as the reviewer writes it; the action
    type's serializer reads it as a number."""

    def __init__(self, *, currency: str, **kwargs: Any) -> None:
        kwargs["label"] = f"{kwargs['label']} ({currency})"
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "size": 12}))
        super().__init__(**kwargs)


class TextField(forms.CharField):
    """Text as the reviewer wrote it; a browser sends a textarea's line breaks as CRLF, which
    is no edit of the text (a payload's text of several lines holds them as LF)."""

    def to_python(self, value: Any) -> str:
        return with_lf_line_breaks(super().to_python(value))


def error_paths(detail: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Each message of a serializer's nested errors, with the path of the field it is about
    (a message about the whole of a part ends in ``non_field_errors``)."""
    if isinstance(detail, Mapping):
        for key, item in detail.items():
            yield from error_paths(item, (*path, key))
    elif isinstance(detail, list | tuple):
        for item in detail:
            yield from error_paths(item, path)
    else:
        yield path, str(detail)


class ActionEditForm(forms.Form):
    """The note, and the payload's editable fields: a subclass adds them
    (``add_payload_fields``) and says how they come from the payload and go back into it."""

    prefix = "edit"
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        help_text="Why, for the agent: it receives the edit as feedback.",
    )

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, payload: Mapping[str, Any], currency: str
    ) -> None:
        self.payload = dict(payload)
        self.currency = currency
        super().__init__(data)
        self.add_payload_fields()
        self.order_fields([*self.payload_fields(), "note"])
        self.initial = self.initial_from(self.payload)

    def add_payload_fields(self) -> None:
        """Add the fields whose number, labels or currency depend on the payload."""

    def initial_from(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The form's fields as the payload has them (by default, a field per top-level key
        of the same name)."""
        return {name: payload.get(name) for name in self.payload_fields()}

    def edited(self, cleaned: Mapping[str, Any]) -> dict[str, Any]:
        """The payload with the form's values in place of the proposed ones; what the form
        does not show stays as proposed."""
        return {**self.payload, **{name: cleaned[name] for name in self.payload_fields()}}

    def field_for(self, path: Path) -> str | None:
        """The form field a payload path is about, if the form shows it."""
        return str(path[0]) if path and path[0] in self.payload_fields() else None

    # --- for the view and the page --------------------------------------------------------

    def payload_fields(self) -> list[str]:
        return [name for name in self.fields if name != "note"]

    def edited_payload(self) -> dict[str, Any]:
        """The payload to approve; call once the form is valid."""
        return self.edited(self.cleaned_data)

    def groups(self) -> list[tuple[str, list[BoundField]]]:
        """The payload's fields as the page lays them out: (legend, fields), a legend only
        where a payload has several parts of the same kind (creatives)."""
        return [("", [self[name] for name in self.payload_fields()])]

    def label_for(self, path: str) -> str:
        """What the page calls a field of the payload, named by its dotted path as a
        feedback diff names it (``creatives[0].headline``)."""
        name = self.field_for(parse_path(path))
        return str(self.fields[name].label) if name else path

    def runs_shown(self, path: str, runs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """What an edit changed in a field of the payload (``FieldEdit.runs``: "kept",
        "removed" or "added", and the text), its values written as this form shows them; by
        default as the payload holds them."""
        return runs

    def add_refusal(self, error: DomainError) -> str:
        """Show why the service refused the edit: each field's message beside that field, the
        rest above the form. Returns the refusal in the form's words, for the page's message:
        each field by its label ("New bid for eu-prospecting (EUR): …"), not by its path in
        the payload ("payload.new_bid: …")."""
        said = []
        by_field = error.field_errors if isinstance(error, InvalidInput) else {}
        for path, message in error_paths(by_field):
            name = self.field_for(path)
            if name is None:
                where = ".".join(str(part) for part in path if part != "non_field_errors")
                self.add_error(None, f"{where}: {message}" if where else message)
                said.append(f"{where}: {message}" if where else message)
            else:
                self.add_error(name, message)
                said.append(f"{self.fields[name].label}: {message}")
        if not said:
            self.add_error(None, error.message)
            return error.message
        return " ".join(said)


def parse_path(dotted: str) -> Path:
    """``creatives[0].headline`` as ("creatives", 0, "headline")."""
    parts: list[str | int] = []
    for part in dotted.split("."):
        name, *indexes = part.replace("]", "").split("[")
        parts.append(name)
        parts += [int(index) for index in indexes if index.isdigit()]
    return tuple(parts)


def edit_form_for(
    proposal: Proposal, data: Mapping[str, Any] | None = None
) -> ActionEditForm | None:
    """The edit form of the proposal's action type, prefilled from its payload (bound to
    ``data`` if given); None if the type has none."""
    form_class = action_types.named(proposal.action_type).edit_form
    if form_class is None:
        return None
    return form_class(data, payload=proposal.payload, currency=proposal.account.currency)
