"""CustomResourceDefinitions (apiextensions.k8s.io/v1): schemas and serving.

Two halves live in this package.

**Structural schemas** — what a CRD version's ``openAPIV3Schema`` means for its objects:

- :mod:`.structural` / :mod:`.schema_keywords`: is the schema structural? (Kubernetes' rules and
  error wording, e.g. ``spec.validation.openAPIV3Schema.properties[spec].type: Required value:
  must not be empty for specified object fields``);
- :mod:`.validation` (+ :mod:`.formats`, :mod:`.regex`): does an object satisfy it? (kube-openapi's
  wording: ``spec.replicas: Invalid value: "string": spec.replicas in body must be of type
  integer: "string"``);
- :mod:`.pruning`, :mod:`.defaulting`: unknown fields dropped (paths returned), defaults applied;
- :mod:`.cel`, :mod:`.cel_library`, :mod:`.cel_validator`: ``x-kubernetes-validations`` rules —
  compiled, costed and run with Kubernetes' extension functions;
- :mod:`.compiled` ties them together; :mod:`.field` words the causes.

Public API of this half::

    compile_schema(schema, *, field_path="spec.validation.openAPIV3Schema") -> CompiledSchema
        raises SchemaError(causes: list[StatusCause]) for a non-structural schema, a rule that does
        not compile ("compilation failed: ...") or costs too much
    version_schema_path(versions, i) -> str      # where Kubernetes reports version i's schema errors
    CompiledSchema.validate(obj, old=None) -> list[StatusCause]   # old: the stored object on update
    CompiledSchema.prune(obj) -> list[str]        # unknown fields removed, e.g. ["spec.foo"]
    CompiledSchema.default(obj) -> None           # on write after prune; on read from storage
    CompiledSchema.openapi() -> dict              # for /openapi/v3, x-kubernetes-* kept

**Serving** — registration, names, discovery, OpenAPI publication, routing, storage and the status
and scale subresources of custom resources, built on that API (the CRD registry and its neighbours
in this package).
"""

from .compiled import CompiledSchema, SchemaError, compile_schema, version_schema_path

__all__ = ["CompiledSchema", "SchemaError", "compile_schema", "version_schema_path"]
