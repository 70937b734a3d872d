"""A real SMTP server on loopback for the origin's mail tests (aiosmtpd).

    python server.py --port P --out DIR --mode starttls|tls|plain [--cert C --key K]
                     [--user U --password W]

`starttls`: STARTTLS required before MAIL and before AUTH; `tls`: implicit TLS (the
whole connection); `plain`: no TLS. With --user, AUTH (PLAIN or LOGIN) is required and
only that user and password pass. Each message received is parsed with the standard
library's email package and written as DIR/<n>.json: envelope, headers, the text and HTML
parts (decoded), and whether the session was encrypted and authenticated. Prints
`READY <port>` once it accepts connections; runs until killed.
"""

import argparse
import email
import json
import os
import ssl
import sys
import time
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Writer:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)

        def part(kind):
            p = msg.get_body(preferencelist=(kind,))
            return p.get_content() if p is not None else None

        tls = session.ssl is not None or (
            server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "to": str(msg["To"]),
            "from": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "content_type": msg.get_content_type(),
            "text": part("plain"),
            "html": part("html"),
            "tls": tls,
            "authenticated": bool(session.authenticated),
        }
        self.n += 1
        tmp = os.path.join(self.out, f".{self.n:04}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.out, f"{self.n:04}.json"))
        return "250 OK"


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--mode", choices=["starttls", "tls", "plain"], required=True)
    a.add_argument("--cert")
    a.add_argument("--key")
    a.add_argument("--user")
    a.add_argument("--password")
    args = a.parse_args()
    os.makedirs(args.out, exist_ok=True)

    kwargs = {}
    if args.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        if args.mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
    if args.user:

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == args.user
                and auth_data.password.decode() == args.password
            )
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticate,
            auth_required=True,
            # Implicit TLS is encrypted from the start; STARTTLS must come before AUTH.
            auth_require_tls=args.mode == "starttls",
        )
    controller = Controller(Writer(args.out), hostname="127.0.0.1", port=args.port, server_hostname="localhost", **kwargs)
    controller.start()
    print(f"READY {args.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
