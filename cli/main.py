"""The ``simrl`` Typer app: one sub-app per file, combined here.

Only Typer is imported at start-up so ``simrl --help`` answers instantly; every command imports
what it needs inside its body. A :class:`~simrl.errors.SimrlError` raised anywhere becomes one line
on stderr and its exit code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import typer
from simrl.cli import env, perturb, serve, wm, world
from simrl.cli.ablate import ablate
from simrl.cli.eval import eval_
from simrl.cli.export import export
from simrl.cli.report import report
from simrl.cli.rollout import rollout
from simrl.cli.train import train
from typer.core import TyperGroup

from simrl import __version__
from simrl.errors import SimrlError


class _Group(TyperGroup):
    """Root group: turns user errors into ``error: ...`` and the error's exit code.

    Besides :class:`~simrl.errors.SimrlError`, a file the command cannot read or write (``OSError``:
    a directory where a file is expected, a missing folder, no permission, a full disk) and text
    that is not UTF-8 are the user's input too: one line naming the file, exit 2. So is a module that
    is not installed: the line names the extra that installs it (:mod:`simrl.extras`).
    """

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except SimrlError as err:
            typer.secho(f"error: {err}", err=True, fg="red")
            raise typer.Exit(err.exit_code) from None
        except BrokenPipeError:  # the reader of our output went away (`| head`): not an input error
            raise
        except ModuleNotFoundError as err:  # an optional dependency not installed: name the extra
            from simrl.extras import missing_module_message

            message = missing_module_message(err.name or "")
            if message is None:
                raise
            typer.secho(f"error: {message}", err=True, fg="red")
            raise typer.Exit(2) from None
        except OSError as err:
            where = err.filename if err.filename is not None else "a file"
            typer.secho(f"error: {where}: {err.strerror or err}; check that the path exists, is the right kind "
                        "(file or folder) and is writable", err=True, fg="red")
            raise typer.Exit(2) from None
        except UnicodeError as err:
            typer.secho(f"error: an input is not UTF-8 text ({err.reason}); save it as UTF-8", err=True, fg="red")
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="simrl",
    help="Simulated-environment RL for LLM agents: fictional worlds, real and world-model environments, "
         "perturbation schedules, training recipes and ablations.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.add_typer(world.app, name="world")
app.add_typer(env.app, name="env")
app.add_typer(serve.app, name="serve")
app.command("rollout")(rollout)
app.add_typer(perturb.app, name="perturb")
app.command("train")(train)
app.command("eval")(eval_)
app.command("ablate")(ablate)
app.command("report")(report)
app.command("export")(export)
app.add_typer(wm.app, name="wm")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"simrl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the simrl version and exit."),
    import_: list[str] = typer.Option([], "--import", metavar="MODULE",
                                      help="Import MODULE first (repeatable): a module that registers your own "
                                           "environments (simrl.envs.base.register), e.g. "
                                           "`simrl --import my_envs rollout --env my-env ...`; see docs/plugins.md. "
                                           "Installed packages can declare an entry point in group simrl.envs "
                                           "instead."),
) -> None:
    """Simulated-environment RL for LLM agents."""
    if import_:
        from simrl.envs.registry import import_plugins

        import_plugins(import_)  # also exported as $SIMRL_IMPORT, for the processes simrl starts


def _terminate(signum: int, frame) -> None:
    import logging

    from simrl import stopping

    # asyncio.run() logs the tasks it cancels on the way out; on a requested stop that is noise
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    stopping.terminate(signum, frame)  # worker threads see the request (asyncio.run waits for them on the way out)


def main() -> None:
    """Console-script entry point (``simrl``).

    SIGTERM (``kill``, a cluster scheduler, a CI timeout) ends the command like Ctrl-C does: as an
    exception, so ``finally`` blocks and exit handlers run (environments close, temporary record
    databases are removed, trajectory files are flushed); exit status 128 + 15. Work in worker threads
    (an evaluation set prepared with ``asyncio.to_thread``) stops within one episode (:mod:`simrl.stopping`). A command that handles
    SIGTERM itself (``simrl serve world-model``) installs its own handler; an inherited "ignore" is kept.
    """
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    app()


def _interrupt(signum: int, frame) -> None:
    """Ctrl-C: request the stop of worker threads too (:mod:`simrl.stopping`), then Python's KeyboardInterrupt."""
    import signal

    from simrl import stopping

    stopping.request()
    signal.default_int_handler(signum, frame)


if __name__ == "__main__":
    main()
