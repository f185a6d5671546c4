#!/usr/bin/env python3
"""A small OpenID Connect provider for the portal's login test: discovery, JWKS, an
authorization endpoint that approves at once (as the user named in the file WHO: `NAME ROLE
[AUDIENCE]`, ROLE `-` for none), and a token endpoint that checks the code, the client secret,
the redirect URI and the PKCE verifier before it issues an RS256 ID token signed with openssl.

    oidc_provider.py PORT DIR CLIENT_ID CLIENT_SECRET

It writes DIR/ready when it listens. Test use only: one key, codes in memory, no consent.
"""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR, CLIENT_ID, CLIENT_SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ISSUER = f"http://127.0.0.1:{PORT}"
KEY = os.path.join(DIR, "oidc-key.pem")
CODES = {}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key():
    subprocess.run(["openssl", "genrsa", "-out", KEY, "2048"], check=True, capture_output=True)
    modulus = subprocess.run(["openssl", "rsa", "-in", KEY, "-noout", "-modulus"], check=True,
                             capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    return {"kty": "RSA", "kid": "test-key", "alg": "RS256", "use": "sig",
            "n": b64url(bytes.fromhex(modulus)), "e": b64url((65537).to_bytes(3, "big"))}


JWK = make_key()


def sign(claims):
    header = b64url(json.dumps({"alg": "RS256", "kid": "test-key", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=f"{header}.{body}".encode(),
                            check=True, capture_output=True).stdout
    return f"{header}.{body}.{b64url(signed)}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=None, location=None):
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/.well-known/openid-configuration":
            return self.answer(200, {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/authorize",
                                     "token_endpoint": ISSUER + "/token", "jwks_uri": ISSUER + "/jwks"})
        if url.path == "/jwks":
            return self.answer(200, {"keys": [JWK]})
        if url.path == "/authorize":
            if (query.get("response_type") != "code" or query.get("client_id") != CLIENT_ID
                    or query.get("code_challenge_method") != "S256" or "openid" not in query.get("scope", "")):
                return self.answer(400, {"error": "invalid_request"})
            with open(os.path.join(DIR, "WHO")) as who:
                parts = who.read().split()
            code = secrets.token_urlsafe(16)
            CODES[code] = {"who": parts, "nonce": query["nonce"], "challenge": query["code_challenge"],
                           "redirect_uri": query["redirect_uri"]}
            back = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": query["state"]})
            return self.answer(302, location=back)
        return self.answer(404, {"error": "not_found"})

    def do_POST(self):
        if self.path != "/token":
            return self.answer(404, {"error": "not_found"})
        form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
        grant = CODES.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "").encode()
        if (grant is None or form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET
                or form.get("redirect_uri") != grant["redirect_uri"]
                or b64url(hashlib.sha256(verifier).digest()) != grant["challenge"]):
            return self.answer(400, {"error": "invalid_grant"})
        name, role = grant["who"][0], grant["who"][1]
        audience = grant["who"][2] if len(grant["who"]) > 2 else CLIENT_ID
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "sub": "sub-" + name, "preferred_username": name,
                  "iat": now, "exp": now + 300, "nonce": grant["nonce"]}
        if role != "-":
            claims["dhcp_role"] = [role]
        return self.answer(200, {"access_token": "unused", "token_type": "Bearer", "id_token": sign(claims)})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
open(os.path.join(DIR, "ready"), "w").close()
server.serve_forever()
