"""What every action type provides: payload validation, an assessment from the ledger, and the
effect the built-in ledger executor applies. A new action type is a subclass and a
``@register``, not a fork.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

from rest_framework import serializers

from hitlproject.charts import as_sent
from hitlproject.errors import InvalidInput
from hitlproject.validation import StrictSerializer, invalid_from_serializer
from hitlproject.vocabulary import action_type_label
from ledger.models import Account, Campaign, CampaignStatus
from policies.engine import MAGNITUDE_CAP, MagnitudeUnit, change_percent, format_magnitude

if TYPE_CHECKING:
    from approvals.action_types.forms import ActionEditForm
    from approvals.models import Proposal

# A relative change from a zero baseline has no finite size; it is recorded at the cap
# (``MAGNITUDE_CAP``), as is one larger than it.
_MAGNITUDE_QUANTUM = Decimal("0.000001")


class CampaignRef(serializers.SlugField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 100)
        kwargs.setdefault("help_text", "The campaign's external id.")
        super().__init__(**kwargs)


# A decimal string as people write money: ASCII digits and a point. Not an exponent ("1e3"
# is a thousand, one slip away from 1.3), not other scripts' digits, spaces or underscores,
# which Python's Decimal would read and a reader might not.
PLAIN_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class PlainDecimal(serializers.DecimalField):
    """A positive figure with two decimal places, as a plain decimal string ("4.50") or a
    number."""

    default_error_messages = {
        "plain": "Write the figure in digits with a decimal point, such as 4.50.",
        "places": (
            "Ensure that there are no more than {max_decimal_places} decimal places: "
            "{value} has {places}."
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", Decimal("0.01"))
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        # A JSON number, as written: not the float nearest it (``NumberAsWritten``).
        data = getattr(data, "written", data)
        if isinstance(data, str) and not PLAIN_DECIMAL.fullmatch(data):
            self.fail("plain")
        return super().to_internal_value(data)

    def validate_precision(self, value: Decimal) -> Decimal:
        # Too many decimal places is said first, with the figure as sent: a float the agent
        # computed (1000 * 0.28, sent as 280.00000000000006) was refused as having "more
        # than 14 digits in total", which named neither its fault nor what was sent.
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if self.decimal_places is not None and places > self.decimal_places:
            self.fail(
                "places", max_decimal_places=self.decimal_places, value=f"{value:f}", places=places
            )
        return super().validate_precision(value)


class Money(PlainDecimal):
    """A positive amount in the account's currency, as a plain decimal string ("12.50") or
    a number."""

    default_error_messages = {
        "plain": "Write the amount in digits with a decimal point, such as 12.50.",
    }


@dataclass(frozen=True)
class Assessment:
    magnitude: Decimal
    magnitude_label: str
    summary: str
    amount: Decimal | None = None


def relative_change(current: Decimal, new: Decimal) -> Decimal:
    """|new − current| / current, rounded to six places: for display and the stored column.
    What decides is exact: ``ActionType.exact_magnitude``."""
    if current == 0:
        return MAGNITUDE_CAP if new != current else Decimal("0")
    return min(abs(new - current) / current, MAGNITUDE_CAP).quantize(
        _MAGNITUDE_QUANTUM, rounding=ROUND_HALF_UP
    )


def change_label(current: Decimal, new: Decimal) -> str:
    """|new − current| / current as a person reads it, "A 12.5% change", however large (the
    recorded magnitude stops at ``MAGNITUDE_CAP``); "A change from zero" from a zero
    baseline, which has no finite size."""
    if current == 0:
        return "A change from zero"
    size = change_percent(current, new)
    return f"{article_before(size)} {size} change"


def article_before(number: str) -> str:
    """ "An" before a number spoken from a vowel (eight, eleven, eighteen, eighty, eight
    hundred, eleven thousand), "A" before any other: "An 8.3% change", "A 12.0% change"."""
    whole = number.split(".")[0]
    leading_group = whole[: len(whole) % 3 or 3]
    return "An" if whole.startswith("8") or leading_group in ("11", "18") else "A"


def exact_factor(current: Decimal, new: Decimal) -> Fraction:
    """new / current as an exact fraction of the ledger's own values (a move from zero has no
    finite factor: it counts as the cap)."""
    return Fraction(new) / Fraction(current) if current else Fraction(MAGNITUDE_CAP)


def change_of(factor: Fraction | None) -> Fraction | None:
    """The exact relative change a factor makes, |factor − 1|, up to the cap."""
    return None if factor is None else min(abs(factor - 1), Fraction(MAGNITUDE_CAP))


def target_name(external_id: str, noun: str) -> str:
    return f"{external_id}'s {noun}"


def numeric_effects(
    campaigns: dict[str, Campaign], proposed: dict[str, dict[str, Any]]
) -> dict[str, Fraction]:
    """The exact factor each bid or daily budget is multiplied by, for the ceilings."""
    effects = {}
    for external_id, values in proposed.items():
        for field_name, noun in (("bid", "bid"), ("daily_budget", "daily budget")):
            if field_name in values:
                current = getattr(campaigns[external_id], field_name)
                effects[target_name(external_id, noun)] = exact_factor(
                    current, Decimal(values[field_name])
                )
    return effects


# How far past an auto-execute ceiling a dry run's example goes, as a share: one percentage
# point; as a count: one more. And its size where no ceiling lets anything run.
EXAMPLE_STEP = Decimal("0.01")
EXAMPLE_WITHOUT_CEILING = Decimal("0.10")
CENT = Decimal("0.01")


def example_figure(current: Decimal, share: Decimal, cap: Decimal | None = None) -> Decimal:
    """``current`` moved up by ``share``, to the cent, rounded away from it so the move is
    past the ceiling; down by it where up would pass ``cap`` (a campaign's budget cap); a
    figure from zero where there is none."""
    if current == 0:
        return Decimal("1.00")
    up = (current * (1 + share)).quantize(CENT, rounding=ROUND_UP)
    if cap is None or up <= cap:
        return up
    return max((current * (1 - share)).quantize(CENT, rounding=ROUND_DOWN), CENT)


def example_campaigns(account: Account, field: str | None = None) -> list[Campaign]:
    """An account's campaigns in the order a dry run's example picks them: active ones
    first, then those with a figure in ``field`` to move from, then by external id."""

    def order(campaign: Campaign) -> tuple[bool, bool]:
        paused = campaign.status != CampaignStatus.ACTIVE
        return paused, field is not None and not getattr(campaign, field)

    return sorted(account.campaigns.order_by("external_id"), key=order)


def signed_percent(current: Decimal, new: Decimal) -> str:
    if current == 0:
        return "from zero"
    return change_percent(current, new, signed=True)


class ActionType:
    name: ClassVar[str]
    label: ClassVar[str]
    magnitude_unit: ClassVar[MagnitudeUnit] = "ratio"
    # What a count magnitude counts, in the singular: the console writes "2 fields", not "2".
    magnitude_counts: ClassVar[str] = ""
    risk_weight: ClassVar[int]
    payload_serializer: ClassVar[type[StrictSerializer]]
    # A strategy lock on a campaign refuses actions that change how it bids.
    changes_strategy: ClassVar[bool] = False
    # What an account lacks when there is no example of it (``example_payload``) on it, as
    # "account X …" goes on.
    example_missing: ClassVar[str] = "has no campaign"
    # Non-empty: why this type always waits for a person, whatever the policies say.
    always_human: ClassVar[str] = ""
    # Who may approve or reject it: the permission, and the role that has it, in words ("an
    # operator"), as a message to one who may not says who does.
    decide_permission: ClassVar[str] = "approvals.decide_proposal"
    decided_by: ClassVar[str] = "an operator"
    # False: only the platform proposes it; an agent's attempt is refused.
    agents_may_propose: ClassVar[bool] = True
    # The kinds of agent whose work it is (``AgentKind`` values), as a policy's dry run
    # picks an agent to try it for when none has proposed one yet: a budget reallocation is an
    # optimization agent's, never a copywriter's.
    proposed_by_kinds: ClassVar[tuple[str, ...]] = ()
    # False: carried out on the platform itself (a change of policy), never sent to a channel.
    executes_on_channel: ClassVar[bool] = True
    # The payload fields a reviewer may edit before approving; None: any.
    editable_fields: ClassVar[frozenset[str] | None] = None
    # True: the action sets its campaign fields to values chosen against the values they had
    # when proposed, so a change landing on them first supersedes it. False: it moves an
    # amount, which keeps its meaning; it is re-assessed instead.
    sets_values: ClassVar[bool] = True
    # The form a reviewer edits it in before approving (``approvals.action_types.forms``);
    # None: it is approved or rejected as proposed.
    edit_form: ClassVar[type[ActionEditForm] | None] = None

    @property
    def listed_as(self) -> str:
        """The type as a list of proposals or policies names it, in a column of its own: by
        its name in words ("creative deployment"), as their filters do."""
        return action_type_label(self.name)

    @classmethod
    def confidence_text(cls, confidence: float, payload: dict[str, Any]) -> str:
        """The confidence its proposer gave, as the console says it: an agent's, in the
        digits it sent (``as_sent``), the number being its own."""
        return as_sent(confidence)

    @classmethod
    def magnitude_text(cls, value) -> str:
        """A magnitude as the console writes it: a ratio as a percentage ("6.0%"), a count
        with what it counts ("2 fields", "1 creative")."""
        said = format_magnitude(value, cls.magnitude_unit)
        if cls.magnitude_unit != "count" or not cls.magnitude_counts:
            return said
        noun = cls.magnitude_counts
        return f"{said} {noun if Decimal(value) == 1 else noun + 's'}"

    def campaign_fields(self, payload: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """The ledger fields this action reads and writes, by campaign external id."""
        raise NotImplementedError

    @classmethod
    def example_magnitude(
        cls, ceiling: Decimal | None, *, replaced: Decimal | None = None
    ) -> Decimal:
        """The size of a dry run's example under a policy's auto-execute ceiling (as stored):
        just past it, so that the dry run shows the ceiling at work; or, for a draft that
        raises the ceiling ``replaced`` of the policy it replaces, just within it, what the
        draft lets run that the live policy holds."""
        count = cls.magnitude_unit == "count"
        step = Decimal(1) if count else EXAMPLE_STEP
        if not ceiling:
            return step if count else EXAMPLE_WITHOUT_CEILING
        if replaced is None or ceiling <= replaced:
            return Decimal(int(ceiling)) + step if count else ceiling + step
        if count:
            return Decimal(int(ceiling))
        return ceiling - step if ceiling - step > replaced else (ceiling + replaced) / 2

    def example_payload(self, account: Account, magnitude: Decimal) -> dict[str, Any] | None:
        """A payload for the admin's dry run, made from ``account``'s campaigns as they are
        now, of about ``magnitude`` (``example_magnitude``); None where the account has
        nothing for it to be about (``example_missing``)."""
        raise NotImplementedError

    def figures_read_from(self, payload: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """Ledger fields the action's figures (summary, amount) are read from but that it
        does not set, by campaign external id. They are recorded in its snapshot with the
        fields it sets; when one moves, the proposal keeps its meaning and is re-assessed, as
        one that moves an amount is, rather than superseded."""
        return {}

    def snapshot_fields(self, payload: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """The ledger fields a proposal records as it saw them: those it sets and reads
        (``campaign_fields``), then those its figures are read from."""
        fields = {
            campaign: tuple(names) for campaign, names in self.campaign_fields(payload).items()
        }
        for campaign, names in self.figures_read_from(payload).items():
            known = fields.get(campaign, ())
            fields[campaign] = known + tuple(name for name in names if name not in known)
        return fields

    def check(self, payload: dict[str, Any], campaigns: dict[str, Campaign]) -> None:
        """Refuse a payload the current ledger makes impossible: raise the domain's
        ``InvalidInput``, with the field it is about (``hitlproject.validation.invalid_input``)."""

    # Whether a move of the ledger since the action was proposed can make ``check`` refuse it
    # (a reallocation whose source's budget was cut below its amount): asked again before a
    # person lets it run. An action that sets a value is superseded by such a move instead.
    ledger_may_refuse: ClassVar[bool] = False

    def ledger_refusal(self, payload: dict[str, Any], campaigns: dict[str, Campaign]) -> str:
        """Why the ledger as it is (``campaigns``, those the action touches, by external id)
        refuses the action: ``check``'s refusal, in its words ("amount: Exceeds brand-search's
        daily budget of 350.00."); "" if it does not. What a waiting proposal's re-assessment
        records ("It can no longer be applied as proposed: …") and what a person is told as
        they would let it run."""
        try:
            self.check(payload, campaigns)
        except InvalidInput as error:
            return error.message
        return ""

    # The campaign fields ``drawn_from`` takes from, whatever its payload (a reallocation: the
    # daily budget): the moves that set them, approved ahead, count for it too.
    draws_figures: ClassVar[frozenset[str]] = frozenset()

    def drawn_from(self, payload: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
        """What the action takes from campaign figures when it runs, whatever they hold then,
        by campaign external id and field (a reallocation: its amount, from its source's
        daily budget); ``check`` refuses it where it takes more than a figure holds. Only
        for a type the ledger may refuse (``ledger_may_refuse``): where moves approved before
        it draw on the same figure, it is judged against what they leave
        (``approvals.services.acts.LedgerAhead``)."""
        return {}

    # The campaign fields ``brought_to`` adds to, whatever its payload (a reallocation: the
    # daily budget).
    brings_figures: ClassVar[frozenset[str]] = frozenset()

    def brought_to(self, payload: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
        """What the action adds to campaign figures when it runs, whatever they hold then, by
        campaign external id and field (a reallocation: its amount, to its destination's
        daily budget). Never a reason the ledger refuses it, nor, approved and not yet run,
        counted for a move judged after it (it may run after that move, or fail): only said
        of what a move waiting behind it leaves of a figure it adds to
        (``approvals.services.acts.LedgerAhead.figures_ahead``)."""
        return {}

    # The campaign fields whose figures the action sets, whatever its payload (a budget
    # change: the daily budget): those a move the ledger may refuse can draw on
    # (``figures_set``).
    sets_figures: ClassVar[frozenset[str]] = frozenset()

    def figures_set(self, payload: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
        """The figures the action sets when it runs, by campaign external id and field (a
        budget change: its campaign's daily budget, to its new one), of ``sets_figures``:
        approved and not yet run, it sets one a move the ledger may refuse draws on, which
        is judged against what it leaves (``approvals.services.acts.LedgerAhead``)."""
        return {}

    def changes_nothing(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign]
    ) -> dict[str, list[str]] | None:
        """For an action that would leave its campaigns as they are (a bid set to the bid
        they have), each field that says so, with why; None if it changes something. Asked
        when an action is proposed, dry-run or edited, not once it is approved: by then a
        change to its target has superseded it."""
        return None

    def assess(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign], account: Account
    ) -> Assessment:
        raise NotImplementedError

    def exact_magnitude(
        self, payload: dict[str, Any], effects: Mapping[str, Fraction]
    ) -> Fraction | None:
        """The magnitude exactly, from the action's exact effects, where a rounded one could
        decide otherwise than the true one; None: the assessed magnitude is exact already
        (a count, a whole campaign's spend)."""
        return None

    def agents_concerned(self, payload: dict[str, Any]) -> list[str]:
        """Agents, by name, the action is about (whose owners may therefore not decide it),
        besides the one proposing it."""
        return []

    def field_words(self, path: str) -> str:
        """A field of the payload, named by its dotted path as a feedback diff names it
        (``new_bid``), in the words a reason uses: "new bid"."""
        return path.replace("_", " ")

    def texts(self, payload: dict[str, Any]) -> list[tuple[str, str]]:
        """The words the action would publish, as (where, text), for the brand guidelines."""
        return []

    def words_shown(self, payload: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
        """The words the action would publish, as a person deciding it reads them wherever
        they may approve it (a message, a bulk confirmation): ``[("Creative 1",
        [("Headline", "…"), ("Body", "…"), ("Call to action", "…")]), …]``; none for an
        action its summary says whole."""
        return []

    def no_longer_applies(self, payload: dict[str, Any], account: Account) -> str:
        """Why the action no longer applies to what it would change, besides campaign fields
        (whose moves supersede it), in words a person deciding it reads ("… has changed since
        this was proposed: it was 15% then, and is 20% now …"); "" if it still does. Asked
        before a person lets it run (approves, edits and approves, retries), so that nobody is
        told it goes to be executed when its execution would refuse it."""
        return ""

    def no_longer_applies_each(self, asked: list[tuple[dict[str, Any], Account]]) -> list[str]:
        """``no_longer_applies`` of each (payload, account) asked, in order: for many
        proposals of the type at once (one page's, one decision set's, one sending's). A type
        whose answer reads the database reads it here once for all of them."""
        return [self.no_longer_applies(payload, account) for payload, account in asked]

    def proposed_state(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign]
    ) -> dict[str, dict[str, Any]]:
        """The values the touched campaign fields would have after the action."""
        raise NotImplementedError

    def apply(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign], proposal: Proposal
    ) -> None:
        """Write the action to the ledger (the caller holds locks on the campaigns); one the
        ledger no longer allows raises the domain's ``InvalidInput``."""
        for campaign, values in self._set_on(payload, campaigns, proposal):
            campaign.save(update_fields=[*values, "updated_at"])

    def records_created(self, proposal: Proposal) -> dict[str, list[int]]:
        """What the proposal's execution added to the ledger besides campaign fields, by
        kind: each record's id, in the order of the payload. Nothing, for an action that
        only sets campaign fields."""
        return {}

    @property
    def writes_campaign_fields_only(self) -> bool:
        """Whether ``apply`` writes the campaign fields of ``proposed_state`` and nothing
        else, so that the executor may write many actions' changes together
        (``staged_writes``). A type that writes anything else has an ``apply`` of its own."""
        return type(self).apply is ActionType.apply

    def staged_writes(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign], proposal: Proposal
    ) -> list[tuple[Campaign, dict[str, Any]]]:
        """What ``apply`` writes, set on the campaigns in memory and not saved, as (campaign,
        fields changed), for the caller to write with their history; only for a type that
        ``writes_campaign_fields_only``."""
        if not self.writes_campaign_fields_only:
            raise TypeError(f"{self.name} writes more than campaign fields: it applies itself.")
        return self._set_on(payload, campaigns, proposal)

    def _set_on(
        self, payload: dict[str, Any], campaigns: dict[str, Campaign], proposal: Proposal
    ) -> list[tuple[Campaign, dict[str, Any]]]:
        writes = []
        for external_id, values in self.proposed_state(payload, campaigns).items():
            campaign = campaigns[external_id]
            for field_name, value in values.items():
                setattr(campaign, field_name, value)
            campaign._change_reason = f"proposal #{proposal.pk}: {proposal.summary}"
            writes.append((campaign, dict(values)))
        return writes

    def validate_payload(self, raw_payload: Any) -> dict[str, Any]:
        """The payload checked for form, or the domain's ``InvalidInput`` with what is wrong
        where (its serializer's refusal, field by field: services never see DRF's errors).
        One checker (a ``payload_serializer``) per type and thread, reused: building one costs
        more than checking a payload with it, and a batch checks a thousand."""
        checker = getattr(_checkers, self.name, None)
        if checker is None:
            checker = self.payload_serializer()
            setattr(_checkers, self.name, checker)
        try:
            return _json_ready(checker.run_validation(raw_payload))
        except serializers.ValidationError as error:
            raise invalid_from_serializer(error) from error


_checkers = threading.local()


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value
