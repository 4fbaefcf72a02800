"""Zip archives handed in by Moodle or by students: checked before anything is written, unpacked safely.

Every archive is read from its central directory first: an archive whose
total unpacked size, number of entries or nesting is over the limits is
refused before one byte is written (a 52 KB zip that expands to gigabytes
never reaches the disk).  Entry by entry, a name that climbs out of its
folder (``../``, an absolute path, a drive letter), a symlink, a path deeper
than the limit or a compression ratio no notebook reaches is refused too.
The sizes in the central directory are an upper bound of what Python's
``zipfile`` will ever write (it stops at the declared size and checks the
CRC), so the check cannot be lied to.

Two policies: Moodle's export (``strict=False``) skips a bad entry and says
so, so that one student's file never stops the class; a student's own zip
(``strict=True``) is unpacked whole or not at all, and the refusal becomes
that student's problem.  Extracted files are created fresh (``O_EXCL``), never
through an existing link, and nothing is ever written outside ``dest``.
"""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from coursekit.paths import CourseError

MB = 2**20


class ArchiveError(CourseError):
    """An archive refused as a whole (not a zip, too big, too many entries, unsafe entry in strict mode)."""


@dataclass
class Limits:
    total_bytes: int = 4096 * MB        # everything unpacked from one intake, nested zips included
    archive_bytes: int = 256 * MB       # one student's own zip, unpacked
    entries: int = 20000                # entries of one intake, nested zips included
    ratio: float = 200.0                # uncompressed / compressed size of one entry (above 1 MB)
    depth: int = 16                     # path components of one entry's name
    nesting: int = 3                    # zips inside zips, the outer one counting as 1


@dataclass
class Budget:
    """What is left of the limits across every archive of one intake."""
    limits: Limits = field(default_factory=Limits)
    bytes_left: int = -1
    entries_left: int = -1

    def __post_init__(self):
        if self.bytes_left < 0:
            self.bytes_left = self.limits.total_bytes
        if self.entries_left < 0:
            self.entries_left = self.limits.entries


def entry_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    """Why one entry must not be extracted, or None."""
    name = info.filename
    if "\x00" in name:
        return "a NUL byte in its name"
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in pure.parts:
        return "a path that climbs out of its folder (..)"
    if len(pure.parts) > limits.depth:
        return f"a path {len(pure.parts)} folders deep (limit {limits.depth})"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if info.file_size > MB and info.file_size > limits.ratio * max(info.compress_size, 1):
        return (f"a compression ratio of {info.file_size / max(info.compress_size, 1):.0f} "
                f"(limit {limits.ratio:g}): {info.file_size // MB} MB from {info.compress_size} bytes")
    return None


def inspect(path: Path, budget: Budget, strict: bool) -> tuple[list[zipfile.ZipInfo], list[tuple[str, str]]]:
    """(entries to extract, [(entry, why refused)]) of a zip, or ArchiveError before anything is written."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path.name} is not a zip archive")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ArchiveError(f"{path.name} cannot be read as a zip archive ({exc})") from None
    if len(infos) > budget.entries_left:
        raise ArchiveError(f"{path.name} holds {len(infos)} entries (limit {budget.limits.entries} per intake)")
    good, bad = [], []
    for info in infos:
        why = entry_problem(info, budget.limits)
        if why:
            bad.append((info.filename, why))
        elif not info.is_dir():
            good.append(info)
    if bad and strict:
        name, why = bad[0]
        raise ArchiveError(f"{path.name}: entry {name!r} has {why}"
                           + (f" (and {len(bad) - 1} more bad entries)" if len(bad) > 1 else ""))
    # entries that share compressed data (the "overlapping" zip bomb) declare more compressed bytes
    # than the file holds
    packed = sum(i.compress_size for i in infos)
    if packed > path.stat().st_size + 64 * len(infos):
        raise ArchiveError(f"{path.name}: its entries overlap ({packed} compressed bytes declared in a "
                           f"{path.stat().st_size}-byte file): a zip bomb")
    total = sum(i.file_size for i in good)
    if strict and total > budget.limits.archive_bytes:
        raise ArchiveError(f"{path.name} would unpack to {total // MB} MB "
                           f"(limit {budget.limits.archive_bytes // MB} MB for a zip inside the export)")
    if total > budget.bytes_left:
        raise ArchiveError(f"{path.name} would unpack to {total // MB} MB "
                           f"(limit {budget.limits.total_bytes // MB} MB per intake)")
    return good, bad


def extract(path: Path, dest: Path, budget: Budget, strict: bool) -> list[tuple[str, str]]:
    """Check ``path`` (see :func:`inspect`), then unpack it into ``dest``; return the refused entries."""
    good, bad = inspect(path, budget, strict)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    with zipfile.ZipFile(path) as z:
        for info in good:
            target = os.path.realpath(os.path.join(root, *PurePosixPath(info.filename.replace("\\", "/")).parts))
            if not target.startswith(root + os.sep):  # cannot happen after entry_problem; kept as a guard
                bad.append((info.filename, "a path outside the archive's folder"))
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                bad.append((info.filename, "a name given twice"))
                continue
            with os.fdopen(fd, "wb") as out, z.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            budget.bytes_left -= info.file_size
            budget.entries_left -= 1
    return bad


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def extract_nested(root: Path, budget: Budget, skip: set[str] | None = None) -> list[dict]:
    """Unpack every zip found under ``root`` into a folder beside it named after it (as nbgrader's
    ``unzip(tree=True)`` does), strictly, to ``budget.limits.nesting`` levels; return what was refused
    as ``[{"archive": path relative to root, "reason": ...}]``.  A refused zip stays as it is."""
    refused: list[dict] = []
    done: set[str] = set(skip or ())
    for level in range(2, budget.limits.nesting + 2):
        found = sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()
                       and is_zip_name(p.name) and str(p) not in done)
        if not found:
            break
        for name in found:
            done.add(name)
            p = Path(name)
            rel = str(p.relative_to(root))
            if level > budget.limits.nesting:
                refused.append({"archive": rel, "reason": f"{p.name}: zips nested more than "
                                                          f"{budget.limits.nesting} deep are not opened"})
                continue
            try:
                extract(p, p.with_name(p.name[:-4]), budget, strict=True)
            except ArchiveError as exc:  # refused before anything was written
                refused.append({"archive": rel, "reason": str(exc)})
    return refused
