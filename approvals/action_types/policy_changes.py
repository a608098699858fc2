"""A change to how much an agent may do on its own: the platform's earned-autonomy
recommendations. Proposed by the platform, never by an agent; decided by a policy owner, never
by policy; applied by the executor to the agent's own policy on the account, with history."""

from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import Any

from django.utils.text import capfirst
from rest_framework import serializers

from approvals import action_types
from approvals.action_types import register
from approvals.action_types.base import ActionType, Assessment, change_label, relative_change
from approvals.action_types.forms import ActionEditForm, parse_path
from approvals.models import Agent
from hitlproject.errors import InvalidInput
from hitlproject.formats import share_percent
from hitlproject.forms import PlainDecimalField
from hitlproject.validation import StrictSerializer, invalid_input
from hitlproject.vocabulary import action_type_label
from ledger.models import Account
from policies.engine import ceiling_text, format_magnitude
from policies.models import Policy, hard_ceilings_below_auto_execute
from policies.services import (
    policies_in_force_each,
    policy_in_force,
    version_number,
)

# The widest auto-execute ceiling a change may set: a move of the whole value.
MAX_CEILING = Decimal("1")
CEILING_PLACES = 6


def agents_own_scope(agent, account) -> dict[str, Any]:
    """The scope of an agent's own policy on an account: where an earned ceiling is set."""
    return {"agent_id": agent.pk, "account_id": account.pk, "agent_kind": "", "channel": ""}


def is_agents_own(policy, agent, account) -> bool:
    return policy.agent_id == agent.pk and policy.account_id == account.pk


def _ceiling_unit(action_type_name: str) -> str:
    """How the ceilings of ``action_type_name`` read ("ratio": a share, "count"); a share for
    a type the platform no longer knows (of which the change says so: ``_type_gone``)."""
    return action_types.named(action_type_name).magnitude_unit


def _type_gone(action_type_name: str) -> str:
    """That the action type whose ceiling a change would set is no longer one the platform
    knows (removed from its code since), as the change's page and its execution say it; ""
    while it is one."""
    if action_types.get(action_type_name) is not None:
        return ""
    return action_types.no_such_type_any_more(action_type_name)


def _written_reason(proposal) -> str:
    """The reason the policy's history records for the version a policy change wrote."""
    return f"{_written_by(proposal)}{proposal.summary}"


def _written_by(proposal) -> str:
    # How that reason opens: the proposal, whatever its summary reads like later.
    return f"proposal #{proposal.pk}: "


@dataclass(frozen=True)
class PolicyWritten:
    """The policy version a policy change's execution wrote, as the policy's history records
    it: its name then, its number among the policy's own versions (as the console counts
    them), and the ceiling before and after, in the policy's own words ("15%")."""

    policy_id: int
    name: str
    number: int
    created: bool
    ceiling_before: str  # the version before's; for a policy it created, the one in force
    ceiling_after: str
    made_from: str  # a policy it created: its description then ("Made from “…” by …")
    exists: bool  # the policy is still there to open


def policy_written(proposal) -> PolicyWritten | None:
    """What ``PolicyChange.apply`` wrote for ``proposal``, read back from the policy's
    history (the record the executor saved with the proposal's reason); None if none was."""
    record = (
        Policy.history.filter(
            history_change_reason__startswith=_written_by(proposal),
            history_actor_kind="system",
            history_actor="executor",
        )
        .order_by("history_id")
        .first()
    )
    if record is None:
        return None
    unit = _ceiling_unit(proposal.payload.get("action_type", ""))

    def said(value) -> str:
        return "none" if value is None else ceiling_text(value, unit)

    earlier = (
        Policy.history.filter(id=record.id, history_id__lt=record.history_id)
        .order_by("-history_id")
        .first()
    )
    created = earlier is None
    before = (
        Decimal(proposal.payload["from_ceiling"]) if created else earlier.auto_execute_max_magnitude
    )
    return PolicyWritten(
        policy_id=record.id,
        name=record.name,
        number=version_number(record.id, record.history_id),
        created=created,
        ceiling_before=said(before),
        ceiling_after=said(record.auto_execute_max_magnitude),
        made_from=record.description if created else "",
        exists=Policy.objects.filter(pk=record.id).exists(),
    )


class Ratio(serializers.DecimalField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_digits=14,
            decimal_places=CEILING_PLACES,
            min_value=Decimal("0"),
            max_value=MAX_CEILING,
            coerce_to_string=True,
            **kwargs,
        )


class PolicyChangePayload(StrictSerializer):
    agent = serializers.SlugField(max_length=100, help_text="The agent whose autonomy changes.")
    action_type = serializers.CharField(max_length=32)
    from_ceiling = Ratio(help_text="The auto-execute ceiling in force when proposed.")
    to_ceiling = Ratio(help_text="The auto-execute ceiling proposed.")

    def validate_action_type(self, value: str) -> str:
        action_type = action_types.get(value)
        if action_type is None or action_type.always_human:
            raise serializers.ValidationError(f"“{value}” has no auto-execute ceiling to change.")
        return value


class PolicyChangeEdit(ActionEditForm):
    """The new ceiling, the one field a policy owner may change: in percent where the ceiling
    is a share (as the console shows ceilings), as a number where it is a count."""

    def unit(self) -> str:
        return _ceiling_unit(str(self.payload.get("action_type")))

    def percent(self) -> bool:
        return self.unit() == "ratio"

    def scale(self) -> Decimal:
        return Decimal(100) if self.percent() else Decimal(1)

    def add_payload_fields(self) -> None:
        in_force = self.payload.get("from_ceiling")
        self.fields["to_ceiling"] = PlainDecimalField(
            label=(
                f"New auto-execute ceiling for {self.payload.get('agent')}'s "
                f"{action_type_label(str(self.payload.get('action_type')))}"
                + (" (%)" if self.percent() else "")
            ),
            min_value=Decimal(0),
            max_value=MAX_CEILING * self.scale(),
            decimal_places=CEILING_PLACES - (2 if self.percent() else 0),
            help_text=(
                f"In force when proposed: {format_magnitude(Decimal(in_force), self.unit())}."
                if in_force is not None
                else ""
            ),
        )

    def initial_from(self, payload):
        try:
            shown = Decimal(payload.get("to_ceiling")) * self.scale()
        except (TypeError, DecimalException):
            return {}
        return {"to_ceiling": f"{shown.normalize():f}"}

    def edited(self, cleaned):
        return {**self.payload, "to_ceiling": str(cleaned["to_ceiling"] / self.scale())}

    def runs_shown(self, path, runs):
        # Under a label in percent, the ceilings in percent ("22.5%", "20%"), not the
        # fractions the payload holds ("0.225000", "0.2").
        if self.field_for(parse_path(path)) != "to_ceiling":
            return runs
        shown = []
        for kind, text in runs:
            try:
                shown.append((kind, ceiling_text(Decimal(text), self.unit())))
            except DecimalException:
                shown.append((kind, text))
        return shown


def _ceiling_moved(payload, agent, account, policy) -> str:
    """Why a change proposed against ``payload``'s ceiling no longer applies to ``policy``,
    the one in force for its agent and type on ``account`` (``policies_in_force_each``: with
    its ``version_number``), in the words its page says it; "" while its ceiling is still
    the one it was proposed against."""
    action_type = payload["action_type"]
    proposed_against = Decimal(payload["from_ceiling"])
    if policy is not None and policy.auto_execute_max_magnitude == proposed_against:
        return ""
    unit = _ceiling_unit(action_type)
    whose = (
        f"{agent.name}'s auto-execute ceiling for {action_type_label(action_type)} on "
        f"{account.external_id}"
    )
    then = ceiling_text(proposed_against, unit)
    if policy is None:
        return f"no policy sets {whose} now; it was {then} when this was proposed"
    now = (
        "none"
        if policy.auto_execute_max_magnitude is None
        else ceiling_text(policy.auto_execute_max_magnitude, unit)
    )
    return (
        f"{whose} has changed since this was proposed: it was {then} then, and is {now} "
        f"now (policy “{policy.name}”, version {policy.version_number})"
    )


@register
class PolicyChange(ActionType):
    name = "policy_change"
    label = "policy change"
    risk_weight = 40
    payload_serializer = PolicyChangePayload
    edit_form = PolicyChangeEdit
    always_human = "A change to the policies always waits for a policy owner."
    decide_permission = "policies.change_policy"
    decided_by = "a policy owner"
    agents_may_propose = False
    executes_on_channel = False
    editable_fields = frozenset({"to_ceiling"})  # the evidence is about this agent and type

    example_missing = "has no agent acting on it under an auto-execute ceiling"

    def example_payload(self, account, magnitude):
        # Widening by half the ceiling in force for the first agent acting on the account
        # that has one (narrowing a full one), whatever ``magnitude``: a policy change always
        # waits for a policy owner.
        agents = Agent.objects.filter(accounts=account, is_active=True, is_platform=False)
        for agent in agents.order_by("name"):
            for name in action_types.names():
                governed = action_types.get(name)
                if governed.always_human or governed.magnitude_unit != "ratio":
                    continue
                in_force = policy_in_force(action_type=name, agent=agent, account=account)
                before = getattr(in_force, "auto_execute_max_magnitude", None)
                if before is None:
                    continue
                after = min(before * Decimal("1.5"), MAX_CEILING) if before else Decimal("0.05")
                if after == before:
                    after = before / 2
                return {
                    "agent": agent.name,
                    "action_type": name,
                    "from_ceiling": f"{before:.{CEILING_PLACES}f}",
                    "to_ceiling": f"{after:.{CEILING_PLACES}f}",
                }
        return None

    @classmethod
    def confidence_text(cls, confidence: float, payload: dict[str, Any]) -> str:
        """The platform's recommendation gives as its confidence how strongly the agent's
        record speaks for it (``feedback.autonomy``): of its proposals of the type people
        decided, the share approved as proposed, to widen its ceiling; the share rejected, to
        narrow it. Said as a share, "33%", not as the float it was computed as
        (0.3333333333333333); ``payload`` as the platform made it, which says which."""
        widens = Decimal(payload["to_ceiling"]) > Decimal(payload["from_ceiling"])
        share = "approved as proposed" if widens else "rejected"
        return (
            f"{share_percent(confidence)}: of {payload['agent']}'s "
            f"{action_type_label(payload['action_type'])} proposals people decided, "
            f"the share {share}"
        )

    def campaign_fields(self, payload):
        return {}

    def agents_concerned(self, payload) -> list[str]:
        return [payload["agent"]]

    def check(self, payload, campaigns) -> None:
        if not Agent.objects.filter(name=payload["agent"], is_platform=False).exists():
            raise invalid_input({"agent": [f"There is no agent “{payload['agent']}”."]})
        if Decimal(payload["to_ceiling"]) == Decimal(payload["from_ceiling"]):
            raise invalid_input({"to_ceiling": ["It is the ceiling already in force."]})

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        before, after = Decimal(payload["from_ceiling"]), Decimal(payload["to_ceiling"])
        verb = "widen" if after > before else "narrow"
        unit = _ceiling_unit(payload["action_type"])
        return Assessment(
            magnitude=relative_change(before, after),
            magnitude_label=f"{change_label(before, after)} of a ceiling",
            summary=(
                f"{verb} {payload['agent']}'s auto-execute ceiling for "
                f"{action_type_label(payload['action_type'])} "
                f"on {account.external_id} from {format_magnitude(before, unit)} to "
                f"{format_magnitude(after, unit)}"
            ),
        )

    def proposed_state(self, payload, campaigns):
        return {}

    def no_longer_applies(self, payload, account) -> str:
        return self.no_longer_applies_each([(payload, account)])[0]

    def no_longer_applies_each(self, asked) -> list[str]:
        # The ceiling it would change moved since it was recommended (a person edited the
        # policy, another change was executed): ``apply`` would refuse it. The agents named
        # and the policies in force read once for all of them, whatever their number.
        names = sorted({payload["agent"] for payload, _ in asked})
        agents = {agent.name: agent for agent in Agent.objects.filter(name__in=names)}
        said: dict[int, str] = {}
        judged = []  # (place in asked, payload, agent, account): those its policy judges
        for place, (payload, account) in enumerate(asked):
            agent = agents.get(payload["agent"])
            if agent is None:
                said[place] = f"there is no agent “{payload['agent']}” any more"
            elif gone := _type_gone(payload["action_type"]):
                said[place] = gone
            else:
                judged.append((place, payload, agent, account))
        in_force = policies_in_force_each(
            [(payload["action_type"], agent, account) for _, payload, agent, account in judged]
        )
        for (place, payload, agent, account), policy in zip(judged, in_force, strict=True):
            said[place] = _ceiling_moved(payload, agent, account, policy)
        return [said[place] for place in range(len(asked))]

    def apply(self, payload, campaigns, proposal) -> None:
        """Set the ceiling on the agent's own policy for the account, made from the policy in
        force if it has none; refused if the ceiling in force moved since the proposal."""
        agent = Agent.objects.filter(name=payload["agent"]).first()
        if agent is None:
            raise InvalidInput(f"There is no agent “{payload['agent']}” any more.")
        account, action_type = proposal.account, payload["action_type"]
        gone = _type_gone(action_type)
        if gone:
            raise InvalidInput(f"{capfirst(gone)}.")
        in_force = policy_in_force(action_type=action_type, agent=agent, account=account)
        policy = Policy.objects.select_for_update().filter(pk=getattr(in_force, "pk", None)).first()
        proposed_against = Decimal(payload["from_ceiling"])
        if policy is None or policy.auto_execute_max_magnitude != proposed_against:
            # In the ceilings' own words ("12%, not 15%"), as the policy's page writes them:
            # not as the payload holds them ("0.120000, not 0.150000").
            unit = _ceiling_unit(action_type)
            if policy is None:
                now = "no policy"
            elif policy.auto_execute_max_magnitude is None:
                now = "none"
            else:
                now = ceiling_text(policy.auto_execute_max_magnitude, unit)
            raise InvalidInput(
                f"The ceiling in force is now {now}, not "
                f"{ceiling_text(proposed_against, unit)} as proposed."
            )
        if not is_agents_own(policy, agent, account):
            source = policy.name
            policy.pk = policy.id = None  # a copy: the agent's own policy on this account
            policy._state.adding = True
            policy.name = f"{source}: {agent.name} on {account.external_id}"[:200]
            for field_name, value in agents_own_scope(agent, account).items():
                setattr(policy, field_name, value)
            policy.description = (
                f"Made from “{source}” by proposal #{proposal.pk}. For {agent.name} on "
                f"{account.external_id} it decides instead of “{source}”: a later change of "
                "that policy does not hold here unless it is made here too."
            )
        policy.auto_execute_max_magnitude = Decimal(payload["to_ceiling"])
        below = hard_ceilings_below_auto_execute(policy)
        if below:  # its hard ceiling was lowered since: the console refuses such a policy too
            raise InvalidInput(
                f"Policy “{policy.name}”: " + " ".join(e.message for e in below.values())
            )
        policy._change_reason = _written_reason(proposal)
        policy.save()
