"""Documents are built to their one declaration: the members the OpenAPI schema shows, in order."""
import pytest

from gateway.api.serializers import BucketDocument, ReadingDocument, RejectedReadingDocument, WriteResultDocument


def test_a_document_has_its_declared_members_in_their_order():
    built = WriteResultDocument.build(rejected=[], skipped=1, unchanged=2, updated=3, inserted=4)

    assert list(built) == ["inserted", "updated", "unchanged", "skipped", "rejected"]
    assert built == {"inserted": 4, "updated": 3, "unchanged": 2, "skipped": 1, "rejected": []}


@pytest.mark.parametrize(
    "members",
    [{"time": "2019-01-01T00:15:00Z"}, {"time": "2019-01-01T00:15:00Z", "value": 1.0, "unit": "kWh"}],
    ids=["a member missing", "a member not declared"],
)
def test_a_document_that_strays_from_its_declaration_is_refused(members):
    with pytest.raises(TypeError, match="ReadingDocument has the members time, value"):
        ReadingDocument.build(**members)


def test_members_declared_optional_may_be_left_out():
    assert RejectedReadingDocument.build(index=3, value=None, reason="NaN") == {"index": 3, "value": None, "reason": "NaN"}
    with pytest.raises(TypeError):
        RejectedReadingDocument.build(index=3, value=None)


def test_rows_are_built_column_by_column():
    rows = ReadingDocument.rows(value=[1.5, 2.5], time=["2019-01-01T00:15:00Z", "2019-01-01T00:30:00Z"])

    assert rows == [{"time": "2019-01-01T00:15:00Z", "value": 1.5}, {"time": "2019-01-01T00:30:00Z", "value": 2.5}]
    with pytest.raises(ValueError):  # columns of different lengths
        ReadingDocument.rows(time=["2019-01-01T00:15:00Z"], value=[])
    assert BucketDocument.members()[0][:2] == ("start", "end")
