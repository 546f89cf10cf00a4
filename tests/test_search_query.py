"""The query language of `clipadapt search`: precedence, negation, parentheses, quoted
names (PA100K's `Skirt&Dress`), matching names to a run's attributes and the errors."""

from __future__ import annotations

import pytest

from clipadapt.errors import ClipAdaptError
from clipadapt.search.query import And, Attribute, Not, Or, Term, bind, parse_query, read_queries, terms

PAR = [Attribute(n) for n in ("Female", "Hat", "Backpack", "Skirt&Dress", "LongCoat", "Long Hair")]
WEATHER = Attribute("weather", ("clear", "rain", "snow"))


def test_not_binds_tighter_than_and_which_binds_tighter_than_or():
    assert parse_query("a | b & !c") == Or((Term("a"), And((Term("b"), Not(Term("c"))))))
    assert parse_query("!a & b") == And((Not(Term("a")), Term("b")))
    assert parse_query("a & b | c & d") == Or((And((Term("a"), Term("b"))), And((Term("c"), Term("d")))))


def test_parentheses_override_precedence_and_runs_are_flat():
    assert parse_query("(a | b) & c") == And((Or((Term("a"), Term("b"))), Term("c")))
    assert parse_query("!(a | b)") == Not(Or((Term("a"), Term("b"))))
    assert parse_query("a & b & c") == And((Term("a"), Term("b"), Term("c")))
    assert parse_query("!!a") == Not(Not(Term("a")))
    assert parse_query("((a))") == Term("a")


def test_spaces_do_not_matter_and_class_terms_parse():
    assert parse_query("  female&backpack&!hat ") == parse_query("female & backpack & ! hat")
    assert parse_query("weather = rain | Hat") == Or((Term("weather", "rain"), Term("Hat")))


@pytest.mark.parametrize("quoted", ["'Skirt&Dress'", '"Skirt&Dress"', "`Skirt&Dress`"])
def test_a_name_holding_an_operator_is_quoted(quoted):
    assert parse_query(f"{quoted} & !Hat") == And((Term("Skirt&Dress"), Not(Term("Hat"))))


def test_unquoted_it_is_two_names():
    assert parse_query("Skirt&Dress") == And((Term("Skirt"), Term("Dress")))


@pytest.mark.parametrize("text", ["a | b & !c", "(a | b) & !c", "!(a & b)", "'Skirt&Dress' & !'Long Hair'",
                                  "weather=rain | !(a | b & c)"])
def test_printing_a_tree_gives_a_query_that_parses_back_to_it(text):
    tree = parse_query(text)
    assert parse_query(str(tree)) == tree


@pytest.mark.parametrize("text, where, words", [
    ("Female &", "character 9", "missing before the end"),
    ("& Female", "character 1", "missing before '&'"),
    ("(Female | Hat", "character 1", "never closed"),
    ("Female)", "character 7", "without its '('"),
    ("Female Hat", "character 8", "no operator"),
    ("'Skirt&Dress & Hat", "character 1", "never closed"),
    ("weather= & Hat", "character 10", "without a class name"),
    ("Female || Hat", "character 9", "missing before '|'"),
])
def test_malformed_queries_name_the_place_and_the_fix(text, where, words):
    with pytest.raises(ClipAdaptError) as caught:
        parse_query(text)
    message = str(caught.value)
    assert where in message and words in message and repr(text) in message
    assert len(message.splitlines()) == 1


def test_an_empty_query_is_refused():
    with pytest.raises(ClipAdaptError, match="empty"):
        parse_query("   ")


def test_names_match_case_insensitively_and_come_back_in_the_runs_spelling():
    bound = bind(parse_query("female & !HAT | 'skirt&dress'"), PAR)
    assert bound == Or((And((Term("Female"), Not(Term("Hat")))), Term("Skirt&Dress")))
    assert str(bound) == "Female & !Hat | 'Skirt&Dress'"
    assert bind(parse_query("WEATHER=Rain"), [WEATHER]) == Term("weather", "rain")


def test_an_unknown_name_says_did_you_mean():
    with pytest.raises(ClipAdaptError, match=r"no attribute 'Backpak'\. Did you mean 'Backpack'\?"):
        bind(parse_query("Female & Backpak"), PAR)
    with pytest.raises(ClipAdaptError, match=r"no class 'rian'\. Did you mean 'rain'\?.*clear, rain, snow"):
        bind(parse_query("weather=rian"), [WEATHER])


def test_an_unquoted_name_with_an_operator_says_how_to_quote_it():
    with pytest.raises(ClipAdaptError, match=r"no attribute 'Skirt'.*quote it: 'Skirt&Dress'"):
        bind(parse_query("Skirt&Dress & Female"), PAR)


def test_attribute_kinds_are_checked():
    with pytest.raises(ClipAdaptError, match="has classes; pick one with weather=<class>.*clear, rain, snow"):
        bind(parse_query("weather"), [WEATHER])
    with pytest.raises(ClipAdaptError, match="multi-label attribute .* write Hat or !Hat"):
        bind(parse_query("Hat=1"), PAR)


def test_names_differing_only_in_case_need_the_exact_case():
    attributes = [Attribute("boots"), Attribute("Boots")]
    assert bind(parse_query("Boots"), attributes) == Term("Boots")
    with pytest.raises(ClipAdaptError, match="exact case"):
        bind(parse_query("BOOTS"), attributes)


def test_terms_are_listed_once_in_order():
    assert terms(parse_query("b & !a | (b & c)")) == [Term("b"), Term("a"), Term("c")]


def test_query_files_skip_blanks_and_comments(tmp_path):
    path = tmp_path / "queries.txt"
    path.write_text("# wanted\nFemale & Backpack\n\n  !Hat  \n", encoding="utf-8")
    assert read_queries(path) == ["Female & Backpack", "!Hat"]
    (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(ClipAdaptError, match="holds no queries"):
        read_queries(tmp_path / "empty.txt")
    with pytest.raises(ClipAdaptError, match="no such file.*`default`"):
        read_queries(tmp_path / "missing.txt")
