"""--info: what an image is and holds, without unpacking anything."""

from __future__ import annotations

import os
import re
from typing import Any

from . import arch, imagetext, pipeline
from .errors import Damaged, NotFound
from .images import bzimage
from .model import Found, Method, Platform

# CONFIG_ options BPF and tracing users ask about first.
OPTIONS = ("IKHEADERS", "IKCONFIG", "BPF", "BPF_SYSCALL", "BPF_JIT", "BPF_EVENTS", "DEBUG_INFO_BTF",
           "KPROBES", "KPROBE_EVENTS", "UPROBES", "FTRACE", "MODULES")


def describe(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """What the image is and holds; `verify` as in pipeline.find."""
    name = os.fspath(path)
    report: dict[str, Any] = {"input": name}
    found = _headers(name, report, verify)
    split = pipeline.split_report(name)
    if split is not None:
        report["split"] = split
    config_text = _config(name, report)
    options = _options(config_text, found)
    report["options"] = options
    title = _config_title(config_text)
    if report.get("release") is None:
        release = title[1] if title is not None else _release_without_headers(name)
        if release is not None:
            report["release"] = release
    if found is None and options.get("IKHEADERS") == "m":
        in_dump = any(layer["format"] == "physical memory" for layer in report.get("layers", ()))
        report["headers"]["status"] = "module"
        report["headers"]["hint"] = dump_module_hint() if in_dump else module_hint(report.get("release"))
    if found is None and report["config"]["status"] == "absent" and report.get("release") is None:
        raise NotFound("not a kernel image (no kernel headers, no .config, no Linux banner or version)", path=name)
    platform = _platform(name, found, config_text)
    report["platform"] = platform.as_dict() if platform is not None else None
    report["arch"] = platform.arch if platform is not None else None
    report["endian"] = platform.endian if platform is not None else None
    if title is not None:
        report["arch"] = report["arch"] or title[0]
    return report


def explained(exc: NotFound, name: str) -> NotFound:
    """`exc`, saying where the headers are when the image's .config says CONFIG_IKHEADERS=m."""
    try:
        config = pipeline.find_config(name)
    except (NotFound, Damaged):
        return exc
    in_dump = any(layer.format == "physical memory" for layer in config.layers)
    if _options(config.text, None).get("IKHEADERS") != "m" or in_dump:
        return exc  # a dump's own reason already says what =m means there
    title = _config_title(config.text)
    return NotFound(f"no kernel headers built in: {module_hint(title[1] if title else None)}", path=exc.path,
                    layer=exc.layer)


def module_hint(release: str | None) -> str:
    """Where a CONFIG_IKHEADERS=m kernel keeps its headers."""
    where = (f" (/lib/modules/{imagetext.name_part(release)}/kernel/kernel/kheaders.ko on a system running it)"
             if imagetext.name_part(release) else "")
    return f"CONFIG_IKHEADERS=m: the headers are in the module kheaders.ko{where}; give that file"


def dump_module_hint() -> str:
    """Where a CONFIG_IKHEADERS=m kernel's headers are when its crash dump does not give them."""
    return ("CONFIG_IKHEADERS=m: a dump holds the headers only while kheaders.ko is loaded (see the reason: "
            "the module was not loaded, or its pages could not be read through the page tables); "
            "otherwise give the kheaders.ko file")


def _release_without_headers(name: str) -> str | None:
    """An image without headers still says its release: an x86 bzImage's setup header, else the
    `Linux version` banner of an uncompressed image."""
    with pipeline.open_input(name) as buf:
        banner = pipeline.find_banner(buf)
        return bzimage.kernel_version(buf) or (banner[0] if banner else None) or pipeline.dump_release(buf)


def _config_title(config_text: bytes | None) -> tuple[str, str] | None:
    """(architecture, release) from the .config's "# Linux/x86 6.1.192 Kernel Configuration" line."""
    match = re.search(rb"^# Linux/(\S+) (\S+) Kernel Configuration", config_text or b"", re.M)
    return (imagetext.decode(match.group(1)), imagetext.decode(match.group(2))) if match else None


def _platform(name: str, found: Found | None, config_text: bytes | None) -> Platform | None:
    """From the headers found (image headers, else the archive); without them, from the image's
    own headers, else the .config (arch from its title, the rest from CONFIG_64BIT/CPU_BIG_ENDIAN)."""
    if found is not None:
        return pipeline.platform_of(found)
    with pipeline.open_input(name) as buf:
        from_headers = arch.from_elf_header(buf) or arch.from_image(buf)
    title = _config_title(config_text)
    if from_headers is not None or title is None or config_text is None:
        return from_headers
    return arch.from_config(title[0], config_text)


def _headers(name: str, report: dict[str, Any], verify: bool) -> Found | None:
    try:
        found = pipeline.find(name, verify=verify)
    except NotFound as exc:
        report["headers"] = {"status": "absent", "reason": str(exc)}
        return None
    except Damaged as exc:
        report["headers"] = {"status": "damaged", "reason": str(exc), "offset": exc.offset}
        return None
    report["headers"] = {"status": "present", "method": str(found.method), "offset": found.offset,
                         "size": found.size, "sha256": found.sha256, "in": _container(found),
                         "verified": str(found.verified)}
    report["release"] = found.release
    report["banner"] = found.banner
    report["layers"] = [layer.as_dict() for layer in found.layers]
    return found


def _container(found: Found) -> str:
    """What holds the archive: the kernel itself, a module (kheaders.ko), a crash dump's memory,
    or nothing (the input is the archive)."""
    if found.method == Method.WHOLE:
        return "archive"
    formats = {layer.format for layer in found.layers}
    if formats & {"physical memory", "virtual memory"}:
        return "dump"
    if any(layer.format == "elf" and layer.detail.startswith("ET_REL") for layer in found.layers):
        return "module"
    return "kernel"


def _config(name: str, report: dict[str, Any]) -> bytes | None:
    try:
        config = pipeline.find_config(name)
    except (NotFound, Damaged) as exc:
        report["config"] = {"status": "absent", "reason": str(exc)}
        return None
    report["config"] = {"status": "present", "method": str(config.method), "offset": config.offset,
                        "size": len(config.text)}
    report.setdefault("layers", [layer.as_dict() for layer in config.layers])
    return config.text


def _options(config_text: bytes | None, found: Found | None) -> dict[str, str]:
    """CONFIG_ values from the embedded .config, else from the headers' autoconf.h."""
    if config_text is not None:
        pattern = re.compile(rb"^CONFIG_([A-Z0-9_]+)=(.*)$", re.M)
        values = {k.decode(): v.decode(errors="replace") for k, v in pattern.findall(config_text)}
    elif found is not None:
        autoconf = pipeline.archive_member(found.archive, pipeline.AUTOCONF_H) or b""
        values = {k.decode(): ("m" if k.endswith(b"_MODULE") else v.decode(errors="replace"))
                  for k, v in re.findall(rb"^#define CONFIG_([A-Z0-9_]+) (.*)$", autoconf, re.M)}
        values.update({k[: -len("_MODULE")]: "m" for k in list(values) if k.endswith("_MODULE")})
        values = {k: ("y" if v == "1" else v) for k, v in values.items()}
    else:
        return {}
    return {opt: values.get(opt, "n") for opt in OPTIONS}
