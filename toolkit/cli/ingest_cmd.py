"""``toolkit ingest``."""

from __future__ import annotations

import atexit
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import err, info, print_json


@app.command("ingest")
def ingest_command(
    source: Annotated[str | None, typer.Argument(
        help="A folder of images, a CSV/TSV manifest, the Unsplash Lite folder, a file of URLs/paths "
             "(one a line), or one image path/URL.", show_default=False)] = None,
    kind: Annotated[str, typer.Option(
        "--kind", help="Source kind: auto | directory | manifest | unsplash | urls.")] = "auto",
    resume: Annotated[bool, typer.Option(
        "--resume", help="Skip items already indexed (checked by id before embedding).")] = False,
    retry_failures: Annotated[Path | None, typer.Option(
        "--retry-failures", help="Retry exactly the items of a failures file from an earlier run.",
        exists=True, dir_okay=False)] = None,
    failures_file: Annotated[Path | None, typer.Option(
        "--failures-file", help="Where failed items go (JSONL; default toolkit-failures-<time>.jsonl "
                                "in the working directory, written only when something fails).")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="Manifest column with the id.")] = None,
    path_column: Annotated[str | None, typer.Option(
        "--path-column", help="Manifest column with the image path (relative to the manifest).")] = None,
    url_column: Annotated[str | None, typer.Option(
        "--url-column", help="Manifest column with an image URL.")] = None,
    caption_column: Annotated[str | None, typer.Option(
        "--caption-column", help="Manifest column with the caption.")] = None,
    label_column: Annotated[str | None, typer.Option(
        "--label-column", help="Manifest column with the label.")] = None,
    relation_column: Annotated[str | None, typer.Option(
        "--relation-column", help="Manifest column with the relation id (the group key).")] = None,
    metadata_columns: Annotated[str | None, typer.Option(
        "--metadata-columns", help="Comma-separated manifest columns kept as metadata (default: all "
                                   "columns not mapped above).")] = None,
    index: Annotated[str | None, typer.Option("--index", help="Alias to write to (index.alias).")] = None,
    image_model: Annotated[str | None, typer.Option(
        "--image-model", help="sentence-transformers CLIP model id or folder (image_model.name).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Images per forward pass (image_model.batch_size).")] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="auto | cpu | cuda (image_model.device).")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="auto | int8 | bf16 | fp16 | fp32 (image_model.precision; default auto: the "
                            "fastest whose vectors agree with fp32 on the first batch).")] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="With an explicit reduced precision: stop when it disagrees with fp32 "
                                     "on the first batch instead of falling back to fp32 "
                                     "(image_model.strict_precision).", show_default=False)] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="local (this process) | ray (a Ray cluster; pip install \"toolkit[ray]\").")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --engine ray: auto (this node's cluster) | ray://HEAD:10001; default: "
                              "RAY_ADDRESS, else start Ray on this machine.", show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Embed images locally with CLIP and index them; every item ends indexed, skipped or failed.

    Failed items go to a JSONL failures file; `--retry-failures FILE` retries them. After Ctrl-C or a
    lost cluster, run the same command with `--resume` to finish without embedding again.

    Example: toolkit ingest reverse_image_search.csv --resume
    """
    from toolkit.cluster import make_client
    from toolkit.errors import ValidationError
    from toolkit.images.sources import SOURCE_KINDS, ColumnMap, open_source
    from toolkit.ingest import ingest
    from toolkit.ingest.ledger import RetrySource

    settings = settings_from(config=config, es_url=es_url, **{
        "index.alias": index, "image_model.name": image_model, "image_model.batch_size": batch_size,
        "image_model.device": device, "image_model.precision": precision,
        "image_model.strict_precision": strict})
    if retry_failures is not None and source is not None:
        raise ValidationError("give either a SOURCE or --retry-failures, not both",
                              hint="drop SOURCE to retry the failures file's items")
    if retry_failures is None and source is None:
        raise ValidationError("nothing to ingest", hint="pass a SOURCE (folder, manifest, URL list) or "
                                                        "--retry-failures FILE")
    if retry_failures is not None and failures_file is not None \
            and failures_file.resolve() == retry_failures.resolve():
        # The ledger truncates the failures file at the first failure while the retry still reads it.
        raise ValidationError("--failures-file is the file being retried: writing it would lose the records "
                              "not yet read", hint="drop --failures-file (a new file is written) or name "
                                                   "another file")
    if engine not in ("local", "ray"):
        raise ValidationError(f"unknown --engine {engine!r}", hint="use --engine local | ray")
    if ray_address is not None and engine != "ray":
        raise ValidationError("--ray-address applies to --engine ray only", hint="add --engine ray")
    if kind not in SOURCE_KINDS:
        raise ValidationError(f"unknown --kind {kind!r}", hint=f"use --kind {' | '.join(SOURCE_KINDS)}")
    column_flags = [flag for flag, value in (
        ("--id-column", id_column), ("--path-column", path_column), ("--url-column", url_column),
        ("--caption-column", caption_column), ("--label-column", label_column),
        ("--relation-column", relation_column), ("--metadata-columns", metadata_columns)) if value is not None]
    if retry_failures is not None:
        items: Any = RetrySource(retry_failures)
    else:
        columns = ColumnMap(
            id=id_column, path=path_column, url=url_column, caption=caption_column, label=label_column,
            relation_id=relation_column,
            metadata=tuple(c.strip() for c in metadata_columns.split(",") if c.strip())
            if metadata_columns is not None else None)
        items = open_source(source or "", kind=kind, columns=columns)  # type: ignore[arg-type]
    if column_flags and getattr(items, "kind", "") != "manifest":
        # Otherwise silently ignored: the user believes ids/labels come from columns that were never read.
        raise ValidationError(
            f"column flags ({', '.join(column_flags)}) apply to a CSV/TSV manifest only, and "
            f"{source if source is not None else retry_failures} is read as {getattr(items, 'kind', '?')}",
            hint="drop the column flags, or pass the manifest (--kind manifest for another extension)")
    client = make_client(settings)
    run: Any = ingest
    if engine == "ray":
        from functools import partial

        from toolkit.ingest.ray_engine import RayOptions, import_ray, ingest_ray

        import_ray()  # not installed: the install hint before anything starts
        run = partial(ingest_ray, options=RayOptions(address=ray_address))

    with _StopSignals() as signals:
        report = _run_with_progress(lambda on_progress, on_precision: run(
            client, settings, source=items, resume=resume, failures_file=failures_file,
            on_progress=on_progress, on_precision=on_precision), quiet=as_json)
        # Still under the handlers: a second Ctrl-C while the summary is written is absorbed.
        _finish(report, items=items, retry_failures=retry_failures, as_json=as_json,
                terminated=signals.terminated)


def _finish(report: Any, *, items: Any, retry_failures: Path | None, as_json: bool, terminated: bool) -> None:
    """Print the summary; raise the exit the report calls for."""
    from toolkit.errors import ValidationError

    if as_json:
        print_json(report.as_json())
    else:
        _print_summary(report)
    resolved = int(getattr(items, "relative_resolved", 0))
    if resolved:
        info(f"note: {resolved} relative paths in {escape(str(retry_failures))} (an older failures file) were "
             f"read relative to its folder {escape(str(Path(str(retry_failures)).absolute().parent))}")
    if report.failures_write_error is not None:
        # The records are in no file: they were listed above (or in the JSON), the error says why.
        write_error = ValidationError(
            f"{report.failures_write_error}; {len(report.unsaved_failures)} failed items are in no file "
            "(listed above)", hint="pass a writable file path to --failures-file, then retry them")
        if report.error is None and not report.interrupted:
            raise write_error
        _print_error_line(write_error)
    if report.error is not None:
        raise report.error
    if report.interrupted:
        raise typer.Exit(143 if terminated else 130)
    if report.failed:
        from toolkit.errors import ItemsFailed

        raise ItemsFailed(f"{report.failed} of {report.seen} items failed; each is listed with its reason in "
                          f"{report.failures_file}", failures_file=report.failures_file,
                          hint=f"fix them, then `toolkit ingest --retry-failures {report.failures_file}`")


class _StopSignals:
    """During the run: the first Ctrl-C or SIGTERM stops it (``KeyboardInterrupt``: summary, failures
    file, exit 130 or 143) instead of killing the process with items in flight unrecorded; a second
    one is absorbed with a note while the summary is written; a third stops at once."""

    def __enter__(self) -> _StopSignals:
        self.terminated = False
        self.received = 0
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.received += 1
        self.terminated = self.terminated or signum == signal.SIGTERM
        if self.received == 2:
            os.write(2, b"stopping: writing the failures file and the summary (Ctrl-C again to quit now)\n")
            return
        raise KeyboardInterrupt

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        if self.received:
            # The interpreter's teardown (torch's finalizers) must not turn a late Ctrl-C into a traceback.
            atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
        if exc_type is KeyboardInterrupt and self.terminated:  # before any item (loading the model)
            err.print("terminated")
            raise typer.Exit(143)


def _print_error_line(exc: Any) -> None:
    from toolkit.cli.output import print_error

    print_error(exc)


def _run_with_progress(run: Any, *, quiet: bool) -> Any:
    """Run ``run(on_progress)`` under a rich progress bar on stderr (none with --json)."""
    if quiet or not err.is_terminal:
        return run(None, None)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("[bold]ingest[/]"), BarColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("starting", total=None)
        shown = {"precision": ""}

        def on_progress(p: Any) -> None:
            progress.update(task, description=(
                f"{p.seen} seen · {p.indexed} indexed · {p.skipped} skipped · {p.failed} failed · "
                f"{p.images_per_second:.1f} images/s{shown['precision']}"))

        def on_precision(choice: Any) -> None:
            shown["precision"] = f" · {escape(choice.describe())}"

        return run(on_progress, on_precision)


def _print_summary(report: Any) -> None:
    from toolkit.images.sources import printable
    from toolkit.ingest.ledger import shown_location

    def name(text: str) -> str:
        """An item's name on one line: a newline or escape in a file name cannot fake or split output."""
        return escape(printable(text))

    state = "done" if report.complete else ("interrupted" if report.interrupted else "stopped")
    info(f"ingest {state}: [bold]{report.seen}[/] seen, [green]{report.indexed} indexed[/], "
         f"{report.skipped} skipped, [red]{report.failed} failed[/] in {report.seconds:.1f} s "
         f"({report.images_per_second:.1f} images/s)")
    for reason, n in sorted(report.skipped_reasons.items()):
        info(f"  skipped {n}: {escape(reason)}")
        # Each example under its own reason (its text starts with the reason, then the detail).
        for example in [e for e in report.skipped_examples if e["reason"].startswith(reason)][:5]:
            info(f"    {name(example['position'] or example['id'])}: {escape(example['reason'])}")
    for stage, n in sorted(report.failed_reasons.items()):
        info(f"  failed {n} at {stage}")
        for example in (e for e in report.failed_examples if e["stage"] == stage):
            shown = example.get("location") or example.get("position") or example.get("id") or "?"
            info(f"    {name(shown)}: {escape(example['reason'])}")
    if report.ignored_files:
        info(f"  {report.ignored_files} files without an image extension were not read")
    if report.precision:
        from toolkit.images.embedder import PrecisionChoice

        choice = PrecisionChoice(**{k: report.precision[k] for k in (
            "requested", "used", "device", "thresholds", "measured", "fell_back", "reason")})
        info(f"  {'[yellow]' if choice.fell_back else ''}{escape(choice.describe())}"
             f"{'[/]' if choice.fell_back else ''}; vectors sent as {report.vector_encoding}")
    if report.failures_file:
        info(f"failures: {escape(str(report.failures_file))} (retry with `toolkit ingest --retry-failures "
             f"{escape(str(report.failures_file))}`)")
    if report.unsaved_failures:
        info(f"failed items not saved to a file ({escape(str(report.failures_write_error))}):")
        for record in report.unsaved_failures:
            info(f"  {name(shown_location(str(record.get('location') or record.get('id') or '')))} "
                 f"[{escape(str(record.get('stage')))}]: {escape(str(record.get('reason')))}")
    if not report.complete:
        info("run the same command with --resume to finish")
