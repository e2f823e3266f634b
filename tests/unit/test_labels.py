"""Label keys, label values and names, with the corners of Kubernetes' validation_test.go."""

import pytest

from app.k8s.labels import (
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    dns1123_subdomain_problems,
    interned,
    is_label_key,
    label_value_problems,
    match_dns1123_subdomain,
    match_label_value,
    match_plain_label_key,
    qualified_name_problem_count,
    qualified_name_problems,
)

QUALIFIED_NAMES = [
    # Kubernetes' TestIsQualifiedName success cases
    ("simple", True),
    ("now-with-dashes", True),
    ("1-starts-with-num", True),
    ("1234", True),
    ("simple/simple", True),
    ("now-with-dashes/simple", True),
    ("now-with-dashes/now-with-dashes", True),
    ("now.with.dots/simple", True),
    ("now-with.dashes-and.dots/simple", True),
    ("1-num.2-num/3-num", True),
    ("1234/5678", True),
    ("1.2.3.4/5678", True),
    ("Uppercase_Is_OK_123", True),
    ("example.com/Uppercase_Is_OK_123", True),
    ("requests.storage-foo", True),
    ("a" * 63, True),
    ("a" * 253 + "/" + "b" * 63, True),
    # and its error cases
    ("nospecialchars%^=@", False),
    ("cantendwithadash-", False),
    ("-cantstartwithadash-", False),
    ("only/one/slash", False),
    ("Example.com/abc", False),
    ("example_com/abc", False),
    ("example.com/", False),
    ("/simple", False),
    ("a" * 64, False),
    ("a" * 254 + "/abc", False),
    # more corners
    ("", False),
    ("/", False),
    ("//", False),
    ("a//b", False),
    ("/a", False),
    ("a", True),
    ("A", True),
    ("a_b", True),
    ("a.b", True),
    ("_a", False),
    ("a_", False),
    (".a", False),
    ("a.", False),
    ("-a", False),
    ("a-", False),
    ("a b", False),
    ("hpc workloads", False),
    ("a\n", False),
    ("caf\u00e9", False),
    ("example.com/" + "a" * 63, True),
    ("example.com/" + "a" * 64, False),
    ("example.com/-a", False),
    ("-example.com/a", False),
    ("example.com-/a", False),
    ("example..com/a", False),
    ("example.com./a", False),
    (".example.com/a", False),
    ("EXAMPLE/a", False),
    ("kubevirt.io/a_b.c-d", True),
    ("a" * 63 + "." + "b" * 63 + "/c", True),
]


@pytest.mark.parametrize(("key", "valid"), QUALIFIED_NAMES,
                         ids=[repr(k)[:40] for k, _ in QUALIFIED_NAMES])
def test_qualified_name(key, valid):
    problems = qualified_name_problems(key)
    assert (problems == []) is valid, problems


LABEL_VALUES = [
    # Kubernetes' TestIsValidLabelValue
    ("simple", True),
    ("now-with-dashes", True),
    ("1-starts-with-num", True),
    ("end-with-num-1", True),
    ("1234", True),
    ("a" * 63, True),
    ("", True),
    ("nospecialchars%^=@", False),
    ("Tama-nui-te-r\u0101.is.M\u0101ori.sun", False),
    ("\\backslashes\\are\\bad", False),
    ("-starts-with-dash", False),
    ("ends-with-dash-", False),
    (".starts.with.dot", False),
    ("ends.with.dot.", False),
    ("a" * 64, False),
    # more corners
    ("True", True),
    ("a_b", True),
    ("A.b-C", True),
    ("_a", False),
    ("a_", False),
    ("a b", False),
    (" a", False),
    ("a/b", False),
    ("a\n", False),
    ("-", False),
    (".", False),
    ("_", False),
]


@pytest.mark.parametrize(("value", "valid"), LABEL_VALUES,
                         ids=[repr(v)[:40] for v, _ in LABEL_VALUES])
def test_label_value(value, valid):
    problems = label_value_problems(value)
    assert (problems == []) is valid, problems


DNS1123_SUBDOMAINS = [
    # from Kubernetes' TestIsDNS1123Subdomain
    ("a", True),
    ("ab", True),
    ("a-1", True),
    ("a--1--2--b", True),
    ("0", True),
    ("1-a", True),
    ("a.a", True),
    ("a--1--2--b.1", True),
    ("0.1", True),
    ("a.b.c.d.e", True),
    ("1.2.3.4.5", True),
    ("a" * 253, True),
    ("", False),
    ("A", False),
    ("aBc", False),
    ("-", False),
    ("a-", False),
    ("-a", False),
    ("_", False),
    ("a_b", False),
    (".", False),
    ("a.", False),
    (".a", False),
    ("a..b", False),
    (" ", False),
    ("a b", False),
    ("A.a", False),
    ("ab.A", False),
    ("a.B.c.d.e", False),
    ("a@b", False),
    ("a,b", False),
    ("a:b", False),
    ("a" * 254, False),
    # more corners
    ("my-awesome-policy", True),
    ("a\n", False),
    ("a.-b", False),
    ("a-.b", False),
    ("a" * 63 + "." + "b" * 63, True),
]


@pytest.mark.parametrize(("name", "valid"), DNS1123_SUBDOMAINS,
                         ids=[repr(n)[:40] for n, _ in DNS1123_SUBDOMAINS])
def test_dns1123_subdomain(name, valid):
    problems = dns1123_subdomain_problems(name)
    assert (problems == []) is valid, problems


# The quick checks validation tries first agree with the full ones, case by case.
KEYS = [key for key, _ in QUALIFIED_NAMES] + ["a/" + "b" * 64, "/", "a/-", "Ab/c", "x" * 300]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k)[:40] for k in KEYS])
def test_quick_label_key_checks_agree(key):
    problems = qualified_name_problems(key)
    assert is_label_key(key) is (problems == [])
    assert qualified_name_problem_count(key) == len(problems)
    if match_plain_label_key(key) is not None:
        assert problems == [] and "/" not in key


@pytest.mark.parametrize("value", [value for value, _ in LABEL_VALUES],
                         ids=[repr(v)[:40] for v, _ in LABEL_VALUES])
def test_quick_label_value_check_agrees(value):
    assert (match_label_value(value) is not None) is (label_value_problems(value) == [])


@pytest.mark.parametrize("name", [name for name, _ in DNS1123_SUBDOMAINS],
                         ids=[repr(n)[:40] for n, _ in DNS1123_SUBDOMAINS])
def test_quick_name_check_agrees(name):
    quick = len(name) <= DNS1123_SUBDOMAIN_MAX_LENGTH and match_dns1123_subdomain(name) is not None
    assert quick is (dns1123_subdomain_problems(name) == [])


def test_at_least_sixty_cases():
    assert len(QUALIFIED_NAMES) + len(LABEL_VALUES) + len(DNS1123_SUBDOMAINS) >= 60


# What each problem says, so a person knows which part to change; one problem per part.
MESSAGES = [
    (qualified_name_problems, "/a", ["prefix must not be empty"]),
    (qualified_name_problems, "a/", ["name part must not be empty"]),
    (qualified_name_problems, "a/b/c", ["at most one '/'"]),
    (qualified_name_problems, "Example.com/abc", ["prefix must be lowercase"]),
    (qualified_name_problems, "a" * 254 + "/abc", ["prefix is 254 characters long"]),
    (qualified_name_problems, "a" * 64, ["name part must be 63 characters or fewer"]),
    (qualified_name_problems, "-a", ["beginning and ending with a letter or digit"]),
    (qualified_name_problems, "Bad_Prefix/-a", ["prefix must be lowercase", "name part"]),
    (label_value_problems, "a" * 64, ["63 characters or fewer"]),
    (label_value_problems, "-a", ["beginning and ending with a letter or digit"]),
    (dns1123_subdomain_problems, "", ["must not be empty"]),
    (dns1123_subdomain_problems, "a" * 254, [("is 254 characters long", "at most 253")]),
    (dns1123_subdomain_problems, "My-Policy", ["lowercase"]),
]


@pytest.mark.parametrize(("check", "text", "expected"), MESSAGES,
                         ids=[f"{c.__name__}-{t[:20]}" for c, t, _ in MESSAGES])
def test_problem_messages(check, text, expected):
    problems = check(text)
    assert len(problems) == len(expected)
    for problem, fragments in zip(problems, expected, strict=True):
        for fragment in (fragments,) if isinstance(fragments, str) else fragments:
            assert fragment in problem


def test_interned_labels_are_the_same_strings_and_only_strings():
    app, db = "".join(["a", "pp"]), "".join(["d", "b"])  # built at run time: not interned yet
    labels = interned({app: db, "tier": 3, 4: "x", "empty": ""})
    assert labels == {"app": "db", "empty": ""}
    other = interned({"".join(["ap", "p"]): "".join(["d", "b"])})
    [(key, value)] = other.items()
    assert key is next(iter(labels)) and value is labels["app"]
