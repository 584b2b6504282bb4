"""Counting a JSON body's entries without decoding it: the fallback of both write doors' caps
when a decode that skips each entry's fields would itself make too many objects.

A scan of the body's tokens at C speed between them (strings, and objects without arrays or
objects inside, are one token each), stopping as soon as the count passes the cap: memory stays
constant however many entries the body holds.
"""

from __future__ import annotations

import re

__all__ = ["more_values_than"]

_STRING = rb'"(?:[^"\\]|\\.)*"'
# An object with no object or array inside (most log entries), a string, a bracket, a comma, or
# a number or literal.
_TOKEN = re.compile(
    rb"\{(?:[^{}\[\]\"]|" + _STRING + rb")*\}|" + _STRING + rb'|[\[\]{},]|[^\s,\[\]{}"]+',
    re.DOTALL,
)
_OPENERS = frozenset((b"[", b"{"))
_CLOSERS = frozenset((b"]", b"}"))


def more_values_than(body: bytes, path: bytes, cap: int) -> bool:
    """Whether the arrays at ``path`` hold more than ``cap`` values between them.

    ``path`` is the brackets that enclose a counted value, outermost first: ``b"["`` for the
    values of a top-level array, ``b"{["`` for those of an array in a top-level object. Keys are
    not told apart, so an array of an unknown field at the same place counts too (an upper
    bound). A body that is not JSON is counted as far as it goes.
    """
    depth = len(path)
    stack = bytearray()
    count = 0
    expecting = False  # at the counted depth, after "[" or ","
    for match in _TOKEN.finditer(body):
        token = match[0]
        if len(stack) == depth and expecting and token not in _CLOSERS and token != b",":
            count += 1
            if count > cap:
                return True
            expecting = False
        if token in _OPENERS:
            stack += token
            if len(stack) == depth:
                expecting = bytes(stack) == path and token == b"["
        elif token in _CLOSERS:
            del stack[-1:]
            expecting = False
        elif token == b"," and len(stack) == depth and bytes(stack) == path:
            expecting = True
    return False
