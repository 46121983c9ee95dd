"""The OpenAPI v3 component schemas of ``apiextensions.k8s.io/v1`` CustomResourceDefinition.

Published by :mod:`apiserver.openapi` in the group-version document, so ``kubectl explain crd``
works and kubectl finds the kind's PATCH operation (and leaves validation to the server). The
schema names the fields people read; ``openAPIV3Schema`` itself is free-form, as in Kubernetes'
published document (``x-kubernetes-preserve-unknown-fields``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

_PREFIX = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
_META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _ref(name: str, description: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{_PREFIX}{name}"}], "description": description}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "default": ""}, "description": description}


def _free(description: str) -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "description": description}


@cache
def crd_definitions() -> dict[str, dict[str, Any]]:
    """Definition name -> schema, for the CRD kind and the types it uses."""
    names = {
        "description": "CustomResourceDefinitionNames indicates the names to serve this CustomResourceDefinition",
        "type": "object",
        "required": ["plural", "kind"],
        "properties": {
            "plural": _string("plural is the plural name of the resource to serve."),
            "singular": _string("singular is the singular name of the resource. Defaults to lowercased kind."),
            "kind": _string("kind is the serialized kind of the resource."),
            "listKind": _string('listKind is the serialized kind of the list for this resource. Defaults to '
                                '"`kind`List".'),
            "shortNames": _strings("shortNames are short names for the resource, used by kubectl get <shortname>."),
            "categories": _strings("categories is a list of grouped resources this custom resource belongs to "
                                   "(e.g. 'all')."),
        },
    }
    version = {
        "description": "CustomResourceDefinitionVersion describes a version for CRD.",
        "type": "object",
        "required": ["name", "served", "storage"],
        "properties": {
            "name": _string("name is the version name, e.g. v1, v2beta1."),
            "served": {"type": "boolean", "description": "served is a flag enabling/disabling this version from "
                                                         "being served via REST APIs"},
            "storage": {"type": "boolean", "description": "storage indicates this version should be used when "
                                                          "persisting custom resources to storage."},
            "deprecated": {"type": "boolean", "description": "deprecated indicates this version of the custom "
                                                             "resource API is deprecated."},
            "deprecationWarning": _string("deprecationWarning overrides the default warning returned to API "
                                          "clients."),
            "schema": _free("schema describes the schema used for validation, pruning, and defaulting of this "
                            "version of the custom resource."),
            "subresources": _free("subresources specify what subresources this version of the defined custom "
                                  "resource have."),
            "additionalPrinterColumns": {"type": "array", "items": _free("a printer column"),
                                         "description": "additionalPrinterColumns specifies additional columns "
                                                        "returned in Table output."},
        },
    }
    spec = {
        "description": "CustomResourceDefinitionSpec describes how a user wants their resource to appear",
        "type": "object",
        "required": ["group", "names", "scope", "versions"],
        "properties": {
            "group": _string("group is the API group of the defined custom resource."),
            "names": _ref("CustomResourceDefinitionNames", "names specify the resource and kind names for the "
                                                             "custom resource."),
            "scope": _string("scope indicates whether the defined custom resource is cluster- or "
                             "namespace-scoped. Allowed values are `Cluster` and `Namespaced`."),
            "versions": {"type": "array", "items": {"$ref": f"#/components/schemas/{_PREFIX}"
                                                            "CustomResourceDefinitionVersion"},
                         "description": "versions is the list of all API versions of the defined custom "
                                        "resource."},
            "conversion": _free("conversion defines conversion settings for the CRD."),
            "preserveUnknownFields": {"type": "boolean", "description": "preserveUnknownFields indicates that "
                                      "object fields which are not specified in the OpenAPI schema should be "
                                      "preserved when persisting to storage."},
        },
    }
    status = {
        "description": "CustomResourceDefinitionStatus indicates the state of the CustomResourceDefinition",
        "type": "object",
        "properties": {
            "acceptedNames": _ref("CustomResourceDefinitionNames", "acceptedNames are the names that are "
                                                                     "actually being used to serve discovery."),
            "conditions": {"type": "array", "items": _free("a condition"),
                           "description": "conditions indicate state for particular aspects of a "
                                          "CustomResourceDefinition"},
            "storedVersions": _strings("storedVersions lists all versions of CustomResources that were ever "
                                       "persisted."),
        },
    }
    crd = {
        "description": "CustomResourceDefinition represents a resource that should be exposed on the API server. "
                       "Its name MUST be in the format <.spec.name>.<.spec.group>.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": _string("APIVersion defines the versioned schema of this representation of an object."),
            "kind": _string("Kind is a string value representing the REST resource this object represents."),
            "metadata": {"allOf": [{"$ref": _META}], "description": "Standard object's metadata."},
            "spec": _ref("CustomResourceDefinitionSpec", "spec describes how the user wants the resources to "
                                                           "appear"),
            "status": _ref("CustomResourceDefinitionStatus", "status indicates the actual state of the "
                                                               "CustomResourceDefinition"),
        },
        "x-kubernetes-group-version-kind": [{"group": "apiextensions.k8s.io", "version": "v1",
                                             "kind": "CustomResourceDefinition"}],
    }
    return {
        f"{_PREFIX}CustomResourceDefinition": crd,
        f"{_PREFIX}CustomResourceDefinitionSpec": spec,
        f"{_PREFIX}CustomResourceDefinitionStatus": status,
        f"{_PREFIX}CustomResourceDefinitionNames": names,
        f"{_PREFIX}CustomResourceDefinitionVersion": version,
    }
