"""No input in the console gets a 500: numbers too large to draw or to read, ids that are not
ids, NUL characters and very long strings each get a page that says so (or a 4xx), never a
server error."""

import html
import json

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from simple_history.admin import SimpleHistoryAdmin

from approvals.models import Agent, AgentAPIKey, Decision, Execution, Proposal, ProposalStatus
from approvals.services.decisions import proposal_reject
from audit.actors import Actor, acting_as
from feedback.models import CallbackEvent
from hitlproject.errors import DomainError
from hitlproject.vocabulary import NOTE_MAX_LENGTH
from ledger.models import Account
from notifications.models import Notification, Route
from policies.models import KillSwitch, Policy
from tests.conftest import bid_adjustment, reallocation, seen_on_page
from tests.factories import evaluated

HUGE = "9" * 30  # an integer no column holds
PAST_64_BITS = str(2**63)  # one more than the largest bigint
PAST_IDS = [PAST_64_BITS, "99999999999999999999999", HUGE]
FOUR_HUNDRED_DIGITS = int("7" * 400)  # valid JSON, and no float holds it


@pytest.fixture
def superuser(demo_world) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("root", password="unused-1"))
    return client


@pytest.fixture
def operator(login) -> Client:
    client = login("operator")
    client.raise_request_exception = False  # a 500 is an answer to assert on, not a crash
    return client


def url_of(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


# --- numbers ---------------------------------------------------------------------------------


def test_a_review_page_shows_a_number_too_large_to_draw_and_charts_the_rest(optimizer, operator):
    supporting_data = {
        "conversions": [FOUR_HUNDRED_DIGITS, 0.5, 3],
        "extremes": [1e308, -1e308, 0],
        "ctr": {"brand": [0.021, 0.019], "huge": [1, FOUR_HUNDRED_DIGITS]},
    }
    sent = optimizer.post(
        "/api/v1/proposals/", reallocation(supporting_data=supporting_data), format="json"
    )
    assert sent.status_code == 201, sent.content

    page = operator.get(url_of(Proposal, "change", sent.json()["id"]))

    assert page.status_code == 200
    assert "7" * 400 in page.text  # the data as the agent sent it
    charts = {chart.title: [line.label for line in chart.lines] for chart in page.context["charts"]}
    assert charts == {"extremes": ["extremes"], "ctr": ["brand"]}
    assert "nan" not in " ".join(
        line.points for chart in page.context["charts"] for line in chart.lines
    )


def test_edit_then_approve_refuses_a_number_past_pythons_digit_limit(operator, demo_world):
    proposal = evaluated(reallocation())

    response = operator.post(
        url_of(Proposal, "edit-approve", proposal.pk),
        {"edit-amount": "1" * 5000, "edit-note": "", "seen": seen_on_page(operator, proposal.pk)},
    )

    assert response.status_code == 400
    assert response.context["edit_form"].errors["amount"] == ["String value too large."]
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW


def test_a_note_longer_than_an_agent_takes_is_refused_and_decides_nothing(operator, demo_world):
    """A reviewer's note reaches the agent and is shown whole on the proposal's page: one of
    200,000 characters is refused (the form says how long a note may be), by approval, edit or
    rejection, and nothing is decided; the service refuses it too, whatever calls it."""

    proposal = evaluated(reallocation())
    long_note = "x" * (NOTE_MAX_LENGTH + 1)

    seen = seen_on_page(operator, proposal.pk)
    approve = operator.post(
        url_of(Proposal, "approve", proposal.pk), {"note": long_note, "seen": seen}
    )
    assert approve.status_code == 400
    said = [str(m) for m in get_messages(approve.wsgi_request)]
    assert said == ["Not saved: the form has errors, shown beside its fields."]
    assert approve.context["approve_form"].errors["note"] == [
        "Ensure this value has at most 5000 characters (it has 5001)."
    ]
    assert approve.context["approve_form"]["note"].value() == long_note
    edit = operator.post(
        url_of(Proposal, "edit-approve", proposal.pk),
        {"edit-amount": "100.00", "edit-note": long_note, "seen": seen},
    )
    assert edit.status_code == 400
    assert edit.context["edit_form"].errors["note"] == [
        "Ensure this value has at most 5000 characters (it has 5001)."
    ]
    with pytest.raises(
        DomainError, match=r"A note is at most 5,000 characters; this one is 5,001\."
    ):
        proposal_reject(
            proposal_id=proposal.pk,
            reviewer=get_user_model().objects.get(username="operator"),
            reason_code="other",
            note=long_note,
        )
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert not proposal.decisions.exists()


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ('{"amount": %s}' % ("1" * 5000), "A number has more than 4300 digits."),
        ("-" + "1" * 5000, "A number has more than 4300 digits."),
        ('{"amount": 1e999}', "Too large a number: 1e999"),
        ('{"amount": NaN}', "NaN is not a number JSON can hold."),
        ('{"amount": -Infinity}', "-Infinity is not a number JSON can hold."),
        ("[" * 100_000, "Nested too deeply."),
    ],
)
def test_the_dry_run_says_what_is_wrong_with_the_json(login, payload, said):
    client = login("policy-owner")
    policy = Policy.objects.filter(action_type="budget_reallocation").first()
    agent = Agent.objects.get(name="optimizer")

    response = client.post(
        url_of(Policy, "dry_run", policy.pk),
        {"agent": agent.pk, "account": Account.objects.get(external_id="demo").pk,
         "payload": payload},
    )  # fmt: skip

    assert response.status_code == 200
    assert said in response.text
    assert 'id="dry-run-verdict"' not in response.text


@pytest.mark.parametrize("payload", ["[]", '"move 100 to search"', "42", "null", '[{"a": 1}]'])
def test_a_dry_run_payload_that_is_no_json_object_is_said_to_be_one(login, payload):
    """An empty list was answered "This field is required.", a JSON string "payload.
    non_field_errors: Invalid data. Expected a dictionary, but got JSONString.": both say
    plainly that the payload is a JSON object, with the example the page was filled with."""
    client = login("policy-owner")
    policy = Policy.objects.filter(action_type="budget_reallocation").first()
    url = url_of(Policy, "dry_run", policy.pk)
    example = client.get(url).context["form"]["payload"].value()

    response = client.post(
        url,
        {"agent": Agent.objects.get(name="optimizer").pk,
         "account": Account.objects.get(external_id="demo").pk, "payload": payload},
    )  # fmt: skip

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "payload": [
            "The payload must be a JSON object, such as "
            + json.dumps(json.loads(example), ensure_ascii=False)
        ]
    }
    assert 'id="dry-run-verdict"' not in response.text


# --- ids that are not ids --------------------------------------------------------------------


def history_tracked():
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, SimpleHistoryAdmin)
    ]


def test_a_history_version_that_is_no_number_is_not_found_on_every_history_page(superuser):
    proposal = evaluated(reallocation())
    for model, _ in history_tracked():
        obj = model.objects.first() or (proposal if model is Proposal else None)
        real_id = obj.pk if obj else 1
        for args in [
            (real_id, "abc"),
            (real_id, "1.5"),
            (real_id, "\x00"),
            (real_id, HUGE),
            ("abc", 1),
            ("\x00", 1),
        ]:
            response = superuser.get(url_of(model, "simple_history", *args))
            assert response.status_code == 404, (model, args, response.status_code)
        for object_id in ["abc", "\x00", HUGE]:
            response = superuser.get(url_of(model, "history", object_id))
            # 302: Django's own history page (of a record whose changes are not tracked) goes
            # back home saying there is no such record
            assert response.status_code in {302, 404}, (model, object_id, response.status_code)


def test_a_callback_event_has_a_history_page_and_no_version_it_never_had(superuser):
    Agent.objects.filter(name="optimizer").update(callback_url="https://agent.example/hitl")
    proposal = evaluated(bid_adjustment())  # runs on its own: the agent is told
    event = CallbackEvent.objects.get(proposal=proposal)
    first = event.history.earliest("history_id").history_id

    page = superuser.get(url_of(CallbackEvent, "history", event.pk))
    version = superuser.get(url_of(CallbackEvent, "simple_history", event.pk, first))
    made_up = superuser.get(url_of(CallbackEvent, "simple_history", event.pk, first + 10**6))

    assert page.status_code == 200
    assert version.status_code == 200
    assert made_up.status_code == 404


def test_a_bulk_decision_on_ids_that_are_not_ids_is_a_bad_request(operator):
    proposal = evaluated(reallocation())
    changelist = url_of(Proposal, "changelist")
    for selected in ["abc", "1.5", "", "\x00", f"{proposal.pk}x"]:
        for confirm in [{}, {"confirm": "1", "note": "ok"}]:
            response = operator.post(
                changelist,
                {"action": "approve_selected", "_selected_action": [proposal.pk, selected],
                 "index": "0", **confirm},
            )  # fmt: skip
            assert response.status_code == 400, (selected, confirm)
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW

    # An id no proposal has is nothing to decide, not an error.
    response = operator.post(
        changelist,
        {"action": "approve_selected", "_selected_action": str(2**63 - 1), "index": "0"},
    )
    assert response.status_code == 200
    assert response.context["proposals"] == []


@pytest.mark.parametrize(
    ("model", "action"),
    [
        (Proposal, "approve_selected"),
        (Proposal, "reject_selected"),
        (CallbackEvent, "deliver_again"),
        (AgentAPIKey, "revoke"),
        (Agent, "issue_new_key"),
    ],
)
def test_a_bulk_action_on_ids_past_64_bits_is_a_bad_request(superuser, model, action):
    proposal = evaluated(reallocation())
    for selected in PAST_IDS:
        for confirm in [{}, {"confirm": "1", "note": "ok", "reason_code": "other"}]:
            response = superuser.post(
                url_of(model, "changelist"),
                {"action": action, "_selected_action": [selected], "index": "0", **confirm},
            )
            assert response.status_code == 400, (selected, confirm, response.status_code)
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert AgentAPIKey.objects.filter(revoked_at__isnull=True).count() == 2  # the demo keys


def test_every_bulk_action_refuses_ids_that_are_not_ids(superuser):
    for model, model_admin in admin.site._registry.items():
        request_actions = [name for name in (model_admin.actions or []) if isinstance(name, str)]
        for action in [*request_actions, "delete_selected"]:
            response = superuser.post(
                url_of(model, "changelist"),
                {"action": action, "_selected_action": "abc", "index": "0"},
            )
            # 403: the list has no bulk action for this user
            assert response.status_code in {302, 400, 403}, (model, action, response.status_code)


def test_urls_naming_a_proposal_that_cannot_exist_are_refused(operator):
    for view in ["change", "approve", "reject", "retry", "withdraw", "outcome", "edit-approve"]:
        for object_id in [HUGE, "0"]:
            url = f"/admin/approvals/proposal/{object_id}/{view}/"
            response = operator.post(url, {}) if view != "change" else operator.get(url)
            assert 300 <= response.status_code < 500, (view, object_id, response.status_code)


PROPOSAL_PAGES = ["approve", "reject", "retry", "withdraw", "outcome", "edit-approve"]


@pytest.mark.parametrize("object_id", PAST_IDS)
def test_a_decision_page_naming_an_id_past_64_bits_is_not_found(operator, object_id):
    evaluated(reallocation())
    for view in PROPOSAL_PAGES:
        url = f"/admin/approvals/proposal/{object_id}/{view}/"
        post = {"note": "ok", "reason_code": "other", "effect": "as_expected", "payload": "{}"}
        assert operator.post(url, post).status_code == 404, view
        assert operator.get(url).status_code == 404, view
    # The largest id a column holds is a page that says there is no such proposal.
    largest = operator.post(f"/admin/approvals/proposal/{2**63 - 1}/approve/", {"note": "ok"})
    assert largest.status_code in {302, 404}


@pytest.mark.parametrize("object_id", PAST_IDS)
def test_a_policy_dry_run_naming_an_id_past_64_bits_is_not_found(login, object_id):
    client = login("policy-owner")
    client.raise_request_exception = False
    url = f"/admin/policies/policy/{object_id}/dry-run/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"payload": "{}"}).status_code == 404


def test_every_change_and_history_page_naming_an_id_past_64_bits_is_not_found(superuser):
    evaluated(reallocation())
    for model in admin.site._registry:
        for object_id in PAST_IDS:
            for view in ["change", "history", "delete"]:
                response = superuser.get(url_of(model, view, object_id))
                # 302: Django's own pages go back home saying there is no such record; 403:
                # no one deletes these records
                assert response.status_code in {302, 403, 404}, (model, view, object_id)
            if isinstance(admin.site._registry[model], SimpleHistoryAdmin):
                history = superuser.get(url_of(model, "history", object_id))
                assert history.status_code == 404, (model, object_id, history.status_code)
                version = superuser.get(url_of(model, "simple_history", object_id, 1))
                assert version.status_code == 404, (model, object_id, version.status_code)


# --- NUL characters and long strings -------------------------------------------------------


def test_a_nul_character_in_a_list_s_query_is_a_bad_request_on_every_list(superuser):
    for model in admin.site._registry:
        changelist = url_of(model, "changelist")
        for query in [{"q": "\x00"}, {"status": "\x00"}, {"o": "1\x00"}, {"x\x00": "1"}]:
            response = superuser.get(changelist, query)
            assert response.status_code in {302, 400}, (model, query, response.status_code)


def test_a_nul_character_in_a_filter_the_queue_offers_is_a_bad_request(operator):
    changelist = url_of(Proposal, "changelist")
    for name in ["status", "action_type", "risk", "channel", "agent__id__exact"]:
        assert operator.get(changelist, {name: "a\x00b"}).status_code == 400, name


def test_autocomplete_refuses_a_nul_character_and_takes_a_long_term(superuser):
    url = reverse("admin:autocomplete")
    for field, model_name, app_label in [
        ("account", "campaign", "ledger"),
        ("owner", "agent", "approvals"),
        ("proposal", "decision", "approvals"),
    ]:
        query = {"app_label": app_label, "model_name": model_name, "field_name": field}
        assert superuser.get(url, {**query, "term": "a\x00"}).status_code == 400
        long_term = superuser.get(url, {**query, "term": "x" * 10_000})
        assert long_term.status_code in {200, 403, 404}  # 404: a list with no search


def test_the_agent_scorecard_refuses_days_it_does_not_count_over(operator):
    """A number of days it counts over is read; anything else is a 400 saying what it takes
    (as the API's scorecard answers), never a 500 nor 30 days said to be what was asked."""
    agent = Agent.objects.get(name="optimizer")
    assert operator.get(url_of(Agent, "change", agent.pk), {"days": "7"}).status_code == 200
    for days in ["abc", HUGE, "-1", "\x00", "x" * 10_000]:
        page = operator.get(url_of(Agent, "change", agent.pk), {"days": days})
        assert page.status_code == 400, days
        assert "is not a number of days the scorecard counts over" in page.text, days


@pytest.mark.parametrize(
    "query",
    [
        {"since": "\x00", "until": "2026-01-01", "format": "csv"},
        {"since": "2026-01-01", "until": "2026-01-02", "format": "\x00"},
        {"since": "x" * 10_000, "until": "2026-01-02", "format": "csv"},
        {"since": "2026-01-01", "until": HUGE, "format": "jsonl"},
        {"since": "99999-01-01", "until": "2026-01-02", "format": "csv"},
    ],
)
def test_the_audit_export_form_refuses_what_is_not_a_period(operator, query):
    response = operator.get(reverse("audit-export"), query)
    assert response.status_code == 200
    assert "errorlist" in response.text


@pytest.mark.parametrize("agent", ["\x00", "x" * 10_000, HUGE, "optimizer\x00", "<script>"])
def test_the_feedback_export_form_refuses_an_agent_it_does_not_know(operator, agent):
    query = {"agent": agent, "since": "2026-01-01", "until": "2026-01-02"}
    response = operator.get(reverse("feedback-export"), query)
    assert response.status_code == 200
    assert "errorlist" in response.text


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-01-01", "until": "2026-01-02", "drafts": "abc"},
        {"since": "2026-01-01", "until": "2026-01-02", "drafts": HUGE},
        {"since": "2026-01-01", "until": "2026-01-02", "drafts": "\x00"},
        {"since": "\x00", "until": "2026-01-02"},
    ],
)
def test_the_simulation_form_refuses_drafts_and_days_that_are_not(login, query):
    response = login("policy-owner").get(url_of(Policy, "simulate"), query)
    assert response.status_code == 200
    assert "errorlist" in response.text


def test_a_filter_value_a_list_cannot_read_is_refused_saying_so(operator):
    """Django sent the reader to "?e=1": the whole list, unfiltered, with no word that what
    the address asked for was dropped (a link typed or cut short)."""
    response = operator.get(url_of(Proposal, "changelist"), {"agent__id__exact": "abc"})
    assert response.status_code == 400, response.status_code
    assert (
        "The list cannot be filtered as the address asks (agent__id__exact=abc): "
        "Field &#x27;id&#x27; expected a number but got &#x27;abc&#x27;."
        in response.content.decode()
    )


def test_a_filter_value_is_quoted_back_on_one_line_without_its_overrides_and_cut_short(
    operator,
):
    """The refusal quoted the address's value as it came: a right-to-left override in a link
    sent to an operator turned the page's own words after it around, and a value of 5,000
    digits was written out twice."""
    overridden = operator.get(url_of(Proposal, "changelist"), {"agent__id__exact": "\u202eabc"})
    long = operator.get(url_of(Proposal, "changelist"), {"agent__id__exact": "9" * 5000})

    assert overridden.status_code == long.status_code == 400
    said = overridden.context["message"]
    assert "\u202e" not in said
    assert said.startswith("The list cannot be filtered as the address asks (agent__id__exact=abc)")
    assert len(long.context["message"]) < 700


def test_a_page_past_the_end_of_a_list_shows_its_last_page_with_its_filters(operator):
    """A bulk decision on the queue's last page leaves that page empty: coming back to it is
    its last page still, not an error nor the whole list unfiltered."""
    per_page = admin.site._registry[Proposal].list_per_page
    for _ in range(per_page + 1):
        evaluated(bid_adjustment("3.00"))
    waiting = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).count()
    assert waiting == per_page + 1
    query = {"status": ProposalStatus.PENDING_REVIEW, "p": "9999"}
    response = operator.get(url_of(Proposal, "changelist"), query)
    assert response.status_code == 200
    changelist = response.context["cl"]
    assert changelist.result_count == waiting
    assert changelist.page_num == changelist.paginator.num_pages == 2
    assert len(changelist.result_list) == 1
    assert changelist.get_filters_params() == {"status": [ProposalStatus.PENDING_REVIEW]}


@pytest.mark.parametrize(
    ("name", "value", "known"),
    [
        ("status", "bogus", "pending_review, approved"),
        ("risk", "hihg", "high, medium, low"),
        ("action_type", "bid_adjustmnet", "bid_adjustment"),
        ("channel", "myspace", "google_ads, meta"),
    ],
)
def test_a_filter_value_the_queue_does_not_know_is_refused_saying_so(operator, name, value, known):
    """The queue's own filters read a value they did not know as "nothing" or "everything":
    ?status=bogus listed "0 proposals" and ?risk=hihg every proposal waiting, as if there were
    none, or as if filtered by risk. They are refused, saying what the filter knows."""
    evaluated(bid_adjustment("3.00"))
    response = operator.get(url_of(Proposal, "changelist"), {name: value})
    assert response.status_code == 400, response.status_code
    said = html.unescape(response.content.decode())
    assert f"The list cannot be filtered as the address asks ({name}={value}): “{value}”" in said
    assert known in said


def test_the_queue_s_filters_still_take_every_value_they_know(operator):
    evaluated(bid_adjustment("3.00"))
    for query in (
        {"status": "all"},
        {"status": "executed"},
        {"risk": "low"},
        {"action_type": "budget_change"},
        {"channel": "meta"},  # no account on it: known, and nothing listed
    ):
        response = operator.get(url_of(Proposal, "changelist"), query)
        assert response.status_code == 200, query


@pytest.mark.parametrize(
    ("model", "name", "value", "known"),
    [
        (Decision, "outcome__exact", "maybe", "approve, reject"),
        (Decision, "reason_code__exact", "bogus", "off_brand, wrong_signal"),
        (Execution, "status", "bogus", "running, succeeded, failed, failed_to_be_tried_again"),
        (KillSwitch, "scope__exact", "bogus", "global, account, channel"),
        (Route, "delivery__exact", "weekly", "immediately, digest"),
        (Notification, "channel__exact", "pigeon", "email, slack"),
        (Notification, "status", "bogus", "held, held_with_failures, pending, sent"),
    ],
)
def test_a_value_another_list_s_filter_does_not_know_is_refused_saying_so(
    login, model, name, value, known
):
    """An auditor's decisions list filtered by an outcome typed wrong (?outcome__exact=maybe)
    said "0 decisions", as if there were none, and the outbox's ?status=bogus listed every
    message, as if filtered: what the queue's filters were cured of, every other list's
    choices still did. Each is refused, saying what the filter knows."""
    response = login("auditor").get(url_of(model, "changelist"), {name: value})
    assert response.status_code == 400, response.status_code
    said = html.unescape(response.content.decode())
    assert f"The list cannot be filtered as the address asks ({name}={value}): “{value}”" in said
    assert known in said


@pytest.mark.parametrize(
    ("model", "name", "known"),
    [
        # (The executions' status filter is the list's own since 05240321: given empty, it is
        # its "All", as the queue's are.)
        (Decision, "outcome__exact", "approve, reject"),
    ],
)
def test_a_choice_filter_given_no_value_is_refused_saying_it_was_empty(login, model, name, known):
    """``?status__exact=`` (empty) was refused as "“” is not one of the status values it
    knows", as if a value had been typed: Django lists what has an empty status, none ("0
    executions"), and not the filter's "All", which leaves it out of the address."""
    response = login("auditor").get(url_of(model, "changelist"), {name: ""})

    assert response.status_code == 400, response.status_code
    said = html.unescape(response.content.decode())
    assert f"({name}=): the " in said
    assert f" filter was given no value; it takes one of: {known}." in said
    assert "“”" not in said


def test_the_other_lists_filters_still_take_every_value_they_know(login):
    auditor = login("auditor")
    for model, query in (
        (Decision, {"outcome__exact": "reject"}),
        (Decision, {"reason_code__exact": "too_aggressive", "outcome__exact": "reject"}),
        (Execution, {"status": "failed"}),
        (Execution, {"status": "failed_to_be_tried_again"}),
        (KillSwitch, {"scope__exact": "account", "engaged__exact": "1"}),
        (Notification, {"status": "held_with_failures"}),
        (Notification, {"status": "sent", "channel__exact": "slack"}),
    ):
        response = auditor.get(url_of(model, "changelist"), query)
        assert response.status_code == 200, (model, query)


def test_a_made_up_callback_event_address_is_quoted_back_without_its_override(operator):
    """A callback event's address with a made-up key was answered in Django's own words,
    which quoted the key as it came: "Callback event with ID “\u202eabc” doesn’t exist." read
    backwards from the override on. It is answered as every audited record's is."""
    response = operator.get(f"{url_of(CallbackEvent, 'changelist')}%E2%80%AEabc/change/",
                            follow=True)  # fmt: skip
    (said,) = [str(message) for message in get_messages(response.wsgi_request)]
    assert (
        said == "No callback event was ever recorded at “abc”: that is not a callback event's id."
    )
    assert "\u202e" not in response.content.decode()


def test_a_search_is_quoted_in_the_lists_title_without_its_tricks(operator):
    """The proposal list's title (its heading and the browser tab's) quoted each searched
    word as typed: a direction override sent in a link turned "”, in every status" around,
    an isolate left open moved it, a tower of accents was drawn over the heading."""
    search = "\u202eabc \u2067def a" + "\u0301" * 300
    response = operator.get(url_of(Proposal, "changelist"), {"q": search})
    assert response.status_code == 200
    assert response.context["title"] == (
        "Proposals matching “abc” and “def” and “\u00e1\u0301\u0301\u0301”, in every status"
    )
    heading = response.content.decode().split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert "\u202e" not in heading and "\u2067" not in heading


def test_a_deletion_without_a_reason_is_refused_saying_why_and_only_to_whom_may_delete(
    login, superuser
):
    """Every deletion of the rules records its reason, and one posted without is refused,
    nothing deleted. An auditor's (who may delete nothing) was answered "Say why", as if a
    reason would let it through, and so was one of a policy that does not exist."""
    with acting_as(Actor.system("test")):
        policy = Policy.objects.create(
            name="Unused", action_type="status_change", always_review=True, priority=7
        )
    delete = reverse("admin:policies_policy_delete", args=[policy.pk])

    refused = superuser.post(delete, {"post": "yes"}, follow=True)
    assert "Say why: every deletion records its reason." in refused.text
    assert login("auditor").post(delete, {"post": "yes"}).status_code == 403
    missing = superuser.post(
        reverse("admin:policies_policy_delete", args=[policy.pk + 1000]),
        {"post": "yes"},
        follow=True,
    )
    assert "Say why" not in missing.text
    assert f"No policy #{policy.pk + 1000} was ever recorded." in missing.text
    assert Policy.objects.filter(pk=policy.pk).exists()


@pytest.mark.parametrize("parameter", ["kill_switch", "policy"])
@pytest.mark.parametrize("value", ["²", "١", "9" * 30, "-1", "1.0", "x"])
def test_a_list_link_naming_a_record_that_is_no_id_is_refused(operator, parameter, value):
    """The queue's links to the proposals of one kill switch or policy (``?policy=3``) name a
    record by its id: one that is no plain id ("²", which ``str.isdigit`` takes and ``int``
    refuses, was a 500) is a 400 saying there is no such record, never every proposal."""
    page = operator.get(reverse("admin:approvals_proposal_changelist"), {parameter: value})

    assert page.status_code == 400
    assert f"there is no {parameter.replace('_', ' ')} #{value}." in html.unescape(page.text)
