"""The CRD's OpenAPI v3 schema as plain JSON Schema, as the API server enforces it.

`x-kubernetes-int-or-string` becomes anyOf integer/string, an object with `properties`
refuses other fields (as the API server does under kubectl's default strict field validation;
without it they are pruned), and each CEL rule the CRD carries becomes its JSON Schema
equivalent (`CEL_AS_JSON_SCHEMA`).
"""

from typing import Any

import jsonschema
import yaml

from tests.support.service import REPO

CRD_FILE = REPO / "manifests" / "crd.yaml"
EXCLUSIVE_RULE = "!(has(self.stallDetector) && has(self.downtimeTuning))"
# The CEL rules the CRD carries, as JSON Schema; a new rule must be added here.
CEL_AS_JSON_SCHEMA = {
    EXCLUSIVE_RULE: {"not": {"required": ["stallDetector", "downtimeTuning"]}},
}

Schema = dict[str, Any]


def crd() -> Schema:
    [doc] = list(yaml.safe_load_all(CRD_FILE.read_text()))
    return doc


def openapi_schema(version: str = "v1alpha1") -> Schema:
    [found] = [v for v in crd()["spec"]["versions"] if v["name"] == version]
    return found["schema"]["openAPIV3Schema"]


def to_json_schema(node: Schema) -> Schema:
    """A structural schema node as plain JSON Schema, as the API server enforces it."""
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(child) for child in value]
        elif key == "x-kubernetes-validations":
            rules = [CEL_AS_JSON_SCHEMA[rule["rule"]] for rule in value]
            out["allOf"] = [*out.get("allOf", []), *rules]
        elif not key.startswith("x-kubernetes-"):
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def field_path(schema: Schema, parts: list[Any]) -> str:
    """An instance path written as the webhook writes fields: map entries as `[key]`."""
    path, node = "", schema
    for part in parts:
        if part in node.get("properties", {}):
            path, node = f"{path}.{part}", node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            path, node = f"{path}[{part}]", node["additionalProperties"]
        else:
            path, node = f"{path}.{part}", {}
    return path.lstrip(".")


def schema_errors(validator: jsonschema.Draft4Validator, policy: Any) -> list[str]:
    """Each error as the path of the field it is about."""
    return [field_path(validator.schema, list(error.absolute_path))
            for error in validator.iter_errors(policy)]


def schema_validator(version: str = "v1alpha1") -> jsonschema.Draft4Validator:
    """A validator of the CRD's schema for `version`, the schema itself checked first."""
    schema = to_json_schema(openapi_schema(version))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)
