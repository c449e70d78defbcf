"""Status's primitives computed by libraries nobody here wrote, for herald's
interop test (crates/herald-status/tests/interop_vectors.rs): coincurve
(libsecp256k1) for recoverable signatures and raw ECDH, pycryptodome for
Keccak-256, SHAKE-256, AES-GCM and PBKDF2.

    python vectors.py < batch.json

stdin holds a JSON array of operations, all bytes as lowercase hex:
    {"op": "keccak256", "data": ...}                 -> {"digest": ...}
    {"op": "shake256_64", "data": ...}               -> {"digest": ...} (64 bytes)
    {"op": "public_key", "secret": ...}              -> {"public": <65 bytes, uncompressed>}
    {"op": "sign", "secret": ..., "digest": ...}     -> {"signature": R || S || V}
    {"op": "recover", "digest": ..., "signature": ...}
                                                     -> {"public": <65 bytes> or null}
    {"op": "ecdh_x", "secret": ..., "public": ...}   -> {"shared": <32 bytes>}
    {"op": "open_nonce_first", "key": ..., "blob": ...}
                                                     -> {"plaintext": ... or null}
    {"op": "seal_nonce_first", "key": ..., "plaintext": ...}
                                                     -> {"blob": nonce || ciphertext || tag}
    {"op": "pbkdf2_sha256", "password": "<text>", "rounds": n}
                                                     -> {"key": <32 bytes>}
stdout gets a JSON array with one result per operation, in order. Errors
go to stderr with a non-zero exit.
"""

import json
import sys

import coincurve
from coincurve._libsecp256k1 import ffi, lib
from Crypto.Cipher import AES
from Crypto.Hash import SHA256, SHAKE256, keccak
from Crypto.Protocol.KDF import PBKDF2
from Crypto.Random import get_random_bytes

NONCE_LEN = 12
TAG_LEN = 16


@ffi.callback("int(unsigned char *, const unsigned char *, const unsigned char *, void *)")
def copy_x(output, x32, _y32, _data):
    """libsecp256k1's ECDH hash function replaced by the bare x-coordinate."""
    ffi.memmove(output, x32, 32)
    return 1


def ecdh_x(secret, public):
    key = coincurve.PrivateKey(secret)
    out = ffi.new("unsigned char [32]")
    point = coincurve.PublicKey(public).public_key
    if lib.secp256k1_ecdh(key.context.ctx, out, point, key.secret, copy_x, ffi.NULL) != 1:
        raise ValueError("secp256k1_ecdh failed")
    return bytes(ffi.buffer(out, 32))


def recover(digest, signature):
    try:
        key = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except ValueError:
        return None
    return key.format(compressed=False).hex()


def open_nonce_first(key, blob):
    nonce, ciphertext, tag = blob[:NONCE_LEN], blob[NONCE_LEN:-TAG_LEN], blob[-TAG_LEN:]
    try:
        return AES.new(key, AES.MODE_GCM, nonce=nonce).decrypt_and_verify(ciphertext, tag).hex()
    except ValueError:
        return None


def seal_nonce_first(key, plaintext):
    nonce = get_random_bytes(NONCE_LEN)
    ciphertext, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(plaintext)
    return (nonce + ciphertext + tag).hex()


def run(op):
    b = lambda field: bytes.fromhex(op[field])  # noqa: E731
    name = op["op"]
    if name == "keccak256":
        return {"digest": keccak.new(digest_bits=256, data=b("data")).hexdigest()}
    if name == "shake256_64":
        return {"digest": SHAKE256.new(b("data")).read(64).hex()}
    if name == "public_key":
        return {"public": coincurve.PrivateKey(b("secret")).public_key.format(compressed=False).hex()}
    if name == "sign":
        return {"signature": coincurve.PrivateKey(b("secret")).sign_recoverable(b("digest"), hasher=None).hex()}
    if name == "recover":
        return {"public": recover(b("digest"), b("signature"))}
    if name == "ecdh_x":
        return {"shared": ecdh_x(b("secret"), b("public")).hex()}
    if name == "open_nonce_first":
        return {"plaintext": open_nonce_first(b("key"), b("blob"))}
    if name == "seal_nonce_first":
        return {"blob": seal_nonce_first(b("key"), b("plaintext"))}
    if name == "pbkdf2_sha256":
        key = PBKDF2(op["password"].encode(), b"", 32, count=op["rounds"], hmac_hash_module=SHA256)
        return {"key": key.hex()}
    raise ValueError(f"unknown operation {name}")


def main():
    batch = json.load(sys.stdin)
    json.dump([run(op) for op in batch], sys.stdout)


if __name__ == "__main__":
    main()
