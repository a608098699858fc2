"""Finding proposals in the review console: a search that looks in every status and in the
fields people look for, columns that sort, a channel filter of the channels in use, and the
mark of a proposal a guardrail spoke about, which ranks it above every clean one of its kind,
whatever their sizes.

On PostgreSQL the search is full-text over an index; on SQLite (the embedded default) it reads
each text by substring: every test here but the index's runs on both."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.search import search_document
from approvals.services.decisions import proposal_approve, proposal_reject
from executors.runner import proposal_execute
from ledger.models import Account, Campaign, Channel
from policies.engine import evaluate
from policies.models import KillSwitch, Policy
from tests.conftest import bid_adjustment, creative, creative_batch, reallocation
from tests.factories import evaluated
from tests.test_policy_engine import facts, rule

CHANGELIST = reverse("admin:approvals_proposal_changelist")


@pytest.fixture
def operator(login):
    return login("operator")


def listed(client, **query) -> list[Proposal]:
    page = client.get(CHANGELIST, query)
    assert page.status_code == 200, page.status_code
    return list(page.context["cl"].result_list)


def title(client, **query) -> str:
    return client.get(CHANGELIST, query).context["title"]


def reject(proposal: Proposal) -> Proposal:
    operator = get_user_model().objects.get(username="operator")
    return proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")


# --- what a search finds -------------------------------------------------------------------


def test_a_search_finds_an_agents_proposals_by_its_name_in_every_status(operator):
    by_optimizer = evaluated(reallocation("280.00"))
    executed_unseen = evaluated(bid_adjustment("2.12"))  # auto-approved: never in the queue
    by_copywriter = evaluated(creative_batch(), agent="copywriter")
    assert executed_unseen.status != ProposalStatus.PENDING_REVIEW

    found = listed(operator, q="copywriter")
    assert found == [by_copywriter]
    assert set(listed(operator, q="optim")) == {by_optimizer, executed_unseen}
    assert title(operator, q="copywriter") == "Proposals matching “copywriter”, in every status"


def test_a_search_finds_a_word_of_a_creative(operator):
    promise = evaluated(creative_batch(creative(body="Guaranteed results in a week.")))
    headline = evaluated(creative_batch(creative(headline="Spring sale, finally", body="Hi.")))
    cta = evaluated(creative_batch(creative(cta="Claim yours", body="Hello.")))
    plain = evaluated(creative_batch(creative(body="Results in a week.")))

    assert listed(operator, q="guaranteed") == [promise]
    assert listed(operator, q="GUARANTEED") == [promise]
    assert listed(operator, q="spring") == [headline]
    assert listed(operator, q='"claim yours"') == [cta]
    assert plain not in listed(operator, q="guaranteed spring")  # every word must be found


def test_a_search_finds_a_creative_in_any_language_and_not_by_its_field_names(operator):
    german = evaluated(creative_batch(creative(headline="Rabatt für Mitglieder", body="Hallo.")))
    evaluated(reallocation("280.00"))
    assert listed(operator, q="für") == [german]
    assert listed(operator, q="headline") == []  # a key of every creative, not its text


def test_a_search_finds_a_word_of_the_policys_reasons(operator):
    waits = evaluated(reallocation("280.00"))  # "… over the 25.0% cumulative ceiling …"
    within = evaluated(bid_adjustment("2.12"))  # "… is within the 15.0% auto-execute ceiling …"
    assert listed(operator, q="cumulative") == [waits]
    assert listed(operator, q='"is within"') == [within]  # a phrase, as the reasons say it


def test_a_search_finds_a_campaign_by_its_external_id(operator):
    on_display = evaluated(creative_batch())  # on display-retarget
    on_search = evaluated(reallocation("280.00"))  # brand-search to generic-search
    assert listed(operator, q="display-retarget") == [on_display]
    assert listed(operator, q="generic-search") == [on_search]


def test_a_search_finds_the_agents_external_ref_and_an_id(operator):
    ticket = evaluated(reallocation("280.00", external_ref="ticket-4711"))
    other = evaluated(reallocation("150.00", external_ref="ticket-4712"))
    assert listed(operator, q="ticket-4711") == [ticket]
    assert listed(operator, q=f"#{other.pk}") == [other]
    assert other in listed(operator, q=str(other.pk))  # and any text with the number


def test_a_search_finds_an_action_type_by_name_or_in_words(operator):
    creatives = evaluated(creative_batch())
    evaluated(reallocation("280.00"))
    for term in ["creative_deployment", "creative", '"creative batch"']:
        assert listed(operator, q=term) == [creatives], term


def test_a_search_looks_in_every_status_unless_one_is_picked(operator):
    waiting = evaluated(creative_batch(creative(body="Guaranteed results, fast.")))
    rejected = reject(evaluated(creative_batch(creative(body="Guaranteed results, slowly."))))
    assert rejected.status == ProposalStatus.REJECTED

    page = operator.get(CHANGELIST, {"q": "guaranteed"})
    assert set(page.context["cl"].result_list) == {waiting, rejected}
    assert page.context["title"] == "Proposals matching “guaranteed”, in every status"
    assert "field-status" in page.text  # rows of several statuses say which
    selected = [c for c in page.context["cl"].filter_specs[0].choices(page.context["cl"])]
    assert [c["display"] for c in selected if c["selected"]] == ["All"]

    picked = operator.get(CHANGELIST, {"q": "guaranteed", "status": "pending_review"})
    assert list(picked.context["cl"].result_list) == [waiting]
    assert picked.context["title"] == (
        "Proposals matching “guaranteed”, with status pending review"
    )
    assert listed(operator, q="guaranteed", status="rejected") == [rejected]
    # Without a search, the queue is still what waits for a decision.
    assert rejected not in listed(operator)


def test_every_status_at_once_lists_the_newest_first(operator):
    first = evaluated(reallocation("280.00"))
    second = evaluated(bid_adjustment("2.12"))
    third = reject(evaluated(reallocation("150.00")))
    assert listed(operator, q="brand-search") == [third, second, first]
    assert listed(operator, status="all")[:3] == [third, second, first]


def test_a_search_of_nothing_findable_or_too_long_answers(operator):
    proposal = evaluated(reallocation("280.00"))
    assert proposal in listed(operator, q='"')  # no word: the queue, unsearched
    assert listed(operator, q="x" * 10_000) == []
    assert listed(operator, q=" ".join(["brand-search"] * 50)) == [proposal]
    assert listed(operator, q="99999999999999999999999") == []
    assert operator.get(CHANGELIST, {"q": "guaranteed\x00"}).status_code == 400


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the full-text index")
def test_the_search_reads_its_index(operator):
    evaluated(creative_batch())
    matching = Proposal.objects.alias(document=search_document()).filter(document="guaranteed")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole
        plan = matching.explain()
    assert "proposal_search_idx" in plan
    # The admin's own search filters on that same expression. (Which plan the whole page
    # gets on a table this small depends on what statistics earlier tests left; at a million
    # proposals, `bin/bench console` times the admin's searches through the index.)
    page = operator.get(CHANGELIST, {"q": "guaranteed"})
    assert [p.pk for p in page.context["cl"].queryset] == [p.pk for p in matching]


def test_the_queue_lists_proposals_made_at_the_same_time_in_the_order_they_were_made(operator):
    """A batch's proposals share one creation time: "riskiest first, then oldest" lists them
    as the batch made them, first first, as the bulk confirmation does, not the last first."""
    first, second, third = (evaluated(reallocation("280.00")) for _ in range(3))
    Proposal.objects.filter(pk__in=[first.pk, second.pk, third.pk]).update(
        created_at=first.created_at
    )
    assert first.risk == second.risk == third.risk
    assert listed(operator) == [first, second, third]
    # Only the risk column's header is marked as sorted, as before: the tie-break is no
    # column's sort, and the headers' links do not carry it.
    changelist = operator.get(CHANGELIST).context["cl"]
    risk = changelist.list_display.index("risk")
    assert changelist.get_ordering_field_columns() == {risk: "desc"}


def test_the_queue_keeps_its_index_ordered_order(operator):
    queue = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW)
    page = operator.get(CHANGELIST)
    # Then the first made first (a batch's proposals share one creation time; see below).
    assert page.context["cl"].get_ordering(page.wsgi_request, queue)[:2] == ["-risk", "created_at"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # A table this small is read whole, or through any index, and sorted: what is
            # checked is that the queue's order can be read off its index, unsorted.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            assert "proposal_queue_idx" in page.context["cl"].queryset.explain()


# --- sorting -------------------------------------------------------------------------------


def column(client, name: str) -> int:
    page = client.get(CHANGELIST)
    return page.context["cl"].list_display.index(name)


def test_the_queue_sorts_by_age(operator):
    older = evaluated(reallocation("280.00"))
    newer = evaluated(reallocation("150.00"))
    age = column(operator, "age")
    assert listed(operator, o=str(age)) == [newer, older]  # youngest first
    assert listed(operator, o=f"-{age}") == [older, newer]


def test_the_queue_title_says_the_order_it_shows(operator):
    """Riskiest first only while it is; sorted by another column, the title says that one."""
    older = evaluated(reallocation("150.00"))
    riskier = evaluated(reallocation("400.00"))
    age, risk = column(operator, "age"), column(operator, "risk")
    queue = "Review queue: proposals waiting for a decision"

    assert title(operator) == f"{queue}, riskiest first, then oldest"
    assert listed(operator) == [riskier, older]
    assert title(operator, o=f"-{age}") == f"{queue}, oldest first"
    assert listed(operator, o=f"-{age}") == [older, riskier]
    assert title(operator, o=str(age)) == f"{queue}, youngest first"
    assert title(operator, o=f"{risk}.-{age}") == f"{queue}, least risky first, then oldest first"
    # A column that does not sort, or none at all, is no order: the queue's own is shown.
    assert title(operator, o="99") == f"{queue}, riskiest first, then oldest"
    page = operator.get(CHANGELIST, {"o": f"-{age}"})
    assert f"<title>{queue}, oldest first |" in page.text


def test_the_queue_sorts_by_magnitude(operator):
    middle = evaluated(reallocation("200.00"))
    large = evaluated(reallocation("400.00"))
    small = evaluated(reallocation("150.00"))
    magnitude = column(operator, "magnitude_display")
    assert listed(operator, o=str(magnitude)) == [small, middle, large]
    page = operator.get(CHANGELIST, {"o": f"-{magnitude}"})
    assert list(page.context["cl"].result_list) == [large, middle, small]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Read off the index in order, unsorted (see the queue's own index test).
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            assert "proposal_queue_magnitude_idx" in page.context["cl"].queryset.explain()


def test_the_queue_sorts_by_approvals_so_far(operator, operators):
    policy = Policy.objects.get(action_type="budget_reallocation", agent=None, account=None)
    policy.required_approvals = 2
    policy.save()
    none_yet = evaluated(reallocation("400.00"))
    one = evaluated(reallocation("150.00"))
    proposal_approve(proposal_id=one.pk, reviewer=operators[0])

    approvals = column(operator, "approvals_display")
    assert listed(operator, o=f"-{approvals}") == [one, none_yet]
    assert listed(operator, o=str(approvals)) == [none_yet, one]
    assert "1 of 2" in operator.get(CHANGELIST).text


def test_the_queue_by_approvals_is_read_off_its_index_in_order(operator, operators):
    """Most approvals first, then as the queue is (riskiest, then oldest): the order of the
    partial index on the stored count, which PostgreSQL reads without sorting the queue."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    older_none = evaluated(reallocation("150.00"))
    riskier_none = evaluated(reallocation("400.00"))
    one = evaluated(reallocation("200.00"))
    proposal_approve(proposal_id=one.pk, reviewer=operators[0])
    assert riskier_none.risk > older_none.risk

    page = operator.get(CHANGELIST, {"o": f"-{column(operator, 'approvals_display')}"})
    assert list(page.context["cl"].result_list) == [one, riskier_none, older_none]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            plan = page.context["cl"].queryset.explain()
        assert "proposal_queue_approvals_idx" in plan


def approvals_shown(client, proposal: Proposal) -> str:
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    counted = Proposal.objects.get(pk=proposal.pk).approvals_this_round
    assert f"{counted} of {proposal.required_approvals} approval" in page.text
    return f"{counted} of {proposal.required_approvals}"


def test_the_approvals_counted_start_again_when_a_kill_switch_sends_it_back(operator, operators):
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))
    assert approvals_shown(operator, proposal) == "0 of 2"
    proposal_approve(proposal_id=proposal.pk, reviewer=first)
    assert approvals_shown(operator, proposal) == "1 of 2"
    assert proposal_approve(proposal_id=proposal.pk, reviewer=second).status == "approved"
    assert Proposal.objects.get(pk=proposal.pk).approvals_this_round == 2

    KillSwitch.objects.create(scope="global", reason="Tracking outage.")
    held = proposal_execute(proposal_id=proposal.pk)

    assert held.status == ProposalStatus.PENDING_REVIEW
    assert approvals_shown(operator, held) == "0 of 2"  # a new round: none of it yet
    assert proposal_approve(proposal_id=proposal.pk, reviewer=first).status == "pending_review"
    assert approvals_shown(operator, held) == "1 of 2"
    # Each count is in the proposal's history, with the approval that made it.
    counts = list(
        Proposal.history.filter(id=proposal.pk)
        .order_by("history_date", "history_id")
        .values_list("approvals_this_round", "status")
    )
    assert counts == [
        (0, "submitted"),
        (0, "pending_review"),
        (1, "pending_review"),
        (2, "approved"),
        (0, "pending_review"),
        (1, "pending_review"),
    ]


def test_an_edit_after_an_approval_counts_only_the_edits_approval(operator, operators):
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first)

    edited = proposal_approve(
        proposal_id=proposal.pk,
        reviewer=second,
        edited_payload={**proposal.payload, "amount": "260.00"},
    )

    # The first approval was of 280: the edited action has only its editor's approval.
    assert edited.status == ProposalStatus.PENDING_REVIEW
    assert approvals_shown(operator, edited) == "1 of 2"
    assert proposal_approve(proposal_id=proposal.pk, reviewer=first).status == "approved"


# --- the channel filter --------------------------------------------------------------------


def test_the_channel_filter_lists_the_channels_with_accounts(operator):
    on_google = evaluated(reallocation("280.00"))

    def offered() -> list[str]:
        page = operator.get(CHANGELIST)
        [channels] = [spec for spec in page.context["cl"].filter_specs if spec.title == "channel"]
        return [choice["display"] for choice in channels.choices(page.context["cl"])]

    assert offered() == ["All", "Google Ads"]

    meta = Account.objects.create(
        external_id="meta-shop", name="Meta shop", channel=Channel.META, currency="USD"
    )
    Campaign.objects.create(
        account=meta, external_id="meta-feed", name="Feed", daily_budget=100, bid=1
    )
    Agent.objects.get(name="optimizer").accounts.add(meta)
    on_meta = evaluated(
        reallocation("280.00")
        | {"account": "meta-shop"}
        | {"payload": {"campaign": "meta-feed", "new_daily_budget": "180.00"}}
        | {"action_type": "budget_change"}
    )
    assert offered() == ["All", "Google Ads", "Meta"]
    assert listed(operator, channel="meta") == [on_meta]
    assert listed(operator, channel="google_ads") == [on_google]


# --- the status filter ---------------------------------------------------------------------


def status_choices(client, **query) -> list[str]:
    page = client.get(CHANGELIST, query)
    [statuses] = [spec for spec in page.context["cl"].filter_specs if spec.title == "status"]
    return [choice["display"] for choice in statuses.choices(page.context["cl"])]


def test_the_status_filter_offers_submitted_only_while_a_proposal_is_stored_so(operator):
    """A proposal is routed as it is submitted: "Submitted" is a status only an older
    release's proposal, left to be evaluated after its answer, is stored in."""
    proposal = evaluated(reallocation("280.00"))
    offered = status_choices(operator)
    assert offered[:2] == ["Pending review", "Approved"] and offered[-1] == "All"
    assert not any("Submitted" in choice for choice in offered)

    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.SUBMITTED)
    assert status_choices(operator)[:2] == ["Submitted, not routed yet", "Pending review"]
    assert listed(operator, status="submitted") == [proposal]

    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.PENDING_REVIEW)
    # Picked (a link kept from then), it is still offered, as the choice the list shows.
    assert status_choices(operator, status="submitted")[0] == "Submitted, not routed yet"
    assert listed(operator, status="submitted") == []
    assert status_choices(operator)[0] == "Pending review"


# --- the guardrail mark and rank -----------------------------------------------------------


def test_a_proposal_a_guardrail_spoke_about_is_marked_and_ranks_above_a_clean_one(operator):
    clean = evaluated(creative_batch(creative(body="Results in a week.")))
    banned = evaluated(creative_batch(creative(body="Guaranteed results in a week.")))
    assert clean.status == banned.status == ProposalStatus.PENDING_REVIEW

    page = operator.get(CHANGELIST)
    assert list(page.context["cl"].result_list) == [banned, clean]  # though the clean is older
    assert (clean.risk, banned.risk) == (30 + 15 + 5, 91 + 5)  # its clean 50's tens, above 90
    rows = page.text.split("<tr")[1:]
    marked = [row for row in rows if 'class="guardrail-flag"' in row]
    assert len(marked) == 1 and f"/{banned.pk}/change/" in marked[0]
    assert "the banned term “guaranteed”" in marked[0]  # the tooltip says which guardrail


def test_a_guarded_batch_ranks_above_a_larger_clean_batch_of_its_kind(operator):
    # The walk that found it: three clean creatives (80) sat above two with banned terms
    # (75), a guardrail's 10 being less than one creative's pressure (15).
    clean = evaluated(creative_batch(*(creative(body=f"Results in week {n}.") for n in (1, 2, 3))))
    banned = evaluated(
        creative_batch(creative(body="Guaranteed results."), creative(body="Risk-free trial."))
    )
    assert listed(operator) == [banned, clean]
    # The clean batch keeps its 30 + 3 x 15 + 5; the guarded one is in the band above 90.
    assert (clean.risk, banned.risk) == (80, 97)


def test_a_small_bid_under_a_kill_switch_ranks_above_a_large_clean_bid(operator):
    large = evaluated(bid_adjustment("2.40", campaign="generic-search"))  # +60%, 4x its ceiling
    KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage"
    )
    small = evaluated(bid_adjustment("2.12"))  # +6%, within its ceiling
    assert large.status == small.status == ProposalStatus.PENDING_REVIEW
    assert listed(operator) == [small, large]
    assert (large.risk, small.risk) == (10 + 60 + 5, 91 + 2)


def test_a_kill_switch_is_named_by_the_mark(operator):
    KillSwitch.objects.create(
        scope="account",
        account=Account.objects.get(external_id="demo"),
        reason="Channel outage",
    )
    held = evaluated(bid_adjustment("2.12"))  # a small raise, held for a person
    assert held.status == ProposalStatus.PENDING_REVIEW
    page = operator.get(CHANGELIST)
    assert 'title="The kill switch on account demo is engaged: Channel outage."' in page.text


def test_the_guardrail_rank_holds_at_both_ends_of_the_scale():
    # A strategy-weighted move four times over its ceiling by an agent nobody approves.
    worst = {"magnitude": "5", "risk_weight": 40, "agent_approval_rate": 0.0}
    clean = evaluate(facts(**worst), [rule()])
    spoken = evaluate(facts(**worst, guardrail_reviews=("A kill switch is engaged.",)), [rule()])
    assert (clean.risk, spoken.risk) == (90, 100)
    # The smallest move by an agent always approved, against that worst clean one.
    least = {"magnitude": "0", "risk_weight": 10, "agent_approval_rate": 1.0}
    spoken = evaluate(facts(**least, guardrail_reviews=("A kill switch is engaged.",)), [rule()])
    assert (evaluate(facts(**least), [rule()]).risk, spoken.risk) == (10, 92)
    assert spoken.risk > clean.risk


def test_a_proposal_over_a_budget_cap_is_marked_in_every_status(operator):
    brand = Campaign.objects.get(external_id="brand-search")
    brand.max_daily_budget = Decimal("1100.00")
    brand.save()
    capped = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1500.00"}}
    )
    assert capped.status == ProposalStatus.BLOCKED
    page = operator.get(CHANGELIST, {"q": "brand-search", "status": "blocked"})
    assert list(page.context["cl"].result_list) == [capped]
    assert "above its cap of 1,100.00 USD" in page.text
