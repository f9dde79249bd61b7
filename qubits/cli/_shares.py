"""`qubits jobs --shares`: each user's running tasks and share of what runs."""

from __future__ import annotations

from rich.table import Table

from qubits import Client
from qubits._shares import running_shares

from . import EXIT_OK
from ._common import out, print_json


def show_shares(client: Client, *, as_json: bool) -> int:
    rows = running_shares(client)
    if as_json:
        print_json(rows)
        return EXIT_OK
    table = Table(title=f"running share by user in {client.url.split('?', 1)[0]}", title_justify="left")
    for col in ("user", "running", "share"):
        table.add_column(col)
    for row in rows:
        table.add_row(str(row["user"]), str(row["running"]), f"{float(row['share']):.0%}")  # type: ignore[arg-type]
    out.print(table if rows else "nothing is running")
    return EXIT_OK
