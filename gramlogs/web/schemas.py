"""The schemas of the wire Structs in OpenAPI 3.0.3's dialect, from msgspec's JSON Schema.

msgspec writes JSON Schema 2020-12; OpenAPI 3.0 has no null type (``nullable`` instead), one
``example``, boolean exclusive bounds and no siblings beside a ``$ref``. :func:`struct_schemas`
converts what msgspec emits for gramlogs' Structs and refuses what it cannot convert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from gramlogs.web.params import Json

__all__ = ["SCHEMAS", "struct_schemas"]

SCHEMAS = "#/components/schemas/"
# JSON Schema keywords that OpenAPI 3.0 does not have and that _openapi_30 does not convert.
_UNSUPPORTED = {"prefixItems", "propertyNames", "contentEncoding", "$defs", "dependentRequired"}


def struct_schemas(structs: Mapping[type[msgspec.Struct], str]) -> Json:
    """components.schemas for ``structs`` (each Struct with its component's name): msgspec's
    JSON Schema, made OpenAPI 3.0.3. A Struct that one of them holds must be among them."""
    refs, generated = msgspec.json.schema_components(structs, ref_template=SCHEMAS + "{name}")
    # msgspec names a component after its class; each Struct's own schema is a $ref to it.
    names = {
        ref["$ref"].removeprefix(SCHEMAS): name
        for ref, name in zip(refs, structs.values(), strict=True)
    }
    if unnamed := sorted(set(generated) - set(names)):
        raise ValueError(f"Structs without a component name (add them to WIRE_STRUCTS): {unnamed}")
    types = {names[key]: schema.get("type") for key, schema in generated.items()}
    return {name: _openapi_30(generated[key], names, types) for key, name in names.items()}


def _openapi_30(schema: Json, names: Mapping[str, str], types: Mapping[str, Any]) -> Json:
    """A JSON Schema as msgspec writes it (2020-12) made an OpenAPI 3.0.3 Schema Object, with
    each $ref renamed by ``names``; ``types`` is each component's type."""
    out: Json = {}
    for key, value in schema.items():
        if key in _UNSUPPORTED:
            raise ValueError(f"OpenAPI 3.0 has no {key!r}: {schema}")
        if key == "properties":
            out[key] = {field: _openapi_30(s, names, types) for field, s in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _openapi_30(value, names, types)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_openapi_30(s, names, types) for s in value]
        elif key == "$ref":
            out[key] = SCHEMAS + names[value.removeprefix(SCHEMAS)]
        elif key == "description":
            # Docstrings are wrapped; CommonMark reads a single line break as a space anyway.
            out[key] = re.sub(r"(?<!\n)\n(?!\n)", " ", value)
        elif key == "examples":  # 3.0 has one example
            out["example"] = value[0]
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # a bound, 3.0 a flag
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif (
            (key == "title" and value in names)
            or (key == "default" and value is None)
            or (key == "required" and not value)
        ):
            # A title that is the Python class's name. A null default: null means "not given",
            # which the field's description spells out. required: 3.0 wants one name or more.
            continue
        else:
            out[key] = value
    # T | None: 3.0 has no null type but nullable, which counts only beside a type.
    variants = out.get("anyOf", [])
    if {"type": "null"} in variants:
        others = [v for v in variants if v != {"type": "null"}]
        if len(others) != 1:
            raise ValueError(f"OpenAPI 3.0 cannot make this union nullable: {schema}")
        del out["anyOf"]
        (other,) = others
        if "$ref" in other:
            other = {"type": types[other["$ref"].removeprefix(SCHEMAS)], **other}
        out = {**other, **out, "nullable": True}
    # 3.0 ignores a $ref's siblings (a description, nullable): the $ref goes into an allOf.
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out
