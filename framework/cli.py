"""The ``permalloc`` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from permalloc import __version__, strictjson
from permalloc.atomicfile import atomic_write, check_writable, write_text
from permalloc.errors import PermallocError, PluginError, PluginWarning
from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import (
    arch_plugins,
    broken_plugins,
    collect,
    discover,
    machine_manager,
    registry_manager,
)
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec
from permalloc.report.tables import ReportColumn, print_tables, report_json
from permalloc.run.modelfile import format_validation_error
from permalloc.run.provenance import describe
from permalloc.run.registry import (
    default_for,
    override_policy,
    policies,
    policies_for,
    resolve_policy,
    resolve_scenario,
    scenarios,
)
from permalloc.run.scenario import Scenario
from permalloc.run.timeout import time_limit
from permalloc.run.workloads import resolve_workload, workloads
from permalloc.skeleton import KINDS, write_package

EPILOG = ("Run 'permalloc COMMAND --help' for the options of a command. Exit status: 0 on success; 1 on an error, "
          "reported on one line, and for replay when a number differs; 2 on a usage error; 130 when interrupted "
          "(128 + SIGINT); 141 (128 + SIGPIPE, what 'seq' or 'cat' give) when the reader of stdout goes away, as "
          "in '| head -1', quietly.")
GC_THRESHOLD = 50_000  # allocations between first-generation collections in the console script
EXIT_PIPE = 128 + signal.SIGPIPE  # the shell's status of a tool that SIGPIPE ended (coreutils)
WIDE_HELP = ("tables at least 120 columns wide: boxed, one row per policy and op kind in the per-op table (default: "
             "metrics as rows and policies as columns, six policies in 80 columns)")


def _machine_args(parser: argparse.ArgumentParser, arch_help: str) -> None:
    group = parser.add_argument_group("machine")
    group.add_argument("--arch", help=f"arch backend, as `permalloc plugins` lists them (default: {arch_help})")
    group.add_argument("--cpus", type=int, default=8, help="online CPUs (default: %(default)s)")
    group.add_argument("--memory", default="16G", help="RAM, e.g. 16G or 4T (default: %(default)s)")
    group.add_argument("--numa-nodes", type=int, default=1, help="NUMA nodes (default: %(default)s)")
    group.add_argument("--platform", help="firmware platform of the arch (x86: q35, server-2s; default: the arch's)")
    group.add_argument("--initrd", default="0", help="initramfs size the machine booted with, e.g. 32M (default: none)")
    group.add_argument("--memory-state", default="fresh",
                       help="what the machine did before the scenario: fresh, pagecache-N (page cache at N%% of "
                       "free memory), aged-H (H hours of mixed churn) (default: %(default)s)")
    group.add_argument("--no-gbpages", action="store_true", help="no 1 GiB direct-map pages")
    group.add_argument("--cpu-features", metavar="FLAG[,FLAG...]", default="",
                       help="CPU features the arch acts on, by /proc/cpuinfo name (x86: invlpgb for AMD's broadcast "
                       "TLB invalidation, la57 for 5-level paging; default: none)")
    group.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: %(default)s)")


class _PipeConsole(Console):
    """rich exits with status 1 when the reader of stdout is gone (`| head`); here that is the
    closed pipe that main() ends quietly with 141."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _stdout_console(min_width: int = 120) -> Console:
    """Tables on stdout, at least ``min_width`` wide (wider terminals get their width)."""
    return _PipeConsole(width=max(min_width, Console().width))


def _seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _add_timeout(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help=f"stop {what} that runs longer than SECONDS of wall time (a plugin that loops forever): "
                   "exit 1 naming it (default: no limit)")


def _add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true",
                   help="fail at the first W^X violation, contract violation (naming the plugin and hook) or leak")


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def machine_spec(args: argparse.Namespace, arch: str) -> MachineSpec:
    try:
        return MachineSpec(
            arch=arch, cpus=args.cpus, memory=args.memory, numa_nodes=args.numa_nodes,
            platform=args.platform, initrd=args.initrd, memory_state=args.memory_state,
            gbpages=not args.no_gbpages, seed=args.seed,
            cpu_features=frozenset(f for f in args.cpu_features.split(",") if f),
        )
    except ValidationError as exc:
        raise PermallocError(f"machine spec: {format_validation_error(exc)}") from None


def _write_output(text: str, path: str | None) -> None:
    if path and path != "-":
        write_text(path, text)
    else:
        sys.stdout.write(text)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that cannot be written before the simulation runs."""
    for name in ("output", "trace"):
        path = getattr(args, name, None)
        if path and path != "-":
            check_writable(path)
    if getattr(args, "plot", None):
        from permalloc.report.plots import check_plot_path

        check_plot_path(args.plot)
    if getattr(args, "html", None):
        check_writable(args.html, directory=True)


# -- commands ------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    pm = registry_manager()
    spec = MachineSpec()
    arches = {id(plugin): name for name, (plugin, _) in arch_plugins(pm, spec).items()}
    rows = []
    for record in discover():
        if record.error:
            rows.append({"name": record.name, "kind": "broken", "arch": None, "version": record.version,
                         "origin": record.origin + (f" ({record.dist})" if record.dist else ""),
                         "module": "", "hooks": [], "error": record.error})
            continue
        hooks = sorted(
            hc.name for hc in pm.get_hookcallers(record.plugin) or [] if hc.name.startswith("permalloc_")
        )
        kind = "arch" if id(record.plugin) in arches else "consumer/observer"
        rows.append({
            "name": record.name,
            "kind": kind,
            "arch": arches.get(id(record.plugin)),
            "version": record.version or str(getattr(record.plugin, "__version__", "")),
            "origin": record.origin + (f" ({record.dist})" if record.dist else ""),
            "module": getattr(record.plugin, "__name__", type(record.plugin).__name__),
            "hooks": hooks,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="permalloc plugins", header_style="bold")
    for col in ("name", "kind", "version", "origin", "hooks"):
        table.add_column(col)
    for row in rows:
        kind = f"arch ({row['arch']})" if row["arch"] else row["kind"]
        if row.get("error"):
            hooks = f"left out: {row['error']}"
        else:
            hooks = ", ".join(h.removeprefix("permalloc_") for h in row["hooks"])
        table.add_row(row["name"], kind, row["version"], row["origin"], hooks)
    _stdout_console().print(table)
    return 0


def report_columns(pm: Any) -> list[ReportColumn]:
    """The plugins' report rows, each reading its value under a guard that names its plugin."""
    return [dataclasses.replace(column, value=_column_value(plugin, column))
            for plugin, column in collect(pm, "permalloc_report_columns", ReportColumn)]


def _column_value(plugin: str, column: ReportColumn) -> Callable[[Any], Any]:
    def value(result: Any) -> Any:
        try:
            return column.value(result)
        except PermallocError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {plugin!r}: the value of report column {column.name!r} "
                              f"(permalloc_report_columns) raised {type(exc).__name__}: {exc}") from exc

    return value


def cmd_spec(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(MachineSpec.model_json_schema(), indent=2))
    else:
        print(MachineSpec().model_dump_json(indent=2))
    return 0


def cmd_hooks(args: argparse.Namespace) -> int:
    import textwrap

    from permalloc.plugin.hookinfo import describe_hooks

    hooks = describe_hooks(registry_manager())
    if args.format == "json":
        print(json.dumps([hook.to_json() for hook in hooks], indent=2))
        return 0
    if not args.verbose:
        for hook in hooks:
            print(f"{hook.name}: {hook.summary}")
        return 0
    yes_no = {True: "yes", False: "no"}
    for i, hook in enumerate(hooks):
        if i:
            print()
        print(hook.signature)
        print(f"    family: {hook.family}   firstresult: {yes_no[hook.firstresult]}   "
              f"historic: {yes_no[hook.historic]}")
        print(f"    implemented by: {', '.join(impl.label() for impl in hook.implementations) or 'none'}")
        print(textwrap.fill(hook.advice, 100, initial_indent="    advice: ", subsequent_indent="        "))
        print()
        print(textwrap.indent(hook.doc, "    "))
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    known = policies(registry_manager())
    if args.json:
        print(json.dumps([p.model_dump() for p in known.values()], indent=2))
        return 0
    for policy in known.values():
        runs_on = f" [workload: {policy.workload}]" if policy.workload else ""
        print(f"{policy.name:12} {policy.description}{runs_on}")
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    known = workloads(registry_manager())
    if args.json:
        print(json.dumps([source.model_dump(mode="json") for source in known.values()], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="permalloc workloads", header_style="bold")
    for col, justify in (("name", "left"), ("kernel release", "left"), ("package (version)", "left"),
                         ("modules", "right"), ("machine", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "package (version)", overflow="fold")
    for source in known.values():
        table.add_row(source.name, source.kernel_release, f"{source.package}\n({source.version})",
                      str(source.modules), source.machine)
    _stdout_console().print(table)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    known = scenarios(registry_manager())
    for source in known.values():
        print(f"{source.name:12} {source.description}")
    return 0


def _scenario(pm: Any, name: str, spec: MachineSpec, policy: PolicySpec | None, err: Console) -> Scenario:
    """The scenario ``name``; ``default`` as the machine's plugins can run it (noted on stderr)."""
    if name != "default" or "default" not in scenarios(pm):
        return resolve_scenario(pm, name)
    machine_pm, _arch = machine_manager(spec, policy or DEFAULT_POLICY)
    scenario, notes = default_for(pm, machine_pm)
    for note in notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    return scenario


def cmd_run(args: argparse.Namespace) -> int:
    from permalloc.run.simulation import run

    pm = registry_manager()
    policy = override_policy(resolve_policy(pm, args.policy), args.set)
    spec = machine_spec(args, args.arch or policy.arch or "generic")
    scenario = _scenario(pm, args.scenario, spec, policy, Console(stderr=True))
    workload = resolve_workload(pm, args.workload) if args.workload else None
    _check_outputs(args)
    with contextlib.ExitStack() as stack:
        trace_fh = stack.enter_context(atomic_write(args.trace)) if args.trace else None
        tracer = (lambda e: trace_fh.write(strictjson.dumps(e.to_json(), "a trace event") + "\n")) if trace_fh else None
        with time_limit(args.timeout, f"policy {policy.name}"):
            result = run(scenario, spec, policy, strict=args.strict, trace=tracer, workload=workload)
    provenance = describe(spec, scenario, [policy], [workload or _own_workload(pm, policy, spec)], [spec.seed], args.argv)
    if args.format == "json":
        document = report_json(scenario.name, spec, [result], provenance=provenance)
        _write_output(strictjson.dumps(document, "the results", indent=2) + "\n", args.output)
    else:
        with _table_output(args.output, wide=True) as console:  # plugins' module views (--modules) are wide
            print_tables(scenario.name, [result], console, report_columns(pm), wide=args.wide)
            pm.hook.permalloc_run_report(args=args, result=result, console=console)
    return 0


def _own_workload(pm: Any, policy: PolicySpec, spec: MachineSpec) -> Any:
    from permalloc.run.workloads import spec_workload

    return spec_workload(pm, policy, spec.model_copy(update={"arch": policy.arch or spec.arch}))


@contextlib.contextmanager
def _table_output(path: str | None, wide: bool) -> Iterator[Console]:
    """The console tables go to: stdout, or the file ``-o`` names (plain text, no colour
    codes); ``wide``: at least 120 columns, else the terminal's width (80 in a file)."""
    if not path or path == "-":
        yield _stdout_console() if wide else _PipeConsole()
        return
    with atomic_write(path) as fh:
        yield Console(file=fh, width=120 if wide else 80, no_color=True, color_system=None, force_terminal=False)


def cmd_compare(args: argparse.Namespace) -> int:
    if args.schema:
        from permalloc.report.tables import ReportDocument

        _write_output(json.dumps(ReportDocument.model_json_schema(), indent=2) + "\n", args.output)
        return 0
    pm = registry_manager()
    arch = args.arch or "x86"
    if args.policy:
        chosen = [override_policy(resolve_policy(pm, name), args.set) for name in args.policy]
    else:
        chosen = [override_policy(p, args.set) for p in policies_for(pm, arch)]
    twice = sorted({p.name for p in chosen if [q.name for q in chosen].count(p.name) > 1})
    if twice:
        raise PermallocError(f"policy {twice[0]!r} is named twice; a variant NAME[FIELD=VALUE] makes a second column")
    if args.baseline is not None and args.baseline not in [p.name for p in chosen]:
        raise PermallocError(f"--baseline {args.baseline!r} is not among the compared policies "
                             f"({', '.join(p.name for p in chosen)})")
    spec = machine_spec(args, arch)
    err = Console(stderr=True)
    scenario = _scenario(pm, args.scenario, spec, chosen[0] if chosen else None, err)
    workload = resolve_workload(pm, args.workload) if args.workload else None
    _check_outputs(args)
    samples: tuple[str, ...] = ()
    if args.plot or args.html:
        from permalloc.report.plots import DISTRIBUTION_METRICS

        samples = DISTRIBUTION_METRICS  # the per-op values the distribution plots draw
    for policy in chosen:
        if policy.arch and policy.arch != arch and args.arch:
            raise PermallocError(f"policy {policy.name!r} is for arch {policy.arch!r}, not {arch!r}")
    from permalloc.run.compare import workloads_for

    seeds = [spec.seed + k for k in range(args.seeds)]
    document, per_seed = _compare_document(scenario, spec, chosen, workloads_for(spec, chosen, workload), seeds,
                                           args.baseline, args, err, f"{scenario.name} on {arch}",
                                           samples)
    results = per_seed[0]
    if args.plot:
        from permalloc.report.plots import save_plots

        for path in save_plots(results, scenario.name, args.plot, document.get("seeds")):
            err.print(f"wrote {path}")
    if args.html:
        from permalloc.report.html import write_html

        known = workloads(pm) | ({workload.name: workload} if workload else {})
        err.print(f"wrote {write_html(args.html, scenario, spec, results, chosen, known, document.get('seeds'))}")
    _write_document(document, results, args, pm)
    return 0


def _compare_document(scenario: Scenario, spec: MachineSpec, chosen: list[PolicySpec], loads: list[Any],
                      seeds: list[int], baseline: str | None, args: argparse.Namespace, err: Console, title: str,
                      samples: Sequence[str] = ()) -> tuple[dict[str, Any], list[list[Any]]]:
    """Run every policy on every seed (one pool) and build the result document with its
    provenance; ``samples``: the metrics whose per-op values the results keep (for plots)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from permalloc.run.compare import compare_seeds
    from permalloc.run.provenance import describe
    from permalloc.run.seedstats import summarise

    total = len(chosen) * len(seeds)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                  TimeElapsedColumn(), console=err, transient=True, disable=args.quiet or not err.is_terminal) as bar:
        task = bar.add_task(title, total=total)
        per_seed = compare_seeds(scenario, spec, chosen, seeds, jobs=args.jobs, on_done=lambda r: bar.advance(task),
                                 timeout=args.timeout, workloads=loads, strict=getattr(args, "strict", False),
                                 samples=samples)
    summary = summarise(seeds, per_seed, baseline) if len(seeds) > 1 or baseline else None
    provenance = describe(spec, scenario, chosen, loads, seeds, args.argv)
    return report_json(scenario.name, spec, per_seed[0], provenance=provenance, seeds=summary), per_seed


def _write_document(document: dict[str, Any], results: list[Any], args: argparse.Namespace, pm: Any) -> None:
    """The result in the format asked for; a CSV written to a file gets its provenance next to it."""
    from permalloc.report.tables import report_csv

    if args.format == "json":
        _write_output(strictjson.dumps(document, "the results", indent=2) + "\n", args.output)
    elif args.format == "csv":
        _write_output(report_csv(document["scenario"], results), args.output)
        if args.output and args.output != "-":
            write_text(f"{args.output}.provenance.json",
                       strictjson.dumps(document["provenance"], "the provenance", indent=2) + "\n")
    else:
        with _table_output(args.output, args.wide) as console:
            if document.get("seeds"):
                from permalloc.report.intervals import print_intervals

                print_intervals(document["seeds"], console)
            else:
                print_tables(document["scenario"], results, console, report_columns(pm), wide=args.wide)


def _print_schema(model: type) -> int:
    _write_output(json.dumps(model.model_json_schema(), indent=2) + "\n", None)
    return 0


def _batch_output(args: argparse.Namespace, default: str) -> tuple[str, Console]:
    """A sweep's or search's output folder (``-o``, else ``default``) and ``--plot`` file,
    both checked before any run starts; and the console its messages go to."""
    out = args.output or default
    check_writable(out, directory=True)
    if args.plot:
        from permalloc.report.plots import check_plot_path

        check_plot_path(args.plot)
    return out, Console(stderr=True)


def _batch_progress(args: argparse.Namespace, err: Console, unit: str) -> Any:
    """A progress bar of ``unit`` done on stderr, when it is a terminal and not ``--quiet``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                    TimeElapsedColumn(), console=err, transient=True, disable=args.quiet or not err.is_terminal)


def cmd_sweep(args: argparse.Namespace) -> int:
    from permalloc.run.grid import Grid

    if args.schema:
        return _print_schema(Grid)
    if not args.grid:
        raise PermallocError("sweep: give a grid file (GRID.toml), or --schema")
    from permalloc.api import sweep
    from permalloc.report.sweepplot import SWEEP_METRICS, TABLE_METRICS, default_x, save_sweep_plot
    from permalloc.run.grid import load_grid
    from permalloc.run.tidy import write_tables

    grid = load_grid(args.grid)
    out, err = _batch_output(args, f"sweep-{grid.name}")
    with _batch_progress(args, err, "runs") as bar:
        task = bar.add_task(f"sweep {grid.name}", total=None)
        result = sweep(grid, output=out, jobs=args.jobs, dask=args.dask, timeout=args.timeout, strict=args.strict,
                       base=os.path.dirname(os.path.abspath(args.grid)),
                       on_done=lambda plan, cached: bar.advance(task),
                       on_start=lambda text: err.print(text, markup=False),
                       on_plans=lambda n: bar.update(task, total=n))
    table = result.to_frame()
    seeds = table["seed"].nunique()
    for path in write_tables(table, out, seeds):
        err.print(f"wrote {path}", markup=False, highlight=False)
    if not args.quiet:
        err.print(f"{result.ran} runs done now, {len(result.plans) - result.ran} found done in {out}", highlight=False)
    summary = result.summary()
    if args.plot:
        x = args.x or default_x(grid.swept(), table)
        if x not in table.columns:
            raise PermallocError(f"--x {x!r}: not a column of the sweep; swept: {', '.join(grid.swept()) or 'none'}")
        title = f"sweep {grid.name}: " + (grid.description or ", ".join(grid.scenarios))
        err.print(f"wrote {save_sweep_plot(summary, x, args.metric or SWEEP_METRICS, args.plot, title, grid.swept())}", markup=False, highlight=False)
    from permalloc.report.tables import sweep_table

    _PipeConsole().print(sweep_table(summary, grid.swept(), args.metric or TABLE_METRICS,
                                         f"sweep {grid.name}: run totals"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from permalloc.run.search import SearchSpace

    if args.schema:
        return _print_schema(SearchSpace)
    if not args.space:
        raise PermallocError("search: give a search space file (SPACE.toml), or --schema")
    from permalloc.api import search
    from permalloc.report.searchplot import save_front_plot
    from permalloc.report.tables import search_table
    from permalloc.run.search import load_space, write_search

    space = load_space(args.space)
    out, err = _batch_output(args, f"search-{space.name}")
    with _batch_progress(args, err, "trials") as bar:
        task = bar.add_task(f"search {space.name}", total=space.trials)
        result = search(space, jobs=args.jobs, dask=args.dask, timeout=args.timeout,
                        base=os.path.dirname(os.path.abspath(args.space)), on_done=lambda number: bar.advance(task),
                        on_start=lambda text: err.print(text, markup=False))
    for path in write_search(result, out):
        if path.suffix == ".csv":
            err.print(f"wrote {path}", markup=False, highlight=False)
    err.print(f"wrote {len(result.front)} policy files of the front in {out}/policies (permalloc compare -p FILE)",
              markup=False, highlight=False)
    if args.plot:
        err.print(f"wrote {save_front_plot(result, args.plot)}", markup=False, highlight=False)
    _PipeConsole().print(search_table(result))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from permalloc.run import replay

    pm = registry_manager()
    from permalloc.report.tables import ReportDocument

    recorded = replay.read(args.result, ReportDocument)
    plan = replay.rebuild(recorded, pm, args.result)
    err = Console(stderr=True)
    args.argv = recorded["provenance"]["command"]  # the new document describes the recorded run
    now, _ = _compare_document(plan.scenario, plan.spec, plan.policies, plan.workloads, plan.seeds, plan.baseline,
                               args, err, f"replay of {args.result}")
    differing = replay.differences(recorded, now)
    out = _stdout_console()
    if not differing:
        out.print(f"{args.result}: all {sum(1 for _ in replay.numbers(recorded.get('results')))} result numbers "
                  "replay equal", markup=False, highlight=False)
        return 0
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{args.result}: {len(differing)} numbers differ"), header_style="bold")
    for column in ("number", "recorded", "replayed"):
        table.add_column(column, justify="left" if column == "number" else "right")
    for path, old, new in differing[:args.limit]:
        table.add_row(escape(path), "-" if old is None else f"{old:,}", "-" if new is None else f"{new:,}")
    out.print(table)
    if len(differing) > args.limit:
        out.print(f"... and {len(differing) - args.limit} more (--limit)", markup=False)
    for what, old, new in plan.environment:
        out.print(f"differs: {what}: recorded {old}, now {new}", markup=False, highlight=False)
    if not plan.environment:
        out.print("the versions, plugins and workload files are the recorded ones", markup=False)
    return 1


def cmd_validate(args: argparse.Namespace) -> int:
    from permalloc.model.spec import parse_size
    from permalloc.run import validate

    pm = registry_manager()
    policy = resolve_policy(pm, args.policy) if args.policy else None
    memory = None
    if args.memory:
        try:
            memory = parse_size(args.memory)
        except ValueError as exc:
            raise PermallocError(f"--memory: {exc}") from None
    workload = resolve_workload(pm, args.workload) if args.workload else None
    _check_outputs(args)
    report = validate.validate(args.files, pm, policies(pm), arch=args.arch, policy=policy, memory=memory,
                               seed=args.seed, workload=workload, cpu=args.cpu)
    if args.format == "json":
        _write_output(strictjson.dumps(report, "the validation report", indent=2) + "\n", args.output)
    else:
        validate.print_report(report, _stdout_console(100))
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    folder = write_package(args.name, args.kind, args.output)
    print(f"wrote {folder}/ ({args.kind} plugin package); next: pip install -e '{folder}[test]' && pytest {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permalloc",
        description="Simulate the Linux kernel's permissioned vmalloc (perm_alloc) and the designs "
        "around it, and compare them by TLB shootdowns, direct-map splits, huge pages, memory "
        "overhead, W^X exposure and relocation reach.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"permalloc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("spec", help="print the default machine spec, or its JSON schema")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of MachineSpec")
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("hooks", help="list the hooks a plugin can implement",
                       description="List every hook of permalloc/plugin/hookspecs.py: its summary, or with -v its "
                       "signature, family, firstresult/historic options, implementations, ordering advice and "
                       "full documentation.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="signature, family, options, implementations, advice and the full docstring of each hook")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: a list of objects (name, family, signature, firstresult, historic, doc, advice, "
                   "implementations), whatever -v says")
    p.set_defaults(func=cmd_hooks)

    p = sub.add_parser("policies", help="list named policies")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_policies)

    p = sub.add_parser("workloads", help="list the workloads (kernels: their modules and vmlinux facts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_workloads)

    p = sub.add_parser("scenarios", help="list named scenarios")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("run", help="run one scenario under one policy and print its metrics")
    p.add_argument("--scenario", "-s", required=True, help="scenario name or .json/.toml file")
    p.add_argument("--policy", "-p", default="default", help="policy name or .json/.toml file (default: %(default)s)")
    _machine_args(p, "the policy's arch, else generic")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a policy field, e.g. --set live_cache=true (repeatable)")
    p.add_argument("--workload", "-w", metavar="NAME|FILE",
                   help="workload (kernel) to run on, as `permalloc workloads` lists them, or a workload file "
                   "(default: the policy's)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    p.add_argument("--trace", metavar="FILE", help="write every event as JSON Lines")
    _add_strict(p)
    p.add_argument("--wide", action="store_true", help=WIDE_HELP)
    _add_timeout(p, "the run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "compare",
        help="run one scenario under several policies and compare them (the main job)",
        description="Run a scenario under several policies and compare TLB shootdowns, direct-map "
        "splits, huge pages, memory overhead, W^X exposure and relocation reach. With no arguments: "
        "the default scenario (boot + bpf-churn + tracing) under every built-in policy on x86 with "
        "8 CPUs and 16 GiB, each policy on the workload of the kernel it models.",
    )
    p.add_argument("--scenario", "-s", default="default", help="scenario name or .json/.toml file (default: %(default)s)")
    p.add_argument("--policy", "-p", action="append", help="policy name or file (repeatable; default: all built-ins for the arch)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a field of every policy")
    p.add_argument("--workload", "-w", metavar="NAME|FILE",
                   help="run every policy on this workload (default: each policy on its own kernel's workload)")
    _machine_args(p, "the policies' arch, else x86")
    p.add_argument("--jobs", "-j", type=_positive, default=os.cpu_count() or 1,
                   help="policies run in parallel processes; results do not depend on it (default: %(default)s)")
    _add_timeout(p, "each policy's run")
    p.add_argument("--seeds", type=_positive, default=1, metavar="N",
                   help="run every policy on N seeds (--seed, --seed+1, ...) and show each metric's mean with its "
                   "95%% interval (default: %(default)s)")
    p.add_argument("--baseline", metavar="POLICY",
                   help="show every other policy as a ratio to POLICY, marking differences that cannot be told "
                   "apart from seed noise (paired t-test over the seeds)")
    _add_strict(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("-o", "--output", help="write the table, JSON or CSV here instead of stdout (CSV: the provenance "
                   "goes to OUTPUT.provenance.json)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of --format json and exit")
    p.add_argument("--wide", action="store_true", help=WIDE_HELP)
    p.add_argument("--plot", metavar="FILE",
                   help="write bar plots to FILE (.png/.svg/.pdf), the timeline (NAME-timeline.EXT) and the per-op "
                   "distributions (NAME-per-op.EXT) next to it")
    p.add_argument("--html", metavar="DIR",
                   help="write a self-contained HTML report (sortable tables, plots inline) as DIR/index.html")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "sweep",
        help="run a grid of policies x machines x scenarios x seeds; tidy Parquet/CSV, plots",
        description="Run every combination of a grid file (permalloc sweep --schema; docs/sweeps.md) and write "
        "OUT/results.parquet and OUT/results.csv (a row per run x metric, and per op kind x statistic), "
        "OUT/summary.csv (mean and 95%% interval over seeds) and each run's result as OUT/runs/KEY.json: "
        "started again, a sweep runs only what has no result yet. Results are the same whatever the executor.",
        epilog=EPILOG,
    )
    p.add_argument("grid", nargs="?", metavar="GRID.toml", help="the grid file (.toml or .json)")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default: ./sweep-NAME)")
    p.add_argument("--jobs", "-j", type=_positive, default=os.cpu_count() or 1,
                   help="local worker processes (default: the CPU count, %(default)s)")
    p.add_argument("--dask", metavar="ADDRESS|local[:N]",
                   help="run on a Dask distributed scheduler (tcp://HOST:PORT), or start a LocalCluster of N "
                   "workers (prints its dashboard address)")
    _add_timeout(p, "a run, or a sweep in which no run finished for SECONDS,")
    _add_strict(p)
    p.add_argument("--plot", metavar="FILE", help="draw each metric against a swept axis (.png/.svg/.pdf)")
    p.add_argument("--x", metavar="COLUMN", help="the swept axis the plot draws against (default: the first "
                   "axis with more than one value)")
    p.add_argument("--metric", "-m", action="append", metavar="METRIC",
                   help="a metric the table and plot show (repeatable; default: shootdowns, ipis, "
                   "directmap_splits_2m, directmap_4k_bytes, and in the plot also allocated_bytes, cost_ns)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of the grid file and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no notes")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "search",
        help="multi-objective search of a policy's settings (optuna NSGA-II); the Pareto front as policy files",
        description="Vary the fields of a policy that a search space file names (permalloc search --schema; "
        "docs/sweeps.md) over its metrics with optuna's NSGA-II sampler, BATCH trials at a time, and write "
        "OUT/trials.csv, OUT/front.csv and a policy file per point of the Pareto front (OUT/policies/NAME.json) "
        "that permalloc compare -p FILE runs again.",
        epilog=EPILOG,
    )
    p.add_argument("space", nargs="?", metavar="SPACE.toml", help="the search space file (.toml or .json)")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default: ./search-NAME)")
    p.add_argument("--jobs", "-j", type=_positive, default=os.cpu_count() or 1,
                   help="local worker processes (default: the CPU count, %(default)s)")
    p.add_argument("--dask", metavar="ADDRESS|local[:N]", help="run on a Dask scheduler, or a LocalCluster of N workers")
    _add_timeout(p, "a trial")
    p.add_argument("--plot", metavar="FILE", help="draw the trials and the front, objective against objective")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of the search space file and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "replay",
        help="run again what a result file describes and compare every number",
        description="Rebuild the run a `compare --format json` result describes (its provenance: machine spec, "
        "scenario, policies after overrides and variants, workloads, seeds) and compare every number of the new "
        "result with the recorded one. Exit 0 with one line when all are equal; exit 1 with the numbers that "
        "differ and the versions, plugins or workload files that differ from the recorded ones.",
    )
    p.add_argument("result", metavar="RESULT.json", help="a result written by permalloc compare --format json")
    p.add_argument("--jobs", "-j", type=_positive, default=os.cpu_count() or 1,
                   help="runs in parallel processes (default: %(default)s)")
    _add_timeout(p, "each run")
    p.add_argument("--limit", type=_positive, default=30, help="differing numbers listed at most (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "validate",
        help="replay measurements of a real kernel and print simulated vs measured",
        description="Read per-operation measurements of a real kernel (CSV files in the format of "
        "docs/measurements.md, or a directory of them: event files plus an info file), rebuild the "
        "measured machine (CPU count, RAM, initrd, CPU features, kernel), replay the same operations in "
        "the same order, and print simulated next to measured per event kind: all-CPU flushes (full, "
        "range, cpa), sync broadcasts, 2M/1G splits, DirectMap deltas, /proc/modules sizes and "
        "set_memory_* calls, plus the boot DirectMap lines.",
    )
    p.add_argument("files", nargs="+", metavar="FILE|DIR", help="measurement CSV files or a directory of them")
    p.add_argument("--policy", "-p", help="policy name or file (default: the built-in policy of the measured kernel)")
    p.add_argument("--arch", help="arch backend (default: the policy's arch, else x86)")
    p.add_argument("--memory", help="RAM of the measured machine (default: from the boot's present pages)")
    p.add_argument("--workload", help="workload name or file of the measured kernel (default: a workload file among "
                   "FILE|DIR, else the registered workload of the measured release)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: %(default)s)")
    p.add_argument("--cpu", type=int, default=0, help="CPU of the task that ran the measured operations (default: "
                   "%(default)s, the boot CPU, where the initramfs' init runs)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "new-plugin",
        help="write the skeleton of a plugin package (arch, consumer or policy)",
        description="Write a new folder holding an installable plugin package: pyproject.toml registering the "
        "package in the permalloc entry-point group, the package permalloc_NAME with a working hook "
        "implementation of the kind, and tests/ that use permalloc's pytest fixtures (pytest --fixtures lists "
        "them) and the contract suite. It installs and passes its tests as written: "
        "permalloc new-plugin demo --kind arch && pip install ./demo && pytest demo.",
    )
    p.add_argument("name", metavar="NAME", help="the plugin's name: its entry point, and the name of its arch or "
                   "policy; the import package is permalloc_NAME (lower-case letters, digits, - or _)")
    p.add_argument("--kind", "-k", required=True, choices=list(KINDS),
                   help="what the package's example does: " + "; ".join(f"{kind}: {what}" for kind, what in KINDS.items()))
    p.add_argument("-o", "--output", metavar="DIR", help="the folder to create; it must not exist (default: ./NAME)")
    p.set_defaults(func=cmd_new_plugin)
    return parser


@contextlib.contextmanager
def _one_line_plugin_warnings() -> Iterator[None]:
    """A plugin left out of a registry is one line on stderr; other warnings keep Python's format."""
    python_show = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, PluginWarning):
            print(f"permalloc: warning: {message}", file=sys.stderr)
        else:
            python_show(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = python_show


def main(argv: Sequence[str] | None = None) -> int:
    with _one_line_plugin_warnings():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        pm = registry_manager()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for impl in pm.hook.permalloc_add_commands.get_hookimpls():
            try:  # a plugin that cannot add its commands is left out of them, never the others
                impl.function(subparsers=subparsers)
            except Exception as exc:  # noqa: BLE001
                print(f"permalloc: warning: plugin {impl.plugin_name!r}: permalloc_add_commands raised "
                      f"{type(exc).__name__}: {' '.join(str(exc).split())}; its commands are left out", file=sys.stderr)
        args = parser.parse_args(argv)
        args.argv = ["permalloc", *(sys.argv[1:] if argv is None else argv)]
        if getattr(args, "func", None) not in (None, cmd_plugins):
            for record in broken_plugins():
                print(f"permalloc: warning: plugin {record.name!r} left out: {record.error}", file=sys.stderr)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except PermallocError as exc:
        print(f"permalloc: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `permalloc hooks -v | head`: the reader is gone (before OSError, its base)
        # what is still buffered for stdout would fail again at exit: send it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as exc:  # an output file or directory that cannot be written
        print(f"permalloc: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("permalloc: interrupted", file=sys.stderr)
        return 130


def _main() -> Any:  # the console script
    # A run makes millions of short-lived objects and keeps few: the collector's default
    # first-generation threshold (700) runs it thousands of times per run for nothing
    # (~8 % of a run's time); the worker processes of --jobs inherit this
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    sys.exit(main())


if __name__ == "__main__":  # python -m permalloc.cli
    _main()
