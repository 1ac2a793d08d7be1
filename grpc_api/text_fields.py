"""Text no request may carry: a NUL character in any string field, at any depth.

No name, filter, token or time of this API holds one, and PostgreSQL refuses it in text (the
store would fail the call as if it were down), so requests are refused at the edge, naming the
field, before any store is asked.
"""
import functools
import itertools
import operator

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from readings.domain import FieldViolation


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, bool], tuple[tuple[str, bool, Descriptor], ...]]:
    """The string fields of a message type (name, repeated), and its message fields that hold
    text somewhere below (name, repeated, type)."""
    strings, messages = [], []
    for field in descriptor.fields:
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            strings.append((field.name, repeated))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and _holds_text(field.message_type):
            messages.append((field.name, repeated, field.message_type))
    return tuple(strings), tuple(messages)


def _holds_text(descriptor: Descriptor, seen: frozenset = frozenset()) -> bool:
    if descriptor.full_name in seen:
        return False
    below = seen | {descriptor.full_name}
    return any(
        field.type == FieldDescriptor.TYPE_STRING
        or (field.type == FieldDescriptor.TYPE_MESSAGE and _holds_text(field.message_type, below))
        for field in descriptor.fields
    )


def nul_violations(message, prefix: str = "") -> list[FieldViolation]:
    """A violation for each string field of `message` that holds a NUL character."""
    strings, messages = _plan(message.DESCRIPTOR)
    found = []
    for name, repeated in strings:
        value = getattr(message, name)
        texts = value if repeated else [value]
        for index, text in enumerate(texts):
            if "\x00" in text:
                where = f"{prefix}{name}[{index}]" if repeated else f"{prefix}{name}"
                found.append(FieldViolation(where, f"holds a NUL character at position {text.index(chr(0))}"))
    for name, repeated, descriptor in messages:
        if repeated:
            items = getattr(message, name)
            if _any_nul(items, descriptor):  # one pass over the column before naming the items
                for index, item in enumerate(items):
                    found += nul_violations(item, f"{prefix}{name}[{index}].")
        elif message.HasField(name):
            found += nul_violations(getattr(message, name), f"{prefix}{name}.")
    return found


def _any_nul(items, descriptor: Descriptor) -> bool:
    """Whether any of `items` (messages of one type) holds a NUL character, field by field:
    a write of 100,000 readings is checked in milliseconds."""
    strings, messages = _plan(descriptor)
    singular = [name for name, repeated in strings if not repeated]
    if singular:  # every singular string of every item in one pass
        texts = map(operator.attrgetter(*singular), items)
        if "\x00" in "".join(itertools.chain.from_iterable(texts) if len(singular) > 1 else texts):
            return True
    for name in (name for name, repeated in strings if repeated):
        if "\x00" in "".join(text for item in items for text in getattr(item, name)):
            return True
    for name, repeated, below in messages:
        if repeated:
            nested = [each for item in items for each in getattr(item, name)]
        else:
            nested = [getattr(item, name) for item in items if item.HasField(name)]
        if nested and _any_nul(nested, below):
            return True
    return False

