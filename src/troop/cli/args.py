"""The grammar of the `troop` command line: argparse parsers, the `--` split, and the checks
argparse cannot express.

Two rules shape it (both are part of the stable surface in DESIGN.md):

* Target and job options (`--os`, `--tag`, `--one`, `--json`, ...) may stand anywhere among a
  command's options before `--`.  Plain argparse stops filling `nargs="*"` positionals at the
  first option, so leaf commands parse "intermixed" (see `_Parser`).
* Everything after the first `--` is the remote program, verbatim.  We cut argv there ourselves
  instead of letting argparse see `--`: its handling differs between Python versions and is
  wrong in intermixed mode on 3.11 (the `--` is kept as a stray argument).  For `plugin run`
  they are the action's arguments.

Each leaf sets `handler` ("module:function" under troop.cli) so main.py can import only the
code the command needs.  Likewise only the command being run is built in full
(`build_parser(command)`): a leaf costs argparse a fraction of a millisecond to build, and
`troop ping` should not pay for every other command's options.
"""

from __future__ import annotations

import argparse
import math
import re  # argparse imports it anyway: free

from troop import __version__

TYPE_CHECKING = False  # `typing` costs milliseconds to import; see main.py
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

DEFAULT_URL = "http://127.0.0.1:6858"
DEFAULT_CMD_TIMEOUT = 60.0
# A ping that waits a minute for one stuck host is useless; an answering scout replies in ms.
DEFAULT_PING_TIMEOUT = 10.0
DEFAULT_MAX_OUTPUT = 1 << 20
# A push waits for every host to download the file; large files over slow links take time.
DEFAULT_PUSH_TIMEOUT = 300.0
DEFAULT_MAX_BYTES = 1 << 20
# Installing plugins downloads files; a restart waits for the new scout; an upgrade also runs
# pip and may roll back (docs/plugins.md).
DEFAULT_PLUGIN_UPDATE_TIMEOUT = 300.0
DEFAULT_RESTART_TIMEOUT = 120.0
DEFAULT_UPGRADE_TIMEOUT = 300.0
# The rules of docs/plugins.md (the General checks them too): a NAME, and a VERSION to pin.
PLUGIN_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
PLUGIN_VERSION = r"v?[0-9]+(\.[0-9]+)*"
ROLES = ("admin", "operator", "viewer")

_EPILOG = """\
examples:
  troop cmd 'web*' -- uptime
  troop file push 'web*' ./app.conf /etc/app.conf --mode 0644 --backup
  troop file read db1 /etc/hostname
  troop plugin run 'web*' disk_report check -- --verbose
  troop scout upgrade '*' --to ./troopstack-0.2.0-py3-none-any.whl

TARGET is a comma-separated list of host names; globs are allowed ('*' is every host).
It combines with --os, --tag (all must match) and --one (any one matching online host).

exit status: 0 every targeted host succeeded (or the call worked), 1 some host did not,
             2 usage or API error, 130 interrupted.
environment: TROOP_URL, TROOP_TOKEN, TROOP_TOKEN_FILE; NO_COLOR turns colour off.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that, when `intermixed` is set, lets options and positionals mix.

    The subcommand machinery calls `parse_known_args` on the chosen leaf; routing that call
    to `parse_known_intermixed_args` (which itself calls back into `parse_known_args`, hence
    the re-entrancy flag) is the one hook argparse offers for it.
    """

    intermixed = False
    _inside = False

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if not self.intermixed or self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def env_pair(text: str) -> tuple[str, str]:
    """Parse one `--env K=V`; the value may be empty or contain '='."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _byte_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def octal_mode(text: str) -> str:
    """`--mode`: 3 or 4 octal digits, passed on as typed (`644`, `0644`, `4755`)."""
    if not 3 <= len(text) <= 4 or any(c not in "01234567" for c in text):
        raise argparse.ArgumentTypeError(f"expected 3 or 4 octal digits such as 0644, got {text!r}")
    return text


def plugin_name(text: str) -> str:
    if not re.fullmatch(PLUGIN_NAME, text):
        raise argparse.ArgumentTypeError(
            f"expected a plugin name (letters, digits, '_', '.', '-'), got {text!r}"
        )
    return text


def plugin_spec(text: str) -> tuple[str, str | None]:
    """`NAME` or `NAME:VERSION` (e.g. `hello:v1.2.0`) as (name, version or None)."""
    name, sep, version = text.partition(":")
    if not re.fullmatch(PLUGIN_NAME, name) or (sep and not re.fullmatch(PLUGIN_VERSION, version)):
        raise argparse.ArgumentTypeError(
            f"expected NAME or NAME:VERSION such as hello:v1.2.0, got {text!r}"
        )
    return name, version if sep else None


def _connection_options(parser: argparse.ArgumentParser, *, hidden: bool) -> None:
    # Leaves repeat these (hidden, SUPPRESS default) so `troop ping web1 --url X` works too
    # without overwriting a value given before the command.
    default = argparse.SUPPRESS if hidden else None

    def helptext(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    parser.add_argument(
        "--url", default=default,
        help=helptext(f"the General's API (env TROOP_URL; default {DEFAULT_URL})"),
    )
    parser.add_argument("--token", default=default, help=helptext("API token (env TROOP_TOKEN)"))
    parser.add_argument(
        "--token-file", metavar="PATH", default=default,
        help=helptext("read the token from PATH (env TROOP_TOKEN_FILE)"),
    )


def _leaf(
    sub: argparse._SubParsersAction[_Parser], name: str, handler: str, helptext: str, **kw: Any
) -> _Parser:
    parser = sub.add_parser(name, help=helptext, description=helptext, **kw)
    parser.intermixed = True
    parser.set_defaults(handler=handler, parser=parser)
    _connection_options(parser, hidden=True)
    return parser


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _job_options(
    parser: argparse.ArgumentParser, default_timeout: float, *, stream: bool = True
) -> None:
    group = parser.add_argument_group("target and job options (anywhere before --)")
    group.add_argument("--os", choices=("linux", "windows"), help="only hosts with this OS")
    group.add_argument(
        "--tag", action="append", default=[], metavar="TAG",
        help="only hosts with this tag (repeat: every tag must match)",
    )
    group.add_argument("--one", action="store_true", help="any one matching online host")
    group.add_argument(
        "--timeout", type=_seconds, default=default_timeout, metavar="SECONDS",
        help=f"per-host deadline (default {default_timeout:g})",
    )
    group.add_argument("--json", action="store_true", help="print one JSON object at the end")
    group.add_argument(
        "--async", dest="detach", action="store_true", help="print the job id and leave"
    )
    if stream:
        group.add_argument(
            "--stream", action="store_true", help="print output lines live, prefixed by host"
        )


def _add_ping(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    ping = _leaf(sub, "ping", "commands_jobs:run_ping", helptext)
    ping.add_argument("target", metavar="TARGET")
    _job_options(ping, DEFAULT_PING_TIMEOUT)


def _add_cmd(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    cmd = _leaf(
        sub, "cmd", "commands_jobs:run_cmd", helptext,
        usage="troop cmd TARGET [options] -- PROGRAM [ARGS...]",
    )
    cmd.add_argument("target", metavar="TARGET")
    cmd.add_argument("program", nargs="*", metavar="PROGRAM", help="program and arguments")
    cmd.set_defaults(tail_dest="program")
    cmd.add_argument(
        "--env", type=env_pair, action="append", default=[], metavar="K=V",
        help="set an environment variable (repeatable)",
    )
    cmd.add_argument("--dir", metavar="DIR", help="working directory on the host")
    cmd.add_argument(
        "--shell", action="store_true", help="join PROGRAM and ARGS into one shell command line"
    )
    cmd.add_argument(
        "--max-output", type=_positive_int, default=DEFAULT_MAX_OUTPUT, metavar="BYTES",
        help=f"cap on each of stdout and stderr (default {DEFAULT_MAX_OUTPUT})",
    )
    _job_options(cmd, DEFAULT_CMD_TIMEOUT)


def _add_job(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    job = sub.add_parser("job", help=helptext, description=helptext)
    actions = job.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = _leaf(actions, "show", "commands_jobs:run_job_show", "show a job's results")
    show.add_argument("job_id", metavar="ID")
    show.add_argument("--wait", action="store_true", help="wait until the job is done")
    _json_option(show)
    listing = _leaf(actions, "list", "commands_jobs:run_job_list", "list recent jobs")
    listing.add_argument("--limit", type=_positive_int, default=20, metavar="N")
    _json_option(listing)


_FILE_EPILOG = """\
push:  hashes SRC, uploads it to the General unless the General already has it (same
       sha256), then each host downloads it from the General's FileManager and writes DEST.
read:  prints the file's text per host; binary files are summarised (use --json for the
       bytes, base64-encoded).
ls:    lists a directory per host, like `ls -l`.

examples:
  troop file push 'web*' ./app.conf /etc/app/app.conf --mode 0640 --owner app --makedirs
  troop file read db1 /etc/hostname
  troop file ls '*' --tag web /var/log --json

exit status: 0 every targeted host succeeded, 1 some host did not, 2 usage or API error
             (including a missing SRC, or a file over the General's upload limit).
"""


def _add_file(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    files = sub.add_parser(
        "file", help=helptext, description=helptext,
        epilog=_FILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = files.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = _leaf(
        actions, "push", "commands_files:run_push", "copy a local file to hosts",
        usage="troop file push TARGET SRC DEST [options]",
    )
    push.add_argument("target", metavar="TARGET")
    push.add_argument("src", metavar="SRC", help="the local file (a regular file)")
    push.add_argument("dest", metavar="DEST", help="where it goes on each host")
    push.add_argument(
        "--mode", type=octal_mode, metavar="MODE",
        help="permissions, 3 or 4 octal digits such as 0644 (default: the host decides)",
    )
    push.add_argument("--owner", metavar="USER", help="owner of DEST")
    push.add_argument("--group", metavar="GROUP", help="group of DEST")
    push.add_argument(
        "--makedirs", action="store_true", help="create DEST's missing parent directories"
    )
    push.add_argument(
        "--backup", action="store_true", help="keep the file DEST replaces beside it"
    )
    push.add_argument(
        "--force", action="store_true", help="rewrite DEST even when its content is the same"
    )
    _job_options(push, DEFAULT_PUSH_TIMEOUT, stream=False)

    read = _leaf(
        actions, "read", "commands_files:run_read", "print a file from hosts",
        usage="troop file read TARGET PATH [options]",
    )
    read.add_argument("target", metavar="TARGET")
    read.add_argument("path", metavar="PATH", help="the file on each host")
    read.add_argument(
        "--max-bytes", type=_byte_count, default=DEFAULT_MAX_BYTES, metavar="N",
        help=f"refuse files larger than this (default {DEFAULT_MAX_BYTES})",
    )
    _job_options(read, DEFAULT_CMD_TIMEOUT, stream=False)

    listing = _leaf(
        actions, "ls", "commands_files:run_ls", "list a directory on hosts",
        usage="troop file ls TARGET PATH [options]",
    )
    listing.add_argument("target", metavar="TARGET")
    listing.add_argument("path", metavar="PATH", help="the directory on each host")
    _job_options(listing, DEFAULT_CMD_TIMEOUT, stream=False)


_PLUGIN_EPILOG = """\
pull:      fetches the plugin repository into the General's index (admin); files that break
           the naming rules are listed as skipped.  Connected scouts are then synced.
list:      the index, newest version first.
update:    installs the newest (or the pinned) version of NAME on each host and keeps it
           wanted there; without NAME, brings every wanted plugin up to date.
versions:  which version of NAME each host has.
run:       runs `NAME ACTION ARGS...` on each host, shown like `troop cmd`; options meant
           for the plugin go after --.

examples:
  troop plugin pull
  troop plugin update 'web*' disk_report:v1.2.0
  troop plugin versions '*' disk_report
  troop plugin run 'web*' disk_report check -- --verbose --limit 90

exit status: 0 every targeted host succeeded (or the call worked, even with skipped files),
             1 some host did not, 2 usage or API error (including a failed pull).
"""


def _add_plugin(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    plugin = sub.add_parser(
        "plugin", help=helptext, description=helptext,
        epilog=_PLUGIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = plugin.add_subparsers(dest="action", metavar="ACTION", required=True)
    _json_option(_leaf(
        actions, "pull", "commands_plugins:run_pull", "fetch and index the plugin repository"
    ))
    _json_option(_leaf(actions, "list", "commands_plugins:run_list", "list the plugin index"))

    update = _leaf(
        actions, "update", "commands_plugins:run_update", "install or update plugins on hosts",
        usage="troop plugin update TARGET [NAME[:VERSION]] [options]",
    )
    update.add_argument("target", metavar="TARGET")
    update.add_argument(
        "spec", nargs="?", type=plugin_spec, metavar="NAME[:VERSION]",
        help="the plugin, optionally pinned to a version (default: every wanted plugin)",
    )
    update.add_argument(
        "--force", action="store_true", help="reinstall even when the version is installed"
    )
    _job_options(update, DEFAULT_PLUGIN_UPDATE_TIMEOUT, stream=False)

    versions = _leaf(
        actions, "versions", "commands_plugins:run_versions",
        "show the installed version of a plugin on hosts",
        usage="troop plugin versions TARGET NAME [options]",
    )
    versions.add_argument("target", metavar="TARGET")
    versions.add_argument("plugin", type=plugin_name, metavar="NAME")
    _job_options(versions, DEFAULT_CMD_TIMEOUT, stream=False)

    run = _leaf(
        actions, "run", "commands_plugins:run_run", "run a plugin's action on hosts",
        usage="troop plugin run TARGET NAME ACTION [ARGS...] [options] [-- ARGS...]",
    )
    run.add_argument("target", metavar="TARGET")
    run.add_argument("plugin", type=plugin_name, metavar="NAME")
    run.add_argument(
        "words", nargs="*", metavar="ACTION",
        help="the action, then its arguments (the plugin's own options go after --)",
    )
    run.set_defaults(tail_dest="words")
    _job_options(run, DEFAULT_CMD_TIMEOUT)


_SCOUT_EPILOG = """\
list:     every known scout: online/offline (or its key state), version, plugins.
restart:  restarts the scout process on each host (under systemd: the troop-scout unit).
stop:     stops it; a stopped scout can only be started again on the host itself.
upgrade:  installs a Troop wheel with the scout's pip and restarts it; a scout that does not
          come back within 60 s is rolled back.  --to takes a local troopstack-*.whl (uploaded
          to the General unless it already has it) or the version of a wheel uploaded before.

examples:
  troop scout list
  troop scout restart 'web*'
  troop scout upgrade '*' --to ./dist/troopstack-0.2.0-py3-none-any.whl
  troop scout upgrade --tag canary '*' --to 0.2.0

exit status: 0 every targeted host succeeded (or the call worked), 1 some host did not,
             2 usage or API error (including a missing wheel, or an unknown version).
"""


def _add_scout(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    scout = sub.add_parser(
        "scout", help=helptext, description=helptext,
        epilog=_SCOUT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = scout.add_subparsers(dest="action", metavar="ACTION", required=True)
    _json_option(_leaf(
        actions, "list", "commands_scout:run_list", "list scouts: state, version, plugins"
    ))
    for verb, helptext in (("restart", "restart the scouts"), ("stop", "stop the scouts")):
        change = _leaf(
            actions, verb, "commands_scout:run_lifecycle", f"{helptext} on hosts",
            usage=f"troop scout {verb} TARGET [options]",
        )
        change.add_argument("target", metavar="TARGET")
        _job_options(change, DEFAULT_RESTART_TIMEOUT, stream=False)

    upgrade = _leaf(
        actions, "upgrade", "commands_scout:run_upgrade", "upgrade the scouts to a Troop wheel",
        usage="troop scout upgrade TARGET --to VERSION|WHEEL [options]",
    )
    upgrade.add_argument("target", metavar="TARGET")
    upgrade.add_argument(
        "--to", required=True, metavar="VERSION|WHEEL",
        help="a local troopstack-*.whl file, or the version of a wheel uploaded before",
    )
    _job_options(upgrade, DEFAULT_UPGRADE_TIMEOUT, stream=False)


def _add_key(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    key = sub.add_parser("key", help=helptext, description=helptext)
    actions = key.add_subparsers(dest="action", metavar="ACTION", required=True)
    _json_option(_leaf(actions, "list", "commands_keys:run_list", "list keys by state"))
    for verb in ("accept", "reject", "delete"):
        change = _leaf(actions, verb, "commands_keys:run_change", f"{verb} scout keys")
        change.add_argument("hosts", nargs="*", metavar="HOST")
        change.set_defaults(tail_dest="hosts")
        change.add_argument("--all", action="store_true", help=f"{verb} every key it applies to")
        _json_option(change)
    _json_option(
        _leaf(actions, "rotate", "commands_keys:run_rotate", "rotate the General's session key")
    )


def _add_token(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    token = sub.add_parser("token", help=helptext, description=helptext)
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _leaf(actions, "create", "commands_tokens:run_create", "create a token")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--expires", type=_positive_int, metavar="SECONDS", help="lifetime")
    create.add_argument(
        "--targets", metavar="PATTERN,...", help="hosts the token may target (default: all)"
    )
    _json_option(create)
    _json_option(_leaf(actions, "list", "commands_tokens:run_list", "list tokens"))
    revoke = _leaf(actions, "revoke", "commands_tokens:run_revoke", "revoke a token")
    revoke.add_argument("token_ref", metavar="ID_OR_NAME")
    _json_option(revoke)


def _add_host(sub: argparse._SubParsersAction[_Parser], helptext: str) -> None:
    host = sub.add_parser("host", help=helptext, description=helptext)
    host_actions = host.add_subparsers(dest="action", metavar="ACTION", required=True)
    _json_option(_leaf(host_actions, "list", "commands_hosts:run_list", "list known hosts"))


# The top-level commands in the order `troop --help` lists them: name, one-line help, and the
# function that adds the command with all its options.
_COMMANDS: tuple[tuple[str, str, Callable[[argparse._SubParsersAction[_Parser], str], None]], ...] = (
    ("ping", "check which scouts answer", _add_ping),
    ("cmd", "run a program on hosts", _add_cmd),
    ("job", "show or list jobs", _add_job),
    ("file", "push, read or list files on hosts", _add_file),
    ("plugin", "pull, list, install and run plugins", _add_plugin),
    ("scout", "list, restart, stop or upgrade scouts", _add_scout),
    ("key", "manage scout keys", _add_key),
    ("token", "manage API tokens", _add_token),
    ("host", "list hosts", _add_host),
)
# Top-level options that take a value (the word after them is not the command).
_VALUED = frozenset({"--url", "--token", "--token-file"})


def build_parser(command: str | None = None) -> _Parser:
    """The whole grammar; or, given `command`, only that command's in full.

    Building every leaf costs milliseconds that `troop ping` cannot spare, so the other
    commands get a bare parser each: enough for the COMMAND list in `troop --help`.
    """
    # allow_abbrev=False: the top-level parser looks at every option on the line, the leaves'
    # too, and would take `scout upgrade --to` for an ambiguous `--token`/`--token-file`.
    parser = _Parser(
        prog="troop",
        allow_abbrev=False,
        description="Run commands, push or read files, run plugins and manage scouts on many "
        "servers through a Troop General.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"troop {__version__}")
    _connection_options(parser, hidden=False)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name, helptext, add in _COMMANDS:
        if command is None or command == name:
            add(sub, helptext)
        else:
            sub.add_parser(name, help=helptext)
    return parser


def command_word(args: Sequence[str]) -> str:
    """The command a command line names (its first word that is no option or option value)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def split_program(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Cut argv at the first `--`: (options and positionals, program or None if no `--`)."""
    args = list(argv)
    if "--" not in args:
        return args, None
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check a full command line; usage errors exit 2 via argparse."""
    head, tail = split_program(argv)
    ns: argparse.Namespace
    ns, extras = build_parser(command_word(head)).parse_known_args(head)
    if not hasattr(ns, "handler"):  # argparse chose another command than we guessed
        ns, extras = build_parser().parse_known_args(head)
    leaf: argparse.ArgumentParser = ns.parser
    if extras:
        # Reported by the leaf, whose usage line is the helpful one.
        hint = ""
        if ns.command == "cmd":
            hint = " (the program's own options go after --)"
        elif ns.command == "plugin" and ns.action == "run":
            hint = " (the plugin's own options go after --)"
        leaf.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    if tail:
        # The words after `--` extend the leaf's list positional: the program for `cmd`,
        # host names for `key accept` (so a host named "-x" can be given).
        dest: str | None = getattr(ns, "tail_dest", None)
        if dest is None:
            leaf.error(f"unexpected arguments after --: {' '.join(tail)}")
        setattr(ns, dest, list(getattr(ns, dest)) + tail)
    _check(ns)
    return ns


def _check(ns: argparse.Namespace) -> None:
    leaf: argparse.ArgumentParser = ns.parser
    if ns.command == "cmd":
        if not ns.program:
            leaf.error("no program given (put it after --)")
        ns.env = dict(ns.env)
    if ns.command == "plugin" and ns.action == "run":
        if not ns.words:
            leaf.error("no ACTION given")
        ns.plugin_action, ns.plugin_args = ns.words[0], list(ns.words[1:])
    if ns.command == "key" and ns.action in ("accept", "reject", "delete"):
        if ns.all and ns.hosts:
            leaf.error("give HOST names or --all, not both")
        if not ns.all and not ns.hosts:
            leaf.error("give HOST names or --all")
    if ns.command == "token" and ns.action == "create" and ns.targets is not None:
        ns.targets = [t.strip() for t in ns.targets.split(",") if t.strip()]
        if not ns.targets:
            leaf.error("--targets needs at least one pattern")
