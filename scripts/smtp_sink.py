#!/usr/bin/python3
"""smtp_sink.py - accept-everything SMTP server for the op25b veth lab.

Run it with Debian's interpreter (/usr/bin/python3): it needs the
python3-aiosmtpd package, which a pyenv `python3` on PATH does not see.

    /usr/bin/python3 scripts/smtp_sink.py \
        --listen 203.0.113.80:25 --listen [2001:db8:ff::80]:465 \
        --tls-port 465 --cert cert.pem --key key.pem \
        --spool /run/op25b-lab/spool --pidfile /run/op25b-lab/smtp-up.pid

* One aiosmtpd Controller (own thread + event loop) per --listen address.
  The Controller `hostname` is the literal bind address (IPv6 without
  brackets).
* Ports named with --tls-port are served with implicit TLS (SMTPS, e.g. 465)
  using --cert/--key.  Every other port is plain SMTP (no STARTTLS).
* Every accepted message is written to SPOOL/<port>-<n>.eml and one JSON line
  {listen, peer, mail_from, rcpt_tos, bytes, file, tls} is appended to
  SPOOL/log.jsonl.  <n> counts per port and never overwrites an existing file.
* The pidfile is written once *all* listeners are up (so it doubles as a
  readiness marker) and removed on exit.
* Stays in the foreground until SIGTERM/SIGINT, then stops every Controller.

aiosmtpd's Controller.start() ends with a self-connect "ready" check
(InetMixin._trigger_server, aiosmtpd 1.4.3 as shipped by Debian 12): it does
socket.create_connection((hostname, port), 1.0), wraps it in TLS when an
ssl_context is set, and recv()s the greeting.  That works for bare IPv6
literals and for implicit TLS, but the fixed 1 s socket timeout is tight for
a TLS handshake on a busy build machine (a timeout there is swallowed and
start() then fails with "SMTP server started, but not responding").  The
subclass below does the same check with the generous ready_timeout instead.
"""

import argparse
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
from contextlib import ExitStack

try:
    from aiosmtpd.controller import Controller
except ImportError as exc:  # pragma: no cover
    sys.exit(
        f"smtp_sink: cannot import aiosmtpd ({exc}); install python3-aiosmtpd "
        f"and run with /usr/bin/python3 (this is {sys.executable})"
    )

BANNER_HOST = "smtp-sink.example.net"
READY_TIMEOUT = 30.0

log = logging.getLogger("smtp_sink")


def parse_listen(spec: str):
    """'1.2.3.4:25' or '[2001:db8::1]:25' -> (host, port, label)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)", spec) or re.fullmatch(
        r"([^:\[\]]+):(\d+)", spec
    )
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad --listen {spec!r}: want ADDR:PORT or [IPV6]:PORT"
        )
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"bad port in --listen {spec!r}")
    return host, port, fmt_addr(host, port)


def fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Spool:
    """Thread-safe message store shared by all listeners."""

    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.lock = threading.Lock()
        self.counters = {}  # port -> last n used
        self.logpath = os.path.join(directory, "log.jsonl")

    def store(self, port: int, record: dict, data: bytes) -> str:
        with self.lock:
            n = self.counters.get(port, 0)
            while True:
                n += 1
                name = f"{port}-{n}.eml"
                path = os.path.join(self.dir, name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                break
            self.counters[port] = n
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            record = dict(record, file=name)
            with open(self.logpath, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=False) + "\n")
            return name


class SinkHandler:
    """aiosmtpd handler: accept every envelope, spool it."""

    def __init__(self, spool: Spool, label: str, port: int, tls: bool):
        self.spool = spool
        self.label = label
        self.port = port
        self.tls = tls

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        peer = session.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            peer = fmt_addr(str(peer[0]), int(peer[1]))
        else:
            peer = str(peer)
        record = {
            "listen": self.label,
            "peer": peer,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "bytes": len(data),
            "tls": self.tls,
        }
        name = self.spool.store(self.port, record, data)
        print(
            f"smtp_sink: {self.label} <- {peer} from=<{envelope.mail_from}> "
            f"to={envelope.rcpt_tos} {len(data)} bytes -> {name}",
            flush=True,
        )
        return f"250 2.0.0 Ok: queued as {name[:-4]}"


class SinkController(Controller):
    """Controller whose ready check tolerates slow TLS handshakes."""

    def _trigger_server(self):
        timeout = max(self.ready_timeout, 1.0)
        with ExitStack() as stk:
            s = stk.enter_context(
                socket.create_connection((self.hostname, self.port), timeout)
            )
            if self.ssl_context:
                client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
                client_ctx.check_hostname = False
                client_ctx.verify_mode = ssl.CERT_NONE
                s = stk.enter_context(client_ctx.wrap_socket(s))
            s.recv(1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--listen", action="append", type=parse_listen, required=True,
                    metavar="ADDR:PORT", help="repeatable; IPv6 as [ADDR]:PORT")
    ap.add_argument("--tls-port", action="append", type=int, default=[],
                    metavar="PORT", help="port served with implicit TLS (repeatable)")
    ap.add_argument("--cert", help="PEM certificate for --tls-port listeners")
    ap.add_argument("--key", help="PEM private key for --tls-port listeners")
    ap.add_argument("--spool", required=True, metavar="DIR")
    ap.add_argument("--pidfile", metavar="FILE")
    ap.add_argument("--banner-host", default=BANNER_HOST,
                    help=f"name in greeting/EHLO (default {BANNER_HOST})")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log aiosmtpd session details")
    args = ap.parse_args()

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    tls_ports = set(args.tls_port)
    ssl_ctx = None
    if any(port in tls_ports for _, port, _ in args.listen):
        if not (args.cert and args.key):
            ap.error("--tls-port listeners need --cert and --key")
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.cert, args.key)

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    spool = Spool(args.spool)
    controllers = []
    rc = 0
    try:
        for host, port, label in args.listen:
            tls = port in tls_ports
            ctl = SinkController(
                SinkHandler(spool, label, port, tls),
                hostname=host,
                port=port,
                ssl_context=ssl_ctx if tls else None,
                ready_timeout=READY_TIMEOUT,
                server_hostname=args.banner_host,
            )
            try:
                ctl.start()
            except Exception as exc:
                # start() may leave its thread/loop running; stop it too.
                try:
                    ctl.stop(no_assert=True)
                except Exception:
                    pass
                raise RuntimeError(f"cannot start listener {label}: {exc!r}") from exc
            controllers.append(ctl)
            print(f"smtp_sink: listening on {label}{' (implicit TLS)' if tls else ''}",
                  flush=True)
            if stop.is_set():
                break

        if args.pidfile and not stop.is_set():
            tmp = f"{args.pidfile}.tmp.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, args.pidfile)

        print(f"smtp_sink: ready, pid {os.getpid()}, spool {args.spool}", flush=True)
        while not stop.wait(1.0):
            pass
        print("smtp_sink: signal received, stopping", flush=True)
    except Exception as exc:
        print(f"smtp_sink: error: {exc}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        for ctl in reversed(controllers):
            try:
                ctl.stop()
            except Exception as exc:
                print(f"smtp_sink: stopping {ctl.hostname}:{ctl.port}: {exc!r}",
                      file=sys.stderr, flush=True)
        if args.pidfile:
            try:
                with open(args.pidfile) as f:
                    mine = f.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(args.pidfile)
            except OSError:
                pass
    print("smtp_sink: stopped", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
