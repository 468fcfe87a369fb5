"""Commands of the HTTP service: serve, and the keys it accepts."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import copy
import os
import time
from typing import Annotated, Any

import typer

from qualify.cli import render
from qualify.cli.shared import (
    DbOption,
    JsonOption,
    WebhookBaseDelay,
    WebhookMaxAttempts,
    app,
    engine_for,
)
from qualify.errors import QualifyError

keys_app = typer.Typer(
    help="Write keys (ingestion) and API tokens with roles.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (use PostgreSQL for more than one).")
    ] = 1,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (after gzip).")] = 4
    * 1024
    * 1024,
    rate_limit: Annotated[
        float, typer.Option(help="Messages a second per write key, per worker (0: no limit).")
    ] = 0.0,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    schedule_every: Annotated[
        float,
        typer.Option(help="Seconds between rounds of SLA checks and routing of waiting MQLs."),
    ] = 30.0,
    webhook_base_delay: WebhookBaseDelay = 5.0,
    webhook_max_attempts: WebhookMaxAttempts = 10,
) -> None:
    """Run the HTTP service: Segment-compatible ingestion at /v1, the lead API at /api,
    OpenAPI docs at /docs. Callers need keys: `qualify keys create --role write` for a
    website, `--role sales` for a CRM; the store needs an active model to accept messages."""
    import uvicorn

    engine = engine_for(db, create=True)  # create and migrate the store once, up front
    store = engine.url.render_as_string(hide_password=True)
    engine.dispose()
    render.err.print(
        f"qualify serve: http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}), "
        f"store {store}; API docs at /docs",
        markup=False,
    )
    if db:
        os.environ["QUALIFY_DATABASE_URL"] = db
    os.environ["QUALIFY_MAX_BODY_BYTES"] = str(max_body)
    os.environ["QUALIFY_RATE_LIMIT"] = str(rate_limit)
    os.environ["QUALIFY_SCHEDULE_EVERY"] = str(schedule_every)
    os.environ["QUALIFY_WEBHOOK_BASE_DELAY"] = str(webhook_base_delay)
    os.environ["QUALIFY_WEBHOOK_MAX_ATTEMPTS"] = str(webhook_max_attempts)
    uvicorn.run(
        "qualify.api.app:app_from_env",
        log_config=_log_config(),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, and ours through the same handler and format: a 5xx answer's
    traceback, a failed scheduler or webhook round, each line as `ERROR:    …`."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["qualify"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="write (ingestion only), read, sales, marketing or admin.")
    ],
    name: Annotated[str, typer.Option(help="What the key is for (shown in lists).")] = "",
    db: DbOption = None,
) -> None:
    """Create a key and print its secret — once: only its hash is stored."""
    from qualify.store.database import writing
    from qualify.store.keys import create_key

    engine = engine_for(db, create=True)
    with writing(engine) as conn:
        key, secret = create_key(conn, role, name or role, time.time())
    render.err.print(
        f"created {key.role} key #{key.id} ({key.name}); store the secret now, "
        "it cannot be shown again:",
        markup=False,
    )
    render.console.print(secret, markup=False)


@keys_app.command("list")
def keys_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Keys with their role, name and state (never their secrets)."""
    from qualify.core.activity import format_time
    from qualify.store.keys import list_keys

    engine = engine_for(db)
    with engine.connect() as conn:
        found = list_keys(conn)
    rows = [
        {
            "id": k.id,
            "role": k.role,
            "name": k.name,
            "prefix": k.prefix + "…",
            "created": format_time(k.created_at),
            "revoked": format_time(k.revoked_at) if k.revoked_at else None,
        }
        for k in found
    ]
    if as_json:
        render.print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} keys", title_justify="left")
    for column in ("id", "role", "name", "prefix", "created", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(str(row[c] or "") for c in ("id", "role", "name", "prefix", "created", "revoked"))
        )
    render.console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `qualify keys list`).")],
    db: DbOption = None,
) -> None:
    """Revoke a key: requests with it are refused within seconds."""
    from qualify.store.database import writing
    from qualify.store.keys import revoke_key

    engine = engine_for(db)
    with writing(engine) as conn:
        if not revoke_key(conn, key_id, time.time()):
            raise QualifyError(f"no live key #{key_id}: see `qualify keys list`")
    render.console.print(f"revoked key #{key_id}")
