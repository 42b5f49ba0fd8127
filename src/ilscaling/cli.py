"""`ilscaling <command>`: the entry points the Snakemake rules call, one per stage.

Each command is a dataclass of its arguments (commands.py), one docstring per field; the parser is
built from those, so a command's flags, defaults and help live in one place.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import sys
import textwrap
import types
import typing
from pathlib import Path


def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of its bases), as `cls` declares them."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for statement, following in zip(body, body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[statement.target.id] = " ".join(str(following.value.value).split())
    return docs


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field (lists take several values; metadata `positional` and
    `remainder` make positional arguments), its default and help from the dataclass."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        hint, help = hints[field.name], docs.get(field.name)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = None if required else (field.default if field.default_factory is dataclasses.MISSING
                                         else field.default_factory())
        if field.metadata.get("remainder"):
            parser.add_argument(field.name, nargs=argparse.REMAINDER, help=help)
            continue
        names = [field.name] if field.metadata.get("positional") else ["--" + field.name.replace("_", "-")]
        options = {} if field.metadata.get("positional") else {"required": required, "default": default}
        if typing.get_origin(hint) is list:
            parser.add_argument(*names, type=typing.get_args(hint)[0], nargs="+", help=help, **options)
        elif hint is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, help=help)
        else:
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)   # X | None
            kind = next(arg for arg in typing.get_args(hint) if arg is not type(None)) if optional else hint
            parser.add_argument(*names, type=kind, help=help, **options)


def build_parser() -> argparse.ArgumentParser:
    from ilscaling.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="ilscaling", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = subparsers.add_parser(name, help=command.__doc__.splitlines()[0], description=command.__doc__)
        add_dataclass_arguments(p, command)
        p.set_defaults(command_class=command)
    return parser


def parse(argv: list[str] | None = None):
    """The command `argv` names, with its arguments."""
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command_class")
    return command(**{f.name: args[f.name] for f in dataclasses.fields(command)})


def _log_file() -> Path | None:
    """The file this process's output goes to, when a job redirected it to its log (Linux)."""
    try:
        target = Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        return None
    return target if target.suffix == ".log" and target.is_file() else None


def _failed_name(log: Path) -> Path:
    """The next free <log>.failed-<k>."""
    k = 1 + sum(1 for _ in log.parent.glob(log.name + ".failed-*"))
    return log.with_name(f"{log.name}.failed-{k}")


class AttemptLog:
    """Keeps the log of every attempt of a job that did not succeed.

    Snakemake deletes a job's log before it runs the job again (`Job.remove_existing_output`), and
    the next attempt writes the log anew. At its start an attempt hard-links its log as
    <log>.attempt: the link keeps what the attempt wrote even when it is killed outright (SIGKILL,
    the out-of-memory killer, a Slurm time limit past its grace), since deleting the log leaves the
    file under the link's name. A success removes the link; a failure renames it <log>.failed-<k>,
    and a link still there at the start of the next attempt is a killed attempt's and is renamed
    the same way. Where the file system has no hard links, a failure copies the log instead.
    """

    def __init__(self, log: Path):
        self.log = log
        self.link = log.with_name(log.name + ".attempt")
        if self.link.exists() and not self.link.samefile(log):
            self.link.rename(_failed_name(log))  # an attempt that was killed before it could say so
        try:
            if not self.link.exists():
                os.link(log, self.link)
        except OSError:
            self.link = None

    def succeeded(self) -> None:
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def failed(self) -> Path:
        kept = _failed_name(self.log)
        if self.link is not None and self.link.exists():
            self.link.rename(kept)
        else:
            import shutil

            shutil.copyfile(self.log, kept)
        return kept


def main(argv: list[str] | None = None) -> None:
    command = parse(argv)
    sys.stdout.reconfigure(line_buffering=True)  # a job's log grows line by line, not in blocks at the end
    log = _log_file()
    attempt = AttemptLog(log) if log is not None else None
    try:
        command.run()
    except BaseException as err:
        if attempt is None or (isinstance(err, SystemExit) and err.code in (None, 0)):
            if attempt is not None:
                attempt.succeeded()
            raise
        if not isinstance(err, SystemExit):  # (a SystemExit, e.g. a preempted trainer's, said why already)
            import traceback

            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"(this attempt's log is kept as {attempt.failed()})", file=sys.stderr, flush=True)
        raise SystemExit(err.code if isinstance(err, SystemExit) else 1) from None
    if attempt is not None:
        attempt.succeeded()


if __name__ == "__main__":
    sys.exit(main())
