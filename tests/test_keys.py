"""Keys: one algorithm per key, material checked at load, rotation through every store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authstate import keystore
from authstate.clock import FrozenClock
from authstate.errors import ConfigurationError, UnknownKey, UnusableKey, WeakKeyError
from authstate.jose.algorithms import ALGORITHMS
from authstate.jose.jwk import ACTIVE, RETIRED, VERIFY_ONLY, SigningKey, thumbprint
from authstate.jose.weakkeys import has_roca_fingerprint, weak_secret_reason
from authstate.keystore import KeySet
from authstate.stores import Store

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
GENERATED = ["EdDSA", "ES256", "ES384", "ES512", "RS256", "PS256", "HS256", "HS384", "HS512"]


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.mark.parametrize("alg", GENERATED)
def test_generated_key_signs_and_verifies_with_its_one_algorithm(alg: str) -> None:
    key = SigningKey.generate(alg, now=5.0)
    assert key.alg == alg and key.status == ACTIVE and key.created_at == 5.0
    signature = key.create_signature(b"message")  # type: ignore[misc]
    assert key.verify_signature(b"message", signature)
    assert not key.verify_signature(b"messagf", signature)
    assert not key.verify_signature(b"message", signature[:-1])
    assert not key.verify_signature(b"message", b"")


@pytest.mark.parametrize("alg", GENERATED)
def test_public_jwk_and_jwks_never_carry_private_members(alg: str) -> None:
    key = SigningKey.generate(alg)
    public = key.public_jwk()
    if key.symmetric:
        assert public is None
        assert KeySet([key]).public_jwks() == {"keys": []}
        return
    assert public is not None and not PRIVATE_MEMBERS & set(public)
    assert public["alg"] == alg and public["use"] == "sig" and public["kid"] == key.kid
    jwks = KeySet([key]).public_jwks()
    assert jwks["keys"] == [public]
    assert not PRIVATE_MEMBERS & {m for k in jwks["keys"] for m in k}
    # a verifier built from the published set checks the signer's signatures
    verifier = KeySet.from_jwks(jwks, public_only=True)
    signature = key.create_signature(b"abc")  # type: ignore[misc]
    assert verifier.select(key.kid).verify_signature(b"abc", signature)
    assert verifier.select(key.kid).create_signature is None


@pytest.mark.parametrize("alg", GENERATED)
def test_private_jwk_round_trip_keeps_kid_and_algorithm(alg: str) -> None:
    key = SigningKey.generate(alg)
    again = SigningKey.from_jwk(key.private_jwk())
    assert (again.kid, again.alg) == (key.kid, key.alg)
    assert again.verify_signature(b"x", key.create_signature(b"x"))  # type: ignore[misc]
    assert key.verify_signature(b"x", again.create_signature(b"x"))  # type: ignore[misc]


def test_asymmetric_kid_is_the_rfc7638_thumbprint() -> None:
    key = SigningKey.generate("EdDSA")
    public = key.public_jwk()
    assert public is not None
    assert key.kid == thumbprint(public)


def test_repr_shows_no_key_material() -> None:
    key = SigningKey.from_secret(b"\x01" * 16 + bytes(range(100, 116)), alg="HS256",
                                 allow_weak=True)
    assert "secret=" not in repr(key) and "\\x01" not in repr(key)
    assert key.kid in repr(key)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_pem_round_trip_implies_the_algorithm(alg: str) -> None:
    key = SigningKey.generate(alg)
    loaded = SigningKey.from_pem(key.private_pem())
    assert loaded.alg == alg and loaded.kid == key.kid
    assert key.public_key is not None
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = SigningKey.from_pem(public_pem)
    assert public.create_signature is None and not public.has_private
    assert public.verify_signature(b"m", key.create_signature(b"m"))  # type: ignore[misc]


def test_rsa_pem_needs_an_explicit_algorithm(rsa_key: SigningKey) -> None:
    with pytest.raises(UnusableKey, match="RS256 or PS256"):
        SigningKey.from_pem(rsa_key.private_pem())
    ps = SigningKey.from_pem(rsa_key.private_pem(), alg="PS256")
    assert ps.alg == "PS256"
    assert not ps.verify_signature(b"m", rsa_key.create_signature(b"m"))  # type: ignore[misc]


def test_from_text_reads_jwk_pem_or_secret(rsa_key: SigningKey) -> None:
    jwk_text = json.dumps(rsa_key.private_jwk())
    assert SigningKey.from_text(jwk_text).kid == rsa_key.kid
    assert SigningKey.from_text(rsa_key.private_pem(), alg="RS256").alg == "RS256"
    secret = "Zq3L8vR2nW5yT1xK7mB4cH9gF6dJ0sA2eU5iO8pQ3rE"
    assert SigningKey.from_text(secret, kid="env").alg == "HS256"
    with pytest.raises(WeakKeyError):
        SigningKey.from_text("changeme")


def test_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(WeakKeyError, match="2048"):
        SigningKey.from_pem(pem, alg="RS256")


def test_roca_fingerprint_is_detected_only_on_roca_moduli(rsa_key: SigningKey) -> None:
    assert isinstance(rsa_key.public_key, rsa.RSAPublicKey)
    assert not has_roca_fingerprint(rsa_key.public_key.public_numbers().n)
    # a product of two primes of the form k*M + 65537^a mod M has the fingerprint
    m = 1
    for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73,
              79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157,
              163, 167):
        m *= p
    fake = (7 * m + pow(65537, 11, m)) * (13 * m + pow(65537, 5, m))
    assert has_roca_fingerprint(fake)


@pytest.mark.parametrize(
    ("alg", "curve"), [("ES256", ec.SECP384R1()), ("ES384", ec.SECP256R1())]
)
def test_ec_key_on_the_wrong_curve_is_refused(alg: str, curve: ec.EllipticCurve) -> None:
    pem = ec.generate_private_key(curve).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(UnusableKey, match="curve"):
        SigningKey.from_pem(pem, alg=alg)


def test_key_type_must_match_the_algorithm() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(UnusableKey):
        SigningKey.from_pem(pem, alg="ES256")
    with pytest.raises(UnusableKey):
        SigningKey.from_pem(pem, alg="HS256")
    jwk = SigningKey.generate("ES256").private_jwk()
    with pytest.raises(UnusableKey, match="is for 'ES256', not 'EdDSA'"):
        SigningKey.from_jwk(jwk, alg="EdDSA")
    with pytest.raises(UnusableKey, match="unsupported algorithm"):
        SigningKey.from_jwk({**jwk, "alg": "ES256K"})


@pytest.mark.parametrize(
    "change", [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}]
)
def test_encryption_keys_never_sign_or_verify(change: dict[str, object]) -> None:
    jwk = {**SigningKey.generate("EdDSA").private_jwk(), **change}
    with pytest.raises(UnusableKey):
        SigningKey.from_jwk(jwk)


@pytest.mark.parametrize(
    ("secret", "alg", "reason"),
    [
        (b"", "HS256", "empty"),
        (b"secret", "HS256", "commonly used"),
        (b"your-256-bit-secret", "HS256", "commonly used"),
        (b"my_company_jwt_secret_for_production_2024", "HS256", "'secret'"),
        (b"x" * 31, "HS256", "at least 32"),
        (b"abcdefghijklmnopqrstuvwxyzabcdef", "HS256", "bits"),
        (b"0123456789" * 4, "HS256", "bits"),
        (b"\x00" * 64, "HS256", "repeats"),
        (b"a" * 40, "HS256", "repeats"),
        (bytes(range(46)) + b"\x90", "HS384", "at least 48"),
        (bytes(range(1, 64)), "HS512", "at least 64"),
        (b"-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----", "HS256", "PEM"),
    ],
)
def test_weak_secrets_are_refused_with_a_reason(secret: bytes, alg: str, reason: str) -> None:
    found = weak_secret_reason(secret, alg=alg)
    assert found is not None and reason in found
    with pytest.raises(WeakKeyError) as raised:
        SigningKey.from_secret(secret, alg=alg)
    assert raised.value.code == "weak_key"
    assert len(secret) < 8 or secret.decode("latin-1") not in raised.value.message, (
        "a refused secret is never echoed back")


def test_strong_secrets_pass_and_public_keys_are_never_secrets() -> None:
    import secrets

    for _ in range(200):
        for candidate in (secrets.token_bytes(32), secrets.token_hex(32).encode(),
                          secrets.token_urlsafe(32).encode()):
            assert weak_secret_reason(candidate) is None
    assert weak_secret_reason(secrets.token_bytes(48), alg="HS384") is None
    assert weak_secret_reason(secrets.token_bytes(64), alg="HS512") is None
    ssh = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPL1I9oiq+B8crkmuV4YViiUu8TW7agqTWGzRpVrS4BR"
    with pytest.raises(WeakKeyError, match="SSH"):
        SigningKey.from_secret(ssh, allow_weak=True)


def test_hex_encoded_text_counts_as_text() -> None:
    uuid_as_hex = b"a0a2abd8-6162-41c3-83d6-1cf559b46afc".hex()
    reason = weak_secret_reason(uuid_as_hex)
    assert reason is not None and "bits" in reason


def test_allow_weak_is_for_inspecting_others_tokens_only() -> None:
    key = SigningKey.from_secret(b"secret", alg="HS256", allow_weak=True)
    assert key.verify_signature(b"m", key.create_signature(b"m"))  # type: ignore[misc]


def test_duplicate_kids_are_refused() -> None:
    a = SigningKey.generate("EdDSA", kid="same")
    b = SigningKey.generate("EdDSA", kid="same")
    with pytest.raises(UnusableKey, match="kid"):
        KeySet([a, b])


def test_select_by_kid_and_the_no_kid_rule() -> None:
    a = SigningKey.generate("EdDSA", kid="a", now=1)
    single = KeySet([a])
    assert single.select(None) is a and single.select("a") is a
    with pytest.raises(UnknownKey):
        single.select("b")
    with pytest.raises(UnknownKey):
        single.select(7)
    both = KeySet([a, SigningKey.generate("EdDSA", kid="b", now=2)])
    with pytest.raises(UnknownKey, match="no kid"):
        both.select(None)
    assert both.signer.kid == "b", "the newest active key signs"


def test_verify_only_set_has_no_signer() -> None:
    key = SigningKey.generate("EdDSA")
    verifier = KeySet.from_jwks(KeySet([key]).public_jwks())
    assert not verifier.has_signer
    with pytest.raises(ConfigurationError):
        _ = verifier.signer


def test_rotation_lifecycle_in_memory() -> None:
    keyset = KeySet.generate("EdDSA", now=1000.0, max_token_ttl=600, leeway=30)
    old = keyset.signer
    version = keyset.version
    result = keyset.rotate(now=2000.0)
    assert keyset.version > version
    assert keyset.signer is result.signer and result.signer.kid != old.kid
    (demoted,) = result.demoted
    assert demoted.kid == old.kid and demoted.state(2000.0) == VERIFY_ONLY
    assert demoted.not_after == 2000.0 and demoted.retire_at == 2000.0 + 600 + 30
    assert keyset.get(old.kid) is not None, "the old key still verifies"
    assert keyset.retire_expired(2629.0) == []
    retired = keyset.retire_expired(2630.0)
    assert [k.kid for k in retired] == [old.kid] and retired[0].status == RETIRED
    assert keyset.get(old.kid) is None and old.kid not in keyset
    with pytest.raises(UnknownKey):
        keyset.select(old.kid)
    assert [k.kid for k in keyset.all()] == [old.kid, result.signer.kid]
    assert [k["kid"] for k in keyset.public_jwks()["keys"]] == [result.signer.kid]


def test_rotation_can_change_algorithm_and_moves_the_version() -> None:
    keyset = KeySet.generate("EdDSA")
    before = keyset.version
    keyset.rotate(now=10.0, alg="ES256")
    assert keyset.signer.alg == "ES256" and keyset.version == before + 1
    removed = keyset.remove(keyset.signer.kid)
    assert removed is not None and not keyset.has_signer and keyset.version == before + 2


def test_every_algorithm_in_the_registry_is_loadable() -> None:
    for name, spec in ALGORITHMS.items():
        key = SigningKey.generate(name) if spec.kty != "RSA" or name in ("RS256", "PS256") \
            else None
        if key is not None:
            assert key.alg == name


# --- persistence, on every backend ---------------------------------------------------


async def test_load_or_create_makes_one_signer_and_reuses_it(store: Store,
                                                              clock: FrozenClock) -> None:
    first = await keystore.load_or_create(store, clock=clock, max_token_ttl=600)
    again = await keystore.load_or_create(store, clock=clock, max_token_ttl=600)
    assert first.signer.kid == again.signer.kid and first.signer.alg == "RS256"
    message = b"shared"
    assert again.signer.verify_signature(
        message, first.signer.create_signature(message)  # type: ignore[misc]
    ), "the second instance holds the same private key"


async def test_instances_starting_together_agree_on_one_signer(store: Store,
                                                                 clock: FrozenClock) -> None:
    sets = await asyncio.gather(
        *(keystore.load_or_create(store, clock=clock, max_token_ttl=600) for _ in range(4))
    )
    assert len({s.signer.kid for s in sets}) == 1
    stored = await keystore.load(store)
    assert len(stored) == 1


async def test_rotation_is_shared_through_the_store(store: Store, clock: FrozenClock) -> None:
    mine = await keystore.load_or_create(store, clock=clock, algorithm="ES256",
                                         max_token_ttl=600, leeway=30)
    theirs = await keystore.load(store, max_token_ttl=600, leeway=30, clock=clock)
    old_kid = mine.signer.kid
    clock.advance(100)
    result = await keystore.rotate(store, mine, clock=clock)
    assert result.signer.alg == "ES256" and [k.kid for k in result.demoted] == [old_kid]
    assert theirs.signer.kid == old_kid
    assert await keystore.sync(store, theirs) is True
    assert theirs.signer.kid == result.signer.kid
    assert theirs.get(old_kid) is not None and theirs.get(old_kid).state(clock.now()) == VERIFY_ONLY  # type: ignore[union-attr]
    assert await keystore.sync(store, theirs) is False
    clock.advance(600 + 30)
    retired = await keystore.retire_expired(store, mine, clock=clock)
    assert [k.kid for k in retired] == [old_kid]
    reloaded = await keystore.load(store, clock=clock)
    assert reloaded.get(old_kid) is None
    record = await store.get(keystore.KIND, old_kid)
    assert record is not None and "d" not in record.value["jwk"], "retired: public half only"
    assert {k.kid: k.status for k in reloaded.all()}[old_kid] == RETIRED
    assert [k["kid"] for k in reloaded.public_jwks()["keys"]] == [result.signer.kid]


async def test_rotate_with_a_given_key_and_algorithm(store: Store, clock: FrozenClock) -> None:
    keyset = await keystore.load_or_create(store, clock=clock, max_token_ttl=600)
    new = SigningKey.generate("HS256", now=clock.now())
    result = await keystore.rotate(store, keyset, clock=clock, new_key=new)
    assert result.signer.kid == new.kid
    stored = await keystore.load(store, clock=clock)
    assert stored.signer.kid == new.kid and stored.signer.secret == new.secret
    with pytest.raises(ConfigurationError):
        keyset.rotate(stored.signer.with_status(VERIFY_ONLY), now=clock.now())
    clock.advance(10_000)
    (retired,) = await keystore.retire_expired(store, keyset, clock=clock)
    record = await store.get(keystore.KIND, retired.kid)
    assert record is not None
    assert record.value["jwk"] is None or "d" not in record.value["jwk"]
    relisted = {k.kid: k for k in (await keystore.load(store)).all()}
    assert relisted[retired.kid].status == RETIRED and not relisted[retired.kid].has_private


# --- the `authstate keys` command ----------------------------------------------------


def test_cli_generate_list_rotate_export(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from authstate.cli import app

    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    made = runner.invoke(app, ["keys", "generate", "--alg", "ES256", "--store", url, "--json"])
    assert made.exit_code == 0, made.output
    (first,) = json.loads(made.stdout)
    assert first["alg"] == "ES256" and first["state"] == "signing"
    again = runner.invoke(app, ["keys", "generate", "--store", url, "--json"])
    assert [k["kid"] for k in json.loads(again.stdout)] == [first["kid"]], "idempotent"

    rotated = runner.invoke(app, ["keys", "rotate", "--store", url, "--json"])
    assert rotated.exit_code == 0, rotated.output
    rows = {k["kid"]: k for k in json.loads(rotated.stdout)}
    # staged: the old key signs on until the new one, published now, takes over
    old_row = rows[first["kid"]]
    assert old_row["state"] == "signing" and old_row["retire_at"]
    assert old_row["next_state"] == "verify_only"
    (new_kid,) = [kid for kid, row in rows.items() if row["state"] == "published"]
    assert rows[new_kid]["alg"] == "ES256" and rows[new_kid]["next_state"] == "signing"
    assert rows[new_kid]["next_change_at"] == old_row["next_change_at"]

    listed = runner.invoke(app, ["keys", "list", "--store", url, "--json"])
    assert {k["kid"] for k in json.loads(listed.stdout)} == set(rows)
    table = runner.invoke(app, ["keys", "list", "--store", url])
    assert table.exit_code == 0 and "published" in table.stdout
    assert "signing at" in table.stdout and "verify_only at" in table.stdout

    exported = runner.invoke(app, ["keys", "export-jwks", "--store", url])
    jwks = json.loads(exported.stdout)
    assert {k["kid"] for k in jwks["keys"]} == set(rows)
    assert not PRIVATE_MEMBERS & {m for k in jwks["keys"] for m in k}
    out = tmp_path / "jwks.json"
    assert runner.invoke(app, ["keys", "export-jwks", "--store", url, "--out", str(out)]
                         ).exit_code == 0
    assert json.loads(out.read_text()) == jwks
    assert len(KeySet.from_jwks(jwks, public_only=True)) == 2


def test_cli_generate_to_a_file(tmp_path: Path) -> None:
    import stat

    from typer.testing import CliRunner

    from authstate.cli import app

    runner = CliRunner()
    jwk_file = tmp_path / "signer.jwk"
    made = runner.invoke(app, ["keys", "generate", "--alg", "EdDSA", "--out", str(jwk_file)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(jwk_file.stat().st_mode) == 0o600
    key = SigningKey.from_text(jwk_file.read_text())
    assert key.alg == "EdDSA" and key.has_private
    assert runner.invoke(app, ["keys", "generate", "--out", str(jwk_file)]).exit_code == 2
    pem_file = tmp_path / "signer.pem"
    assert runner.invoke(app, ["keys", "generate", "--alg", "ES256", "--out", str(pem_file),
                               "--pem"]).exit_code == 0
    assert SigningKey.from_pem(pem_file.read_bytes()).alg == "ES256"
    secret_file = tmp_path / "hs.jwk"
    assert runner.invoke(app, ["keys", "generate", "--alg", "HS256", "--out",
                               str(secret_file)]).exit_code == 0
    assert SigningKey.from_text(secret_file.read_text()).symmetric
    bad = runner.invoke(app, ["keys", "generate", "--alg", "XS1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown algorithm" in bad.output
