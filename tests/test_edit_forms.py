"""Editing before approval in the console: each action type has a form of its own fields,
prefilled from the proposal; what it makes is checked by the same service as any edit; a
refused edit shows the page again with what the reviewer typed, the note, and why beside the
field; and once approved, the page shows what the edit changed, word by word, as the agent
was told."""

import re
from collections import Counter
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from feedback.models import Feedback
from hitlproject.formats import console_time
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, creative, creative_batch, decided_from_page, reallocation
from tests.factories import evaluated
from tests.test_who_may_act import a_recommendation


def change_page(proposal: Proposal) -> str:
    return reverse("admin:approvals_proposal_change", args=[proposal.pk])


def edit_url(proposal: Proposal) -> str:
    return reverse("admin:approvals_proposal_edit-approve", args=[proposal.pk])


def waiting(body: dict) -> Proposal:
    proposal = evaluated(body)
    assert proposal.status == ProposalStatus.PENDING_REVIEW, proposal.verdict_reasons
    return proposal


def on(campaign: str, action_type: str, **payload) -> dict:
    return bid_adjustment(action_type=action_type) | {"payload": {"campaign": campaign, **payload}}


def submitted_as_shown(client: Client, proposal: Proposal, note: str = "", **changes) -> dict:
    """What a browser posts: every field of the page's edit form as shown, with ``changes``
    typed over it (by field name, without the form's prefix), and the action as the page
    shows it (its hidden ``seen``)."""
    page = client.get(change_page(proposal))
    form = page.context["edit_form"]
    data = {form[name].html_name: form[name].value() or "" for name in form.fields}
    data.update({form[name].html_name: value for name, value in changes.items()})
    data[form["note"].html_name] = note
    return {**data, "seen": page.context["seen"]}


# action type: (who decides, the proposal, its form's fields as shown, what the reviewer
# types, the payload approved)
EDITS = {
    "bid_adjustment": (
        "operator",
        lambda: bid_adjustment("2.40"),
        {"new_bid": "2.40"},
        {"new_bid": "2.30"},
        {"campaign": "brand-search", "new_bid": "2.30"},
    ),
    "budget_change": (
        "operator",
        lambda: on("display-retarget", "budget_change", new_daily_budget="360.00"),
        {"new_daily_budget": "360.00"},
        {"new_daily_budget": "330.5"},
        {"campaign": "display-retarget", "new_daily_budget": "330.50"},
    ),
    "budget_reallocation": (
        "operator",
        lambda: reallocation("280.00"),
        {"amount": "280.00"},
        {"amount": "140"},
        {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "140.00"},
    ),
    "strategy_change": (
        "operator",
        lambda: on(
            "generic-search",
            "strategy_change",
            changes={"bidding_strategy": "target_cpa", "target_cpa": "25.00"},
        ),
        {"bidding_strategy": "target_cpa", "target_cpa": "25.00", "target_roas": ""},
        {"target_cpa": "", "bidding_strategy": "target_roas", "target_roas": "3.5"},
        {
            "campaign": "generic-search",
            "changes": {"bidding_strategy": "target_roas", "target_roas": "3.50"},
        },
    ),
    "creative_deployment": (
        "operator",
        lambda: creative_batch(
            creative("Search smarter", "Find what you need, fast.", "Try it"),
            creative("Guaranteed results, fast", "Results in a week.", "Start now"),
        ),
        {
            "creative-0-headline": "Search smarter",
            "creative-0-body": "Find what you need, fast.",
            "creative-0-call_to_action": "Try it",
            "creative-1-headline": "Guaranteed results, fast",
            "creative-1-body": "Results in a week.",
            "creative-1-call_to_action": "Start now",
        },
        {"creative-1-headline": "Results, fast", "creative-1-body": "Results in a week.\r\n"},
        {
            "campaign": "display-retarget",
            "creatives": [
                creative("Search smarter", "Find what you need, fast.", "Try it"),
                creative("Results, fast", "Results in a week.", "Start now"),
            ],
        },
    ),
}


@pytest.mark.parametrize("action_type", sorted(EDITS))
def test_each_action_types_form_is_prefilled_and_makes_the_payload_approved(login, action_type):
    reviewer, body, shown, typed, approved = EDITS[action_type]
    proposal = waiting(body())
    client = login(reviewer)

    page = client.get(change_page(proposal))

    form = page.context["edit_form"]
    assert {name: form[name].value() for name in form.fields if name != "note"} == shown
    for name in shown:
        assert f'name="{form[name].html_name}"' in page.text
    assert "payload" not in form.fields  # no raw JSON to edit
    data = submitted_as_shown(client, proposal, note="Closer to target.", **typed)
    answer = client.post(edit_url(proposal), data)

    assert answer.status_code == 302, answer.context and answer.context["edit_form"].errors
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload) == (ProposalStatus.APPROVED, approved)
    decision = Decision.objects.get(proposal=proposal)
    assert (decision.edited_payload, decision.note) == (approved, "Closer to target.")


@pytest.mark.parametrize(
    ("action_type", "label"),
    [
        ("bid_adjustment", "New bid for brand-search (USD)"),
        ("budget_change", "New daily budget for display-retarget (USD)"),
        ("budget_reallocation", "Daily amount moved from brand-search to generic-search (USD)"),
        ("strategy_change", "Target CPA (USD)"),
    ],
)
def test_money_is_asked_for_in_the_accounts_currency(login, action_type, label):
    proposal = waiting(EDITS[action_type][1]())
    page = login("operator").get(change_page(proposal))
    assert re.search(rf"<label[^>]*>{re.escape(label)}:</label>", page.text), page.text


def test_a_policy_owner_edits_a_recommended_ceiling_in_percent(login):
    recommendation = a_recommendation()
    client = login("policy-owner")

    page = client.get(change_page(recommendation))

    form = page.context["edit_form"]
    assert form["to_ceiling"].value() == "22.5"
    assert "New auto-execute ceiling for optimizer&#x27;s bid adjustment (%)" in page.text
    assert "In force when proposed: 15.0%." in page.text
    answer = client.post(
        edit_url(recommendation), submitted_as_shown(client, recommendation, to_ceiling="20")
    )
    assert answer.status_code == 302
    recommendation.refresh_from_db()
    assert recommendation.payload["to_ceiling"] == "0.200000"
    assert recommendation.status == ProposalStatus.APPROVED

    widest = a_recommendation()
    too_wide = client.post(edit_url(widest), submitted_as_shown(client, widest, to_ceiling="150"))
    assert too_wide.status_code == 400
    assert too_wide.context["edit_form"].errors["to_ceiling"] == [
        "Ensure this value is less than or equal to 100."
    ]
    # Not read as 20%: typed in other scripts' digits or with an underscore, a person reading
    # it may not read what Python's Decimal does.
    for typed in ("٢٠", "2_0", "2e1"):
        refused = client.post(
            edit_url(widest), submitted_as_shown(client, widest, to_ceiling=typed)
        )
        assert refused.status_code == 400
        assert refused.context["edit_form"].errors["to_ceiling"] == [
            "Enter a number in the digits 0–9, with a point for decimals (such as 12.5)."
        ]
    widest.refresh_from_db()
    assert widest.status == ProposalStatus.PENDING_REVIEW


def errors_beside(page, name: str) -> list[str]:
    return page.context["edit_form"].errors.get(name, [])


def test_a_refused_edit_keeps_what_was_typed_and_the_note_and_says_why_beside_the_field(login):
    proposal = waiting(reallocation("280.00"))
    client = login("operator")
    note = "Half of it, to start with."

    page = client.post(
        edit_url(proposal), submitted_as_shown(client, proposal, note=note, amount="5000")
    )

    assert page.status_code == 400
    assert errors_beside(page, "amount") == ["Exceeds brand-search's daily budget of 1000.00."]
    html = page.text
    field = re.search(r'<div class="edit-field errors">(.*?)</div>\s*</fieldset>', html, re.S)
    assert field and "Exceeds brand-search&#x27;s daily budget of 1000.00." in field.group(1)
    assert 'name="edit-amount" value="5000"' in field.group(1)
    assert re.search(rf'<textarea name="edit-note"[^>]*>\s*{note}</textarea>', html)
    # The message above the page names the field as the form does, not by its payload path.
    assert (
        "Not approved: Daily amount moved from brand-search to generic-search (USD): Exceeds "
        "brand-search&#x27;s daily budget of 1000.00." in html
    )
    assert "payload.amount" not in html
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload["amount"]) == ("pending_review", "280.00")
    assert not Decision.objects.exists()

    # Corrected on the same page, it goes through with the note.
    fixed = client.post(
        edit_url(proposal), submitted_as_shown(client, proposal, note, amount="140")
    )
    assert fixed.status_code == 302
    assert Decision.objects.get().note == note


def test_a_number_the_action_type_cannot_read_is_refused_beside_its_field(login):
    proposal = waiting(bid_adjustment("2.40"))
    client = login("operator")

    page = client.post(
        edit_url(proposal), submitted_as_shown(client, proposal, "typo", new_bid="2,30")
    )

    assert page.status_code == 400
    assert errors_beside(page, "new_bid") == [
        "Write the amount in digits with a decimal point, such as 12.50."
    ]
    assert page.context["edit_form"]["new_bid"].value() == "2,30"


def test_a_creatives_refusal_is_beside_that_creatives_field(login):
    proposal = waiting(creative_batch(creative(), creative(headline="Second")))
    client = login("operator")

    page = client.post(
        edit_url(proposal),
        submitted_as_shown(client, proposal, **{"creative-1-headline": "Long " * 40}),
    )

    assert page.status_code == 400
    assert errors_beside(page, "creative-1-headline") == [
        "Ensure this field has no more than 150 characters."
    ]
    assert errors_beside(page, "creative-0-headline") == []


def test_an_edit_the_guardrails_would_block_is_said_above_the_form(login):
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("700"))
    proposal = waiting(reallocation("150.00"))
    client = login("operator")

    page = client.post(edit_url(proposal), submitted_as_shown(client, proposal, amount="250.00"))

    assert page.status_code == 400
    [refusal] = page.context["edit_form"].non_field_errors()
    assert refusal.startswith("The edited action would be blocked: generic-search's daily budget")
    assert 'class="edit-refused"' in page.text
    assert page.context["edit_form"]["amount"].value() == "250.00"


GARBAGE = [
    "",
    "abc",
    "-5",
    "0",
    "1e999999999",
    "1E-999999999",
    "9" * 5000,
    "NaN",
    "-Infinity",
    "\x00",
    "2.123456789",
    " ",
]


@pytest.mark.parametrize("value", GARBAGE)
def test_no_amount_however_wrong_is_a_500_or_changes_anything(login, value):
    proposal = waiting(reallocation("280.00"))
    client = login("operator")
    client.raise_request_exception = False

    page = client.post(edit_url(proposal), submitted_as_shown(client, proposal, amount=value))

    assert page.status_code == 400, page.status_code
    assert page.context["edit_form"].errors
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload["amount"]) == ("pending_review", "280.00")


def test_a_status_change_is_approved_as_proposed_or_not(login):
    """Its one field has two values: an edit could only set the status its campaign has,
    which changes nothing. Its page offers no edit; an edit posted anyway is refused."""
    proposal = waiting(on("display-retarget", "status_change", status="paused"))
    client = login("operator")
    page = client.get(change_page(proposal))
    assert page.context["edit_form"] is None and 'id="edit-approve-form"' not in page.text
    answer = client.post(edit_url(proposal), {"status": "active"}, follow=True)
    assert "A status change is approved as proposed or not." in answer.text
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload["status"]) == ("pending_review", "paused")


@pytest.mark.parametrize(
    ("action_type", "field", "value"),
    [
        ("strategy_change", "target_roas", "-1"),
        ("strategy_change", "bidding_strategy", "x" * 10_000),
        ("creative_deployment", "creative-0-body", "\x00"),
        ("creative_deployment", "creative-0-headline", ""),
        ("budget_change", "new_daily_budget", "1" * 20),
    ],
)
def test_no_field_however_wrong_is_a_500_or_changes_anything(login, action_type, field, value):
    reviewer, body, *_ = EDITS[action_type]
    proposal = waiting(body())
    client = login(reviewer)
    client.raise_request_exception = False

    page = client.post(edit_url(proposal), submitted_as_shown(client, proposal, **{field: value}))

    assert page.status_code == 400
    assert page.context["edit_form"].errors
    assert Proposal.objects.get(pk=proposal.pk).payload == proposal.payload


def test_missing_and_extra_fields_are_no_500_and_change_only_what_the_form_shows(login):
    proposal = waiting(bid_adjustment("2.40"))
    client = login("operator")
    client.raise_request_exception = False

    # The admin's own page parameters, posted here, are not read as if saving its form.
    missing = client.post(
        edit_url(proposal), {"edit-note": "no bid", "_to_field": "x", "_popup": 1}
    )
    assert missing.status_code == 400
    assert errors_beside(missing, "new_bid") == ["This field is required."]
    assert not missing.context["is_popup"]
    nothing = client.post(edit_url(proposal), {})
    assert nothing.status_code == 400
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.PENDING_REVIEW

    extra = submitted_as_shown(client, proposal, new_bid="2.30")
    extra |= {"edit-campaign": "generic-search", "payload": '{"campaign": "x",}', "x" * 300: "y"}
    approved = client.post(edit_url(proposal), extra)

    assert approved.status_code == 302
    assert Proposal.objects.get(pk=proposal.pk).payload == {
        "campaign": "brand-search",
        "new_bid": "2.30",
    }


def test_after_approval_the_page_shows_the_edit_word_by_word_as_the_agent_was_told(login):
    proposal = waiting(
        creative_batch(creative(headline="Guaranteed results, fast", body="Start today."))
    )
    client = login("operator")
    client.post(
        edit_url(proposal),
        submitted_as_shown(
            client, proposal, "No promises.", **{"creative-0-headline": "Results, fast"}
        ),
    )

    page = client.get(change_page(proposal))

    [(decision, fields)] = page.context["edit_changes"]
    assert decision.reviewer.username == "operator"
    assert fields == [
        (
            "Headline of creative 1",
            [("removed", "Guaranteed results,"), ("added", "Results,"), ("kept", "fast")],
        )
    ]
    told = Feedback.objects.get(proposal=proposal).diff["creatives[0].headline"]["words"]
    assert told == [{"from": "Guaranteed results,", "to": "Results,"}]
    block = re.search(r'<div id="edit-changes">(.*?)</table>', page.text, re.S).group(1)
    # The editor's note isolated (HTML's <bdi>), as a withdrawal note is: a right-to-left
    # override in it would otherwise carry on past it and turn the closing quote around.
    assert "<h3>How it was edited</h3>" in block and ": “<bdi>No promises.</bdi>”" in block
    # When, to the second, as every other time on the page is written ("…18:18:05 UTC").
    assert f"Edited by <strong>operator</strong> on {console_time(decision.created_at)}: " in block
    assert re.search(
        r"<th[^>]*>Headline of creative 1</th>\s*<td class=\"word-diff\">"
        r'<del title="removed">Guaranteed results,</del> <ins title="added">Results,</ins> '
        r"<span>fast</span></td>",
        block,
    ), block


def test_an_edited_then_executed_budget_change_is_headed_what_it_changed_once(login):
    """A 650 → 600 edit, executed: "What it changed" headed its table, and "What the edit
    changed" the edit right below it, two headings of the same words for one change. The edit
    has its own heading, and says what it reads: the agent's value struck, the edit's marked."""
    proposal = waiting(on("generic-search", "budget_change", new_daily_budget="650.00"))
    client = login("operator")
    client.post(
        edit_url(proposal),
        submitted_as_shown(client, proposal, "A bit less.", new_daily_budget="600.00"),
    )
    proposal_execute(proposal_id=proposal.pk)

    page = client.get(change_page(proposal)).text

    headings = [
        re.sub(r"<[^>]+>", "", heading).strip()
        for heading in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page, re.S)
    ]
    assert [h for h in headings if "changed" in h.lower()] == ["What it changed"]
    assert "How it was edited" in headings
    block = re.search(r'<div id="edit-changes">(.*?)</table>', page, re.S).group(1)
    assert "As optimizer proposed it (struck), as edited (marked)" in block
    assert re.search(r'<del title="removed">650.00</del> <ins title="added">600.00</ins>', block), (
        block
    )


def test_each_edit_is_shown_and_a_number_as_struck_then_new(login, operators):
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    proposal = waiting(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=first,
        edited_payload={**proposal.payload, "amount": "260.00"},
    )
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=second,
        edited_payload={**proposal.payload, "amount": "250.00"},
    )

    page = login("operator").get(change_page(proposal))

    label = "Daily amount moved from brand-search to generic-search (USD)"
    assert [
        (decision.reviewer.username, fields) for decision, fields in page.context["edit_changes"]
    ] == [
        ("operator", [(label, [("removed", "280.00"), ("added", "260.00")])]),
        ("second-operator", [(label, [("removed", "260.00"), ("added", "250.00")])]),
    ]


def test_a_proposal_approved_as_proposed_shows_no_edit(login):
    proposal = waiting(reallocation("280.00"))
    client = login("operator")
    decided_from_page(client, "approve", proposal.pk, {"note": ""})

    page = client.get(change_page(proposal))

    assert page.context["edit_changes"] == []
    assert 'id="edit-changes"' not in page.text


class FormsOfThePage(HTMLParser):
    """Each element's id and each label's ``for``, with the id of the form they are in."""

    def __init__(self) -> None:
        super().__init__()
        self.form = None
        self.ids: list[tuple[str, str | None]] = []
        self.labels: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.form = attrs.get("id")
        if "id" in attrs:
            self.ids.append((attrs["id"], self.form))
        if tag == "label" and "for" in attrs:
            self.labels.append((attrs["for"], self.form))

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None


@pytest.mark.parametrize("action_type", ["creative_deployment", "budget_reallocation"])
def test_each_label_on_a_proposals_page_names_a_field_of_its_own_form(login, action_type):
    proposal = waiting(EDITS[action_type][1]())

    page = login("operator").get(change_page(proposal))

    forms = FormsOfThePage()
    forms.feed(page.text)
    repeated = [name for name, count in Counter(name for name, _ in forms.ids).items() if count > 1]
    assert repeated == []
    in_form = dict(forms.ids)
    decide = {"approve-form", "edit-approve-form", "reject-form"}
    labelled = [(target, form) for target, form in forms.labels if form in decide]
    assert {form for _, form in labelled} == decide
    assert [(target, form) for target, form in labelled if in_form.get(target) != form] == []
