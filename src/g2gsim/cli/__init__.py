"""The ``g2gsim`` command line: one Typer app, a module per group of commands.

- :mod:`~g2gsim.cli.run`: ``run``, ``list``, ``compare``, ``validate``;
- :mod:`~g2gsim.cli.studies`: ``sweep``, ``hosting-capacity``, ``sensitivity``, ``site-sweep``, ``ensemble``;
- :mod:`~g2gsim.cli.planning`: ``plan-batch``;
- :mod:`~g2gsim.cli.live`: ``run --live``, ``fake-cluster``, ``live-run``;
- :mod:`~g2gsim.cli.rl`: ``rl library``, ``rl evaluate``;
- :mod:`~g2gsim.cli.common`: the consoles, the one-line error, shared options.

Each command parses its options, calls a plain function of the library and renders the result.
"""

from __future__ import annotations

import typer

from g2gsim.cli import live, planning, rl, run, studies

app = typer.Typer(
    name="g2gsim",
    help="Co-simulate LLM-serving datacenters and distribution grids (SimPy + OpenDSS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (run, studies, planning, live, rl):
    _group.register(app)


def main() -> None:
    """Entry point of the ``g2gsim`` script."""
    app()


__all__ = ["app", "main"]
