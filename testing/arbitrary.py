"""Arbitrary text for the property tests of the gRPC service and the HTTP API: what a careless or
hostile client may send in any text field."""
from hypothesis import strategies as st


def deep_json(depth: int, kind: str) -> str:
    """JSON nested `depth` deep, as a list or as an object."""
    return {"list": "[" * depth + "]" * depth, "object": '{"a":' * depth + "1" + "}" * depth}[kind]


def arbitrary_texts(*specific: str):
    """Short text of any characters, astral characters, the awkward ones (NUL, bidi controls,
    combining marks, a BOM, bare carriage returns) and `specific` ones, strings of 10,000 to
    100,000 characters, and JSON nested up to 5,000 deep."""
    return st.one_of(
        st.text(max_size=60),
        st.text(st.characters(codec="utf-8", min_codepoint=0x10000), min_size=1, max_size=8),
        st.sampled_from([
            "\x00", "\U0001F600", "\U0010FFFF", "\u05D0\u05D1\u0627", "e\u0301\u0301\u0301", "\ufeff",
            "\r", "\r\n", "..", "%00", "", *specific,
        ]),
        st.builds(lambda piece, size: (piece * size)[:size], st.text(min_size=1, max_size=3), st.integers(10_000, 100_000)),
        st.builds(deep_json, st.integers(100, 5000), st.sampled_from(["list", "object"])),
    )
