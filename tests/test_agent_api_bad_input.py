"""Bad input gets a clear 4xx, changes nothing, and never a 500."""

import base64
import gzip
import json
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from approvals.models import IdempotencyRecord, Proposal
from approvals.services.decisions import proposal_reject
from ledger.models import Account, Campaign
from tests.conftest import bid_adjustment, creative, creative_batch, reallocation

URL = "/api/v1/proposals/"


def action(action_type: str = "bid_adjustment", **payload) -> dict:
    """A well-formed proposal body for ``action_type`` carrying ``payload``."""
    return bid_adjustment(action_type=action_type) | {"payload": payload}


BRAND = {"campaign": "brand-search"}
CREATIVE = {"headline": "h", "body": "b", "call_to_action": "Buy"}

BAD_PROPOSALS = {
    "not an object": ([1, 2, 3], "non_field_errors"),
    "empty object": ({}, "action_type"),
    "unknown action type": (bid_adjustment(action_type="launch_rocket"), "action_type"),
    "unknown top-level field": (bid_adjustment(priority="high"), "priority"),
    "unknown payload field": (action(**BRAND, new_bid="2.1", magnitude=0.01), "payload"),
    "payload not an object": (bid_adjustment() | {"payload": "raise the bid"}, "payload"),
    "missing payload field": (action(**BRAND), "payload"),
    "bid as a word": (action(**BRAND, new_bid="lots"), "payload"),
    "bid as a list": (action(**BRAND, new_bid=[2]), "payload"),
    "negative bid": (action(**BRAND, new_bid="-1.00"), "payload"),
    "zero bid": (action(**BRAND, new_bid=0), "payload"),
    "bid NaN as a string": (action(**BRAND, new_bid="NaN"), "payload"),
    "bid Infinity as a string": (action(**BRAND, new_bid="Infinity"), "payload"),
    "bid with too many digits": (action(**BRAND, new_bid="1" * 40), "payload"),
    "bid with too many decimals": (action(**BRAND, new_bid="2.123"), "payload"),
    "unknown campaign": (action(campaign="no-such-campaign", new_bid="2.10"), "payload"),
    "campaign id with NUL": (action(campaign="brand\x00search", new_bid="2.10"), "payload"),
    "unknown account": (bid_adjustment(account="acme"), "account"),
    "confidence above one": (bid_adjustment(confidence=1.5), "confidence"),
    "confidence negative": (bid_adjustment(confidence=-0.1), "confidence"),
    "confidence NaN as a string": (bid_adjustment(confidence="NaN"), "confidence"),
    "confidence as text": (bid_adjustment(confidence="high"), "confidence"),
    "confidence as a boolean": (bid_adjustment(confidence=True), "confidence"),
    # Text that Python's float reads as a number, and no JSON number is.
    "confidence in Arabic-Indic digits": (bid_adjustment(confidence="٠.٥"), "confidence"),
    "confidence with an underscore": (bid_adjustment(confidence="0.0_5"), "confidence"),
    "confidence padded with spaces": (bid_adjustment(confidence=" 0.5 "), "confidence"),
    "confidence a whole number too large for a float": (
        bid_adjustment(confidence=10**400),
        "confidence",
    ),
    "rationale missing": (
        {k: v for k, v in bid_adjustment().items() if k != "rationale"},
        "rationale",
    ),
    "rationale with NUL": (bid_adjustment(rationale="a\x00b"), "rationale"),
    "rationale that shows nothing": (
        bid_adjustment(rationale="\u200b\u2060\u202e\u3164"),
        "rationale",
    ),
    "rationale too long": (bid_adjustment(rationale="x" * 10_001), "rationale"),
    "supporting data not an object": (bid_adjustment(supporting_data=[1]), "supporting_data"),
    "supporting data with NUL": (
        bid_adjustment(supporting_data={"k": "a\x00b"}),
        "supporting_data",
    ),
    "supporting data too deep": (
        bid_adjustment(supporting_data=json.loads('{"a":' * 20 + "1" + "}" * 20)),
        "supporting_data",
    ),
    "reallocation to itself": (
        action(
            "budget_reallocation",
            from_campaign="brand-search",
            to_campaign="brand-search",
            amount="10",
        ),
        "payload",
    ),
    "reallocation above the source budget": (reallocation("1000.01"), "payload"),
    "strategy change with nothing to change": (
        action("strategy_change", **BRAND, changes={}),
        "payload",
    ),
    "strategy change to an unknown field": (
        action("strategy_change", **BRAND, changes={"daily_budget": "5"}),
        "payload",
    ),
    "status not active or paused": (action("status_change", **BRAND, status="deleted"), "payload"),
    # An action that would change nothing: its campaign has the value already.
    "bid to the bid it has": (action(**BRAND, new_bid="2"), "payload"),
    "budget to the budget it has": (
        action("budget_change", **BRAND, new_daily_budget="1000.00"),
        "payload",
    ),
    "status to the status it has": (action("status_change", **BRAND, status="active"), "payload"),
    "strategy to the strategy it has": (
        action("strategy_change", **BRAND, changes={"bidding_strategy": "manual_cpc"}),
        "payload",
    ),
    "creative batch empty": (action("creative_deployment", **BRAND, creatives=[]), "payload"),
    "creative without a headline": (
        action("creative_deployment", **BRAND, creatives=[{"body": "b", "call_to_action": "Buy"}]),
        "payload",
    ),
    "creative batch over fifty": (
        action("creative_deployment", **BRAND, creatives=[CREATIVE] * 51),
        "payload",
    ),
}


@pytest.mark.parametrize("body, field", BAD_PROPOSALS.values(), ids=BAD_PROPOSALS.keys())
def test_bad_proposal_is_refused_with_a_message_for_the_field_and_writes_nothing(
    optimizer, body, field
):
    response = optimizer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_confidence_written_as_text_no_json_number_is_refused_in_the_api_s_words(optimizer):
    """A confidence in digits of another script was taken as a number, which no amount of
    the API takes; a whole number too large for a float was refused in Python's words."""
    for confidence in ["٠.٥", "0.0_5", " 0.5 "]:
        response = optimizer.post(URL, bid_adjustment(confidence=confidence), format="json")
        assert response.json() == {"confidence": ["A valid number is required."]}
    response = optimizer.post(URL, bid_adjustment(confidence=10**400), format="json")
    assert response.json() == {
        "confidence": ["Must be a number a 64-bit float holds (up to about 1.8e308)."]
    }
    assert Proposal.objects.count() == 0


def test_a_confidence_of_minus_zero_is_kept_and_read_back_as_zero(optimizer):
    """-0 is 0, within 0 to 1: kept, and read back to its agent as 0.0, not -0.0."""
    response = optimizer.post(URL, bid_adjustment(confidence="-0"), format="json")
    assert response.status_code == 201, response.content
    assert '"confidence":0.0' in response.content.decode()
    proposal = Proposal.objects.get()
    assert str(proposal.confidence) == "0.0"
    again = optimizer.get(f"{URL}{proposal.pk}/")
    assert '"confidence":0.0' in again.content.decode()


@pytest.mark.parametrize(
    "written, kept",
    [
        # Above one as written, 1.0 as a float: it passed the 0-to-1 check it fails.
        ("1.0000000000000000000000000000000000000001", "1.0"),
        ("0.99999999999999999999999999999999999999999", "1.0"),
        ('"0.1000000000000000000001"', "0.1"),
        ("1e-400", "0.0"),
    ],
)
def test_a_confidence_a_float_cannot_hold_as_written_is_refused_saying_what_it_would_be(
    optimizer, written, kept
):
    """A confidence of 40 digits was stored, and shown to the reviewer, as another number
    (1.0000…01, above one, kept as 1.0), with a 201; as supporting data's figures are, it is
    refused saying what it would have become, for a proposal and for a dry run alike."""
    body = json.dumps(bid_adjustment(confidence=0.25)).replace("0.25", written)
    for url in (URL, "/api/v1/policies/evaluate/"):
        response = optimizer.post(url, body, content_type="application/json")
        assert response.status_code == 400, response.content
        said = response.json()["confidence"][0]
        bare = written.strip('"')
        assert said.startswith(f"{bare} cannot be kept as written: it would be stored, and "), said
        assert f"as {kept}." in said, said
    assert Proposal.objects.count() == 0
    body = json.dumps(bid_adjustment(confidence=0.25)).replace("0.25", "0.30000000000000004")
    response = optimizer.post(URL, body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["confidence"] == 0.30000000000000004


def test_a_proposal_wrong_in_its_fields_and_its_payload_is_told_both_at_once(optimizer):
    """An agent (a model correcting its tool call, often) mends everything in one go, not
    the top-level fields first and its payload on the next try."""
    body = bid_adjustment(confidence=1.5) | {"payload": {"campaign": "brand-search"}}
    response = optimizer.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "confidence": ["Ensure this value is less than or equal to 1.0."],
        "payload": {"new_bid": ["This field is required."]},
    }
    unknown = bid_adjustment(rationale="", action_type="raise_bid")
    batch = optimizer.post(f"{URL}batch/", [unknown], format="json").json()
    assert set(batch[0]["errors"]) == {"rationale", "action_type"}
    assert Proposal.objects.count() == 0


def test_an_unknown_field_is_told_with_every_other_fault_at_once(optimizer):
    """A misspelt field had been the only fault told: the blank rationale, the confidence
    in words and the bid in words beside it came back one retry at a time."""
    body = bid_adjustment(rationale="", confidence="high", priority="high") | {
        "payload": {"campaign": "brand-search", "new_bid": "lots", "colour": "red"}
    }
    expected = {
        "priority": ["Unknown field."],
        "rationale": ["This field may not be blank."],
        "confidence": ["A valid number is required."],
        "payload": {
            "colour": ["Unknown field."],
            "new_bid": ["Write the amount in digits with a decimal point, such as 12.50."],
        },
    }

    response = optimizer.post(URL, body, format="json")
    batch = optimizer.post(f"{URL}batch/", [body], format="json")
    dry_run = optimizer.post("/api/v1/policies/evaluate/", body, format="json")

    assert (response.status_code, response.json()) == (400, expected)
    assert batch.json()[0]["errors"] == expected
    assert (dry_run.status_code, dry_run.json()) == (400, expected)
    assert Proposal.objects.count() == 0


def test_a_rationale_of_invisible_characters_alone_is_refused_as_a_creative_s_text_is(optimizer):
    """A rationale of zero-width spaces, joiners and a direction override was taken: its
    operator read an empty "What optimizer says" above the action it asked them to approve."""
    body = bid_adjustment(rationale="\u200b\u200b\u2060\u202e")
    expected = {"rationale": ["Shows nothing: it is made only of invisible or blank characters."]}

    response = optimizer.post(URL, body, format="json")
    batch = optimizer.post(f"{URL}batch/", [body], format="json")
    dry_run = optimizer.post("/api/v1/policies/evaluate/", body, format="json")

    assert (response.status_code, response.json()) == (400, expected)
    assert batch.json()[0]["errors"] == expected
    assert (dry_run.status_code, dry_run.json()) == (400, expected)
    assert Proposal.objects.count() == 0
    written = optimizer.post(URL, bid_adjustment(rationale="\u200bCPC below target"), format="json")
    assert written.status_code == 201, written.content


def test_an_external_ref_or_withdrawal_note_of_invisible_characters_alone_is_refused(optimizer):
    """Both are shown to the people who read the proposal (its page, the queue's search, its
    Slack message): one of zero-width characters alone was taken and shown as nothing."""
    shows_nothing = ["Shows nothing: it is made only of invisible or blank characters."]
    ref = optimizer.post(URL, bid_adjustment(external_ref="\u200b\u200d"), format="json")
    assert (ref.status_code, ref.json()) == (400, {"external_ref": shows_nothing})
    assert Proposal.objects.count() == 0

    waiting = optimizer.post(URL, bid_adjustment("2.40"), format="json").json()["id"]
    withdraw = optimizer.post(f"{URL}{waiting}/withdraw/", {"note": "\u2060\u202e"}, format="json")
    assert (withdraw.status_code, withdraw.json()) == (400, {"note": shows_nothing})
    assert Proposal.objects.get(pk=waiting).status == "pending_review"


def test_a_query_parameter_an_endpoint_does_not_take_is_told_with_a_bad_one_it_takes(optimizer):
    response = optimizer.get(f"{URL}?wiat=30&status=done")
    assert (response.status_code, set(response.json())) == (400, {"wiat", "status"})


RAW_BODIES = {
    "malformed JSON": b'{"action_type": "bid_adjustment",',
    "NaN literal": b'{"confidence": NaN}',
    "Infinity literal": b'{"confidence": Infinity}',
    "not UTF-8": b'{"rationale": "\xff\xfe"}',
    "nested too deeply to parse": b"[" * 100_000 + b"]" * 100_000,
    # Parsed, but deeper than anything after parsing may recurse through.
    **{
        f"objects nested {depth} deep in supporting data": json.dumps(
            bid_adjustment(supporting_data={"deep": "NESTED"})
        )
        .replace('"NESTED"', '{"a": ' * depth + "1" + "}" * depth)
        .encode()
        for depth in (65, 340, 500, 999)
    },
    "lists nested 500 deep": b"[" * 500 + b"]" * 500,
    "unpaired surrogate in a value": json.dumps(bid_adjustment(rationale="\ud800")).encode(),
    "unpaired surrogate as a key": json.dumps(
        bid_adjustment(supporting_data={"\udfff": 1})
    ).encode(),
}


@pytest.mark.parametrize("raw", RAW_BODIES.values(), ids=RAW_BODIES.keys())
def test_unparseable_body_is_a_400(optimizer, raw):
    response = optimizer.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "detail" in response.json()
    assert Proposal.objects.count() == 0


@pytest.mark.parametrize("path", [URL, "/api/v1/proposals/batch/"])
def test_a_nul_character_in_a_key_is_a_400_even_when_the_answer_is_kept(optimizer, path):
    """The answer to a request with an Idempotency-Key is stored; PostgreSQL stores no NUL."""
    item = bid_adjustment() | {"a\x00b": 1}
    body = json.dumps([item] if path.endswith("batch/") else item).encode()
    response = optimizer.generic(
        "POST", path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="nul"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == "JSON parse error - a key contains a NUL character."
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("path", [URL, "/api/v1/proposals/batch/"])
def test_a_key_given_twice_is_a_400_naming_it_and_writes_nothing(optimizer, path):
    """Which of the two a reader keeps is up to the reader: a gateway or a log keeping the
    first would see a 2.10 bid where a 9.00 one was recorded."""
    item = json.dumps(bid_adjustment("2.10")).replace(
        '"new_bid": "2.10"', '"new_bid": "2.10", "new_bid": "9.00"'
    )
    body = f"[{item}]" if path.endswith("batch/") else item
    response = optimizer.generic(
        "POST", path, body.encode(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="twice"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == (
        'JSON parse error - the key "new_bid" appears twice in one object.'
    )
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_a_whole_number_of_more_digits_than_python_reads_is_refused_in_words(optimizer):
    """Its refusal was Python's own, telling the agent to call
    ``sys.set_int_max_str_digits()``: words for the server's programmer, not the agent's."""
    body = json.dumps(bid_adjustment()).replace('"confidence": 0.9', '"confidence": ' + "9" * 5000)
    response = optimizer.generic("POST", URL, body.encode(), content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == (
        "JSON parse error - a whole number of 5,000 digits; none may have more than 4,300."
    )
    assert Proposal.objects.count() == 0


def test_number_too_large_for_a_float_is_refused_on_its_field(optimizer):
    body = json.dumps(bid_adjustment()).replace('"confidence": 0.9', '"confidence": 1e999999')
    response = optimizer.generic("POST", URL, body.encode(), content_type="application/json")
    assert response.status_code == 400
    assert "confidence" in response.json()
    assert Proposal.objects.count() == 0


def test_wrong_content_type_is_a_415(optimizer):
    response = optimizer.generic("POST", URL, b"action_type=bid", content_type="text/plain")
    assert response.status_code == 415


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=latin-1",  # UTF-8 "café" was recorded as "cafÃ©"
        "application/json; charset=utf-7",  # "+ACI-" is a quote only to a UTF-7 reader
        "application/json; charset=unicode_escape",
        "application/json; charset=no-such-charset",  # was read as UTF-8 without a word
    ],
)
@pytest.mark.parametrize("url", [URL, URL + "batch/", "/api/v1/policies/evaluate/"])
def test_a_body_said_to_be_in_another_charset_than_utf8_is_a_415(optimizer, content_type, url):
    proposal = bid_adjustment(rationale="Le café ✓ converts")
    body = json.dumps([proposal] if url.endswith("batch/") else proposal, ensure_ascii=False)
    response = optimizer.generic(
        "POST", url, body.encode(), content_type=content_type, HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 415, response.content
    charset = content_type.split("charset=")[1]
    assert response.json()["detail"] == (
        f'The body is said to be in charset "{charset}"; JSON is read in UTF-8 alone: send it '
        "in UTF-8, saying charset=utf-8 or no charset."
    )
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "utf_8"])
def test_a_body_said_to_be_utf8_in_any_spelling_is_read_as_sent(optimizer, charset):
    body = json.dumps(bid_adjustment(rationale="Le café ✓ converts"), ensure_ascii=False)
    response = optimizer.generic(
        "POST", URL, body.encode(), content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 201, response.content
    assert Proposal.objects.get().rationale == "Le café ✓ converts"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "gzip, identity"])
def test_a_compressed_body_is_a_415_saying_so_not_a_parse_error(optimizer, coding):
    body = gzip.compress(json.dumps(bid_adjustment()).encode())
    response = optimizer.generic(
        "POST", URL, body, content_type="application/json", HTTP_CONTENT_ENCODING=coding
    )
    assert response.status_code == 415, response.content
    assert response.json()["detail"] == (
        f'The body is sent with Content-Encoding "{coding}", which the API does not take: '
        "send the JSON as it is, uncompressed."
    )
    assert Proposal.objects.count() == 0


@override_settings(API_MAX_BODY_BYTES=1024)
def test_oversized_body_is_a_413_and_writes_nothing(optimizer):
    from approvals.api import ProposalCollectionApi

    ProposalCollectionApi.max_body_bytes = 1024
    try:
        response = optimizer.post(URL, bid_adjustment(rationale="x" * 2000), format="json")
    finally:
        ProposalCollectionApi.max_body_bytes = ProposalCollectionApi.__mro__[1].max_body_bytes
    assert response.status_code == 413
    assert "larger than 1024 bytes" in response.json()["detail"]
    assert Proposal.objects.count() == 0


def test_default_body_limit_refuses_a_megabyte_proposal(optimizer):
    response = optimizer.post(URL, bid_adjustment(rationale="x" * 1_000_000), format="json")
    assert response.status_code == 413
    assert Proposal.objects.count() == 0


def longest_creative_batch() -> dict:
    """A creative batch at its longest: 50 creatives, each field as long as it may be."""
    longest = {"headline": "h" * 150, "body": "b" * 2000, "call_to_action": "c" * 50}
    return creative_batch(*[longest] * 50)


def test_a_creative_field_longer_than_it_may_be_is_a_400_naming_the_limit(optimizer):
    response = optimizer.post(
        URL, creative_batch(creative(body="Fast. " * 334)), format="json"
    )  # 2,004 characters
    assert response.status_code == 400
    assert "Ensure this field has no more than 2000 characters." in json.dumps(response.json())
    assert Proposal.objects.count() == 0


@pytest.mark.parametrize(
    "blank, field",
    [
        (creative(headline="\u200b"), "headline"),  # a zero-width space
        (creative(cta="\u3164"), "call_to_action"),  # a Hangul filler
        (creative(body="\u2800\u200d\ufe0f \u2060"), "body"),  # a blank Braille cell, joiners
    ],
)
def test_a_creative_text_that_would_show_as_blank_is_a_400(optimizer, blank, field):
    """A headline made of a zero-width space showed the reviewer nothing, and went to the
    channel as it was."""
    response = optimizer.post(URL, creative_batch(blank), format="json")
    assert response.status_code == 400
    assert response.json()["payload"]["creatives"] == {
        "0": {field: ["Shows nothing: it is made only of invisible or blank characters."]}
    }
    assert Proposal.objects.count() == 0


def test_a_creative_batch_of_none_or_too_many_is_a_400_that_says_so_in_plain_words(optimizer):
    """DRF's own message read "Ensure this field has at least 1 elements."."""
    empty = creative_batch() | {"payload": {"campaign": "display-retarget", "creatives": []}}
    too_many = creative_batch(*[creative()] * 51)
    said = {}
    for name, body in (("empty", empty), ("too many", too_many)):
        response = optimizer.post(URL, body, format="json")
        assert response.status_code == 400, name
        said[name] = response.json()["payload"]["creatives"]
    assert said == {
        "empty": ["Give at least 1 creative."],
        "too many": ["Give at most 50 creatives a batch."],
    }
    assert Proposal.objects.count() == 0


def test_a_creative_batch_at_its_longest_is_accepted(optimizer):
    response = optimizer.post(URL, longest_creative_batch(), format="json")
    assert response.status_code == 201, response.content
    assert len(response.json()["payload"]["creatives"]) == 50


def test_more_creative_text_than_a_request_may_send_is_a_413_naming_the_limit(optimizer):
    batch = [longest_creative_batch()] * 3  # 330,000 characters of creative text
    response = optimizer.post(
        "/api/v1/proposals/batch/", batch, format="json", HTTP_IDEMPOTENCY_KEY="long-copy"
    )

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "The creatives sent hold 330,000 characters of text; one request may send at most "
        "250,000. Send them in smaller batches."
    )
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()  # the key is free for the smaller batches
    response = optimizer.post(
        "/api/v1/proposals/batch/", batch[:2], format="json", HTTP_IDEMPOTENCY_KEY="long-copy"
    )
    assert response.status_code == 200
    assert [item["status"] for item in response.json()] == [201, 201]


def test_campaign_of_another_account_is_unknown_here(optimizer):
    other = Account.objects.create(external_id="acme", name="Acme", channel="meta", currency="EUR")
    Campaign.objects.create(
        account=other, external_id="acme-prospecting", name="P", daily_budget=100, bid=1
    )
    response = optimizer.post(URL, bid_adjustment(campaign="acme-prospecting"), format="json")
    assert response.status_code == 400
    assert "No campaign “acme-prospecting” on account “demo”" in str(response.json())


def test_account_the_agent_may_not_act_on_is_refused(optimizer):
    Account.objects.create(external_id="acme", name="Acme", channel="meta", currency="EUR")
    response = optimizer.post(URL, bid_adjustment(account="acme"), format="json")
    assert response.status_code == 400
    assert "may act on" in response.json()["account"][0]


@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "action_type=bogus",
        "since=yesterday",
        "page_size=0",
        "page_size=abc",
        "cursor=bz1hYmM%3D",
        "colour=red",
    ],
)
def test_bad_list_filters_are_a_4xx(optimizer, query):
    response = optimizer.get(f"{URL}?{query}")
    assert 400 <= response.status_code < 500, response.content


def test_a_list_filtered_by_an_action_type_that_does_not_exist_is_a_400_naming_it(optimizer):
    """An empty page would tell the agent it proposed none of a type that does not exist."""
    response = optimizer.get(URL, {"action_type": "bid_adjustmnet"})
    assert response.status_code == 400, response.content
    assert response.json()["action_type"][0].startswith(
        "Unknown action type “bid_adjustmnet”. Known types: bid_adjustment, budget_change,"
    )
    assert optimizer.get(URL, {"action_type": "bid_adjustment"}).status_code == 200


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("/api/v1/feedback/", "wiat=30", "wiat"),
        ("/api/v1/feedback/", "page_size=0", "page_size"),
        ("/api/v1/feedback/", "page_size=abc", "page_size"),
        ("/api/v1/feedback/", "proposal=1", "proposal"),
        ("/api/v1/campaigns/", "account=demo", "account"),
        ("/api/v1/scorecard/", "day=7", "day"),
    ],
)
def test_a_query_parameter_an_endpoint_does_not_take_is_a_400_naming_it(
    optimizer, path, query, field
):
    """A typo or a filter the endpoint lacks is said, not ignored: an agent that asked for one
    account's campaigns, or to wait, is not answered as if it had asked for something else."""
    response = optimizer.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("typed", ["\u0663", "\uff13", "3_0", "+3", " 3"])
@pytest.mark.parametrize(
    "path, field",
    [
        (URL, "page_size"),
        ("/api/v1/feedback/", "page_size"),
        ("/api/v1/scorecard/", "days"),
    ],
)
def test_a_count_in_a_query_is_read_in_plain_digits_or_refused(optimizer, path, field, typed):
    """Arabic-Indic "٣", full-width "３", "3_0" and a sign are numbers to Python's int(), so
    DRF read them as 3 or 30; a person reading the request or the logs may not. They are
    refused, as the seconds to wait are."""
    response = optimizer.get(path, {field: typed})
    assert response.status_code == 400, response.content
    assert response.json()[field] == ["Give a whole number in plain digits (0-9), such as 30."]
    assert optimizer.get(path, {field: "3"}).status_code == 200


@pytest.mark.parametrize(
    "path, field, typed, said",
    [
        (URL, "page_size", "1000000", "Ensure this value is less than or equal to 500."),
        (URL, "page_size", "0000003", None),
        (URL, "page_size", "9" * 1001, "String value too large."),
        ("/api/v1/feedback/", "page_size", "10000000", "less than or equal to 1000."),
        ("/api/v1/scorecard/", "days", "99999999999", "less than or equal to 365."),
        ("/api/v1/proposals/1/", "wait", "3600000", "less than or equal to 60."),
    ],
)
def test_a_count_in_plain_digits_is_refused_for_its_size_not_as_not_plain(
    optimizer, path, field, typed, said
):
    """A count of seven digits or more is plain digits: it was refused saying "Give a whole
    number in plain digits (0-9)", which it was, so an agent asking for a million rows read
    that its digits were wrong, not that it asked for too many. Now the bound is said, and
    leading zeros are read as the number they write."""
    response = optimizer.get(path, {field: typed})
    if said is None:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 400, response.content
        assert said in response.json()[field][0]


@pytest.mark.parametrize(
    "path, body",
    [
        (URL, bid_adjustment()),
        (f"{URL}batch/", [bid_adjustment()]),
        ("/api/v1/policies/evaluate/", bid_adjustment()),
        ("withdraw", {}),
        ("outcome", {"metrics": {"ctr": 0.02}}),
    ],
)
@pytest.mark.parametrize("query", ["dry_run=1", "wait=30", "format=json&validate_only=true"])
def test_a_write_with_a_query_parameter_is_a_400_naming_it_and_does_nothing(
    optimizer, path, body, query
):
    """``POST /api/v1/proposals/?dry_run=1`` proposed for real, and an auto-approved move ran:
    a write takes no query parameter (DRF's ``format=json`` aside), and one it is given is
    said, not ignored, before anything is recorded or any Idempotency-Key taken."""
    waiting = optimizer.post(URL, reallocation(), format="json").json()
    if path in ("withdraw", "outcome"):
        path = f"{URL}{waiting['id']}/{path}/"
    proposals, keys = Proposal.objects.count(), IdempotencyRecord.objects.count()

    response = optimizer.post(
        f"{path}?{query}", body, format="json", HTTP_IDEMPOTENCY_KEY="query-1"
    )

    name = query.split("&")[-1].split("=")[0]
    assert (response.status_code, response.json()) == (400, {name: ["Unknown field."]})
    assert (Proposal.objects.count(), IdempotencyRecord.objects.count()) == (proposals, keys)
    assert Proposal.objects.get(pk=waiting["id"]).status == "pending_review"


def test_a_withdrawal_sent_with_a_field_it_does_not_take_is_a_400_and_withdraws_nothing(
    optimizer,
):
    """A field other than its note was dropped unsaid, the proposal withdrawn."""
    waiting = optimizer.post(URL, reallocation(), format="json").json()
    withdraw = f"{URL}{waiting['id']}/withdraw/"

    response = optimizer.post(withdraw, {"reason": "Changed my mind."}, format="json")

    assert (response.status_code, response.json()) == (400, {"reason": ["Unknown field."]})
    assert Proposal.objects.get(pk=waiting["id"]).status == "pending_review"
    too_long = optimizer.post(withdraw, {"note": "x" * 5001}, format="json")
    assert too_long.status_code == 400 and list(too_long.json()) == ["note"]
    assert Proposal.objects.get(pk=waiting["id"]).status == "pending_review"
    withdrawn = optimizer.post(withdraw)  # no body, as the Python client sends it
    assert (withdrawn.status_code, withdrawn.json()["withdrawal"]) == (
        200,
        {"by": "agent", "note": ""},
    )


def test_a_withdrawal_sent_with_an_empty_object_withdraws(optimizer):
    waiting = optimizer.post(URL, reallocation(), format="json").json()
    response = optimizer.post(f"{URL}{waiting['id']}/withdraw/", {}, format="json")
    assert (response.status_code, response.json()["status"]) == (200, "withdrawn")


def test_a_write_takes_drf_s_own_format_parameter(optimizer):
    response = optimizer.post(f"{URL}?format=json", bid_adjustment(), format="json")
    assert response.status_code == 201, response.content


def test_an_unknown_action_type_is_answered_with_those_an_agent_may_propose(optimizer):
    response = optimizer.post(URL, bid_adjustment(action_type="launch_rocket"), format="json")

    assert (response.status_code, response.json()) == (
        400,
        {
            "action_type": [
                "Unknown action type “launch_rocket”. Known types: bid_adjustment, "
                "budget_change, budget_reallocation, creative_deployment, status_change, "
                "strategy_change."
            ]
        },
    )  # not policy_change: only the platform proposes one


@pytest.mark.parametrize(
    "path, query, field",
    [
        (URL, "status=approved&status=executed", "status"),
        ("/api/v1/feedback/", "wait=1&wait=30", "wait"),
        ("/api/v1/scorecard/", "days=7&days=30", "days"),
    ],
)
def test_a_query_parameter_given_twice_is_a_400_naming_it(optimizer, path, query, field):
    """Answered for one of the values (DRF takes the last), an agent asking for approved and
    executed proposals would read the executed ones as all there are."""
    response = optimizer.get(f"{path}?{query}")
    assert (response.status_code, response.json()) == (
        400,
        {field: ["Given more than once; give it once."]},
    )


@pytest.mark.parametrize(
    "path", ["/api/v1/feedback/", "/api/v1/campaigns/", URL, "/api/v1/scorecard/"]
)
def test_drf_s_own_format_parameter_is_taken_as_on_any_drf_endpoint(optimizer, path):
    response = optimizer.get(f"{path}?format=json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", ["/api/v1/feedback/", "/api/v1/campaigns/", URL])
@pytest.mark.parametrize("wanted", ["xml", "api", "csv"])
def test_a_format_the_api_does_not_answer_in_is_a_400_not_a_404(optimizer, path, wanted):
    """A 404 would read as "no such proposal"."""
    response = optimizer.get(f"{path}?format={wanted}")
    assert response.status_code == 400, response.content
    assert "format" in response.json()


def test_a_long_poll_on_a_proposal_with_a_misspelt_parameter_is_a_400(optimizer):
    proposal = optimizer.post(URL, action(new_bid="1.10", **BRAND), format="json").json()
    response = optimizer.get(f"{URL}{proposal['id']}/?wiat=30")
    assert (response.status_code, response.json()) == (400, {"wiat": ["Unknown field."]})


@pytest.mark.parametrize("path", ["/api/v1/proposals/999999/", "/api/v1/proposals/abc/"])
def test_unknown_proposal_is_a_404(optimizer, path):
    assert optimizer.get(path).status_code == 404


def test_batch_larger_than_a_thousand_is_refused_whole(optimizer):
    response = optimizer.post(f"{URL}batch/", [bid_adjustment()] * 1001, format="json")
    assert response.status_code == 400
    assert "At most 1000" in str(response.json())
    assert Proposal.objects.count() == 0


def test_batch_answers_each_item_on_its_own(optimizer):
    response = optimizer.post(
        f"{URL}batch/",
        [bid_adjustment("2.10"), bid_adjustment(campaign="nope"), "not an object"],
        format="json",
    )
    assert response.status_code == 200
    results = response.json()
    assert [r["status"] for r in results] == [201, 400, 400]
    assert results[0]["proposal"]["payload"]["new_bid"] == "2.10"
    assert "No campaign “nope”" in str(results[1]["errors"])
    assert Proposal.objects.count() == 1


@pytest.mark.parametrize("path", [URL, "/api/v1/feedback/"])
@pytest.mark.parametrize(
    "position", ["abc", "-1", " 5", "+5", "1_000", "٣", str(2**63), "9" * 30], ids=repr
)
def test_a_forged_cursor_is_a_400_naming_the_parameter_not_a_404(optimizer, path, position):
    # A position that is not an id as a list writes it: each was a 404 (read by an agent as
    # "no such proposal") or, where Python reads it as a number, a page of its own choosing.
    cursor = quote(base64.b64encode(urlencode({"p": position}).encode()).decode())
    response = optimizer.get(f"{path}?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["cursor"] == [
        "Not a cursor this list gave: send back the `next` or `resume` link as it came."
    ]


@pytest.mark.parametrize("path", [URL, "/api/v1/feedback/"])
def test_a_cursor_that_is_not_base64_is_a_400_naming_the_parameter(optimizer, path):
    response = optimizer.get(f"{path}?cursor=not-base64!")
    assert response.status_code == 400
    assert list(response.json()) == ["cursor"]


@pytest.mark.parametrize("path", [URL, "/api/v1/feedback/"])
@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",  # no base64 at all: read as no cursor, the first page
        "cD0x!",  # base64 with a character that is not: "p=1", the rest dropped
        base64.b64encode(b"o=1").decode(),  # an offset: records skipped
        base64.b64encode(b"o=1&p=1").decode(),
        base64.b64encode(b"p=1&p=2").decode(),  # a position given twice
        base64.b64encode(b"p=1&x=2").decode(),
        base64.b64encode(b"r=2&p=1").decode(),
    ],
    ids=repr,
)
def test_a_cursor_no_list_writes_is_a_400_not_a_page_of_its_choosing(optimizer, path, cursor):
    # Each was answered 200: a page skipping the first records (an offset, which these lists
    # never write), or the first page again (a link mangled on its way back).
    response = optimizer.get(f"{path}?cursor={quote(cursor)}")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "cursor": ["Not a cursor this list gave: send back the `next` or `resume` link as it came."]
    }


@pytest.mark.parametrize("path", [URL, "/api/v1/feedback/"])
def test_the_links_a_list_gives_are_taken_back(optimizer, path):
    operator = get_user_model().objects.get(username="operator")
    for _ in range(3):
        waiting = optimizer.post(URL, reallocation(), format="json").json()
        proposal_reject(proposal_id=waiting["id"], reviewer=operator, reason_code="off_brand")
    first = optimizer.get(f"{path}?page_size=1").json()
    second = optimizer.get(first["next"]).json()
    assert optimizer.get(second["previous"]).json()["results"] == first["results"]
    third = optimizer.get(second["next"]).json()
    assert len({page["results"][0]["id"] for page in (first, second, third)}) == 3
    if "resume" in third:
        assert optimizer.get(third["resume"]).json()["results"] == []


def test_the_largest_id_is_a_position_a_list_may_give(optimizer):
    cursor = quote(base64.b64encode(urlencode({"p": str(2**63 - 1)}).encode()).decode())
    response = optimizer.get(f"{URL}?cursor={cursor}")
    assert response.status_code == 200


def test_an_unpaired_surrogate_in_a_batch_item_refuses_the_batch_whole(optimizer):
    items = [bid_adjustment("2.10"), bid_adjustment(rationale="\ud800")]
    response = optimizer.generic(
        "POST", f"{URL}batch/", json.dumps(items).encode(), content_type="application/json"
    )
    assert response.status_code == 400
    assert Proposal.objects.count() == 0


@pytest.mark.parametrize(
    "written", ["1e3", "+1.2e1", "٣٠٠", "𝟏.50", " 2.50", "2.50 ", "1_000", "2,50", "0x10"]
)
def test_money_is_written_in_plain_digits(optimizer, written):
    # Each of these is a number to Python's Decimal; none is how people write an amount, and
    # an exponent is one slip from another amount. Plain decimals and JSON numbers are taken.
    response = optimizer.post(URL, bid_adjustment(written), format="json")
    assert response.status_code == 400
    assert response.json()["payload"] == {
        "new_bid": ["Write the amount in digits with a decimal point, such as 12.50."]
    }
    assert Proposal.objects.count() == 0
    for plain in ("2.12", 2.12, "2.1", ".5", "3"):
        assert optimizer.post(URL, bid_adjustment(plain), format="json").status_code == 201


@pytest.mark.parametrize("written", ["1e1", "٣", "1_0.5", " 4.50", "4,50", "0x10"])
def test_a_target_roas_is_written_in_plain_digits_too(optimizer, written):
    """A strategy change's target ROAS took what Python's Decimal reads: "1_0.5" became a
    target of 10.50 and "٣" one of 3.00, where an amount is refused so."""
    change = bid_adjustment(action_type="strategy_change") | {
        "payload": {"campaign": "brand-search", "changes": {"target_roas": written}}
    }
    response = optimizer.post(URL, change, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["payload"] == {
        "changes": {
            "target_roas": ["Write the figure in digits with a decimal point, such as 4.50."]
        }
    }
    assert Proposal.objects.count() == 0
    for plain in ("4.50", 4.5, "4"):
        change["payload"]["changes"]["target_roas"] = plain
        assert optimizer.post(URL, change, format="json").status_code == 201


def test_more_free_text_than_a_request_may_send_is_a_413_naming_the_limit(optimizer):
    """250 proposals with 9,000 characters of rationale and 1 KB of supporting data each:
    2.5 million characters, written while their campaigns are locked, where the most is 2
    million."""
    wordy = bid_adjustment(
        rationale="CPC below target. " * 500,
        supporting_data={"daily_cpc": [1.0 + day / 1000 for day in range(150)]},
    )
    response = optimizer.post(
        "/api/v1/proposals/batch/", [wordy] * 250, format="json", HTTP_IDEMPOTENCY_KEY="wordy"
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The rationales, supporting data and external references sent come to more "
        "than 2,000,000 characters, the most one request may send. Send them in smaller batches.",
        "code": "payload_too_large",
    }
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_free_text_over_the_limit_is_a_413_though_every_item_is_malformed(optimizer):
    """A thousand items each with 2,400 characters of supporting data and a fault of its own
    (here a number it cannot keep): the free text was counted of well-formed items only, so
    the batch was checked item by item (a minute of a core at 16 MiB) and answered 200 with
    a thousand refusals. It is counted as the items are read, whatever else is wrong with
    them, and refused whole."""
    faulty = bid_adjustment(supporting_data={"daily_cpc": [0.5] * 600, "floor": "NOT KEPT"})
    body = json.dumps([faulty] * 1000).replace('"NOT KEPT"', "1e-400")
    response = optimizer.generic(
        "POST", "/api/v1/proposals/batch/", body, content_type="application/json"
    )

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "The rationales, supporting data and external references sent come to more than "
        "2,000,000 characters, the most one request may send. Send them in smaller batches."
    )
    assert Proposal.objects.count() == 0


def test_free_text_is_counted_in_the_characters_sent_not_as_escaped(optimizer, settings):
    """Supporting data in another language than English was counted as JSON escapes it,
    six characters for each letter outside ASCII ("\\u00e9"): a batch of 1,000 with 511,000
    characters of free text was refused for "more than 2,000,000 characters". Here, at a limit
    of 10,000, two items of 4,000 such letters each (8,000 characters; 48,000 escaped)."""
    settings.API_MAX_TEXT_CHARS = 10_000
    french = [
        bid_adjustment(new_bid=bid, supporting_data={"note": "é" * 4000})
        for bid in ("2.05", "2.10")
    ]

    response = optimizer.post("/api/v1/proposals/batch/", french, format="json")

    assert response.status_code == 200, response.content
    assert [item["status"] for item in response.json()] == [201, 201]
    assert Proposal.objects.count() == 2
    french.append(bid_adjustment(new_bid="2.15", supporting_data={"note": "é" * 2001}))
    refused = optimizer.post("/api/v1/proposals/batch/", french, format="json")
    assert refused.status_code == 413  # 10,001 characters, and more with the rest
    assert Proposal.objects.count() == 2


def test_a_batch_of_a_thousand_proposals_with_ordinary_rationales_fits_the_text_limit(optimizer):
    ordinary = bid_adjustment(
        rationale="CPC has been below target for five days while conversions held. " * 20,
        supporting_data={"daily_cpc": [1.21, 1.18, 1.15, 1.12, 1.1], "source": "google-ads"},
        external_ref="run-2024-06-01",
    )  # about 1,400 characters
    response = optimizer.post("/api/v1/proposals/batch/", [ordinary] * 1000, format="json")

    assert response.status_code == 200
    assert {item["status"] for item in response.json()} == {201}
    assert Proposal.objects.count() == 1000


ONE_LINE_BREAKERS = {
    "CRLF": "Buy\r\nnow",
    "LF": "Buy\nnow",
    "CR": "Buy\rnow",
    "tab": "Buy\tnow",
    "bell": "Buy\x07now",
    "next line (U+0085)": "Buy\x85now",
    "line separator (U+2028)": "Buy\u2028now",
}


@pytest.mark.parametrize("part", ["headline", "call_to_action"])
@pytest.mark.parametrize("text", ONE_LINE_BREAKERS.values(), ids=ONE_LINE_BREAKERS.keys())
def test_a_line_break_or_control_character_in_a_creatives_one_line_field_is_a_400_naming_it(
    optimizer, part, text
):
    creatives = [CREATIVE, {**CREATIVE, part: text}]
    body = action("creative_deployment", campaign="display-retarget", creatives=creatives)

    response = optimizer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400, response.content
    assert response.json() == {
        "payload": {
            "creatives": {
                "1": {part: ["Must be one line: no line breaks, tabs or other control characters."]}
            }
        }
    }
    assert Proposal.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


def test_a_creatives_body_is_taken_with_its_line_breaks_as_line_feeds(optimizer):
    sent = creative(
        body="Find it fast.\r\nNo card needed.\rCancel any time.\n\nStart today."
        "\u2028No fees.\x85Ever.\u2029Really."
    )

    response = optimizer.post(URL, creative_batch(sent), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["payload"]["creatives"] == [
        creative(
            body="Find it fast.\nNo card needed.\nCancel any time.\n\nStart today."
            "\nNo fees.\nEver.\nReally."
        )
    ]


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (
            "2.100000000000000000001",
            "Ensure that there are no more than 2 decimal places: 2.100000000000000000001 has 21.",
        ),
        # 0.1 + 0.2 computed as a float, as JSON writes it: its decimal places, not its digits.
        (
            "0.30000000000000004",
            "Ensure that there are no more than 2 decimal places: 0.30000000000000004 has 17.",
        ),
        ("1e1", "Write the amount in digits with a decimal point, such as 12.50."),
        ("2.5E0", "Write the amount in digits with a decimal point, such as 12.50."),
    ],
)
def test_money_as_a_json_number_is_read_as_written_not_as_the_nearest_float(
    optimizer, number, said
):
    """As a JSON number, 2.100000000000000000001 was taken as 2.10 and 1e1 as 10.00: the
    float nearest what was written, where the same digits as a string are refused."""
    body = json.dumps(bid_adjustment("0")).replace('"new_bid": "0"', f'"new_bid": {number}')
    response = optimizer.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["payload"] == {"new_bid": [said]}
    assert Proposal.objects.count() == 0
    body = body.replace(number, "2.25")
    assert optimizer.post(URL, data=body, content_type="application/json").status_code == 201
    assert Proposal.objects.get().payload["new_bid"] == "2.25"


@pytest.mark.parametrize(
    "body, where",
    [
        (bid_adjustment(rationale=5), ["rationale"]),
        (bid_adjustment(rationale=2.5), ["rationale"]),
        (bid_adjustment(external_ref=1234), ["external_ref"]),
        (bid_adjustment(account=7), ["account"]),
        (bid_adjustment(action_type=1), ["action_type"]),
        (bid_adjustment(payload={"campaign": 12345, "new_bid": "2.12"}), ["payload", "campaign"]),
        (
            bid_adjustment(
                action_type="creative_deployment",
                payload={"campaign": "brand-search", "creatives": [{**CREATIVE, "headline": 1}]},
            ),
            ["payload", "creatives", "0", "headline"],
        ),
    ],
)
@pytest.mark.parametrize("path", [URL, "/api/v1/policies/evaluate/", f"{URL}batch/"])
def test_a_number_where_text_is_taken_is_a_400_naming_the_field(optimizer, body, where, path):
    """A rationale of 5 was taken as the text "5", an external ref of 1234 as "1234": the
    agent sent the wrong value, or into the wrong field. A text field takes text; a number
    in one is refused, naming it, and nothing is recorded."""
    response = optimizer.post(path, [body] if "batch" in path else body, format="json")

    if "batch" in path:
        [item] = response.json()
        status, said = item["status"], item["errors"]
    else:
        status, said = response.status_code, response.json()
    assert status == 400, response.content
    for step in where:
        said = said[step]
    assert said[0].startswith("Must be text (a JSON string), not a number: "), said
    assert not Proposal.objects.exists()


def test_a_number_as_a_note_is_a_400_naming_it(optimizer):
    waiting = optimizer.post(URL, reallocation(), format="json").json()
    withdraw = f"{URL}{waiting['id']}/withdraw/"

    response = optimizer.post(withdraw, {"note": 42}, format="json")

    assert (response.status_code, response.json()) == (
        400,
        {"note": ['Must be text (a JSON string), not a number: "42", not 42.']},
    )
    assert Proposal.objects.get(pk=waiting["id"]).status == "pending_review"
