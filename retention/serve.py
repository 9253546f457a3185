"""``python -m retention.serve``: start the app, on this computer only unless told otherwise.

The app shows every customer in every dataset of its workspace. By default it listens on the
loopback address (``127.0.0.1``), so only this computer can open it. Serving it to a network
(``--host 0.0.0.0`` or an interface's address) is for a team server with sign-in configured
(an ``[auth]`` section in ``.streamlit/secrets.toml``); without sign-in it needs
``--allow-open`` and prints a warning. ``make run`` calls this; ``make run HOST=0.0.0.0
ALLOW_OPEN=1`` passes the two options.

The app checks the same rule when it starts (:func:`exposure_problem`), so running
``streamlit run app.py --server.address 0.0.0.0`` directly does not get around it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from retention.private import restrict_umask

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ROOT / ".streamlit" / "secrets.toml"
LOOPBACK = "127.0.0.1"
#: Set by ``--allow-open`` for the app's own check.
ALLOW_OPEN_ENV = "RETENTION_ALLOW_OPEN"


def is_loopback(host: str | None) -> bool:
    """True for an address only this computer can reach (``127.0.0.0/8``, ``::1``,
    ``localhost``). An empty address means every interface, so it is not."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a network interface


def sign_in_configured(secrets: Path = SECRETS) -> bool:
    """True when ``secrets`` has an ``[auth]`` section (Streamlit's built-in OIDC sign-in).

    Only the presence of the section is read: nothing from the file is ever printed."""
    try:
        with secrets.open("rb") as fh:
            return isinstance(tomllib.load(fh).get("auth"), dict)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def exposure_problem(host: str | None, *, allow_open: bool, secrets: Path = SECRETS) -> str | None:
    """Why serving on ``host`` is refused (None when it is fine): a network address with no
    sign-in, unless the user allowed it explicitly."""
    if is_loopback(host) or allow_open or sign_in_configured(secrets):
        return None
    where = f"address {host}" if host else "every network interface"
    return (
        f"The app would listen on {where} without sign-in, so anyone on the network could open "
        "it and read every customer in every dataset. Serve it on this computer only (the "
        f"default, {LOOPBACK}), configure sign-in (an [auth] section in .streamlit/secrets.toml, "
        "see the README), or, if the network is yours alone, pass --allow-open "
        "(make run HOST=... ALLOW_OPEN=1)."
    )


def open_warning(host: str) -> str:
    return (
        f"warning: serving on {host} WITHOUT sign-in: anyone who can reach this machine's port "
        "can read every dataset. Configure sign-in for a team server (README, 'Serving a team')."
    )


def streamlit_command(host: str, port: int) -> list[str]:
    """The command that starts the app."""
    return [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retention.serve", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK, help=f"address to listen on ({LOOPBACK})")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument(
        "--allow-open",
        action="store_true",
        help="listen on a network address even without sign-in (prints a warning)",
    )
    args = parser.parse_args(argv)
    problem = exposure_problem(args.host, allow_open=args.allow_open)
    if problem:
        sys.stderr.write(f"error: {problem}\n")
        return 2
    if not is_loopback(args.host) and not sign_in_configured():
        sys.stderr.write(open_warning(args.host) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if args.allow_open:
        env[ALLOW_OPEN_ENV] = "1"
    restrict_umask()
    command = streamlit_command(args.host, args.port)
    os.execve(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
