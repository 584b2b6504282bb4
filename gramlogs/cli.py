"""The ``gramlogs`` command: serve, migrate, the administrative commands, and ``logs``.

Every command but ``logs`` honours ``GRAMLOGS_DATABASE_URL``; without it, it uses (and starts,
if needed) the same embedded PostgreSQL as ``serve``. ``logs`` reads a server over HTTP
(gramlogs/client/).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import logging.config
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg

from gramlogs import __version__
from gramlogs.client import command as logs_command
from gramlogs.client.remote import ClientError
from gramlogs.core import ids
from gramlogs.core.config import (
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    settings_environment,
    settings_table,
)
from gramlogs.core.keys import KeyScope
from gramlogs.local import demo
from gramlogs.local.seed import ProgressBar, SeedPlan, seed_logs
from gramlogs.local.servers import resolve_url
from gramlogs.storage import citus, functions, maintenance, partitions, schema, tenants

__all__ = ["main"]


class CommandError(Exception):
    """A command that cannot go on; its message is printed and the exit status is 1."""


def _config(args: argparse.Namespace) -> Config:
    overrides = {s.name: getattr(args, s.name, None) for s in SETTINGS}
    return Config.load(overrides=overrides)


def _run(
    args: argparse.Namespace,
    work: Callable[[asyncpg.Connection], Awaitable[Any]],
    *,
    prepare: Literal["read", "schema", "logs"] = "schema",
) -> Any:
    """Run ``work`` on a connection, after the DDL it needs and no more: ``logs`` migrates and
    creates the partitions due (commands that write or drop lines), ``schema`` only migrates
    (tenant changes), ``read`` runs no DDL and checks the schema is current instead."""
    config = _config(args)
    url = resolve_url(config)

    async def go() -> Any:
        conn = await _connect(url)
        try:
            if prepare == "read":
                await _require_schema(conn)
            else:
                await _migrate(conn, config)
            if prepare == "logs":
                await maintenance.ensure_partitions(conn, config)
            return await work(conn)
        except _LOST as exc:
            raise CommandError(
                f"lost the connection to the database {_shown(url)}: {_one_line(exc)}"
            ) from None
        finally:
            await conn.close()

    return asyncio.run(go())


# What asyncpg raises when a database cannot be reached or refuses the connection: OSError
# (refused, unknown host, timed out), PostgresError (no such role or database, wrong password,
# starting up) and InterfaceError (TLS required but not offered, and the like).
_UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# ... and once connected, when the server goes away in the middle of a command.
_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.PostgresConnectionError)


async def _connect(url: str) -> asyncpg.Connection:
    """Connect, or fail as a command does: one line naming the database, not a traceback."""
    try:
        return await asyncpg.connect(url)
    except _UNREACHABLE as exc:
        raise CommandError(
            f"cannot connect to the database {_shown(url)}: {_one_line(exc)}"
        ) from None


def _shown(url: str) -> str:
    """The URL without its password (in the user part or the query) for messages."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{hosts}{parts.path}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _migrate(conn: asyncpg.Connection, config: Config) -> None:
    """Bring the schema up to date; on the local Citus cluster, distribute the tables too."""
    await schema.migrate(conn)
    if config.local_citus_workers and not config.database_url:
        await citus.distribute(conn)


async def _require_schema(conn: asyncpg.Connection) -> None:
    have, want = await schema.current_version(conn), len(schema.steps())
    if have != want:
        raise CommandError(
            f"the database's gramlogs schema is at version {have}, this gramlogs needs {want};"
            " run `gramlogs migrate` first"
        )


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, default=str))
    else:
        print(text)


# -- serve / migrate ----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gramlogs.web.server import log_config, uvicorn_options

    config = _config(args)
    logging.config.dictConfig(log_config(config))
    embedded = not config.database_url
    url = resolve_url(config)

    async def prepare() -> demo.Demo | None:
        conn = await _connect(url)
        try:
            await _migrate(conn, config)
            await maintenance.ensure_partitions(conn, config)
            if not embedded:
                return None
            return await demo.ensure_demo(conn, _demo_dir(config))
        finally:
            await conn.close()

    shown = asyncio.run(prepare())
    base = f"http://{config.host}:{config.port}"
    if shown is not None:
        where = _demo_dir(config)
        kind = (
            f"a local Citus cluster (coordinator and {config.local_citus_workers} workers)"
            if config.local_citus_workers
            else "embedded PostgreSQL"
        )
        print(f"gramlogs {__version__}: {kind} in {where}")
        print(demo.banner(shown, base), flush=True)
        if config.local_citus_workers:
            print(f"coordinator: {url}", flush=True)
    print(f"Serving on {base} ({config.workers} worker(s)); Ctrl-C stops.", flush=True)
    served = dataclasses.replace(config, database_url=url)
    options = uvicorn_options(served)
    # uvicorn drains in-flight requests on SIGTERM, closes the pool (lifespan), then raises
    # SIGTERM again with the handler it found: make that a normal exit, status 0, so that atexit
    # handlers (the embedded PostgreSQL's stop) run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if config.workers > 1:
        # Workers are fresh processes that read their settings from the environment: every
        # setting as resolved here (flags included) goes there.
        os.environ.update(settings_environment(served))
        with tempfile.TemporaryDirectory(prefix="gramlogs-metrics-") as metrics_dir:
            # prometheus-client's multiprocess mode: each worker writes its samples here and
            # /metrics sums them (gramlogs/core/metrics.py). Must be set before workers import it.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            uvicorn.run(
                "gramlogs.web.app:create_app", factory=True, workers=config.workers, **options
            )
    else:
        from gramlogs.web.app import create_app

        uvicorn.run(create_app(served), **options)


def _demo_dir(config: Config) -> Path:
    """Where the demo keeps its keys: beside the database it made them in."""
    root = config.data_dir.resolve()
    return root / "citus" if config.local_citus_workers else root


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_migrate(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> int:
        return await schema.current_version(conn)

    version = _run(args, work, prepare="logs")
    _emit(args, {"version": version}, f"schema is at version {version}")


def cmd_partitions(args: argparse.Namespace) -> None:
    """Partitions were made by _run; show the layout with each partition's estimated rows."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "from": p.first_day,
                "to": p.end_day,
                "estimated_rows": p.estimated_rows,
            }
            for p in await partitions.layout(conn)
        ]

    rows = _run(args, work, prepare="logs")
    if args.json:
        print(json.dumps(rows, default=str))
        return
    for row in rows:
        first, end = row["from"] or "-inf", row["to"] or "+inf"
        print(f"{row['name']:<16} {first!s:>10} .. {end!s:<10} ~{row['estimated_rows']:,} rows")


def cmd_retention(args: argparse.Namespace) -> None:
    config = _config(args)
    report = _run(args, lambda conn: maintenance.run_retention(conn, config), prepare="logs")
    if report.skipped:
        raise CommandError("another process is maintaining the logs table; try again shortly")
    _emit(
        args,
        dataclasses.asdict(report),
        f"kept {report.keep_days} day(s) of partitions; dropped {len(report.dropped)}"
        f" partition(s){': ' + ', '.join(report.dropped) if report.dropped else ''};"
        f" deleted {report.deleted_rows:,} row(s) of projects with a shorter retention",
    )


# -- organizations, projects, keys --------------------------------------------------------------


def cmd_orgs_create(args: argparse.Namespace) -> None:
    org_id = _run(args, lambda conn: tenants.create_organization(conn, args.name))
    _emit(args, {"id": org_id, "name": args.name}, f"created organization {args.name} ({org_id})")


def cmd_projects_create(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
        org = await tenants.resolve_organization(conn, args.org)
        return org, await tenants.create_project(conn, org, args.slug, args.name)

    org, project = _run(args, work)
    _emit(
        args,
        {"id": project, "organization_id": org, "slug": args.slug},
        f"created project {args.slug} ({project})",
    )


def cmd_keys_create(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> tenants.CreatedKey:
        org = await tenants.resolve_organization(conn, args.org)
        project = await tenants.resolve_project(conn, org, args.project) if args.project else None
        return await tenants.create_key(
            conn, org, KeyScope(args.scope), project_id=project, name=args.name
        )

    key = _run(args, work)
    data = {
        "id": key.id,
        "key": key.key,
        "scope": key.scope.value,
        "organization_id": key.organization_id,
        "project_id": key.project_id,
    }
    _emit(args, data, f"{key.key}\n(key id {key.id}; shown once, store it now)")


def cmd_keys_list(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> list[tenants.KeyInfo]:
        org = await tenants.resolve_organization(conn, args.org) if args.org else None
        return await tenants.list_keys(conn, org)

    keys = _run(args, work, prepare="read")
    if args.json:
        print(json.dumps([dataclasses.asdict(k) for k in keys], default=str))
        return
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        print(f"{k.id}  {k.prefix}…  {k.scope:<8}  {k.project_slug or '*':<16}  {state}  {k.name}")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    key_id = uuid.UUID(args.key_id)
    if not _run(args, lambda conn: tenants.revoke_key(conn, key_id)):
        raise CommandError(f"no active key with id {key_id}")
    _emit(args, {"id": key_id, "revoked": True}, f"revoked key {key_id}")


def cmd_projects_retention(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> uuid.UUID:
        org = await tenants.resolve_organization(conn, args.org)
        project = await tenants.resolve_project(conn, org, args.slug)
        await tenants.set_retention(conn, project, args.days)
        return project

    project = _run(args, work)
    shown = f"{args.days} day(s)" if args.days else "the server default"
    _emit(
        args,
        {"id": project, "slug": args.slug, "retention_days": args.days},
        f"project {args.slug} keeps its logs for {shown}",
    )


# -- functions ----------------------------------------------------------------------------------


def cmd_functions_set(args: argparse.Namespace) -> None:
    enabled = args.action == "enable"
    try:
        function_id = ids.parse_uuid(args.function_id)
    except ids.IdError:
        raise CommandError(f"function id {args.function_id!r} is not a uuid") from None

    async def work(conn: asyncpg.Connection) -> tuple[uuid.UUID, str]:
        org = await tenants.resolve_organization(conn, args.org)
        if args.project:
            # Naming the project may register a function before its first line arrives.
            project = await tenants.resolve_project(conn, org, args.project)
            slug = args.project
        else:
            found = await functions.function_projects(conn, org, function_id)
            if not found:
                raise CommandError(
                    f"no project of the organization has function {function_id};"
                    " name one with --project to register it"
                )
            if len(found) > 1:
                slugs = ", ".join(f.project_slug for f in found)
                raise CommandError(
                    f"function {function_id} is in several projects ({slugs});"
                    " choose one with --project"
                )
            project, slug = found[0].project_id, found[0].project_slug
        await functions.set_logs_enabled(conn, project, function_id, enabled)
        return project, slug

    project, slug = _run(args, work)
    state = "enabled" if enabled else "disabled"
    _emit(
        args,
        {
            "function_id": function_id,
            "project_id": project,
            "project": slug,
            "logs_enabled": enabled,
        },
        f"logs {state} for function {function_id} in project {slug}",
    )


# -- citus ---------------------------------------------------------------------------------------


def cmd_citus_distribute(args: argparse.Namespace) -> None:
    done = _run(args, lambda conn: citus.distribute(conn, shard_count=args.shard_count))
    _emit(args, {"done": done}, "\n".join(done) or "the tables were distributed already")


def cmd_citus_add_worker(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> tuple[int, int]:
        node_id = await citus.add_worker(conn, args.host, args.port)
        moves = 0 if args.no_rebalance else await citus.rebalance(conn)
        return node_id, moves

    node_id, moves = _run(args, work)
    _emit(
        args,
        {"node_id": node_id, "moves": moves},
        f"added worker {args.host}:{args.port} (node {node_id}); {moves} shard move(s)",
    )


def cmd_citus_rebalance(args: argparse.Namespace) -> None:
    moves = _run(args, citus.rebalance)
    _emit(args, {"moves": moves}, f"{moves} shard move(s)")


def cmd_citus_isolate(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> int:
        org = await tenants.resolve_organization(conn, args.org)
        project = await tenants.resolve_project(conn, org, args.project)
        return await citus.isolate(conn, project)

    shard_id = _run(args, work)
    _emit(
        args,
        {"project": args.project, "shard_id": shard_id},
        f"project {args.project} has shard {shard_id} of its own;"
        " `gramlogs citus rebalance` may move it to a worker of its own",
    )


def cmd_citus_status(args: argparse.Namespace) -> None:
    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        topo = await citus.topology(conn)
        shards = await citus.shard_placements(conn) if topo.distributed else {}
        return {"citus": topo.citus_version, "distributed": topo.distributed, "shards": shards}

    status = _run(args, work, prepare="read")
    lines = [
        f"citus {status['citus'] or 'not installed'}; logs distributed: {status['distributed']}"
    ]
    lines += [f"  {node}: {count} shard(s) of logs" for node, count in status["shards"].items()]
    _emit(args, status, "\n".join(lines))


# -- seed ---------------------------------------------------------------------------------------


def cmd_seed(args: argparse.Namespace) -> None:
    end = ids.parse_rfc3339(args.end) if args.end else datetime.now(UTC)

    async def work(conn: asyncpg.Connection) -> tuple[uuid.UUID, int]:
        org = await tenants.resolve_organization(conn, args.org)
        project = await tenants.resolve_project(conn, org, args.project)
        plan = SeedPlan(
            project_id=project,
            rows=args.rows,
            end=end,
            days=args.days,
            functions=args.functions,
            seed=args.seed,
        )
        progress = None if args.json else ProgressBar()
        return project, await seed_logs(conn, plan, progress=progress)

    project, rows = _run(args, work, prepare="logs")
    _emit(args, {"project_id": project, "rows": rows}, f"seeded {rows:,} rows")


# -- parser -------------------------------------------------------------------------------------


def _zero_or_more(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for setting in SETTINGS:
        if setting.name in _COMMON_SETTINGS:
            _add_setting_flag(common, setting)
    common.add_argument("--json", action="store_true", help="print the result as JSON")

    parser = argparse.ArgumentParser(prog="gramlogs", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gramlogs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the HTTP server")
    for setting in SETTINGS:
        if setting.name not in _COMMON_SETTINGS:
            _add_setting_flag(p, setting)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("settings", help="print every setting as a Markdown table")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("migrate", parents=[common], help="create or upgrade the schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "partitions", parents=[common], help="create the logs partitions due; list them"
    )
    p.set_defaults(func=cmd_partitions)

    p = sub.add_parser("retention", parents=[common], help="remove expired log lines, once")
    p.set_defaults(func=cmd_retention)

    orgs = sub.add_parser("orgs", help="organizations").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = orgs.add_parser("create", parents=[common], help="create an organization")
    p.add_argument("name")
    p.set_defaults(func=cmd_orgs_create)

    projects = sub.add_parser("projects", help="projects").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = projects.add_parser("create", parents=[common], help="create a project")
    p.add_argument("slug", help="the Gram-Project value: lower-case letters, digits, '-'")
    p.add_argument("--org", required=True, help="organization name or id")
    p.add_argument("--name", help="display name (default: the slug)")
    p.set_defaults(func=cmd_projects_create)
    p = projects.add_parser(
        "retention", parents=[common], help="set how long a project's logs are kept"
    )
    p.add_argument("slug")
    p.add_argument("--org", required=True, help="organization name or id")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--days", type=_days, help="keep lines this many days (1-36500)")
    group.add_argument(
        "--default",
        dest="days",
        action="store_const",
        const=None,
        help="use GRAMLOGS_RETENTION_DAYS",
    )
    p.set_defaults(func=cmd_projects_retention)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = keys.add_parser("create", parents=[common], help="create a key (shown once)")
    p.add_argument("--org", required=True, help="organization name or id")
    p.add_argument("--project", help="bind the key to this project slug")
    p.add_argument(
        "--scope",
        choices=[s.value for s in KeyScope],
        default=KeyScope.CONSUMER.value,
        help="consumer: read; ingest: write only; admin: read, write and delete;"
        " producer: as admin (the scope of writing keys before ingest and admin existed)",
    )
    p.add_argument("--name", default="", help="a label for `keys list`")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    p.add_argument("--org", help="only this organization's keys")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", parents=[common], help="revoke a key, effective at once")
    p.add_argument("key_id")
    p.set_defaults(func=cmd_keys_revoke)

    funcs = sub.add_parser("functions", help="per-function settings").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    for action, verb in (("enable", "accept and show"), ("disable", "refuse and hide")):
        p = funcs.add_parser(
            action, parents=[common], help=f"{verb} a function's logs (Poly's logsEnabled)"
        )
        p.add_argument("function_id")
        p.add_argument("--org", required=True, help="organization name or id")
        p.add_argument("--project", help="project slug (needed when several projects have it)")
        p.set_defaults(func=cmd_functions_set)

    cit = sub.add_parser("citus", help="scale out on a Citus cluster").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = cit.add_parser(
        "distribute", parents=[common], help="distribute the tables (run on the coordinator)"
    )
    p.add_argument("--shard-count", type=int, help="shards of logs (Citus's default: 32)")
    p.set_defaults(func=cmd_citus_distribute)
    p = cit.add_parser(
        "add-worker", parents=[common], help="add a worker and move shards to it, online"
    )
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--no-rebalance", action="store_true", help="add it empty; rebalance later")
    p.set_defaults(func=cmd_citus_add_worker)
    p = cit.add_parser("rebalance", parents=[common], help="move shards until workers are even")
    p.set_defaults(func=cmd_citus_rebalance)
    p = cit.add_parser(
        "isolate", parents=[common], help="give a hot project a shard of its own, online"
    )
    p.add_argument("project", help="project slug")
    p.add_argument("--org", required=True, help="organization name or id")
    p.set_defaults(func=cmd_citus_isolate)
    p = cit.add_parser("status", parents=[common], help="Citus version and shards per worker")
    p.set_defaults(func=cmd_citus_status)

    p = sub.add_parser("seed", parents=[common], help="COPY synthetic logs into a project")
    p.add_argument("--org", required=True, help="organization name or id")
    p.add_argument("--project", required=True, help="project slug")
    p.add_argument("--rows", type=_zero_or_more, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="same seed, same rows")
    p.add_argument("--days", type=float, default=7.0, help="time span of the rows")
    p.add_argument("--end", help="RFC 3339 time of the newest row (default: now)")
    p.add_argument("--functions", type=int, default=8)
    p.set_defaults(func=cmd_seed)

    logs_command.add_parser(sub)
    return parser


# Settings every command takes (where the database is); the others are flags of `serve` only.
_COMMON_SETTINGS = ("database_url", "data_dir")
_METAVARS = {str: "TEXT", int: "N", float: "NUMBER", Path: "DIR"}


def _add_setting_flag(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """``--name`` for a setting, its help and default taken from the one table in config.py.

    The flag's default is None, so that an unset flag leaves the environment's value.
    """
    flag = "--" + setting.name.replace("_", "-")
    shown = "unset" if setting.default is None else str(setting.default)
    help_text = f"{setting.help} (default {shown}; env {setting.env})".replace("%", "%%")
    if setting.type is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
    else:
        parser.add_argument(
            flag, type=setting.type, metavar=_METAVARS.get(setting.type, "VALUE"), help=help_text
        )


def cmd_settings(args: argparse.Namespace) -> None:
    print(settings_table(), end="")


def _days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 36500:
        raise argparse.ArgumentTypeError("must be between 1 and 36500")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, ConfigError, tenants.TenantError, ids.IdError, ClientError) as exc:
        print(f"gramlogs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # `gramlogs logs` is stopped by Ctrl-C, which is not a failure: status 0, nothing shown.
        return 0 if args.command == "logs" else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
