"""JSON Schema for policy documents, for editors (yaml-language-server) and the API."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from controlplane.policy.documents import AnyDocument

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Annotated[AnyDocument, Field(discriminator="kind")])


def document_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _ADAPTER.json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Ubiq policy document (ubiq.io/v1alpha1)"
    return schema


def document_schema_json() -> str:
    return json.dumps(document_schema(), indent=2, sort_keys=True) + "\n"
