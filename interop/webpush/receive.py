"""A browser's side of one Web Push message, with code nobody on herald wrote.

Generates a user agent's P-256 key pair and auth secret, prints the
subscription JSON on one line, serves one POST on 127.0.0.1:<port>, verifies
its VAPID header with PyJWT (ES256, key from `k`, audience = our origin),
decrypts the body with `http_ece` (aes128gcm), prints the plaintext on one
line, answers 201 and exits. Any failure exits non-zero with the reason.
"""

import base64
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


PORT = int(sys.argv[1])
ORIGIN = f"http://127.0.0.1:{PORT}"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = PRIVATE.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
AUTH = os.urandom(16)
RESULT = {}


def check_vapid(header: str) -> dict:
    if not header.startswith("vapid "):
        raise ValueError(f"Authorization is not VAPID: {header!r}")
    params = dict(part.strip().split("=", 1) for part in header[len("vapid "):].split(","))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(params["k"]))
    return jwt.decode(params["t"], key, algorithms=["ES256"], audience=ORIGIN,
                      options={"require": ["exp", "aud", "sub"]})


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        try:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding is {self.headers.get('Content-Encoding')!r}")
            if not self.headers.get("TTL", "").isdigit():
                raise ValueError("TTL header missing or not a number")
            claims = check_vapid(self.headers.get("Authorization", ""))
            plaintext = http_ece.decrypt(body, private_key=PRIVATE, auth_secret=AUTH, version="aes128gcm")
            RESULT["ok"] = {"plaintext": plaintext.decode(), "vapid": claims}
            self.send_response(201)
        except Exception as e:  # report every failure to the test
            RESULT["error"] = f"{type(e).__name__}: {e}"
            self.send_response(400)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = HTTPServer(("127.0.0.1", PORT), Handler)
    print(json.dumps({"endpoint": f"{ORIGIN}/push", "keys": {"p256dh": b64(PUBLIC), "auth": b64(AUTH)}}), flush=True)
    server.handle_request()
    if "ok" not in RESULT:
        print(RESULT.get("error", "no request arrived"), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(RESULT["ok"]), flush=True)


if __name__ == "__main__":
    main()
