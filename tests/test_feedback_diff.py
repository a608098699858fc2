"""What an agent learns from an edit: each changed field, and for text the words changed."""

from hitlproject.diffs import payload_diff


def test_a_changed_amount_is_the_field_before_and_after():
    before = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280.00"}
    after = before | {"amount": "140.00"}
    assert payload_diff(before, after) == {"amount": {"from": "280.00", "to": "140.00"}}


def test_changed_copy_lists_the_words_replaced_removed_and_added():
    before = {
        "creatives": [
            {"headline": "Search smarter", "body": "Guaranteed results in a week.", "cta": "Go"},
            {"headline": "Try it now", "body": "Free for a month.", "cta": "Start"},
        ]
    }
    after = {
        "creatives": [
            {"headline": "Search better", "body": "Results in a week.", "cta": "Go"},
            {"headline": "Try it", "body": "Free for a whole month.", "cta": "Start"},
        ]
    }
    assert payload_diff(before, after) == {
        "creatives[0].headline": {
            "from": "Search smarter",
            "to": "Search better",
            "words": [{"from": "smarter", "to": "better"}],
        },
        "creatives[0].body": {
            "from": "Guaranteed results in a week.",
            "to": "Results in a week.",
            "words": [{"from": "Guaranteed results", "to": "Results"}],
        },
        "creatives[1].headline": {
            "from": "Try it now",
            "to": "Try it",
            "words": [{"from": "now", "to": ""}],
        },
        "creatives[1].body": {
            "from": "Free for a month.",
            "to": "Free for a whole month.",
            "words": [{"from": "", "to": "whole"}],
        },
    }


def test_a_creative_dropped_from_the_batch_is_the_whole_list_before_and_after():
    one = {"headline": "A", "body": "B", "cta": "C"}
    two = {"headline": "D", "body": "E", "cta": "F"}
    assert payload_diff({"creatives": [one, two]}, {"creatives": [one]}) == {
        "creatives": {"from": [one, two], "to": [one]}
    }


def test_nothing_changed_is_no_diff():
    payload = {"campaign": "brand-search", "new_bid": "2.10"}
    assert payload_diff(payload, dict(payload)) == {}
