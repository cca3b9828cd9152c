"""Artifact signatures in the OpenSSF model signing format (the ``model-signing`` package).

sha256 in the manifest proves the files are the ones the manifest names; it does not prove who
wrote the manifest. A signature does: :func:`sign_artifact` signs the artifact directory (every
file, ``manifest.json`` included, the signature file itself excluded) with an elliptic-curve
private key (P-256, P-384 or P-521, PEM) into ``model.sig`` inside the artifact, a Sigstore bundle
holding a DSSE envelope over an in-toto statement that lists each file's sha256.
:class:`SignatureVerifier` checks such a directory against the configured public key: every file
must be signed, every signed file present and unchanged, and the signature made by that key.

Key-based signing works offline; the private key comes from a secret store as a mounted file
(``ORCHESTRATOR_SIGNING_KEY``), the public key is plain configuration
(``MODEL_SIGNING_PUBLIC_KEY``: the PEM text or a path).

``model_signing`` (and with it sigstore and its dependencies, about 0.5 s of imports) is imported
only when a key is configured, so an endpoint without one starts as fast as before.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.artifact.integrity import iter_files
from orchestrator.core.artifact.manifest import SIGNATURE_NAME, load_manifest
from orchestrator.core.errors import ArtifactError, ConfigError

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "SignatureError",
    "SignatureVerifier",
    "generate_key_pair",
    "load_public_key",
    "sign_artifact",
]

# The curves model-signing accepts (Sigstore's protobuf specs).
_CURVES = ("secp256r1", "secp384r1", "secp521r1")
# A bundle for a few files is about 2 kB; it grows by ~150 bytes per file (MAX_FILES is 1000).
MAX_SIGNATURE_BYTES = 1024 * 1024


class SignatureError(ArtifactError):
    """An artifact is unsigned, or its signature does not verify with the configured key."""


@dataclass(frozen=True)
class PublicKey:
    """A verified-loadable EC public key: its PEM, a short fingerprint, and a file holding it
    (model-signing reads keys from files)."""

    pem: bytes
    fingerprint: str  # first 16 hex digits of the sha256 of the PEM
    path: Path


def load_public_key(value: str, *, where: str) -> PublicKey:
    """The public key in ``value`` (PEM text, or a path to a PEM file); ConfigError naming ``where``
    (the option or variable) if it is unreadable or not an EC public key on a supported curve."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = value.strip()
    if text.startswith("-----BEGIN"):
        pem = text.encode() + b"\n"
    else:
        try:
            pem = Path(text).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the public key file {text!r} ({exc.strerror})") from None
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise ConfigError(f"{where}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVES:
        raise ConfigError(f"{where}: the public key must be an elliptic-curve key on P-256, P-384 or P-521")
    directory = Path(tempfile.mkdtemp(prefix="model-signing-"))
    path = directory / "public.pem"
    path.write_bytes(pem)
    return PublicKey(pem=pem, fingerprint=hashlib.sha256(pem).hexdigest()[:16], path=path)


class SignatureVerifier:
    """Checks artifact directories against one public key. Thread-safe (no shared state)."""

    def __init__(self, key: PublicKey) -> None:
        self.key = key

    def verify(self, root: Path, *, source: str) -> None:
        """Raise SignatureError naming ``source`` unless ``root``'s ``model.sig`` verifies with the key
        and covers exactly the files in ``root``."""
        signature = self._signature_file(root / SIGNATURE_NAME, source)
        from model_signing import verifying

        try:
            # A fresh Config each time: one guesses and keeps the hashing settings of the first
            # signature it reads.
            config = verifying.Config()  # type: ignore[no-untyped-call]
            config.use_elliptic_key_verifier(public_key=self.key.path).verify(root, signature)
        except Exception as exc:  # the library raises ValueError, its protobuf and crypto errors
            raise self._refusal(source, exc) from exc

    def verify_digests(self, signature: Path, digests: Mapping[str, str], *, source: str) -> None:
        """Raise SignatureError naming ``source`` unless the signature file verifies with the key and
        signs exactly ``digests`` (path → sha256 hex: the manifest's files and the manifest itself).
        Reads no file but the signature, so it can run before anything large is downloaded; a
        signature made some other way (:meth:`signed_files` None) is left to :meth:`verify`."""
        signed = self.signed_files(signature, source=source)
        if signed is None or signed == dict(digests):
            return
        parts = []
        if changed := sorted(p for p in signed.keys() & digests.keys() if signed[p] != digests[p]):
            parts.append("changed since signing: " + ", ".join(changed))
        if unsigned := sorted(digests.keys() - signed.keys()):
            parts.append("in the manifest but not signed: " + ", ".join(unsigned))
        if extra := sorted(signed.keys() - digests.keys()):
            parts.append("signed but not in the manifest: " + ", ".join(extra))
        raise SignatureError(
            f"{source}: signature does not verify with the configured public key "
            f"{self.key.fingerprint} ({'; '.join(parts)[:300]})",
            path=SIGNATURE_NAME,
        )

    def signed_files(self, signature: Path, *, source: str) -> dict[str, str] | None:
        """Verify the signature file's envelope with the key, reading no other file: the sha256 (hex)
        of every file it signs, by path; None when it signs them some other way (shards, another
        hash), which only :meth:`verify` can check, file by file. SignatureError naming ``source``
        if it is missing, too large, malformed, or not made by the key.

        What lets the endpoint refuse an unsigned version after reading two small objects, before
        downloading what its manifest lists (which could be gigabytes)."""
        self._signature_file(signature, source)
        # model-signing has no public call for "verify the envelope, give me the statement" (its
        # Config.verify always hashes a directory); these are the calls it makes inside, pinned by
        # constraints.txt and exercised by the tests.
        from model_signing._signing import sign_ec_key, sign_sigstore_pb

        try:
            statement = sign_ec_key.Verifier(self.key.path).verify(sign_sigstore_pb.Signature.read(signature))
        except Exception as exc:  # ValueError, protobuf and crypto errors, as in verify()
            raise self._refusal(source, exc) from exc
        method = statement.serialization_type
        if method.get("method") != "files" or method.get("hash_type") != "sha256":
            return None
        return {
            str(rd.identifier): rd.digest.digest_hex
            for rd in statement.resource_descriptors()
            if rd.digest.algorithm == "sha256"
        }

    def _signature_file(self, signature: Path, source: str) -> Path:
        if not signature.is_file() or signature.is_symlink():
            raise SignatureError(
                f"{source}: unsigned: no {SIGNATURE_NAME}, and a signing public key is configured",
                path=SIGNATURE_NAME,
            )
        if signature.stat().st_size > MAX_SIGNATURE_BYTES:
            raise SignatureError(
                f"{source}: {SIGNATURE_NAME} is too large to be a signature", path=SIGNATURE_NAME
            )
        return signature

    def _refusal(self, source: str, exc: Exception) -> SignatureError:
        return SignatureError(
            f"{source}: signature does not verify with the configured public key "
            f"{self.key.fingerprint} ({_describe(exc)[:300]})",
            path=SIGNATURE_NAME,
        )


def _describe(exc: Exception) -> str:
    """model-signing's mismatch message is the repr of a list with digests as bytes; say which files
    differ instead. Other errors (a bad signature, a malformed bundle) keep their own words."""
    text = str(exc) or type(exc).__name__
    if not text.startswith("Signature mismatch"):
        return text
    parts = []
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", text)
    if changed:
        parts.append("changed since signing: " + ", ".join(changed))
    for kind, label in (("Extra files found", "not signed"), ("Missing files", "signed but missing")):
        match = re.search(kind + r" in model \\?'[^'\\]*\\?': ([^'\"\]\\]+)", text)
        if match:
            parts.append(f"{label}: {match[1].strip()}")
    return "; ".join(parts) or text


def sign_artifact(root: Path, private_key: Path) -> Path:
    """Sign the artifact directory ``root`` with the EC private key in ``private_key`` (PEM,
    unencrypted); write and return ``root/model.sig``. ConfigError naming the key file if it is
    unreadable or not a supported key; ArtifactError naming the files if ``root`` holds any that
    its manifest does not list (only those are published, so a signature covering more would be
    refused everywhere)."""
    listed = {entry.path for entry in load_manifest(root).files}
    if extra := sorted(
        p.relative_to(root).as_posix()
        for p in iter_files(root)
        if p.relative_to(root).as_posix() not in listed
    ):
        raise ArtifactError(
            f"{root}: files the manifest does not list: {', '.join(extra[:10])}; remove them before "
            "signing (only the manifest's files are published, and a signature must cover exactly those)",
            path=extra[0],
        )
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(private_key.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"signing key {private_key}: cannot read it ({exc.strerror})") from None
    except (ValueError, TypeError):
        raise ConfigError(
            f"signing key {private_key}: not an unencrypted PEM private key (PKCS#8 or SEC1)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _CURVES:
        raise ConfigError(
            f"signing key {private_key}: must be an elliptic-curve key on P-256, P-384 or P-521"
        )
    from model_signing import hashing, signing

    signature = root / SIGNATURE_NAME
    signature.unlink(missing_ok=True)
    ignore = hashing.Config().set_ignored_paths(paths=[SIGNATURE_NAME])  # type: ignore[no-untyped-call]
    signer = signing.Config().use_elliptic_key_signer(private_key=private_key)  # type: ignore[no-untyped-call]
    signer.set_hashing_config(ignore).sign(root, signature)
    return signature


def generate_key_pair(directory: Path, name: str = "signing") -> tuple[Path, Path]:
    """A new P-256 key pair as ``directory/<name>.key`` (private, PKCS#8 PEM, mode 0600) and
    ``directory/<name>.pub`` (public, PEM): for the demo and tests. In production the private key
    lives in a secret store and only its public half is configuration."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
