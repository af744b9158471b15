"""The ``permalloc ingest`` sub-command (wired into the ``permalloc`` CLI by a plugin hook)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from permalloc.atomicfile import check_writable

from .ingest import DEFAULT_MAX_MODULE_MIB

__all__ = ["add_ingest_command", "run_ingest"]


def add_ingest_command(subparsers: Any) -> None:
    """Add ``ingest`` to an argparse sub-parsers object; sets ``func=run_ingest``."""
    p = subparsers.add_parser(
        "ingest",
        help="ingest a kernel package (modules .ko/.ko.xz/.ko.zst and boot/vmlinuz) into a workload file",
        description=(
            "Read kernel modules (files, or directories such as an extracted "
            "linux-image-*-unsigned package) and the package's boot/vmlinuz-<release>, and write "
            "a compact workload file (gzipped when FILE ends in .gz)."
        ),
    )
    p.add_argument("paths", metavar="PATH", nargs="+", help="module file or directory")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="workload file to write")
    p.add_argument(
        "--symvers",
        metavar="FILE",
        help="Module.symvers of the matching linux-headers package (tells kernel exports "
        "from module exports; default: the exports found in the module set)",
    )
    p.add_argument(
        "--vmlinuz",
        metavar="FILE",
        help="kernel image to read the vmlinux facts from (default: boot/vmlinuz-<release> of the "
        "package that holds PATH)",
    )
    p.add_argument(
        "--no-vmlinuz",
        action="store_true",
        help="ingest the modules only: the workload has no vmlinux facts (e.g. an arm64 package, whose "
        "boot/vmlinuz is the raw arm64 Image, not an ELF file)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        metavar="N",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: %(default)s)",
    )
    p.add_argument(
        "--max-module-size",
        metavar="MIB",
        type=int,
        default=DEFAULT_MAX_MODULE_MIB,
        help="refuse a module that is (or inflates to) more than this many MiB, and a section layout "
        "bigger than that (default: %(default)s; the largest real module, amdgpu.ko of 6.1, is 19.5 MB)",
    )
    p.add_argument("--package", metavar="NAME", help="package name to record (default: detected)")
    p.add_argument("--version", metavar="VER", help="package version to record (default: detected)")
    p.add_argument("--kernel-release", metavar="REL", help="kernel release (default: detected)")
    p.add_argument("--only", metavar="NAME[,NAME...]",
                   help="keep only these modules and what they depend on (e.g. the modules a measurement loaded)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    """Run the sub-command; 0 on success, 1 if any file failed (listed on stderr)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .ingest import IngestError, ingest_paths

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    failures: list[IngestError] = []

    def report(err: IngestError) -> None:
        failures.append(err)
        console.print(str(err), markup=False, highlight=False, soft_wrap=True)

    if args.jobs < 1:
        console.print("permalloc ingest: --jobs must be at least 1", markup=False)
        return 2
    if args.no_vmlinuz and args.vmlinuz:
        console.print("permalloc ingest: --vmlinuz and --no-vmlinuz exclude each other", markup=False)
        return 2
    for given in (args.symvers, args.vmlinuz):
        if given and not os.path.isfile(given):
            console.print(f"{given}: no such file", markup=False)
            return 2
    if args.max_module_size < 1:
        console.print("permalloc ingest: --max-module-size must be at least 1 MiB", markup=False)
        return 2
    check_writable(args.output)  # before the work, not after it

    start = time.perf_counter()
    progress = Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=args.quiet,
    )
    task = progress.add_task("ingest", total=None)
    with progress:
        try:
            result = ingest_paths(
                args.paths,
                symvers=args.symvers,
                vmlinuz=args.vmlinuz,
                no_vmlinuz=args.no_vmlinuz,
                jobs=args.jobs,
                package=args.package,
                version=args.version,
                kernel_release=getattr(args, "kernel_release", None),
                on_total=lambda n: progress.update(task, total=n),
                on_result=lambda k: progress.advance(task, k),
                on_error=report,
                only=[n for n in args.only.split(",") if n] if args.only else None,
                max_module_size=args.max_module_size << 20,
                on_warning=lambda w: console.print(f"warning: {w}", markup=False, highlight=False),
            )
        except (OSError, ValueError) as exc:
            console.print(f"permalloc ingest: {exc}", markup=False)
            return 2

    modules = len(result.document["modules"])
    if modules:
        result.write(args.output)
    if not args.quiet:
        if modules:
            size = os.path.getsize(args.output)
            image = f" and {result.vmlinuz}" if result.vmlinuz else ""
            console.print(
                f"{modules} modules of {result.document['package']} "
                f"{result.document['version']} ({result.document['kernel_release']}){image} -> "
                f"{args.output} ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.1f} s",
                markup=False,
            )
        if result.vmlinuz is None and not args.vmlinuz and not args.no_vmlinuz:
            console.print(
                "note: no boot/vmlinuz-<release> found next to the modules: the workload has no vmlinux facts "
                "(give --vmlinuz; the ftrace and jump label patchers need them)",
                markup=False,
            )
        if result.unresolved:
            where = "in neither Module.symvers nor" if args.symvers else "exported by none of"
            hint = "" if args.symvers else " (give --symvers to tell vmlinux exports apart)"
            console.print(
                f"note: {result.unresolved} undefined symbols {where} the ingested modules: counted as kernel{hint}",
                markup=False,
            )
    if not modules:
        console.print(f"permalloc ingest: no module ingested, {args.output} not written", markup=False)
    if failures:
        # Each failure was printed once, as "FILE: reason", when it happened (above the
        # progress bar, which is transient); end with the count.
        console.print(f"permalloc ingest: {len(failures)} file(s) failed (listed above)", markup=False)
        return 1
    return 0 if modules else 1
