"""Service-account tokens: ES256 JWTs signed with the cluster's service-account key.

Issued by the TokenRequest handler (``serviceaccounts/<name>/token``, :mod:`apiserver.reviews`)
and checked by the bearer-token authenticator (:mod:`apiserver.authn`). The claims are shaped
like Kubernetes' bound service-account tokens::

    {"iss": ..., "sub": "system:serviceaccount:<ns>:<name>", "aud": [...],
     "exp": ..., "iat": ..., "nbf": ..., "jti": "<uuid>",
     "kubernetes.io": {"namespace": ns, "serviceaccount": {"name", "uid"},
                       "pod": {"name", "uid"}?, "secret": {"name", "uid"}?, "node": {"name", "uid"}?}}

:meth:`ServiceAccountTokens.verify` checks the signature, ``exp``/``nbf`` (with a little leeway
for clock skew), the issuer and the audience, and returns the claims; whether the bound objects
still exist is the authenticator's job (it needs the store). The public key is published as a
JWKS (``/openid/v1/jwks``) with the OpenID discovery document, as kube-apiserver publishes them,
so an external verifier can check the tokens too. The key id is the base64url SHA-256 of the
public key's DER encoding, Kubernetes' choice.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"
LEEWAY_SECONDS = 60
"""How far ``exp``/``nbf`` may be off (clock skew between nodes), as Kubernetes' validator allows."""


class TokenInvalid(Exception):
    """A token that does not authenticate; the message says why (Kubernetes' wording)."""


@dataclass(frozen=True)
class ObjectRef:
    """A named object with its uid (a token's service account, pod, secret or node)."""

    name: str
    uid: str


@dataclass(frozen=True)
class TokenClaims:
    """What a verified service-account token says."""

    namespace: str
    service_account: ObjectRef
    audiences: tuple[str, ...]
    expires: int
    issued_at: int
    token_id: str = ""
    pod: ObjectRef | None = None
    secret: ObjectRef | None = None
    node: ObjectRef | None = None

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.service_account.name)


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _ref(raw: Any) -> ObjectRef | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None
    return ObjectRef(raw["name"], str(raw.get("uid", "")))


def _ref_claim(ref: ObjectRef) -> dict[str, str]:
    return {"name": ref.name, "uid": ref.uid}


class ServiceAccountTokens:
    """Signs and verifies service-account tokens with one key pair.

    ``clock`` returns Unix seconds (tests move it to make tokens expire).
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, issuer: str, audiences: Sequence[str],
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._public = key.public_key()
        self.key_id = _key_id(self._public)
        self.issuer = issuer
        self.audiences = tuple(audiences) or (issuer,)
        self.clock = clock

    def issue(self, *, namespace: str, service_account: ObjectRef, audiences: Sequence[str],
              expiration_seconds: int, pod: ObjectRef | None = None, secret: ObjectRef | None = None,
              node: ObjectRef | None = None) -> tuple[str, int]:
        """A signed token and its expiry (Unix seconds)."""
        now = int(self.clock())
        expires = now + expiration_seconds
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": _ref_claim(service_account)}
        for name, ref in (("pod", pod), ("secret", secret), ("node", node)):
            if ref is not None:
                private[name] = _ref_claim(ref)
        claims = {
            "iss": self.issuer,
            "sub": service_account_username(namespace, service_account.name),
            "aud": list(audiences) or list(self.audiences),
            "exp": expires, "iat": now, "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return token, expires

    def looks_like_ours(self, token: str) -> bool:
        """Whether ``token`` is a JWT naming our issuer (unverified): other tokens are not ours to judge."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.issuer

    def verify(self, token: str, audiences: Sequence[str] | None = None) -> TokenClaims:
        """The claims of a valid token for any of ``audiences`` (default: the apiserver's own).

        Raises :class:`TokenInvalid` naming the first check that failed.
        """
        wanted = tuple(audiences) if audiences else self.audiences
        try:
            claims = jwt.decode(token, self._public, algorithms=[ALGORITHM], issuer=self.issuer,
                                leeway=LEEWAY_SECONDS, options={"verify_aud": False, "require": ["exp", "sub"]},
                                )
        except jwt.ExpiredSignatureError as exc:
            raise TokenInvalid("service account token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenInvalid("service account token is not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenInvalid("token issuer is not trusted") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalid("token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"token could not be validated: {exc}") from exc
        aud = claims.get("aud")
        token_audiences = tuple([aud] if isinstance(aud, str) else aud or ())
        if not set(token_audiences) & set(wanted):
            raise TokenInvalid(f"token audiences {list(token_audiences)!r} is invalid for the target audiences "
                               f"{list(wanted)!r}")
        private = claims.get("kubernetes.io")
        sa = _ref(private.get("serviceaccount")) if isinstance(private, dict) else None
        if not isinstance(private, dict) or sa is None or not isinstance(private.get("namespace"), str):
            raise TokenInvalid("token lacks the kubernetes.io service account claims")
        if claims["sub"] != service_account_username(private["namespace"], sa.name):
            raise TokenInvalid("token subject does not match its service account claims")
        return TokenClaims(
            namespace=private["namespace"], service_account=sa, audiences=token_audiences,
            expires=int(claims["exp"]), issued_at=int(claims.get("iat", 0)), token_id=str(claims.get("jti", "")),
            pod=_ref(private.get("pod")), secret=_ref(private.get("secret")), node=_ref(private.get("node")),
        )

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (``/openid/v1/jwks``)."""
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self._public, as_dict=True)
        jwk.update({"use": "sig", "alg": ALGORITHM, "kid": self.key_id})
        return {"keys": [jwk]}

    def openid_configuration(self) -> dict[str, Any]:
        """The OpenID discovery document (``/.well-known/openid-configuration``)."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer.rstrip('/')}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        }
