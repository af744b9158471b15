"""Fixtures for the ingestion tests: small kernel-module-like objects built with gcc, and a
tiny vmlinux linked with ld.

No binary is committed: every object is compiled from the sources below at test time, the
modules with the flags that matter from the kernel's own module build (-mcmodel=kernel,
-fno-pic, -mfentry -mrecord-mcount for __mcount_loc, no unwind tables), the vmlinux with a
linker script that defines its markers the way arch/x86/kernel/vmlinux.lds.S does.
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


# A vmlinux in miniature: the output sections and markers of arch/x86/kernel/vmlinux.lds.S
# (RO_DATA with RO_AFTER_INIT_DATA inside .rodata, INIT_DATA with MCOUNT_REC inside .init.data,
# .smp_locks padded to a page, .brk), and tables with known entries: 4 __mcount_loc entries
# (one NULL, one in .init.text), 5 jump entries on 2 keys (one initialised true, one in .bss;
# one entry in .init.text, one in .exit.text; 3 two-byte sites), 3 static call sites (one a
# tail call, one in .init.text) on 1 key, 1 static_call_tramp_key, 2 alt_instr (6.1: 12
# bytes), 1 retpoline site, 1 lock prefix.
TINY_VMLINUX_S = r"""
	.text
	.globl _start
_start:
__fentry__:
	ret
	.p2align 4
f1:	call __fentry__
j1:	.byte 0x66, 0x90
	ret
	.p2align 4
f2:	call __fentry__
j2:	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
j3:	.byte 0xeb, 0x00
sc1:	call __SCT__t1
sc2:	.byte 0xe9
	.long __SCT__t1 - (. + 4)
lock1:	lock incl (%rax)
	ret
	.p2align 4
target:	ret
	.p2align 2
__SCT__t1:
	.byte 0xe9
	.long target - (. + 4)
	.byte 0x0f, 0xb9, 0xcc

	.section .init.text, "ax"
i1:	call __fentry__
ij:	.byte 0xe9
	.long 0
isc:	call __SCT__t1
	ret

	.section .exit.text, "ax"
x1:	.byte 0x66, 0x90
	ret

	.section .rodata, "a"
	.ascii "Linux version 6.1.0-test (nobody@nowhere) #1 SMP\0"

	.section .data..ro_after_init, "aw"
	.quad f1, 7

	.section __jump_table, "aw"
	.balign 8
	.long j1 - ., f1 - .
	.quad key1 - .
	.long j2 - ., f2 - .
	.quad key1 - .
	.long j3 - ., f2 - .
	.quad key2 + 1 - .
	.long ij - ., i1 - .
	.quad key2 - .
	.long x1 - ., f1 - .
	.quad key1 - .

	.section .static_call_sites, "aw"
	.long sc1 - ., sckey - .
	.long sc2 - ., sckey + 1 - .
	.long isc - ., sckey - .

	.section .static_call_tramp_key, "aw"
	.long __SCT__t1 - ., sckey - .

	.section __ksymtab, "a"
	.long 0, 0, 0

	.section .data, "aw"
	.balign 16
key1:	.long 1, 0
	.quad 1
sckey:	.quad 0, 0

	.section .bss, "aw", @nobits
	.balign 16
key2:	.skip 16

	.section .init.data, "aw"
	.quad f2
	.quad 0x1234
	.section __mcount_loc, "a"
	.quad 0, f1, f2, i1

	.section .altinstructions, "a"
	.long f1 - ., f2 - .
	.word 1
	.byte 5, 5
	.long f2 - ., f1 - .
	.word 2
	.byte 5, 5

	.section .retpoline_sites, "a"
	.long f1 - .

	.section .smp_locks, "a"
	.long lock1 - .
"""

TINY_VMLINUX_LDS = """
OUTPUT_FORMAT("elf64-x86-64")
ENTRY(_start)
PHDRS { text PT_LOAD FLAGS(5); data PT_LOAD FLAGS(6); init PT_LOAD FLAGS(7); }
SECTIONS
{
	. = 0xffffffff81000000;
	.text : { _text = .; _stext = .; *(.text) } :text
	_etext = .;
	. = ALIGN(0x1000);
	. = ALIGN(0x200000);
	.rodata : {
		__start_rodata = .;
		*(.rodata)
		. = ALIGN(8);
		*(.data..ro_after_init)
		. = ALIGN(8);
		__start___jump_table = .;
		KEEP(*(__jump_table))
		__stop___jump_table = .;
		. = ALIGN(8);
		__start_static_call_sites = .;
		KEEP(*(.static_call_sites))
		__stop_static_call_sites = .;
		__start_static_call_tramp_key = .;
		KEEP(*(.static_call_tramp_key))
		__stop_static_call_tramp_key = .;
	} :text
	__ksymtab : { *(__ksymtab) }
	. = ALIGN(0x1000);
	__end_rodata = .;
	. = ALIGN(0x200000);
	__end_rodata_hpage_align = .;
	__end_rodata_aligned = .;
	.data : { _sdata = .; *(.data) _edata = .; } :data
	. = ALIGN(0x1000);
	__vvar_page = .;
	.vvar : { __vvar_beginning_hack = .; BYTE(0) . = __vvar_beginning_hack + 0x1000; } :data
	. = ALIGN(__vvar_page + 0x1000, 0x1000);
	. = ALIGN(0x1000);
	.init.begin : { __init_begin = .; }
	.init.text : { _sinittext = .; *(.init.text) _einittext = .; } :init
	.init.data : {
		*(.init.data)
		. = ALIGN(8);
		__start_mcount_loc = .;
		KEEP(*(__mcount_loc))
		__stop_mcount_loc = .;
	}
	. = ALIGN(8);
	.retpoline_sites : { *(.retpoline_sites) }
	. = ALIGN(8);
	.altinstructions : { *(.altinstructions) }
	. = ALIGN(8);
	.exit.text : { *(.exit.text) }
	. = ALIGN(0x1000);
	.init.end : { __init_end = .; }
	. = ALIGN(0x1000);
	.smp_locks : { __smp_locks = .; *(.smp_locks) . = ALIGN(0x1000); __smp_locks_end = .; }
	. = ALIGN(0x1000);
	.bss : { __bss_start = .; *(.bss) . = ALIGN(0x1000); __bss_stop = .; }
	__end_of_kernel_reserve = .;
	. = ALIGN(0x1000);
	.brk : { __brk_base = .; . += 64 * 1024; *(.bss..brk) __brk_limit = .; }
	. = ALIGN(0x1000);
	_end = .;
	/DISCARD/ : { *(.note.gnu.property) }
}
"""


@dataclass(frozen=True)
class TinyKernel:
    linked: Path  #: with its symbol table (what nm reads)
    stripped: Path  #: objcopy --strip-all: section headers only, like Debian's vmlinux


@pytest.fixture(scope="session")
def tiny_kernel(tmp_path_factory: pytest.TempPathFactory) -> TinyKernel:
    tools = {tool: _need(tool) for tool in ("as", "ld", "objcopy", "nm")}
    d = tmp_path_factory.mktemp("vmlinux")
    (d / "tiny.S").write_text(TINY_VMLINUX_S)
    (d / "tiny.lds").write_text(TINY_VMLINUX_LDS)
    subprocess.run([tools["as"], "--64", "tiny.S", "-o", "tiny.o"], cwd=d, check=True)
    subprocess.run([tools["ld"], "-T", "tiny.lds", "-o", "vmlinux", "tiny.o"], cwd=d, check=True, capture_output=True)
    subprocess.run([tools["objcopy"], "--strip-all", "vmlinux", "vmlinux.stripped"], cwd=d, check=True)
    return TinyKernel(linked=d / "vmlinux", stripped=d / "vmlinux.stripped")


@pytest.fixture
def arch(arch: str) -> str:
    """These tests load the amd64 workloads and the x86-64 objects built here; under the arm64
    env they run on generic (which runs x86-64 kernels). arm64's modules: tests/arches/arm64."""
    return "generic" if arch == "arm64" else arch
