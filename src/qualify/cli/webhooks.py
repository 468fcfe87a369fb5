"""`qualify webhooks`: subscribe URLs to lead events, list them, stop them, replay."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import os
from typing import Annotated

import typer

from qualify.cli import render
from qualify.cli.shared import DbOption, JsonOption, app, engine_for

webhooks_app = typer.Typer(
    help="Outbound webhooks: signed POSTs of lead events, retried until delivered.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events.")],
    events: Annotated[
        str,
        typer.Option(
            help="Comma-separated: lead.mql, lead.pql, lead.routed, lead.stage_changed, "
            "lead.sla_breached, lead.score_changed."
        ),
    ],
    min_score_change: Annotated[
        float, typer.Option(help="lead.score_changed only when the score moves this much.")
    ] = 0.0,
    db: DbOption = None,
) -> None:
    """Subscribe a URL; prints the signing secret (keep it: receivers verify with it)."""
    from qualify.service.webhooks import add_subscription

    created = add_subscription(
        engine_for(db),
        url,
        events.split(","),
        created_by=os.environ.get("USER") or "cli",
        min_score_change=min_score_change,
    )
    render.err.print(
        f"webhook #{created['id']} → {url} for {', '.join(created['events'])}; its signing secret:",
        markup=False,
    )
    render.console.print(created["secret"], markup=False)


@webhooks_app.command("list")
def list_(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Subscriptions and how many deliveries are pending, delivered and dead."""
    from rich.table import Table

    from qualify.service.queries import iso_times
    from qualify.service.webhooks import list_subscriptions

    rows = [iso_times(s) for s in list_subscriptions(engine_for(db))]
    if as_json:
        render.print_json(rows)
        return
    table = Table(title=f"{len(rows)} webhooks", title_justify="left")
    for name in ("id", "url", "events", "active", "pending", "delivered", "dead", "cancelled"):
        table.add_column(name)
    for r in rows:
        d = r["deliveries"]
        table.add_row(
            str(r["id"]),
            r["url"],
            ", ".join(r["events"]),
            "yes" if r["active"] else "no",
            str(d["pending"]),
            str(d["delivered"]),
            str(d["dead"]),
            str(d["cancelled"]),
        )
    render.console.print(table)


@webhooks_app.command("remove")
def remove(
    subscription: Annotated[int, typer.Argument(help="The webhook's id.")],
    db: DbOption = None,
) -> None:
    """Stop a subscription: nothing more is queued or sent for it."""
    from qualify.service.webhooks import remove_subscription

    remove_subscription(engine_for(db), subscription)
    render.console.print(f"webhook #{subscription} stopped", markup=False)


@webhooks_app.command("replay")
def replay(
    subscription: Annotated[
        int | None, typer.Argument(help="Only this webhook's deliveries.")
    ] = None,
    delivery: Annotated[int | None, typer.Option(help="Only this delivery.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Delivered ones too, not only the dead.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Queue deliveries again (by default those given up): the worker sends them anew."""
    from qualify.service.webhooks import replay as queue_again

    count = queue_again(
        engine_for(db), subscription=subscription, delivery=delivery, dead_only=not all_
    )
    render.console.print(f"{count} deliveries queued again", markup=False)
