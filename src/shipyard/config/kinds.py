"""`deploy.target` and `deploy.router`: a union on `type` over the kinds in the plugin registry.

A pydantic discriminated union is fixed when the model class is built (at import), before plugins can be
known and while shipyard's own kinds, whose models live in config.deploy, are still being defined. So the
field validates through the registry at validation time instead: `type` picks the registered model, which
validates the block. Errors keep the shape a discriminated union gives them (the tag in the location, the
`union_tag_invalid` error with the expected tags), so config.problems turns them into the same
`file:line: key: message` lines. The JSON Schema is generated from the registry too: a oneOf over every
registered kind's model with a discriminator mapping, as pydantic would write it for a fixed union.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from shipyard.plugins import registry as plugins

KNOWN_ERRORS = frozenset(get_args(core_schema.ErrorType))


def _relocated(exc: ValidationError, tag: str) -> ValidationError:
    """The member's errors with its tag in front, as in a discriminated union (`router.haproxy.socket`)."""
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        loc = (tag, *err["loc"])
        ctx = err.get("ctx")
        if err["type"] in KNOWN_ERRORS:
            detail: InitErrorDetails = {"type": err["type"], "loc": loc, "input": err["input"]}
            if ctx:
                detail["ctx"] = ctx
        else:                           # a custom error type: keep its rendered message as it is
            text = err["msg"].replace("{", "{{").replace("}", "}}")
            detail = {"type": PydanticCustomError(err["type"], text), "loc": loc, "input": err["input"]}
        details.append(detail)
    return ValidationError.from_exception_data(exc.title, details)


class RegisteredKinds:
    """Annotated metadata: validate a block as the kind of `group` its `type` names."""

    def __init__(self, group: plugins.Group) -> None:
        self.group = group

    def _validate(self, value: Any, info: core_schema.ValidationInfo) -> Any:
        if isinstance(value, BaseModel):        # a default, or a model_copy of an already valid block
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("model_type", "expected a mapping")
        registry = plugins.kinds(self.group)
        tag = value.get("type")
        if tag is None:
            raise PydanticCustomError("union_tag_not_found", "missing `type`", {"discriminator": "'type'"})
        if not isinstance(tag, str) or tag not in registry:
            raise PydanticCustomError(
                "union_tag_invalid", "unknown type {tag}",
                {"discriminator": "'type'", "tag": str(tag), "expected_tags": ", ".join(map(repr, registry))})
        try:
            return registry[tag].config.model_validate(value, context=info.context)
        except ValidationError as exc:
            raise _relocated(exc, tag) from None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # No serialization schema: pydantic dumps whichever model the block became by that model's own.
        return core_schema.with_info_plain_validator_function(self._validate)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        choices: dict[Any, core_schema.CoreSchema] = {
            name: kind.config.__pydantic_core_schema__ for name, kind in plugins.kinds(self.group).items()}
        return handler(core_schema.tagged_union_schema(choices, discriminator="type"))
