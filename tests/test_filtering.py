"""agent.filtering on its own: go-bexpr v0.1.2's grammar and its error texts, CreateFilter's checks, evaluation,
and Consul's filterable types with the examples of Consul's filtering docs (issue 12).

The tables follow go-bexpr's own tests' semantics (grammar_test.go's error texts, evaluate_test.go's operators on
every kind, the missing-map-key and any-element rules); the hypothesis test feeds garbage and wants go-bexpr's
errors, never another exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.filtering import FilterError, compile_filter, create_filter
from agent.filtering.ast import And, Match, MatchOp, Not, Or
from agent.filtering.consul_types import (
    AGENT_SERVICE,
    CHECK_SERVICE_NODE,
    HEALTH_CHECK,
    NODE,
    SERF_MEMBER,
    SERVICE_NODE,
)
from agent.filtering.fields import Field, ListOf, MapOf, Prim, Struct
from agent.filtering.gostrconv import NumError, parse_int, parse_uint, unquote
from agent.filtering.grammar import FilterSyntaxError, parse

WS = "[ \\t\\r\\n]"
STARTS = f'"(", "-", "0", "\\"", "`", "not", {WS}, [1-9] or [a-zA-Z]'  # what may begin an expression, after space

# ---------------------------------------------------------------------------------------------- grammar

PARSES = [
    ("foo == 3", Match(("foo",), MatchOp.EQUAL, "3")),
    ("foo != -0.2", Match(("foo",), MatchOp.NOT_EQUAL, "-0.2")),
    ("Meta.env == qa", Match(("Meta", "env"), MatchOp.EQUAL, "qa")),  # an unquoted value is a selector's text
    ('Meta["a.b c"] is empty', Match(("Meta", "a.b c"), MatchOp.IS_EMPTY)),
    ("Tags is not empty", Match(("Tags",), MatchOp.IS_NOT_EMPTY)),
    ('"x" in Tags', Match(("Tags",), MatchOp.IN, "x")),
    ("x not in Tags", Match(("Tags",), MatchOp.NOT_IN, "x")),
    ("Tags contains `x`", Match(("Tags",), MatchOp.IN, "x")),
    ("Tags not contains x", Match(("Tags",), MatchOp.NOT_IN, "x")),
    ('Name matches "^w.*"', Match(("Name",), MatchOp.MATCHES, "^w.*")),
    ("Name not matches `\\d`", Match(("Name",), MatchOp.NOT_MATCHES, "\\d")),
    ('a == "tab\\there"', Match(("a",), MatchOp.EQUAL, "tab\there")),
    ("a == `raw\\n`", Match(("a",), MatchOp.EQUAL, "raw\\n")),
    ("not not a == 1", Match(("a",), MatchOp.EQUAL, "1")),
    ("nothing == 1", Match(("nothing",), MatchOp.EQUAL, "1")),
    # go-bexpr's PEG tries the keyword and backtracks: a selector may be called `not`
    ("not == 1", Match(("not",), MatchOp.EQUAL, "1")),
    ('not  !=  ""', Match(("not",), MatchOp.NOT_EQUAL, "")),
    ("not is empty", Match(("not",), MatchOp.IS_EMPTY)),
    ("not is not empty", Match(("not",), MatchOp.IS_NOT_EMPTY)),
    ("not contains x", Match(("not",), MatchOp.IN, "x")),
    ("not matches `x`", Match(("not",), MatchOp.MATCHES, "x")),
    ("not in Tags", Match(("Tags",), MatchOp.IN, "not")),
    ("x in not", Match(("not",), MatchOp.IN, "x")),
    ("not not == 1", Not(Match(("not",), MatchOp.EQUAL, "1"))),
    ("not not in x", Not(Match(("x",), MatchOp.IN, "not"))),
    ("not contains == 1", Not(Match(("contains",), MatchOp.EQUAL, "1"))),
    ("not in_stock == 1", Not(Match(("in_stock",), MatchOp.EQUAL, "1"))),
    ("a == 1 and not == 2", And(Match(("a",), MatchOp.EQUAL, "1"), Match(("not",), MatchOp.EQUAL, "2"))),
    ("  a == 1\n", Match(("a",), MatchOp.EQUAL, "1")),
    ("a == 1 and b == 2 or c == 3",
     Or(And(Match(("a",), MatchOp.EQUAL, "1"), Match(("b",), MatchOp.EQUAL, "2")), Match(("c",), MatchOp.EQUAL, "3"))),
    ("not (a == 1 or b == 2)", Not(Or(Match(("a",), MatchOp.EQUAL, "1"), Match(("b",), MatchOp.EQUAL, "2")))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "tree"), PARSES)
def test_parses(text: str, tree: object) -> None:
    assert parse(text) == tree


SYNTAX_ERRORS = [  # go-bexpr v0.1.2's grammar_test.go cases, word for word
    ('foo == "12x', '1:12 (11): rule "string": Unterminated string literal'),
    ("foo == `12x", '1:12 (11): rule "string": Unterminated string literal'),
    ("foo == 3x", '1:9 (8): rule "number": Invalid number literal'),
    ("foo[3] == abc", '1:5 (4): rule "index": Invalid index'),
    ('x in foo["abc"', '1:15 (14): rule "index": Unclosed index expression'),
    ('foo["abc" == 3', '1:11 (10): rule "index": Unclosed index expression'),
    ("x in 32", '1:6 (5): rule "match": Invalid selector'),
    ("32 == 32", f'1:4 (3): no match found, expected: "in", "not" or {WS}'),
    ("32 is empty", f'1:4 (3): no match found, expected: "in", "not" or {WS}'),
    ("x in foo abc", f'1:10 (9): no match found, expected: "and", "or", {WS} or EOF'),
    ("x in foo and ", f'1:14 (13): no match found, expected: {STARTS}'),
    ("x in foo or ", f'1:13 (12): no match found, expected: {STARTS}'),
    ("x in foo or not ", '1:17 (16): no match found, expected: "!=", "(", "-", "0", "==", "\\"", "`", "contains", '
                         f'"in", "is", "matches", "not", {WS}, [1-9] or [a-zA-Z]'),
    ("(foo == 4", '1:10 (9): rule "grouping": Unmatched parentheses'),
    # hashicorp/consul#7338: `ServicesWithFilter("foo")`
    ("foo", f'1:4 (3): no match found, expected: "!=", ".", "==", "[", {WS} or [a-zA-Z0-9_]'),
    # beyond go-bexpr's table
    ('a == "x\\qy"', '1:6 (5): rule "string": invalid syntax'),  # strconv.Unquote refuses \q
    ('a == "x\\"y"', '1:6 (5): rule "string": invalid syntax'),  # a string ends at the next ", so is `"x\\"`
    ("Port == 0x50", '1:10 (9): rule "number": Invalid number literal'),  # numbers are decimal in the grammar
    ("a == 1 and(b == 2)", f'1:8 (7): no match found, expected: "and", "or", {WS} or EOF'),  # `_ "and" _`
    ("a b", f'1:3 (2): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or {WS}'),
    ("π == 1", '1:1 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", [1-9] or [a-zA-Z]'),
    ("é == 1 and", '1:1 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", [1-9] or [a-zA-Z]'),
    # an operator cut short: pigeon matches it word by word, so it fails where the input stops or goes wrong
    ("Tags is", f"1:8 (7): no match found, expected: {WS}"),
    ("Tags is ", f'1:9 (8): no match found, expected: "empty", "not" or {WS}'),
    ("Tags is emp", f'1:9 (8): no match found, expected: "empty", "not" or {WS}'),
    ("Tags is not x", f'1:13 (12): no match found, expected: "empty" or {WS}'),
    ("a == 1 or", f"1:10 (9): no match found, expected: {WS}"),
    ("Tags not ", f'1:10 (9): no match found, expected: "contains", "in", "matches" or {WS}'),
    ("a == 1 an", f'1:8 (7): no match found, expected: "and", "or", {WS} or EOF'),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), SYNTAX_ERRORS)
def test_syntax_errors_read_as_pigeons(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_offsets_count_bytes_and_columns_count_characters() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse('Meta["é"] == "x')
    assert str(caught.value) == '1:16 (16): rule "string": Unterminated string literal'


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(FilterSyntaxError):
        parse("(" * 5000 + "a == 1" + ")" * 5000)


# ---------------------------------------------------------------------------------------- Go's strconv


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("-5", -5), ("+7", 7), ("010", 8), ("0x1F", 31), ("0o17", 15), ("0b101", 5), ("1_000", 1000),
    ("0x_1f", 31), (str(2**63 - 1), 2**63 - 1), (str(-(2**63)), -(2**63)),
])  # fmt: skip
def test_parse_int_base_zero(text: str, value: int) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize(("text", "error"), [
    ("", 'strconv.ParseInt: parsing "": invalid syntax'), ("1__0", 'strconv.ParseInt: parsing "1__0": invalid syntax'),
    ("_1", 'strconv.ParseInt: parsing "_1": invalid syntax'), ("09", 'strconv.ParseInt: parsing "09": invalid syntax'),
    (str(2**63), f'strconv.ParseInt: parsing "{2**63}": value out of range'),
])  # fmt: skip
def test_parse_int_errors(text: str, error: str) -> None:
    with pytest.raises(NumError) as caught:
        parse_int(text)
    assert str(caught.value) == error


def test_parse_uint_bits_and_sign() -> None:
    assert parse_uint("255", 8) == 255
    with pytest.raises(NumError, match=r'^strconv.ParseUint: parsing "256": value out of range$'):
        parse_uint("256", 8)
    with pytest.raises(NumError, match=r'^strconv.ParseUint: parsing "-1": invalid syntax$'):
        parse_uint("-1", 16)


@pytest.mark.parametrize(("literal", "value"), [
    ('"a\\tb"', "a\tb"), ('"\\x41\\101\\u00e9\\U0001F600"', "AAé\U0001f600"), ("`a\r\nb`", "a\nb"), ('""', ""),
])  # fmt: skip
def test_unquote(literal: str, value: str) -> None:
    assert unquote(literal) == value


@pytest.mark.parametrize("literal", ['"\\400"', '"\\\'"', '"\\ud800"', '"a\nb"', '"\\x4"'])
def test_unquote_refuses_what_go_refuses(literal: str) -> None:
    with pytest.raises(ValueError, match="invalid syntax"):
        unquote(literal)


# --------------------------------------------------------------------------------- checks and evaluation

S, INT, UINT8, BOOL = Prim("string"), Prim("int"), Prim("uint", 8), Prim("bool")
ITEM = Struct((Field("Name", S), Field("Tags", ListOf(S))))
THING = Struct((
    Field("Int", INT), Field("Uint8", UINT8), Field("Bool", BOOL), Field("String", S), Field("Tags", ListOf(S)),
    Field("Meta", MapOf(S)), Field("Items", ListOf(ITEM)), Field("Addrs", MapOf(Struct((Field("Port", INT),)))),
    Field("Nested", Struct((Field("Leaf", S),))), Field("Groups", MapOf(ListOf(S))),
))  # fmt: skip
RECORD = {
    "Int": -1, "Uint8": 7, "Bool": True, "String": "exported", "Tags": ["a", "b"], "Meta": {"env": "prod", "e": ""},
    "Items": [{"Name": "one", "Tags": ["x"]}, {"Name": "two", "Tags": []}], "Addrs": {"lan": {"Port": 80}},
    "Nested": {"Leaf": "green"},
}  # fmt: skip

EVALUATIONS = [
    ("Int == -1", True), ("Int != -1", False), ("Int == `-0x1`", True), ("Uint8 == 7", True), ("Uint8 != 9", True),
    ("Bool == true", True), ("Bool == T", True), ("Bool != 1", False), ("Bool == false", False),
    ("String == `exported`", True), ("String != exported", False),
    ("port in String", True), ("part in String", False), ("port not in String", False),
    ("String contains xpo", True), ("String not contains xpo", False),
    ("String matches `^ex.*`", True), ("String matches `^x`", False), ('String not matches "d$"', False),
    ("String matches `port`", True),  # unanchored, as Go's regexp.Match
    ("a in Tags", True), ("c in Tags", False), ("c not in Tags", True), ("Tags contains b", True),
    ("Tags is empty", False), ("Tags is not empty", True),
    ("Meta.env == prod", True), ("Meta[\"env\"] != prod", False), ("env in Meta", True), ("nope in Meta", False),
    ("Meta.e == ``", True), ("Meta is not empty", True), ("Meta.env matches `^pr`", True),
    # a missing map key: ==, in and `is not empty` are false; everything else is true (go-bexpr v0.1.2)
    ("Meta.missing == x", False), ("Meta.missing != x", True), ("Meta.missing matches `.`", True),
    ("Meta.missing not matches `.`", True), ("Groups.missing is empty", True), ("Groups.missing is not empty", False),
    ("x in Meta.missing", False), ("x not in Meta.missing", True),
    ("Addrs.lan.Port == 80", True), ("Addrs.wan.Port == 80", False), ("Addrs.wan.Port != 80", True),
    # a list on the way down: any element matching the rest
    ("Items.Name == two", True), ("Items.Name != two", True), ("Items.Name == three", False),
    ("x in Items.Tags", True), ("Items.Tags is empty", True), ("Items.Tags is not empty", True),
    ("Items is empty", False), ("Nested.Leaf == green", True),
    ("not Int == -1", False), ("Int == -1 and Bool == false", False), ("Int == 5 or Bool == true", True),
    ("(Int == 5 or Bool == true) and not (String == x)", True),
]  # fmt: skip


@pytest.mark.parametrize(("text", "result"), EVALUATIONS)
def test_evaluation(text: str, result: bool) -> None:
    assert create_filter(text, THING).matches(RECORD) is result


def test_an_empty_list_matches_neither_equal_nor_not_equal() -> None:
    record = {**RECORD, "Items": []}
    assert not create_filter("Items.Name == x", THING).matches(record)
    assert not create_filter("Items.Name != x", THING).matches(record)


def test_absent_fields_read_gos_zero_value() -> None:
    flt = create_filter("Int == 0 and String == `` and Tags is empty and Meta is empty and Bool == false", THING)
    assert flt.matches({}) and flt.keep([{}, RECORD]) == [{}]


CREATE_ERRORS = [
    ("Nope == 1", 'Selector "Nope" is not valid'),
    ("Meta.env.deeper == 1", 'Selector "Meta.env.deeper" is not valid'),
    ("Items.Nope == 1", 'Selector "Items.Nope" is not valid'),
    ("Tags.x == 1", 'Selector "Tags.x" is not valid'),
    ("int == 1", 'Selector "int" is not valid'),  # selectors are case-sensitive
    ("Tags == a", 'Invalid match operator "Equal" for selector "Tags"'),
    ("Int matches 1", 'Invalid match operator "Matches" for selector "Int"'),
    ("1 in Int", 'Invalid match operator "In" for selector "Int"'),
    ("Nested is empty", 'Invalid match operator "Is Empty" for selector "Nested"'),
    ("Meta.env is empty", 'Invalid match operator "Is Empty" for selector "Meta.env"'),  # a string: ==, in, matches
    ("Int is empty", 'Invalid match operator "Is Empty" for selector "Int"'),
    ("Int == abc", 'Failed to coerce value "abc" for selector "Int": strconv.ParseInt: parsing "abc": invalid syntax'),
    ("Uint8 == 300", 'Failed to coerce value "300" for selector "Uint8": strconv.ParseUint: parsing "300": value '
                     "out of range"),
    ("Bool == yes", 'Failed to coerce value "yes" for selector "Bool": strconv.ParseBool: parsing "yes": invalid '
                    "syntax"),
    ("String matches `(`", 'Failed to compile regular expression "(": error parsing regexp: missing closing ): `(`'),
    ("String matches `a**`", 'Failed to compile regular expression "a**": error parsing regexp: invalid nested '
                             "repetition operator: `**`"),
    ("String matches `(?=x)`", 'Failed to compile regular expression "(?=x)": error parsing regexp: invalid or '
                               "unsupported Perl syntax: `(?=`"),
    ("Int == 1 and Nope == 2", 'Selector "Nope" is not valid'),  # checked left to right; the first error wins
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), CREATE_ERRORS)
def test_create_filter_errors(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        create_filter(text, THING)
    assert str(caught.value) == "Failed to create boolean expression evaluator: " + message
    with pytest.raises(FilterError) as bare:
        compile_filter(text, THING)
    assert str(bare.value) == message


def test_syntax_errors_get_create_filters_prefix() -> None:
    with pytest.raises(FilterError) as caught:
        create_filter("foo", THING)
    assert str(caught.value).startswith("Failed to create boolean expression evaluator: 1:4 (3): no match found")


def test_deferred_check_fails_on_the_first_record_only() -> None:
    flt = create_filter("Nope == 1", THING, check_now=False)  # parses: fine
    assert flt.keep([]) == []  # nothing evaluated, nothing checked (Consul's /v1/agent/checks with no checks)
    with pytest.raises(FilterError, match=r'^Selector "Nope" is not valid$'):
        flt.keep([RECORD])
    with pytest.raises(FilterError, match=r"^Failed to create boolean expression evaluator: 1:"):
        create_filter("Nope ==", THING, check_now=False)


# ----------------------------------------------------------------------------- Consul's types and docs

NODE_JSON = {"ID": "5a1c", "Node": "web-1", "Address": "10.0.0.1", "Datacenter": "dc1",
             "TaggedAddresses": {"lan": "10.0.0.1", "wan": "10.0.0.1"},
             "Meta": {"env": "prod", "consul-network-segment": ""}, "CreateIndex": 5, "ModifyIndex": 6}  # fmt: skip
SERVICE_JSON = {"ID": "web-a", "Service": "web", "Tags": ["primary", "v1"], "Address": "", "Meta": {"version": "2"},
                "Port": 8080, "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {}, "PeerName": ""}  # fmt: skip
CHECKS_JSON = [
    {"Node": "web-1", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing", "Notes": "",
     "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
     "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}},
    {"Node": "web-1", "CheckID": "service:web-a", "Name": "web", "Status": "critical", "Notes": "", "Output": "",
     "ServiceID": "web-a", "ServiceName": "web", "ServiceTags": ["primary", "v1"], "Type": "ttl",
     "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}},
]  # fmt: skip
ENTRY = {"Node": NODE_JSON, "Service": SERVICE_JSON, "Checks": CHECKS_JSON}
SERVICE_NODE_JSON = {
    "ID": "5a1c", "Node": "web-1", "Address": "10.0.0.1", "Datacenter": "dc1", "TaggedAddresses": {"lan": "10.0.0.1"},
    "NodeMeta": {"env": "prod"}, "ServiceKind": "", "ServiceID": "web-a", "ServiceName": "web",
    "ServiceTags": ["primary"], "ServiceAddress": "", "ServiceWeights": {"Passing": 1, "Warning": 1},
    "ServiceMeta": {"version": "2"}, "ServicePort": 8080, "ServiceEnableTagOverride": False, "ServiceProxy": {},
    "ServiceConnect": {},
}  # fmt: skip
MEMBER_JSON = {"Name": "web-1", "Addr": "10.0.0.1", "Port": 8301, "Tags": {"role": "node", "dc": "dc1"},
               "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2,
               "DelegateMax": 5, "DelegateCur": 4}  # fmt: skip

CONSUL_EXAMPLES = [  # the examples of Consul's API filtering docs, and their endpoint's type
    (NODE, NODE_JSON, "Meta.env == prod", True), (NODE, NODE_JSON, 'Node matches "^web-"', True),
    (NODE, NODE_JSON, "Meta.env == qa", False), (NODE, NODE_JSON, "TaggedAddresses.wan != `10.0.0.1`", False),
    (SERVICE_NODE, SERVICE_NODE_JSON, "NodeMeta.env == prod and ServiceTags contains primary", True),
    (SERVICE_NODE, SERVICE_NODE_JSON, 'ServiceMeta.version != "2"', False),
    (SERVICE_NODE, SERVICE_NODE_JSON, "ServiceWeights.Passing == 1 and ServicePort == 8080", True),
    (AGENT_SERVICE, SERVICE_JSON, "Service == web and v1 in Tags", True),
    (AGENT_SERVICE, SERVICE_JSON, "Meta.version == 2 and Port != 8080", False),
    (AGENT_SERVICE, SERVICE_JSON, "Proxy.DestinationServiceName == `` and ServiceConnect.Native == false", True),
    (HEALTH_CHECK, CHECKS_JSON[1], "ServiceName == web and Status == critical", True),
    (HEALTH_CHECK, CHECKS_JSON[0], "ServiceTags is empty and CheckID == serfHealth", True),
    (CHECK_SERVICE_NODE, ENTRY, "Checks.Status == critical", True),  # some check is critical
    (CHECK_SERVICE_NODE, ENTRY, "Checks.Status != passing", True),  # some check is not passing
    (CHECK_SERVICE_NODE, ENTRY, "Checks.Status == warning", False),
    (CHECK_SERVICE_NODE, ENTRY, "Service.Tags contains primary and Node.Meta.env == prod", True),
    (CHECK_SERVICE_NODE, ENTRY, "Checks.CheckID == serfHealth and Service.Port == 8080", True),
    (SERF_MEMBER, MEMBER_JSON, 'Tags["dc"] == "dc1" and Status == 1', True),
    (SERF_MEMBER, MEMBER_JSON, "Port == 8301 and ProtocolCur == 2 and 10 in Addr", True),
    (SERF_MEMBER, MEMBER_JSON, "Name matches `^db`", False),
]  # fmt: skip


@pytest.mark.parametrize(("typ", "record", "text", "result"), CONSUL_EXAMPLES)
def test_consul_types(typ: Struct, record: dict, text: str, result: bool) -> None:
    assert create_filter(text, typ).matches(record) is result


@pytest.mark.parametrize(("typ", "text", "message"), [
    (NODE, "Service == web", 'Selector "Service" is not valid'),
    (CHECK_SERVICE_NODE, "Checks == passing", 'Invalid match operator "Equal" for selector "Checks"'),
    (CHECK_SERVICE_NODE, "Service.Port == http", 'Failed to coerce value "http" for selector "Service.Port": '
                                                 'strconv.ParseInt: parsing "http": invalid syntax'),
    (SERF_MEMBER, "Status == alive", 'Failed to coerce value "alive" for selector "Status": strconv.ParseInt: '
                                     'parsing "alive": invalid syntax'),
    (SERF_MEMBER, "Port == 70000", 'Failed to coerce value "70000" for selector "Port": strconv.ParseUint: '
                                   'parsing "70000": value out of range'),
])  # fmt: skip
def test_consul_types_refuse_what_consul_refuses(typ: Struct, text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        create_filter(text, typ)
    assert str(caught.value) == "Failed to create boolean expression evaluator: " + message


# ------------------------------------------------------------------------------------------- garbage

GARBAGE = st.lists(st.sampled_from([*' \t\n()[]."`\\=!-_09aZéx', "and", "or", "not", "in", "is", "empty",
                                    "contains", "matches", "==", "!=", "Checks", "Status", "Service.Tags"]),
                   max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(GARBAGE)
def test_garbage_is_a_filter_error_or_a_working_filter(text: str) -> None:
    try:
        flt = create_filter(text, CHECK_SERVICE_NODE)
    except FilterError as exc:
        assert str(exc).startswith("Failed to create boolean expression evaluator: ")
        return
    assert isinstance(flt.matches(ENTRY), bool)  # a filter that compiles evaluates without error


@pytest.mark.parametrize("depth", [50, 300, 3000])
def test_deep_expressions_evaluate_or_are_filter_errors(depth: int) -> None:
    for text in (" and ".join(["Status == passing"] * depth), "not " * depth + "Status == x",
                 "(" * depth + "Status == x" + ")" * depth):  # fmt: skip
        try:
            flt = create_filter(text, HEALTH_CHECK)
        except FilterError as exc:
            assert depth > 300 and "nested too deeply" in str(exc)
            continue
        assert isinstance(flt.matches({"Status": "passing"}), bool)
