"""The sidecar's key and CSR child: launched early by ``prestart`` and consumed once, or on demand."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshd.proxy import keygen

URI = "spiffe://cluster.local/ns/default/sa/reviews"


def _check(key_pem: bytes, csr_pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    return public


async def test_a_prestarted_child_answers_the_first_request_and_only_that_one() -> None:
    keygen.prestart(URI, "cluster.local")
    assert (URI, "cluster.local") in keygen._early
    first = _check(*await keygen.make_key_and_csr(URI, "cluster.local"))
    assert (URI, "cluster.local") not in keygen._early
    second = _check(*await keygen.make_key_and_csr(URI, "cluster.local"))  # a fresh child, a fresh key
    assert first.public_numbers() != second.public_numbers()


async def test_a_prestarted_child_for_another_identity_is_not_used() -> None:
    other = "spiffe://cluster.local/ns/default/sa/other"
    keygen.prestart(other, "cluster.local")
    try:
        _check(*await keygen.make_key_and_csr(URI, "cluster.local"))
        assert (other, "cluster.local") in keygen._early
    finally:
        child = keygen._early.pop((other, "cluster.local"))
        child.communicate()
