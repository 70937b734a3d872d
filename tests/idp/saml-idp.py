#!/usr/bin/env python3
"""A real SAML 2.0 Identity Provider for the SAML SSO tests: pysaml2's `Server` on loopback.

    saml-idp.py --port PORT --dir DIR --sp-metadata FILE[,FILE...]

Entity id http://127.0.0.1:PORT/idp/metadata (its metadata is served there and written to
DIR/idp-metadata.xml); SSO endpoint (HTTP-Redirect) http://127.0.0.1:PORT/sso/redirect.
DIR holds the signing key and self-signed certificate (idp-key.pem, idp-cert.pem): created
on first start, reused afterwards. The SP metadata files are the trusted service providers;
responses go to their HTTP-POST AssertionConsumerService. An SP whose metadata says
AuthnRequestsSigned="true" must sign its redirect-binding requests (checked over the raw
query string, SAML bindings 3.4.4.1); a signature that is present is always checked.

  GET  /sso/redirect?SAMLRequest=..&RelayState=..[&SigAlg=..&Signature=..] -> login form
       (<form method="post" action="/login">, hidden `key`, text input `user`)
  POST /login  key=..&user=..  -> auto-submit form posting SAMLResponse + RelayState to the ACS
  GET  /unsolicited?sp=SP_ENTITY_ID&user=..  -> the same, IdP-initiated (no InResponseTo)

User `x` is x@example.com (NameID format emailAddress, attribute email); a user with an `@`
is that address. Response and assertion are both signed (RSA-SHA256, SHA-256, exc-c14n).

Test knobs (optional fields of POST /login, or query parameters of /unsolicited). Each
changes only that aspect; the result is still validly signed with the IdP key. They exist
only in this test script, to check that the SP refuses what it must refuse:
  sign_response=0|1, sign_assertion=0|1   (default 1 and 1)
  audience=URI          AudienceRestriction instead of the SP entity id
  recipient=URL         SubjectConfirmationData Recipient instead of the ACS URL
  destination=URL       Response Destination instead of the ACS URL
  time_offset=SECONDS   shift every timestamp (e.g. -7200: an expired assertion)
  name_id=VALUE         NameID text instead of the email (the email attribute stays)
  authn_class=URI       AuthnContextClassRef instead of PasswordProtectedTransport (e.g.
                        https://refeds.org/profile/mfa: the user passed a second factor)
"""
import argparse, base64, datetime, html, os, secrets, sys, threading, time, warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlsplit

warnings.filterwarnings("ignore", module="saml2")  # CryptographyDeprecationWarning (CFB) at import

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, time_util
from saml2.assertion import Policy
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.server import Server
from saml2.sigver import SIGNER_ALGS, extract_rsa_key_from_x509_cert, pem_format
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
LOCK = threading.Lock()  # pysaml2 is not thread-safe; the clock patch is process-wide
PENDING = {}  # key -> pending AuthnRequest (kept: a test may answer one request twice)


def ensure_keys(d):
    key_f, cert_f = os.path.join(d, "idp-key.pem"), os.path.join(d, "idp-cert.pem")
    if not (os.path.exists(key_f) and os.path.exists(cert_f)):
        os.makedirs(d, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse-test-saml-idp")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .sign(key, hashes.SHA256()))
        with open(key_f, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_f, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_f, cert_f


class ReleasePolicy(Policy):
    """Releases the identity as given (no metadata-driven filtering); 5-minute lifetime;
    optional Audience override (test knob)."""

    def __init__(self, mds, audience=None):
        super().__init__({"default": {"lifetime": {"minutes": 5}}}, mds=mds)
        self.audience = audience

    def restrict(self, ava, sp_entity_id, metadata=None):
        return dict(ava)

    def conditions(self, sp_entity_id):
        c = super().conditions(sp_entity_id)
        if self.audience:
            c.audience_restriction[0].audience[0].text = self.audience
        return c


class shifted_clock:
    """Shifts the clock of saml2.time_util (which every pysaml2 timestamp comes from) by
    `offset` seconds while building one response. Callers hold LOCK."""

    def __init__(self, offset):
        self.offset = offset

    def __enter__(self):
        off = self.offset

        class Time:  # stands in for the `time` module inside saml2.time_util
            def __getattr__(self, name):
                return getattr(time, name)

            def gmtime(self, secs=None):
                return time.gmtime(time.time() + off if secs is None else secs)

        class Datetime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.datetime.now(tz) + datetime.timedelta(seconds=off)

        self.saved = time_util.time, time_util.datetime
        if off:
            time_util.time, time_util.datetime = Time(), Datetime

    def __exit__(self, *exc):
        time_util.time, time_util.datetime = self.saved


def make_server(port, key_f, cert_f, sp_files):
    base = f"http://127.0.0.1:{port}"
    cfg = IdPConfig().load({
        "entityid": f"{base}/idp/metadata",
        "service": {"idp": {
            "name": "Gatehouse test SAML IdP",
            "endpoints": {"single_sign_on_service": [(f"{base}/sso/redirect", BINDING_HTTP_REDIRECT)]},
            "name_id_format": [saml.NAMEID_FORMAT_EMAILADDRESS],
            "want_authn_requests_signed": False,  # per SP, from its metadata (see sso_redirect)
            "sign_response": True, "sign_assertion": True,
            # per-service settings: ignored (RSA-SHA1 / SHA-1) at the top level of the config
            "signing_algorithm": SIG_RSA_SHA256, "digest_algorithm": DIGEST_SHA256,
        }},
        "key_file": key_f, "cert_file": cert_f,
        "metadata": {"local": sp_files},
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "accepted_time_diff": 120,
    })
    return Server(config=cfg)


def raw_redirect_signature_ok(idp, issuer, raw_query):
    """SAML bindings 3.4.4.1: the signature covers the parameters exactly as received."""
    raw = dict(p.split("=", 1) for p in raw_query.split("&") if "=" in p)
    if "Signature" not in raw or "SigAlg" not in raw:
        return False
    signer = SIGNER_ALGS.get(unquote_plus(raw["SigAlg"]))
    if signer is None:
        return False
    signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw)
    sig = base64.b64decode(unquote_plus(raw["Signature"]))
    return any(signer.verify(signed.encode("ascii"), sig, extract_rsa_key_from_x509_cert(pem_format(c)))
               for _, c in idp.metadata.certs(issuer, "spsso", "signing"))


def sp_wants_signed_requests(idp, sp):
    return any(str(d.get("authn_requests_signed", "")).lower() in ("true", "1")
               for d in idp.metadata[sp].get("spsso_descriptor", []))


def email_of(user):
    return user if "@" in user else f"{user}@example.com"


def build_response(idp, sp, acs, req_id, user, knobs):
    email = email_of(user)
    flag = lambda k: knobs.get(k, "1") not in ("0", "false", "no")  # noqa: E731
    identity = {"email": [email], "givenName": [user.split("@")[0].capitalize()], "sn": ["Tester"]}
    name_id = saml.NameID(format=saml.NAMEID_FORMAT_EMAILADDRESS, text=knobs.get("name_id") or email)
    with LOCK, shifted_clock(int(knobs.get("time_offset") or 0)):
        resp = idp.create_authn_response(
            identity, req_id, knobs.get("destination") or acs, sp, name_id=name_id,
            authn={"class_ref": knobs.get("authn_class") or PPT, "authn_auth": idp.config.entityid},
            sign_response=flag("sign_response"), sign_assertion=flag("sign_assertion"),
            release_policy=ReleasePolicy(idp.metadata, knobs.get("audience")),
            farg=Server.update_farg(req_id, knobs.get("recipient") or acs),
        )
    return base64.b64encode(str(resp).encode()).decode()


def page(title, body):
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


def post_form(acs, saml_response, relay_state):
    e = lambda s: html.escape(s, quote=True)  # noqa: E731
    return page("Continue", (
        f'<form method="post" action="{e(acs)}">'
        f'<input type="hidden" name="SAMLResponse" value="{e(saml_response)}">'
        f'<input type="hidden" name="RelayState" value="{e(relay_state)}">'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        "<script>document.forms[0].submit()</script>"))


class Handler(BaseHTTPRequestHandler):
    idp = None
    metadata_xml = ""

    def send(self, code, body, ctype="text/html; charset=utf-8"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        try:
            if u.path == "/idp/metadata":
                return self.send(200, self.metadata_xml, "application/samlmetadata+xml")
            if u.path == "/sso/redirect":
                return self.sso_redirect(u.query, q)
            if u.path == "/unsolicited":
                sp, user = q.get("sp", ""), q.get("user", "")
                acs = [s["location"] for s in self.idp.metadata.assertion_consumer_service(sp, BINDING_HTTP_POST)]
                if not acs or not user:
                    return self.send(400, "unknown sp (or no HTTP-POST ACS), or no user\n", "text/plain")
                return self.send(200, post_form(acs[0], build_response(self.idp, sp, acs[0], None, user, q), ""))
            self.send(404, "not found\n", "text/plain")
        except Exception as e:  # noqa: BLE001 - a test IdP reports, it does not crash
            self.send(400, f"{type(e).__name__}: {e}\n", "text/plain")

    def sso_redirect(self, raw_query, q):
        if "SAMLRequest" not in q:
            return self.send(400, "no SAMLRequest\n", "text/plain")
        with LOCK:
            req = self.idp.parse_authn_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
            sp = req.message.issuer.text.strip()
            if sp not in self.idp.metadata.keys():
                return self.send(400, f"unknown service provider {sp}\n", "text/plain")
            if (sp_wants_signed_requests(self.idp, sp) or "Signature" in q) and \
                    not raw_redirect_signature_ok(self.idp, sp, raw_query):
                return self.send(400, "AuthnRequest signature missing or invalid\n", "text/plain")
            args = self.idp.response_args(req.message, [BINDING_HTTP_POST])
        key = secrets.token_urlsafe(16)
        PENDING[key] = {"sp": sp, "acs": args["destination"], "id": req.message.id,
                        "relay_state": q.get("RelayState", "")}
        self.send(200, page("Sign in", (
            '<form method="post" action="/login">'
            f'<input type="hidden" name="key" value="{key}">'
            '<label>User <input type="text" name="user"></label>'
            '<button type="submit">Sign in</button></form>')))

    def do_POST(self):
        if urlsplit(self.path).path != "/login":
            return self.send(404, "not found\n", "text/plain")
        n = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}
        p = PENDING.get(form.get("key", ""))
        if p is None or not form.get("user"):
            return self.send(400, "unknown request key, or no user\n", "text/plain")
        try:
            b64 = build_response(self.idp, p["sp"], p["acs"], p["id"], form["user"], form)
        except Exception as e:  # noqa: BLE001
            return self.send(400, f"{type(e).__name__}: {e}\n", "text/plain")
        self.send(200, post_form(p["acs"], b64, p["relay_state"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--sp-metadata", required=True, help="comma-separated SP metadata files")
    a = ap.parse_args()
    key_f, cert_f = ensure_keys(a.dir)
    Handler.idp = make_server(a.port, key_f, cert_f, [f for f in a.sp_metadata.split(",") if f])
    ed = entity_descriptor(Handler.idp.config)
    ed.extensions = None  # pysaml2 lists every algorithm xmlsec1 has (md5 included): drop it
    Handler.metadata_xml = ed.to_string().decode()
    with open(os.path.join(a.dir, "idp-metadata.xml"), "w") as f:
        f.write(Handler.metadata_xml)
    httpd = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"saml-idp listening on http://127.0.0.1:{a.port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
