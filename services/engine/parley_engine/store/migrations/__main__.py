"""Write the next migration: ``python -m parley_engine.store.migrations "what changed"``.

Alembic compares the tables in ``store/schema.py`` with a scratch SQLite database upgraded to the newest revision
and writes the difference as a new file in ``versions/``; read it and edit it before committing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from parley_engine.store.migrations import alembic_config, upgrade_to_head


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit('usage: python -m parley_engine.store.migrations "what changed"')
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        try:
            with engine.begin() as connection:
                upgrade_to_head(connection)
                count = len(list((Path(__file__).parent / "versions").glob("[0-9]*.py")))
                command.revision(
                    alembic_config(connection), message=sys.argv[1], autogenerate=True, rev_id=f"{count + 1:04d}"
                )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
