#!/usr/bin/python3 -IS
"""check_esbridge - Nagios/Icinga plugin that prints an esbridge check's cached result.

One self-contained, standard-library-only file. Copy it to the plugin folder
(e.g. /usr/lib/nagios/plugins/check_esbridge, mode 755) and run it as

    /usr/lib/nagios/plugins/check_esbridge -H http://127.0.0.1:9108 -C NAME
    /usr/bin/python3 -I -S /usr/lib/nagios/plugins/check_esbridge -H ... -C NAME   # explicit

The shebang is "-IS" in one word: Linux hands everything after the interpreter path to it as
ONE argument, and python3 rejects "-I -S" as one argument. /usr/bin/python3 is Debian's and
Ubuntu's system interpreter (>= 3.8 needed); elsewhere run it with an explicit interpreter.

It asks the running service for one check's result:
``GET {url}/api/v1/checks/{name}/nagios[?group=k%3Dv]``, prints the body byte for byte
followed by one newline (none added when the body already ends with one), and exits with the
``X-Nagios-Exit-Code`` header (0-3). Every failure is exit 3 with ONE line ``UNKNOWN - ...``.

Start-up cost is the point of this file (Nagios runs it every few minutes per check): the HTTP
path imports only ``math``, ``sys``, ``time`` and the C modules ``_socket`` and ``posix``
(the environment without ``os``, which costs ~2 ms: ``_collections_abc``, ``posixpath``) - not
``socket`` (enum, selectors: ~6 ms), not ``http.client`` (email, re, urllib: ~24 ms), not
``argparse`` (~8 ms).
``ssl``/``socket`` are imported only for https URLs, ``json`` only to read an error body,
``esbridge`` only in ``--direct`` mode.
"""

import math
import sys
import time

__version__ = "0.1.0"
PROG = "check_esbridge"

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE = 1 << 20  # the service's bodies are <= 8 KiB; anything near 1 MiB is not esbridge

USAGE = f"""\
Usage:
  {PROG} -H URL -C NAME [-g KEY=VALUE] [-t SECONDS] [--max-age SECONDS]
                 [--token-file PATH] [-v[v]]
  {PROG} --direct --checks PATH [--checks PATH ...] -C NAME [--es-url URL]
                 [--config PATH] [-t SECONDS]
  {PROG} -h | -V
"""

HELP = f"""\
{PROG} {__version__}
Prints the cached result of one esbridge check in Nagios plugin format and exits
with its state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

{USAGE}
Options:
  -H, --url URL          esbridge service base URL (default: $ESBRIDGE_URL),
                         e.g. http://127.0.0.1:9108
  -C, --check NAME       check name
  -g, --group KEY=VALUE  state of one group of a grouped check (e.g. host=web-01);
                         repeat for checks grouped by several fields
  -t, --timeout SECONDS  give up after this long (default {DEFAULT_TIMEOUT:g}) -> UNKNOWN
      --max-age SECONDS  UNKNOWN when the result is older than this
      --token-file PATH  read the API token from PATH (default: $ESBRIDGE_TOKEN);
                         sent as "Authorization: Bearer". There is no option taking
                         the token itself: command lines are visible to every user.
  -v, --verbose          -v: print the URL fetched (to stderr); -vv: also timings
  -h, --help             this help (exit 3)
  -V, --version          print the version (exit 3, like the Monitoring Plugins)

Direct mode (evaluates the check against Elasticsearch, without the service;
needs the esbridge Python package):
      --direct           evaluate now instead of asking the service
      --checks PATH      check definition file or folder (repeatable)
      --es-url URL       Elasticsearch URL (default: from the configuration)
      --config PATH      esbridge configuration file

Output: the service's text unchanged, plus one trailing newline.
"""


class Fail(Exception):
    """Stop with UNKNOWN and this one-line message."""


class UsageError(Fail):
    """Bad command line: the message gets ' (see --help)'."""


# --------------------------------------------------------------------------- options

# option -> (destination, takes_value)
_OPTIONS = {
    "-H": ("url", True),
    "--url": ("url", True),
    "-C": ("check", True),
    "--check": ("check", True),
    "-g": ("groups", True),
    "--group": ("groups", True),
    "-t": ("timeout", True),
    "--timeout": ("timeout", True),
    "--max-age": ("max_age", True),
    "--token-file": ("token_file", True),
    "-v": ("verbose", False),
    "--verbose": ("verbose", False),
    "-h": ("help", False),
    "--help": ("help", False),
    "-V": ("version", False),
    "--version": ("version", False),
    "--direct": ("direct", False),
    "--checks": ("checks", True),
    "--es-url": ("es_url", True),
    "--config": ("config", True),
}
_REPEATABLE = {"groups", "checks"}


def getenv(name: str) -> str:
    """An environment variable, "" when unset; through ``posix``, not ``os`` (start-up cost)."""
    try:
        import posix
    except ImportError:  # not a POSIX system
        import os

        return os.environ.get(name, "")
    value = posix.environ.get(name.encode())
    return "" if value is None else value.decode("utf-8", "surrogateescape")


def parse_args(argv):
    """Parse argv (without the program name) into a dict; raise UsageError."""
    opts = {"groups": [], "checks": [], "verbose": 0}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            name, eq, attached = arg.partition("=")
            value = attached if eq else None
            if name in ("--token", "--password"):
                raise UsageError(
                    f"{name} is not accepted on the command line (it would be visible to every "
                    "user); use $ESBRIDGE_TOKEN or --token-file"
                )
        elif arg.startswith("-") and len(arg) > 1:
            name, value = arg[:2], (arg[2:] or None)
            spec = _OPTIONS.get(name)
            # clustered flags: -vv, -vV ...
            if value is not None and spec is not None and not spec[1]:
                for ch in arg[1:]:
                    if f"-{ch}" not in _OPTIONS or _OPTIONS[f"-{ch}"][1]:
                        raise UsageError(f"unknown option '-{ch}' in '{arg}'")
                    args.insert(i, f"-{ch}")
                continue
        else:
            raise UsageError(f"unexpected argument '{arg}'")
        spec = _OPTIONS.get(name)
        if spec is None:
            raise UsageError(f"unknown option '{name}'")
        dest, takes_value = spec
        if not takes_value:
            if value is not None:
                raise UsageError(f"option '{name}' takes no value")
            opts[dest] = opts.get(dest, 0) + 1 if dest == "verbose" else True
            continue
        if value is None:
            if i >= len(args):
                raise UsageError(f"option '{name}' needs a value")
            value = args[i]
            i += 1
        if dest in _REPEATABLE:
            opts[dest].append(value)
        elif dest in opts:
            raise UsageError(f"option '{name}' given twice")
        else:
            opts[dest] = value
    return opts


def _seconds(opts, key, flag):
    text = opts.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{flag} must be a positive number of seconds, not '{text}'")
    return value


# --------------------------------------------------------------------------- URL handling

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text):
    """Percent-encode everything but RFC 3986 unreserved characters (UTF-8; an argument's
    bytes that were not UTF-8 are sent as they came)."""
    raw = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in raw)


def split_url(url):
    """'http://host:port/prefix' -> (scheme, host, port, prefix); raise UsageError."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise UsageError(f"--url must start with http:// or https://, not '{url}'")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        raise UsageError("--url must not contain credentials; use $ESBRIDGE_TOKEN or --token-file")
    if netloc.startswith("["):  # [IPv6]:port
        host, bracket, after = netloc[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise UsageError(f"bad host in --url '{url}'")
        port_text = after[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise UsageError(f"no host in --url '{url}'")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad port in --url '{url}'")
        port = int(port_text)
    else:
        port = 443 if scheme == "https" else 80
    prefix = ("/" + path).rstrip("/") if slash else ""
    if "?" in prefix or "#" in prefix:
        raise UsageError(f"--url must be a base URL without query, not '{url}'")
    return scheme, host, port, prefix


# --------------------------------------------------------------------------- HTTP client


class Timeout(Exception):
    pass


class _Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise Timeout
        return left


def _connect(scheme, host, port, deadline):
    if scheme == "https":
        import socket
        import ssl

        raw = socket.create_connection((host, port), timeout=deadline.left())
        return ssl.create_default_context().wrap_socket(raw, server_hostname=host)
    import _socket  # the C module under `socket`: same calls, none of its import cost

    # An ASCII host goes as bytes: a str host is run through the "idna" codec, whose import
    # (stringprep, unicodedata, re, enum) costs ~16 ms - more than everything else together.
    name = host.encode("ascii") if host.isascii() else host
    err = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            err = exc
    raise err or OSError("no address")


def http_get(scheme, host, port, target, headers, deadline, timing):
    """One HTTP/1.1 GET with Connection: close. Returns (status, headers, body)."""
    t0 = time.monotonic()
    sock = _connect(scheme, host, port, deadline)
    timing["connect"] = time.monotonic() - t0
    try:
        host_header = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            host_header += f":{port}"
        lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Connection: close", "", ""]
        sock.settimeout(deadline.left())
        sock.sendall("\r\n".join(lines).encode("utf-8"))
        chunks, size = [], 0
        while True:
            sock.settimeout(deadline.left())
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise Fail(f"unexpected answer from esbridge: more than {MAX_RESPONSE} bytes")
    finally:
        sock.close()
    timing["total"] = time.monotonic() - t0
    return parse_response(b"".join(chunks))


def parse_response(raw):
    """Raw HTTP/1.x response bytes -> (status, {lower-name: value}, body). Raise Fail."""
    if not raw:
        raise Fail("unexpected answer from esbridge: connection closed without a response")
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise Fail("unexpected answer from esbridge: response headers cut short")
    head_lines = head.decode("latin-1").split("\r\n")
    parts = head_lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Fail(f"unexpected answer from esbridge: not HTTP ({_snippet(raw)})")
    status = int(parts[1])
    headers = {}
    for line in head_lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise Fail(f"unexpected answer from esbridge: bad Content-Length '{length}'")
        if len(body) < int(length):
            raise Fail(
                f"unexpected answer from esbridge: body truncated "
                f"(got {len(body)} of {int(length)} bytes)"
            )
        body = body[: int(length)]
    return status, headers, body


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _dechunk(data):
    # Chunk sizes are plain hex digits only (RFC 9112 7.1): int() would also take "-6",
    # "+6", " 6" or "6_0", and a negative size walks backwards forever. With sizes >= 0
    # every round moves forward by at least 3 bytes, so the loop ends on any input.
    out, pos = [], 0
    while True:
        end = data.find(b"\r\n", pos)
        size_text = data[pos:end].split(b";")[0].strip(b" \t") if end >= 0 else b""
        if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
            raise Fail("unexpected answer from esbridge: body truncated (bad chunk)")
        size = int(size_text, 16)
        if size == 0:
            return b"".join(out)
        start = end + 2
        if len(data) < start + size + 2:
            raise Fail("unexpected answer from esbridge: body truncated (incomplete chunk)")
        out.append(data[start : start + size])
        pos = start + size + 2


def _snippet(data, limit=60):
    text = data[:limit].decode("utf-8", "replace")
    text = " ".join(text.split())
    return repr(text + ("..." if len(data) > limit else ""))


def _json_error(headers, body):
    """Decode a JSON error body (lazy json import); {} when it is not one."""
    if "json" not in headers.get("content-type", ""):
        return {}
    import json

    try:
        data = json.loads(body.decode("utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- modes


def _read_token(opts):
    path = opts.get("token_file")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise Fail(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise Fail(f"--token-file {path} is not UTF-8 text") from None
        where = f"--token-file {path}"
    else:
        token = getenv("ESBRIDGE_TOKEN").strip()
        where = "$ESBRIDGE_TOKEN"
    if path is not None and not token:
        raise Fail(f"--token-file {path} is empty")
    if any(c in token for c in "\r\n\0") or not token.isprintable():
        raise Fail(f"the token from {where} contains control characters")
    return token, where


def _describe_state(first_line):
    return first_line.split("|", 1)[0].strip()


def run_http(opts):
    url = opts.get("url") or getenv("ESBRIDGE_URL")
    if not url:
        raise UsageError("no esbridge URL: give -H/--url or set $ESBRIDGE_URL")
    check = opts.get("check")
    if not check:
        raise UsageError("no check name: give -C/--check")
    for group in opts["groups"]:
        if "=" not in group or not group.partition("=")[0]:
            raise UsageError(f"-g/--group must be KEY=VALUE, not '{group}'")
    timeout = _seconds(opts, "timeout", "-t/--timeout") or DEFAULT_TIMEOUT
    max_age = _seconds(opts, "max_age", "--max-age")
    scheme, host, port, prefix = split_url(url)
    base = url.rstrip("/")
    token, token_source = _read_token(opts)

    target = f"{prefix}/api/v1/checks/{quote(check)}/nagios"
    if opts["groups"]:
        target += "?" + "&".join("group=" + quote(g) for g in opts["groups"])
    headers = {"Accept": "text/plain", "User-Agent": f"{PROG}/{__version__}"}
    if token:
        headers["Authorization"] = "Bearer " + token

    verbose = opts["verbose"]
    if verbose:
        auth = f", token from {token_source}" if token else ""
        _err(f"{PROG}: GET {scheme}://{host}:{port}{target}{auth}")

    timing = {}
    deadline = _Deadline(timeout)
    try:
        status, resp_headers, body = http_get(scheme, host, port, target, headers, deadline, timing)
    except (Timeout, TimeoutError):
        raise Fail(f"esbridge at {base} did not answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise Fail(f"cannot reach esbridge at {base}: connection refused") from None
    except OSError as exc:
        if type(exc).__name__ == "gaierror":
            raise Fail(f"cannot reach esbridge at {base}: cannot resolve host '{host}'") from None
        if type(exc).__name__.startswith("SSL"):
            raise Fail(f"cannot reach esbridge at {base}: TLS error: {exc}") from None
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise Fail(f"cannot reach esbridge at {base}: {reason.lower()}") from None

    if verbose >= 2:
        _err(
            f"{PROG}: HTTP {status} in {timing['total'] * 1000:.1f} ms "
            f"(connect {timing['connect'] * 1000:.1f} ms), {len(body)} bytes"
        )

    if status != 200:
        raise Fail(_http_error(status, resp_headers, body, check, token))

    content_type = resp_headers.get("content-type", "").lower()
    if "html" in content_type or body.lstrip()[:1] == b"<":
        raise Fail(
            f"unexpected answer from esbridge: an HTML page, not plugin output "
            f"(is {base} the esbridge service?)"
        )
    code_text = resp_headers.get("x-nagios-exit-code")
    if code_text is None:
        raise Fail("unexpected answer from esbridge: no X-Nagios-Exit-Code header")
    if code_text not in ("0", "1", "2", "3"):
        raise Fail(f"unexpected answer from esbridge: X-Nagios-Exit-Code '{code_text}'")
    if not body.strip():
        raise Fail("unexpected answer from esbridge: empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("unexpected answer from esbridge: body is not UTF-8") from None

    if max_age is not None and code_text != "3":
        evaluated = resp_headers.get("x-esbridge-evaluated-at")
        last = _describe_state(text.split("\n", 1)[0])
        if evaluated is None:
            raise Fail(f"result for {check} has no evaluation time (max-age {max_age:g} s)")
        try:
            age = time.time() - float(evaluated)
        except ValueError:
            age = math.nan
        if not math.isfinite(age):  # "nan" or "inf" would compare as fresh
            raise Fail(
                f"unexpected answer from esbridge: X-Esbridge-Evaluated-At '{_one_line(evaluated)}'"
                f" (max-age {max_age:g} s)"
            )
        if age > max_age:
            raise Fail(
                f"result for {check} is {age:.0f} s old (max-age {max_age:g} s), "
                f"last result: {last}"
            )

    _out(body if body.endswith(b"\n") else body + b"\n")
    return int(code_text)


def _http_error(status, headers, body, check, token):
    if status in (401, 403):
        if token:
            return (
                f"esbridge refused the token (HTTP {status}), "
                "check $ESBRIDGE_TOKEN or the --token-file content"
            )
        return (
            f"esbridge requires a token (HTTP {status}), "
            "set $ESBRIDGE_TOKEN or give --token-file PATH"
        )
    data = _json_error(headers, body)
    message = data.get("error") if isinstance(data.get("error"), str) else None
    if status == 404 and data:
        text = message or f"no check named '{check}'"
        suggestions = [s for s in data.get("did_you_mean") or () if isinstance(s, str)]
        if suggestions:
            text += ", did you mean: " + ", ".join(suggestions) + "?"
        return " ".join(text.split())
    text = f"esbridge answered HTTP {status} for check {check}"
    if message:
        text += ": " + message
    elif status == 404:
        text += " (is the URL the esbridge service?)"
    return " ".join(text.split())


def run_direct(opts):
    check = opts.get("check")
    if not check:
        raise UsageError("no check name: give -C/--check")
    if not opts["checks"]:
        raise UsageError("--direct needs --checks PATH (a check file or folder)")
    for bad in ("groups", "max_age", "url", "token_file"):
        if opts.get(bad):
            flag = {"groups": "-g", "max_age": "--max-age", "url": "-H"}.get(bad, "--token-file")
            raise UsageError(f"{flag} does not apply to --direct")
    timeout = _seconds(opts, "timeout", "-t/--timeout") or DEFAULT_TIMEOUT
    if sys.flags.no_site:
        # Installed by pip, this file runs as "<its python> -IS": the HTTP path needs only the
        # standard library; direct mode adds the interpreter's site-packages (where pip put
        # esbridge) only now, so the common path never pays for it.
        import site

        site.main()
    try:
        from esbridge.cli import run_one
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").startswith("esbridge"):
            raise Fail("direct mode needs the esbridge package installed") from None
        raise Fail(f"direct mode cannot load esbridge: {exc}") from None

    import signal

    def on_alarm(signum, frame):
        raise Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        text, code = run_one(opts["checks"], check, opts.get("es_url"), opts.get("config"))
    except Timeout:
        raise Fail(f"direct evaluation of {check} did not finish within {timeout:g} s") from None
    except Exception as exc:
        raise Fail(f"direct evaluation of {check} failed: {type(exc).__name__}: {exc}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if code not in (0, 1, 2, 3):
        raise Fail(f"direct evaluation of {check} returned exit code {code!r}")
    data = text.encode("utf-8")
    _out(data if data.endswith(b"\n") else data + b"\n")
    return code


# --------------------------------------------------------------------------- main


def _out(data):
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _text(text):
    """A message as bytes: an argument that was not UTF-8 (a surrogate here) is escaped."""
    return text.encode("utf-8", "backslashreplace")


def _err(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    """Run the plugin; return the exit code (0-3)."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts = parse_args(argv)
        if opts.get("help"):
            _out(HELP.encode("utf-8"))
            return UNKNOWN
        if opts.get("version"):
            _out(f"{PROG} {__version__}\n".encode())
            return UNKNOWN
        if opts.get("direct"):
            return run_direct(opts)
        if opts["checks"] or opts.get("es_url") or opts.get("config"):
            raise UsageError("--checks, --es-url and --config need --direct")
        return run_http(opts)
    except UsageError as exc:
        _out(_text(f"UNKNOWN - {_one_line(exc)} (see --help)\n"))
        return UNKNOWN
    except Fail as exc:
        _out(_text(f"UNKNOWN - {_one_line(exc)}\n"))
        return UNKNOWN
    except KeyboardInterrupt:
        _out(b"UNKNOWN - interrupted\n")
        return UNKNOWN
    except Exception as exc:  # a plugin must never die with a traceback and exit 1
        _out(_text(f"UNKNOWN - internal error in {PROG}: {type(exc).__name__}: {_one_line(exc)}\n"))
        return UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
