"""Finding proposals: what an operator types in the console's search box.

A search is words (a quoted phrase counts as one, as in the admin's own search). Every word
must be found in a proposal, each in any of:

- its text: summary, rationale, external ref, every string of its payload (campaign external
  ids, a creative's headline, body and call to action, a status or strategy value) and its
  policy reasons (``verdict_reasons``, which carry the guardrails' findings);
- its agent's name (a part of it: "optim" finds ``optimizer``);
- its action type ("creative", "budget", "bid adjustment", ``budget_reallocation``);
- its id: "123" finds the proposal #123 and any text with the number, "#123" only #123.

On PostgreSQL the text is matched with full-text search, whole words (case folded, the
"simple" configuration: no stemming and no stop words, so that ids and names match as typed),
against one ``tsvector`` expression that a GIN index (``proposal_search_idx``, migration 0015)
holds, so that a search over a million proposals reads the index rather than the table. On
SQLite, the embedded default, each text is matched by substring (``icontains``; the JSON
columns' string values as SQLite's ``json_tree`` decodes them, so "für" is found as written).
"""

from __future__ import annotations

import re

from django.contrib.postgres.search import (
    SearchConfig,
    SearchQuery,
    SearchVector,
    SearchVectorCombinable,
    SearchVectorField,
)
from django.db import connections
from django.db.models import Func, Q, QuerySet, TextField
from django.utils.text import smart_split, unescape_string_literal

from approvals import action_types
from approvals.models import Agent, Proposal

SEARCH_CONFIG = "simple"
# Past these, a search is not what anyone types; the rest of it is not searched.
MAX_WORDS = 10
MAX_WORD_LENGTH = 200
# An id the column can hold (a bigint), and one written as an id alone.
_ID = re.compile(r"#?([0-9]{1,18})")
_ONLY_ID = re.compile(r"#[0-9]+")


class JSONStringsVector(SearchVectorCombinable, Func):
    """The words of every string value of a JSON column, not of its keys (the key
    "headline" is in every creative batch and finds nothing)."""

    function = "jsonb_to_tsvector"
    template = "%(function)s(%(expressions)s, '[\"string\"]'::jsonb)"
    output_field = SearchVectorField()

    def __init__(self, expression: str, config: str) -> None:
        self.config = SearchConfig(config)
        super().__init__(self.config, expression)


class JSONStringsText(Func):
    """Every string value of a JSON column, decoded, one after another (SQLite: the column
    holds JSON text, in which "für" is written "f\\u00fcr" and every key is a word)."""

    template = (
        "(SELECT group_concat(value, ' ') FROM json_tree(%(expressions)s) WHERE type = 'text')"
    )
    output_field = TextField()


def search_document() -> SearchVectorCombinable:
    """The text of a proposal that a search reads, as the GIN index holds it.

    Migration 0015 creates the index on this expression's SQL; the index serves a query only
    while the two are the same, which ``tests/test_console_search.py`` checks."""
    return (
        SearchVector("summary", "rationale", "external_ref", config=SEARCH_CONFIG)
        + JSONStringsVector("payload", SEARCH_CONFIG)
        + JSONStringsVector("verdict_reasons", SEARCH_CONFIG)
    )


def search_words(term: str) -> list[str]:
    """The words of a search, a quoted phrase as one, at most ``MAX_WORDS``."""
    words = []
    for bit in smart_split(term):
        if bit[:1] in "\"'" and bit[-1:] == bit[:1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        bit = " ".join(bit.split())[:MAX_WORD_LENGTH]
        if any(char.isalnum() for char in bit):  # punctuation alone is in no word
            words.append(bit)
    return words[:MAX_WORDS]


def _action_types_named(word: str) -> list[str]:
    """The action types a word names: the whole name, as written or in words, or a word of
    it ("budget" names both budget changes and reallocations)."""
    wanted = re.sub(r"[\s-]+", "_", word.strip().lower())
    return [
        name
        for name in action_types.names()
        if wanted in {name, action_types.get(name).label.replace(" ", "_")}
        or wanted in name.split("_")
    ]


def _agents_named(word: str) -> list[int]:
    return list(Agent.objects.filter(name__icontains=word).values_list("pk", flat=True))


def _elsewhere(word: str) -> Q:
    """Where a word may be found besides the proposal's text: its agent, its action type, its
    id. Each is a column an index serves (the agent, the action type, the primary key)."""
    found = Q(pk__in=[])  # nothing, until something is
    agents = _agents_named(word)
    if agents:
        found |= Q(agent_id__in=agents)
    named_types = _action_types_named(word)
    if named_types:
        found |= Q(action_type__in=named_types)
    is_id = _ID.fullmatch(word)
    if is_id:
        found |= Q(pk=int(is_id.group(1)))
    return found


def _found(word: str, in_text: Q) -> Q:
    if _ONLY_ID.fullmatch(word):
        is_id = _ID.fullmatch(word)
        return Q(pk=int(is_id.group(1))) if is_id else Q(pk__in=[])
    return in_text | _elsewhere(word)


def _full_text(queryset: QuerySet[Proposal], words: list[str]) -> QuerySet[Proposal]:
    queryset = queryset.alias(search_document=search_document())
    for word in words:
        query = SearchQuery(word, search_type="phrase", config=SEARCH_CONFIG)
        queryset = queryset.filter(_found(word, Q(search_document=query)))
    return queryset


def _substring(queryset: QuerySet[Proposal], words: list[str]) -> QuerySet[Proposal]:
    queryset = queryset.alias(
        payload_text=JSONStringsText("payload"), reasons_text=JSONStringsText("verdict_reasons")
    )
    for word in words:
        in_text = Q()
        for field in ["summary", "rationale", "external_ref", "payload_text", "reasons_text"]:
            in_text |= Q(**{f"{field}__icontains": word})
        queryset = queryset.filter(_found(word, in_text))
    return queryset


def proposals_matching(queryset: QuerySet[Proposal], term: str) -> QuerySet[Proposal]:
    """The proposals of ``queryset`` in which every word of ``term`` is found (see above)."""
    words = search_words(term)
    if not words:
        return queryset
    if connections[queryset.db].vendor == "postgresql":
        return _full_text(queryset, words)
    return _substring(queryset, words)
