"""`python -m rnnlab.team up|down|status|remote` (what `./run team ...` runs): the team stack on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys

from rnnlab import RnnlabError
from rnnlab.team.services import HEALTHY, START, STOP, address, configure_dvc_remote
from rnnlab.team.stack import SERVICES, Stack, state_dir


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit code 2 (argparse would add a usage block), as rnnlab.cli does."""

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def service(name: str) -> str:
    if name not in SERVICES:
        raise argparse.ArgumentTypeError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    return name


def parse(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="./run team", description="The team stack: PostgreSQL, S3, MLflow.")
    parser.add_argument("--dir", default=None, help="the stack's state folder (default: $RNNLAB_TEAM_DIR or .team)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start the servers (all by default)"), ("down", "stop the servers (all by default)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("services", nargs="*", type=service, metavar="SERVICE", help=f"any of {', '.join(SERVICES)}")
    commands.add_parser("status", help="each server, its address and whether it answers")
    remote = commands.add_parser("remote", help="point a DVC remote of this repository at the stack's bucket")
    remote.add_argument("name", nargs="?", default="team")
    remote.add_argument("--default", action="store_true", help="and make it the default remote (in config.local)")
    return parser.parse_args(argv)


def up(stack: Stack, services: list[str]) -> None:
    for service in SERVICES:
        if service in services:
            START[service](stack)
            print(f"{service:<9} up    {address(stack, service)}")
    print(f"as the admin: source {stack.root / 'admin.env'}; read-only: source {stack.root / 'reader.env'}")


def down(stack: Stack, services: list[str]) -> None:
    for service in reversed(SERVICES):
        if service in services:
            STOP[service](stack)
            print(f"{service:<9} down")


def status(stack: Stack) -> int:
    if not (stack.root / "ports.json").is_file():
        print(f"no team stack in {stack.root} (./run team up)")
        return 3
    healthy = {service: HEALTHY[service](stack) for service in SERVICES}
    for service, ok in healthy.items():
        print(f"{service:<9} {'up' if ok else 'down':<5} {address(stack, service)}")
    return 0 if all(healthy.values()) else 3


def main(argv: list[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    stack = Stack(state_dir(opts.dir))
    try:
        if opts.command == "up":
            up(stack, opts.services or list(SERVICES))
        elif opts.command == "down":
            down(stack, opts.services or list(SERVICES))
        elif opts.command == "remote":
            configure_dvc_remote(stack, opts.name, default=opts.default)
            print(f"DVC remote {opts.name!r}: s3 bucket on {stack.s3_endpoint} (keys in .dvc/config.local)")
        else:
            return status(stack)
    except RnnlabError as e:
        print(f"rnnlab team: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
