"""Fixtures for the ingestion tests: small kernel-module-like objects built with gcc.

No binary .ko is committed: every object is compiled from the C below at test time, with
the flags that matter from the kernel's own module build (-mcmodel=kernel, -fno-pic,
-mfentry -mrecord-mcount for __mcount_loc, no unwind tables).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CFLAGS = [
    "-c",
    "-O2",
    "-mcmodel=kernel",
    "-fno-pic",
    "-fno-common",
    "-mno-red-zone",
    "-fno-asynchronous-unwind-tables",
    "-fcf-protection=none",
    "-fno-stack-protector",
]

# A module with every kind of section the classification rules care about, table
# sections with known entry counts, relocations to its own classes, to the per-CPU
# area, to the kernel and to another module, and a modinfo with dependencies.
MOD_A = r"""
#define __sec(s) __attribute__((section(s), used))
extern int kernel_func(int);
extern int foo_exported(int);
extern int weak_missing(int) __attribute__((weak));
static int counter;                                              /* .bss */
int data_var = 5;                                                /* .data */
const char rodata_str[] = "hello";                               /* .rodata */
int __sec(".data..ro_after_init") roai_var = 1;
static int __sec(".init.data") init_data_var = 3;
static const int __sec(".init.rodata") init_ro_tab[4] = {1, 2, 3, 4};
__attribute__((section(".data..percpu"))) int pcpu_var;
__attribute__((section(".data..percpu"))) int *pcpu_ptr = &data_var;  /* dropped reloc */

__sec(".init.text") int init_fn(void)
{
    return kernel_func(init_data_var + init_ro_tab[kernel_func(0) & 3]);
}
__sec(".exit.text") void exit_fn(void) { counter = 0; }
int core_fn(int x)
{
    counter += x;
    if (weak_missing)
        x += weak_missing(x);
    return foo_exported(x) + data_var + roai_var + rodata_str[x] + pcpu_var;
}
int core_fn2(int x) { return core_fn(x + 1) + foo_exported(2); }

static const char __sec(".modinfo") modinfo[] =
    "license=GPL\0depends=foo,bar-baz\0name=mod_a\0vermagic=6.1.0-test SMP mod_unload";
static const char __sec("__versions") versions[64] = "module_layout";

/* Tables that the load-time patchers walk, with known entry counts. */
asm(".pushsection .smp_locks,\"a\"\n.balign 4\n"
    ".long core_fn - .\n.long core_fn - .\n.long core_fn2 - .\n.popsection");
asm(".pushsection __jump_table,\"aw\"\n.balign 8\n"
    ".long core_fn - ., exit_fn - .\n.quad data_var - .\n"
    ".long core_fn2 - ., init_fn - .\n.quad data_var - .\n.popsection");
asm(".pushsection .altinstructions,\"a\"\n"
    ".long core_fn - ., core_fn2 - .\n.word 3\n.byte 5, 5\n"
    ".long core_fn2 - ., core_fn - .\n.word 4\n.byte 5, 5\n.popsection");
asm(".pushsection .parainstructions,\"a\"\n.balign 8\n"
    ".quad core_fn\n.byte 1, 5\n.skip 6\n.popsection");
asm(".pushsection .orc_unwind_ip,\"a\"\n"
    ".long core_fn - .\n.long core_fn2 - .\n.long exit_fn - .\n.long init_fn - .\n.popsection");
asm(".pushsection .static_call_sites,\"aw\"\n"
    ".long core_fn - ., data_var - .\n.long core_fn2 - ., data_var - .\n.popsection");
asm(".pushsection .retpoline_sites,\"a\"\n.long core_fn - .\n.popsection");
asm(".pushsection .return_sites,\"a\"\n.long core_fn - .\n.long core_fn2 - .\n.popsection");
asm(".pushsection .ibt_endbr_seal,\"a\"\n.long core_fn - .\n.popsection");
asm(".pushsection .call_sites,\"a\"\n.long core_fn - .\n.long core_fn2 - .\n.popsection");
/* A non-allocated section with a relocation: the loader never applies it. */
asm(".pushsection .discard.test,\"\"\n.quad core_fn\n.popsection");
"""

# A module that exports foo_exported the way EXPORT_SYMBOL does (a __ksymtab_<sym>
# symbol in __ksymtab), built with -fpatchable-function-entry.
FOO = r"""
#define __sec(s) __attribute__((section(s), used))
extern int printk(const char *, ...);
int foo_exported(int x) { return printk("foo %d", x); }
static const int __sec("__ksymtab") __ksymtab_foo_exported[3];
static const char __sec(".modinfo") modinfo[] = "name=foo\0depends=\0license=GPL\0vermagic=6.1.0-test SMP mod_unload";
"""


@dataclass(frozen=True)
class Objects:
    mod_a: Path
    foo: Path
    symvers: Path


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found (the ingestion tests build objects at test time)")
    return path


@pytest.fixture(scope="session")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    gcc = _need("gcc")
    _need("readelf")
    d = tmp_path_factory.mktemp("objs")
    (d / "mod_a.c").write_text(MOD_A)
    (d / "foo.c").write_text(FOO)
    subprocess.run(
        [gcc, *CFLAGS, "-pg", "-mrecord-mcount", "-mfentry", "mod_a.c", "-o", "mod_a.ko"],
        cwd=d,
        check=True,
    )
    subprocess.run(
        [gcc, *CFLAGS, "-fpatchable-function-entry=5", "foo.c", "-o", "foo.ko"],
        cwd=d,
        check=True,
    )
    symvers = d / "Module.symvers"
    symvers.write_text(
        "0x00000001\tkernel_func\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x00000002\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x00000003\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x00000004\tfoo_exported\tdrivers/misc/foo\tEXPORT_SYMBOL_GPL\t\n"
    )
    return Objects(mod_a=d / "mod_a.ko", foo=d / "foo.ko", symvers=symvers)
