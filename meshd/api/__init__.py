"""The contract between meshd's control plane and its sidecars: resources, wire protocol, identity.

``meshd.control`` (istiod's role) produces what is defined here and ``meshd.proxy`` (the sidecar)
consumes it; neither imports the other, both import this package (and ``machinery``).

- :mod:`meshd.api.resources` -- the configuration a proxy applies: clusters (a Service port's
  endpoints, per subset), listeners (the Service ports the app may dial), route configurations
  (compiled VirtualService + DestinationRule) and the inbound policy (PeerAuthentication), as
  frozen dataclasses with a strict JSON codec. A proxy that cannot apply one NACKs it.
- :mod:`meshd.api.protocol` -- the two gRPC services on meshd's port 15012: ``Discovery.Stream``
  (xDS state-of-the-world semantics: per-type version and nonce, ACK / NACK) and
  ``Certificates.Certify`` (CSR + service-account token → a SPIFFE leaf), JSON over gRPC's
  generic handlers (no generated code).
- :mod:`meshd.api.identity` -- SPIFFE identities and the mesh's well-known names and ports.
"""
