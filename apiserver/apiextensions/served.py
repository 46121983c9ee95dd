"""What an established CustomResourceDefinition serves: one :class:`ResourceInfo` per served version.

:func:`served_resources` turns a CRD (as stored, a plain dict) into the resources that routing,
discovery, OpenAPI, the watch cache and the registries read; each carries a
:class:`ServedVersion` in ``ResourceInfo.custom`` with the compiled schema, the printer columns
and the subresources of that version. The controller (:mod:`~apiserver.apiextensions.controller`)
registers them in ``machinery.resources`` once the CRD's names are accepted.

Versions are listed in Kubernetes' priority order (GA > beta > alpha, then by major and minor
number; other names after, alphabetically): the first is the group's preferred version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apiserver.apiextensions.schema_seam import CompiledSchema, compile_schema, schema_path
from machinery.resources import STATUS_VERBS, ResourceInfo, SubresourceInfo

Obj = dict[str, Any]

_KUBE_VERSION = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


def version_priority(name: str) -> tuple[int, int, int, str]:
    """A sort key putting versions in Kubernetes' discovery order (smallest first)."""
    m = _KUBE_VERSION.match(name)
    if m is None:
        return (3, 0, 0, name)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


@dataclass(frozen=True)
class ScalePaths:
    """``subresources.scale`` of a version."""

    spec_replicas: str
    status_replicas: str
    label_selector: str = ""


@dataclass(frozen=True, eq=False)
class ServedVersion:
    """One served version of a CRD, as the apiserver needs it (``ResourceInfo.custom``)."""

    crd_name: str
    group: str
    version: str
    kind: str
    storage_version: str
    schema: CompiledSchema
    columns: tuple[Obj, ...] = ()
    status: bool = False
    scale: ScalePaths | None = None
    preserve_unknown: bool = False
    deprecation_warning: str | None = None
    raw_schema: Obj = field(default_factory=dict)

    @property
    def storage_api_version(self) -> str:
        return f"{self.group}/{self.storage_version}"

    def openapi_definition(self) -> tuple[str, Obj]:
        """(definition name, schema): Kubernetes names it by the reversed group (``com.example.v1.Widget``)."""
        name = ".".join(reversed(self.group.split("."))) + f".{self.version}.{self.kind}"
        schema = dict(self.schema.openapi())
        props = dict(schema.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string", "description": "APIVersion defines the versioned "
                                        "schema of this representation of an object."})
        props.setdefault("kind", {"type": "string", "description": "Kind is a string value representing the "
                                  "REST resource this object represents."})
        props["metadata"] = {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1."
                                        "ObjectMeta"}],
                             "description": "Standard object's metadata."}
        schema["type"] = "object"
        schema["properties"] = props
        schema["x-kubernetes-group-version-kind"] = [{"group": self.group, "version": self.version,
                                                      "kind": self.kind}]
        return name, schema


def version_schema(crd: Obj, version: Obj) -> Obj | None:
    """The ``openAPIV3Schema`` of ``version`` (apiextensions.k8s.io/v1 keeps one per version)."""
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None


def _scale(version: Obj) -> ScalePaths | None:
    scale = (version.get("subresources") or {}).get("scale")
    if not isinstance(scale, dict):
        return None
    return ScalePaths(str(scale.get("specReplicasPath") or ""), str(scale.get("statusReplicasPath") or ""),
                      str(scale.get("labelSelectorPath") or ""))


def served_resources(crd: Obj) -> list[ResourceInfo]:
    """The resources a (valid) CRD serves, preferred version first. Raises ``SchemaError``."""
    spec = crd.get("spec") or {}
    names = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
    group = spec["group"]
    all_versions = list(spec.get("versions") or [])
    versions = [(i, v) for i, v in enumerate(all_versions) if v.get("served")]
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
    infos: list[ResourceInfo] = []
    for index, v in sorted(versions, key=lambda iv: version_priority(iv[1]["name"])):
        schema = version_schema(crd, v) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        compiled = compile_schema(schema, field_path=schema_path(all_versions, index))
        subs = v.get("subresources") or {}
        served = ServedVersion(
            crd_name=crd["metadata"]["name"], group=group, version=v["name"], kind=names["kind"],
            storage_version=storage, schema=compiled,
            columns=tuple(c for c in v.get("additionalPrinterColumns") or [] if isinstance(c, dict)),
            status="status" in subs, scale=_scale(v),
            preserve_unknown=bool(spec.get("preserveUnknownFields")),
            deprecation_warning=_deprecation(group, v, names["kind"]), raw_schema=schema,
        )
        subresources: list[SubresourceInfo] = []
        if served.status:
            subresources.append(SubresourceInfo("status", names["kind"], STATUS_VERBS, group, v["name"]))
        if served.scale is not None:
            subresources.append(SubresourceInfo("scale", "Scale", STATUS_VERBS, "autoscaling", "v1"))
        infos.append(ResourceInfo(
            group=group, version=v["name"], kind=names["kind"], plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            subresources=tuple(subresources), list_kind_name=names.get("listKind") or f"{names['kind']}List",
            storage_root=f"{group}/{names['plural']}", custom=served,
        ))
    return infos


def _deprecation(group: str, version: Obj, kind: str) -> str | None:
    if not version.get("deprecated"):
        return None
    warning = version.get("deprecationWarning")
    if isinstance(warning, str):
        return warning
    return f"{group}/{version['name']} {kind} is deprecated"


def served_version(info: ResourceInfo) -> ServedVersion:
    """The :class:`ServedVersion` of a custom resource's ``ResourceInfo``."""
    assert isinstance(info.custom, ServedVersion), info
    return info.custom
