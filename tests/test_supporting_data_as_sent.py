"""Supporting data is the agent's evidence, shown to the person who decides: what they read
(the page's data, its charts and "The figures of …") is what the agent sent. A whole number
is kept as written at any size; a number with a fraction or an exponent is the 64-bit float
it is stored as, so one that float would change (1e-400 stored as 0.0) is refused with a 400
naming its place, and an ordinary float, however its writer spells it, is taken."""

import json
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.models import Proposal
from tests.conftest import reallocation

URL = "/api/v1/proposals/"


def send(client, supporting_data_json: str):
    """A reallocation whose supporting data is the JSON given, as the agent wrote it."""
    body = json.dumps(reallocation(supporting_data={}))
    body = body.replace('"supporting_data": {}', f'"supporting_data": {supporting_data_json}')
    return client.generic("POST", URL, body, "application/json")


def figures_of(page_text: str, title: str) -> str:
    """The chart's figures as the page says them ("The figures of …")."""
    text = re.sub(r">\s+<", "><", page_text)
    found = re.search(
        rf"<summary>The figures of {title}</summary><table>(.*?)</table>", text, re.DOTALL
    )
    assert found, f"no figures of {title}"
    return found[1]


@pytest.mark.parametrize(
    "written, kept",
    [
        ("1e-400", "0.0"),  # too small: it was stored, and shown, as 0.0
        ("0.1000000000000000000001", "0.1"),
        ("1.0000000000000001", "1.0"),
        ("1.234567891e-320", "1.2347e-320"),  # below a float's full precision
    ],
)
def test_a_number_a_float_would_change_is_refused_naming_its_place(optimizer, written, kept):
    response = send(optimizer, f'{{"ctr": {{"brand-search": [0.021, {written}, 0.018]}}}}')

    assert response.status_code == 400, response.content
    [said] = response.json()["supporting_data"]["ctr"]["brand-search"]["1"]
    assert said.startswith(f"{written} cannot be kept as written: it would be stored, and ")
    assert f"shown to the reviewer, as {kept}." in said
    assert f'or as text ("{written}") to keep every digit' in said
    assert not Proposal.objects.exists()


def test_ordinary_floats_are_taken_however_their_writer_spells_them(optimizer):
    """Python, JavaScript, Go and Rust write a float's shortest form; C's %.17g, older Java
    and PHP write more digits of the same float; an exponent, a trailing zero: each is the
    float it names, and is taken."""
    response = send(
        optimizer,
        '{"ctr": [0.1, 0.10000000000000001, 0.30000000000000004, 1.5e3, 1.50, 5e-324, '
        "1e308, -0.0, 0.1000000000000000055511151231257827021181583404541015625]}",
    )
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()
    # Each the number it names (PostgreSQL gives 1e308 back written out in full).
    assert [Decimal(str(value)) for value in proposal.supporting_data["ctr"]] == [
        Decimal(text)
        for text in [
            "0.1",
            "0.1",
            "0.30000000000000004",
            "1500",
            "1.5",
            "5e-324",
            "1e308",
            "0",
            "0.1",
        ]
    ]


def test_whole_numbers_are_kept_and_shown_as_written_at_any_size(optimizer, login):
    """A 38-digit whole number (an id, a count of micros) was drawn and said as 1e+38, and
    2**53 + 1 as 9007199254740992: the agent sent neither."""
    huge = "99999999999999999999999999999999999999"
    response = send(
        optimizer,
        f'{{"impressions": [{huge}, 9007199254740993, 12], "ctr": [0.021, 0.019, 0.018]}}',
    )
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()

    answer = optimizer.get(f"{URL}{proposal.pk}/")
    assert f'"impressions":[{huge},9007199254740993,12]' in answer.content.decode().replace(" ", "")
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert figures_of(page.text, "impressions") == (
        f'<tr><th scope="row">impressions</th><td>{huge}, 9007199254740993, 12</td></tr>'
    )
    assert "(last 12)" in page.text
    assert f"(12 – {huge})" in page.text  # the chart's range, as sent
    assert figures_of(page.text, "ctr") == (
        '<tr><th scope="row">ctr</th><td>0.021, 0.019, 0.018</td></tr>'
    )
    assert "e+38" not in page.text and "9007199254740992" not in page.text


def test_a_right_to_left_override_in_a_series_name_stays_inside_that_name(optimizer, login):
    """A series named with an unterminated right-to-left override ran on past its name: the
    caption's range "(1 – 17)" read "(71 – 1)", and the legend "control (last 17) ■ test
    (last 91)" read "control(19 tsal) tset ■ (71 tsal)", the other series' figure beside it.
    Each name is isolated (HTML's <bdi>), so the figures beside it read as the platform
    wrote them, and named as its JSON spells it, the override written out."""
    response = send(
        optimizer,
        '{"roas\\u202e": [1, 2, 17], '
        '"series": {"control\\u202e": [10, 12, 17], "test": [3, 4, 91]}}',
    )
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    text = re.sub(r"\s+", " ", page.text)
    assert (
        '<strong><bdi>&quot;roas\\u202e&quot;</bdi></strong> <span style="color:#777">(1 – 17)'
        in text
    )
    assert "<bdi>&quot;control\\u202e&quot;</bdi> (last 17)" in text
    assert "<bdi>test</bdi> (last 91)" in text


def test_a_chart_of_many_series_draws_six_each_in_its_colour_and_counts_the_rest(optimizer, login):
    """An object of 40 series was drawn as 40 lines in six colours, repeated: no legend told
    them apart, and at the API's largest supporting data (2,500 series) the legend alone ran
    12,000 px down a phone before the decision forms. The first six are drawn, each in its
    own colour; the page says how many more there are and where their figures are."""
    series = {f"variant-{n:02}": [n, n + 1, n + 2] for n in range(40)}
    response = send(optimizer, json.dumps({"ctr": series}))
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    chart = page.text.split('<figure class="line-chart"')[1].split("</figure>")[0]
    colours = re.findall(r'<polyline fill="none" stroke="([^"]+)"', chart)
    assert len(colours) == len(set(colours)) == 6
    assert "<bdi>variant-05</bdi> (last 7)" in chart and "variant-06" not in chart
    assert "(0 – 7)" in chart  # the range of what is drawn
    assert "and 34 more series, not drawn: their figures are in the supporting data below." in (
        re.sub(r"\s+", " ", chart)
    )
    assert "&quot;variant-39&quot;" in page.text  # in the supporting data, as sent


def test_a_series_named_with_nothing_visible_is_named_as_its_json_spells_it(optimizer, login):
    """Series named "" and with a zero-width space alone were drawn as two charts captioned
    with nothing ("The figures of "), which no operator could tell apart or find in the data
    below. Each is named as that data spells it; a name that shows is kept as sent."""
    response = send(
        optimizer,
        '{"": [3, 4, 5], "\\u200b": [1, 2, 9], "series": {"\\u3164": [6, 7], "ctr": [1, 2]}}',
    )
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    text = re.sub(r"\s+", " ", page.text)
    assert '<strong><bdi>&quot;&quot;</bdi></strong> <span style="color:#777">(3 – 5)' in text
    assert '<strong><bdi>&quot;\\u200b&quot;</bdi></strong> <span style="color:#777">(1 – 9)' in (
        text
    )
    assert "<bdi>&quot;\\u3164&quot;</bdi> (last 7)" in text
    assert "<bdi>ctr</bdi> (last 2)" in text
    assert "<summary>The figures of </summary>" not in text
    assert "<summary>The figures of \u200b</summary>" not in text


def test_series_whose_names_would_show_alike_are_each_named_as_the_json_spells_them(
    optimizer, login
):
    """Series named "ctr", "ctr" with a zero-width space after it and "сtr" with a Cyrillic
    "с" were three charts captioned "ctr"; in one chart, "ba" and a right-to-left override
    before "ab" were two lines named "ba", "a" and "a " two named "a"; and the series ""
    (named as its JSON spells it, ``""``) took the place of one named ``""``, which was drawn
    nowhere. A name that would show as another one does (an invisible or blank character,
    letters of scripts that look alike mixed, spaces at its ends or doubled, a leading quote)
    is named as the data below spells it; every series is drawn, and no two names read alike."""
    response = send(
        optimizer,
        '{"ctr": [1, 2, 3], "ctr\\u200b": [9, 8, 7], "\\u0441tr": [4, 4, 4], '
        '"conv": {"ba": [3, 3], "\\u202eab": [2, 2], "a": [3, 4], "a ": [5, 6], '
        '"\\"\\"": [1, 2], "": [7, 8]}}',
    )
    assert response.status_code == 201, response.content
    proposal = Proposal.objects.get()

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    text = re.sub(r"\s+", " ", page.text)
    titles = re.findall(r"<figcaption><strong><bdi>(.*?)</bdi></strong>", text)
    # In the order PostgreSQL keeps an object's keys (shortest first), SQLite as sent.
    assert sorted(titles) == sorted(
        ["ctr", "&quot;ctr\\u200b&quot;", "&quot;\\u0441tr&quot;", "conv"]
    )
    conv = text.split('aria-label="conv"')[1].split("</figure>")[0]
    legend = re.findall(r"<bdi>(.*?)</bdi> \(last (\d+)\)", conv)
    assert sorted(legend) == sorted(
        [
            ("ba", "3"),
            ("&quot;\\u202eab&quot;", "2"),
            ("a", "4"),
            ("&quot;a &quot;", "6"),
            ("&quot;\\&quot;\\&quot;&quot;", "2"),
            ("&quot;&quot;", "8"),
        ]
    )
