"""Benchmark: ingest a whole extracted kernel package against ``readelf -W -S -r -s``.

    python benchmarks/ingest.py [DIR] [--jobs 2] [--repeat 3] [--symvers FILE] [--naive N]

DIR is an extracted linux-image package's ``lib/modules`` (default: the first
``/work/kernel/*/lib/modules``).  Both sides read the same files from a warm page cache
(the files are read once before timing).  readelf is timed two ways: one process over
all files (xargs-style batches) and the files split over --jobs processes; the ingestion
is ``ingest_paths`` with --jobs worker processes plus writing the gzipped workload, i.e.
what ``permalloc ingest`` does after start-up, the package's ``boot/vmlinuz`` included.
readelf cannot read ``.ko.xz`` (Debian's 6.12 modules): those are decompressed first, and
that time is reported and added to readelf's.  Target (the issue): ingest wall time at
most 3x readelf's.  ``--naive N`` also times naive pyelftools (iterate every relocation
and symbol) on N files and extrapolates to the whole set, for reference.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARGET_RATIO = 3.0


def default_dir() -> str | None:
    for d in sorted(glob.glob("/work/kernel/*/lib/modules")):
        if glob.glob(os.path.join(d, "*", "kernel")):
            return d
    return None


def default_symvers(moddir: str) -> str | None:
    # an extracted linux-headers package of the same release: .../usr/src/linux-headers-<release>/
    releases = [os.path.basename(d) for d in glob.glob(os.path.join(moddir, "*"))]
    for release in releases:
        hits = sorted(glob.glob(f"/work/kernel/*/usr/src/linux-headers-{release}/Module.symvers"))
        if hits:
            return hits[0]
    return None


def decompressed(files: list[str], tmp: str) -> tuple[list[str], float]:
    """Plain copies of the compressed modules (what readelf can read) and the time it took."""
    import gzip
    import lzma

    start = time.perf_counter()
    out = []
    for i, f in enumerate(files):
        if f.endswith((".xz", ".zst", ".gz")):
            with open(f, "rb") as fh:
                data = fh.read()
            if f.endswith(".xz"):
                data = lzma.decompress(data)
            elif f.endswith(".gz"):
                data = gzip.decompress(data)
            else:
                import zstandard

                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            f = os.path.join(tmp, f"{i}.ko")
            with open(f, "wb") as fh:
                fh.write(data)
        out.append(f)
    return out, time.perf_counter() - start


def batches(files: list[str], n: int = 200) -> list[list[str]]:
    return [files[i : i + n] for i in range(0, len(files), n)]


def time_readelf(files: list[str], procs: int) -> float:
    """Wall time of ``readelf -W -S -r -s`` over all files, output to /dev/null."""
    groups = batches(files)
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        if procs <= 1:
            for g in groups:
                subprocess.run(["readelf", "-W", "-S", "-r", "-s", *g], stdout=null, check=False)
        else:
            with ThreadPoolExecutor(procs) as pool:
                list(
                    pool.map(
                        lambda g: subprocess.run(["readelf", "-W", "-S", "-r", "-s", *g], stdout=null, check=False),
                        groups,
                    )
                )
    return time.perf_counter() - start


def time_ingest(moddir: str, jobs: int, symvers: str | None) -> tuple[float, int, int]:
    from permalloc.plugins.module_loader.ingest import ingest_paths

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "w.json.gz"
        start = time.perf_counter()
        res = ingest_paths([moddir], symvers=symvers, jobs=jobs)
        res.write(out)
        wall = time.perf_counter() - start
        return wall, len(res.document["modules"]), len(res.errors)


def time_naive(files: list[str], n: int) -> float:
    """Naive pyelftools: iterate sections, every symbol and every relocation."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    sample = files[:: max(1, len(files) // n)][:n]
    start = time.perf_counter()
    for f in sample:
        with open(f, "rb") as fh:
            elf = ELFFile(fh)
            for sec in elf.iter_sections():
                if isinstance(sec, SymbolTableSection):
                    for sym in sec.iter_symbols():
                        sym.name, sym["st_shndx"]
                elif isinstance(sec, RelocationSection):
                    for rel in sec.iter_relocations():
                        rel["r_info_sym"], rel["r_info_type"]
    took = time.perf_counter() - start
    size = sum(os.path.getsize(f) for f in files)
    sample_size = sum(os.path.getsize(f) for f in sample)
    return took * size / max(1, sample_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", default=default_dir(), help="extracted .../lib/modules")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (median reported)")
    ap.add_argument("--symvers", default=None, help="Module.symvers (default: found nearby)")
    ap.add_argument(
        "--naive", type=int, default=0, metavar="N", help="also time naive pyelftools on N files (extrapolated)"
    )
    args = ap.parse_args(argv)
    if not args.dir or not os.path.isdir(args.dir):
        ap.error("no extracted package directory given or found under /work/kernel")

    from permalloc.plugins.module_loader.ingest import find_module_files

    files, _ = find_module_files([args.dir])
    if not files:
        ap.error(f"no modules under {args.dir}")
    symvers = args.symvers or default_symvers(args.dir)
    total = 0
    for f in files:  # warm the page cache for both sides
        with open(f, "rb") as fh:
            total += len(fh.read())
    print(f"{len(files)} module files, {total / 1e6:.0f} MB, under {args.dir}")
    print(f"cpus: {os.cpu_count()}, jobs: {args.jobs}, symvers: {symvers or '-'}")

    with tempfile.TemporaryDirectory() as tmp:
        plain, t_dec = decompressed(files, tmp)
        if plain != files:
            print(f"decompressing for readelf, 1 process : {t_dec:6.2f} s (added to readelf's times)")
        r1 = [t_dec + time_readelf(plain, 1) for _ in range(args.repeat)]
        rj = [t_dec / args.jobs + time_readelf(plain, args.jobs) for _ in range(args.repeat)]
    ing = [time_ingest(args.dir, args.jobs, symvers) for _ in range(args.repeat)]
    t_r1, t_rj = statistics.median(r1), statistics.median(rj)
    t_ing = statistics.median(t for t, _, _ in ing)
    _, modules, errors = ing[0]

    print(f"readelf -W -S -r -s, 1 process     : {t_r1:6.2f} s")
    print(f"readelf -W -S -r -s, {args.jobs} processes   : {t_rj:6.2f} s")
    print(f"permalloc ingest, {args.jobs} processes      : {t_ing:6.2f} s ({modules} modules, {errors} errors)")
    print(f"ratio ingest / readelf (1 process) : {t_ing / t_r1:6.2f}x")
    print(f"ratio ingest / readelf ({args.jobs} processes): {t_ing / t_rj:6.2f}x (target <= {TARGET_RATIO:.0f}x)")
    if args.naive:
        t_naive = time_naive(files, args.naive)
        print(
            f"naive pyelftools, 1 process (extrapolated from {args.naive} files): "
            f"{t_naive:6.1f} s = {t_naive / t_r1:.0f}x readelf"
        )
    worst = t_ing / min(t_r1, t_rj)
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
