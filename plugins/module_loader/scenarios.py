"""Built-in scenarios of the module loader."""

from __future__ import annotations

from permalloc.run.scenario import Scenario, ScenarioSource

# What a typical server loads at boot, as top-level modules (dependencies such as
# libata, scsi_mod, nf_conntrack's helpers or kvm come along through modinfo depends):
# storage and filesystems, NICs of the common server vendors, the netfilter/bridge stack of
# a container host, virtualisation and crypto acceleration, platform management. Chosen
# from `lsmod` of Debian 12 servers. Every name is a module of every bundled workload, so that
# each policy loads the same set from its own kernel (fuse is not in the list: Debian's 6.12
# builds it in, CONFIG_FUSE_FS=y), plus the platform modules of the workload's machine.
BOOT_MODULES: tuple[str, ...] = (
    # storage and filesystems
    "ahci", "nvme", "sd_mod", "sg", "dm_mod", "dm_crypt", "raid1", "xfs", "ext4", "btrfs",
    "loop", "overlay", "autofs4", "configfs",
    # network
    "e1000e", "igb", "ixgbe", "i40e", "mlx5_ib", "bonding", "8021q", "bridge", "br_netfilter",
    "veth", "vxlan", "tun", "wireguard", "tls",
    # netfilter
    "nf_tables", "nft_chain_nat", "nft_ct", "nft_reject_inet", "nf_conntrack", "iptable_filter",
    "iptable_nat", "ip6_tables", "xt_conntrack", "xt_MASQUERADE", "xt_addrtype",
)  # fmt: skip
# after the platform modules: platform management, USB, NLS
BOOT_MODULES_LAST: tuple[str, ...] = ("ipmi_si", "ipmi_devintf", "xhci_pci", "nls_ascii")
# Virtualisation, crypto acceleration and platform drivers differ per machine: an x86 server's
# kvm_intel, RAPL, and the SSE/AES-NI/CLMUL crypto drivers; on arm64 KVM is built in (Debian
# CONFIG_KVM=y) and the crypto drivers are the ARMv8 Crypto Extensions ones (arch/arm64/crypto:
# sha2-ce, aes-ce-blk, ghash-ce, crct10dif-ce), with the SPE PMU and the SBSA watchdog.
PLATFORM_MODULES: dict[str, tuple[str, ...]] = {
    "x86_64": ("kvm_intel", "intel_rapl_msr", "crc32c_intel", "ghash_clmulni_intel", "aesni_intel", "sha256_ssse3"),
    "aarch64": ("sha2_ce", "aes_ce_blk", "ghash_ce", "crct10dif_ce", "arm_spe_pmu", "sbsa_gwdt"),
}


def boot_ops() -> list[dict]:
    ops = [{"op": "load_module", "module": name} for name in BOOT_MODULES]
    for machine, names in PLATFORM_MODULES.items():
        ops += [{"op": "load_module", "module": name, "machine": machine} for name in names]
    return ops + [{"op": "load_module", "module": name} for name in BOOT_MODULES_LAST]


def boot() -> Scenario:
    return Scenario(
        name="boot",
        description=f"load {len(BOOT_MODULES) + len(PLATFORM_MODULES['x86_64']) + len(BOOT_MODULES_LAST)} modules of a typical server "
        "(the platform ones of the workload's machine) with their dependencies, init freed",
        ops=boot_ops(),
    )


def modules_churn() -> Scenario:
    """Load the boot set, then unload and reload the leaf modules three times."""
    ops = boot_ops()
    leaves = ("xfs", "btrfs", "wireguard", "vxlan", "mlx5_ib")
    for _ in range(3):
        ops += [{"op": "unload_module", "module": name} for name in leaves]
        ops += [{"op": "unload_module", "module": "kvm_intel", "machine": "x86_64"}]
        ops += [{"op": "load_module", "module": name} for name in leaves]
        ops += [{"op": "load_module", "module": "kvm_intel", "machine": "x86_64"}]
    return Scenario(name="modules-churn", description="boot set, then 3 rounds of unloading and reloading 6 leaf modules", ops=ops)


SCENARIOS = (
    ScenarioSource("boot", boot().description, boot),
    ScenarioSource("modules-churn", "boot set, then 3 rounds of unloading and reloading 6 leaf modules", modules_churn),
)
