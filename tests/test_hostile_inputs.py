"""Hostile archives and folders: each ends in a clean one-line error or a bounded skip, and the good
image beside it is still scored (`realjudge detect`: exit 1, one `realjudge: error: NAME: reason`
line on stderr per bad input). The limits are docs/RELIABILITY.md's "Archive and folder limits"."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tarfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_images
from realjudge.data import containers
from realjudge.data.containers import ArchiveLimits, ENV_VARS, ZipContainer, open_container
from realjudge.data.inputs import expand_glob, expand_inputs
from realjudge.data.samples import iter_sample_bytes
from realjudge.errors import DecodeError, LimitExceeded, SourceError, UsageError


def png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_images(1, seed)[0][0]).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _one_thread_and_fresh_cache():
    """One torch thread (the suite shares small machines) and no archive remembered across tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    containers.close_containers()
    yield
    containers.close_containers()
    torch.set_num_threads(before)


def detect(*paths, env: dict | None = None) -> tuple[int, list[dict], list[str]]:
    """`realjudge detect PATHS --format jsonl` in-process: (exit code, records, stderr lines)."""
    from realjudge.cli import main

    res = CliRunner().invoke(main, ["detect", *map(str, paths), "--format", "jsonl", "--device", "cpu",
                                    "--no-progress"], env=env)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    records = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    return res.exit_code, records, res.stderr.splitlines()


def errors_of(lines: list[str]) -> list[str]:
    """The error lines; every stderr line is `realjudge: error|warning|note: ...`."""
    for line in lines:
        assert line.startswith(("realjudge: error: ", "realjudge: warning: ", "realjudge: note: ")), line
    return [line.removeprefix("realjudge: error: ") for line in lines if line.startswith("realjudge: error: ")]


def assert_partial(code, records, lines, good: list[str], bad: dict[str, str]):
    """Exit 1; each good path scored; one error line per bad path, naming it and containing its reason."""
    assert code == 1, lines
    scored = {r["path"]: r for r in records}
    for g in good:
        assert scored[g]["error"] is None and scored[g]["verdict"] in ("fake", "real", "uncertain"), scored.get(g)
    errors = errors_of(lines)
    assert len(errors) == len(bad), errors
    for name, reason in bad.items():
        hits = [e for e in errors if e.startswith(f"{name}: ") and reason in e]
        assert len(hits) == 1, (name, reason, errors)
    assert sum(1 for r in records if r["error"]) == len(bad)


@pytest.fixture
def good(tmp_path) -> Path:
    p = tmp_path / "good.png"
    p.write_bytes(png(3))
    return p


# ------------------------------------------------------------------------------------------ limits


def test_limits_have_safe_defaults_and_env_overrides(monkeypatch):
    lim = ArchiveLimits()
    assert (lim.max_members, lim.max_member_bytes, lim.max_total_bytes, lim.max_depth) == (
        250_000, 256 << 20, 4 << 30, 1)
    monkeypatch.setenv(ENV_VARS["max_members"], "10000")
    monkeypatch.setenv(ENV_VARS["max_member_bytes"], "1M")
    monkeypatch.setenv(ENV_VARS["max_total_bytes"], "2GiB")
    monkeypatch.setenv(ENV_VARS["max_depth"], "0")
    assert ArchiveLimits.from_env() == ArchiveLimits(10_000, 1 << 20, 2 << 30, 0)
    assert ArchiveLimits.from_env(max_depth=2).max_depth == 2
    monkeypatch.setenv(ENV_VARS["max_members"], "lots")
    with pytest.raises(UsageError, match="REALJUDGE_ARCHIVE_MAX_MEMBERS='lots'"):
        ArchiveLimits.from_env()
    with pytest.raises(UsageError, match="max_members must be an integer of at least 1"):
        ArchiveLimits(max_members=0)


def test_a_bad_limit_in_the_environment_is_a_usage_error(tmp_path, good):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.png", png())
    code, _, lines = detect(z, good, env={ENV_VARS["max_total_bytes"]: "-5"})
    assert code == 2 and len(lines) == 1 and "REALJUDGE_ARCHIVE_MAX_TOTAL_BYTES='-5'" in lines[0]


# ---------------------------------------------------------------------------------------- zip bombs


def test_zip_bomb_is_refused_by_its_declared_size_before_inflating(tmp_path, good, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", png(1))
        zf.writestr("huge.png", b"\0" * (8 << 20))  # 8 MiB of zeros, about 8 kB compressed
    assert bomb.stat().st_size < 64 << 10
    env = {ENV_VARS["max_member_bytes"]: "1M"}
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: opened.append(
        getattr(info, "filename", info)) or real_open(self, info, *a, **k))
    code, records, lines = detect(bomb, good, env=env)
    assert "huge.png" not in opened  # refused from the directory's declared size: never inflated
    assert_partial(code, records, lines, [str(good), f"{bomb}::ok.png"],
                   {f"{bomb}::huge.png": "member declares 8388608 bytes once inflated; the limit is 1048576"})


def test_zip_bomb_with_a_lying_declared_size_stops_while_inflating(tmp_path, good, monkeypatch):
    """The declared size says 10 bytes, the stream would inflate forever: reading stops at the limit."""
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("liar.png", b"tiny")
    c = ZipContainer(str(z), ArchiveLimits(max_member_bytes=1 << 20))

    class Endless(io.RawIOBase):
        served = 0

        def readable(self):
            return True

        def readinto(self, b):
            Endless.served += len(b)
            b[:] = b"\0" * len(b)
            return len(b)

    monkeypatch.setattr(c._zip, "open", lambda info, *a, **k: io.BufferedReader(Endless()))
    with pytest.raises(DecodeError, match=r"member inflates past 1048576 bytes although it declares 4"):
        c.read("liar.png")
    assert Endless.served <= (1 << 20) + (2 << 20)  # bounded: the limit and at most a chunk or two more


def test_overlapping_members_bomb_is_refused_by_the_declared_total(tmp_path, good):
    """Many directory entries pointing at one compressed stream (Fifield's overlapping zip bomb): each
    member is small, their declared total is not, and the whole archive is refused before inflating."""
    data = b"\0" * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(data) + comp.flush()
    crc = zlib.crc32(data)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), len(data), 5, 0) + b"a.png" + body
    central = b"".join(
        struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), len(data),
                    len(f"m{i:04d}.png"), 0, 0, 0, 0, 0, 0) + f"m{i:04d}.png".encode() for i in range(5000))
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 5000, 5000, len(central), len(local), 0)
    z = tmp_path / "overlap.zip"
    z.write_bytes(local + central + end)
    t = time.monotonic()
    code, records, lines = detect(z, good)
    assert time.monotonic() - t < 60
    assert_partial(code, records, lines, [str(good)],
                   {str(z): "its members declare more than 4294967296 bytes once inflated"})


def test_tar_gz_bomb_member_is_refused_and_the_rest_read(tmp_path, good):
    t = tmp_path / "bomb.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for name, data in (("a.png", png(1)), ("huge.png", b"\0" * (4 << 20)), ("b.png", png(2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    code, records, lines = detect(t, good, env={ENV_VARS["max_member_bytes"]: "1M"})
    assert_partial(code, records, lines, [str(good), f"{t}::a.png", f"{t}::b.png"],
                   {f"{t}::huge.png": "member declares 4194304 bytes once inflated; the limit is 1048576"})


def test_tar_header_claiming_exabytes_is_refused_without_reading(tmp_path, good):
    """A GNU long-name header and a member that declare 2**62 bytes (base-256 sizes)."""
    def header(name: bytes, typeflag: bytes, size_field: bytes) -> bytes:
        h = bytearray(512)
        h[0:len(name)] = name
        h[100:108] = b"0000644\0"
        h[124:136] = size_field
        h[156:157] = typeflag
        h[257:263] = b"ustar\0"
        h[263:265] = b"00"
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)

    huge = b"\x80" + (1 << 62).to_bytes(11, "big")
    for typeflag in (b"L", b"0"):
        t = tmp_path / f"exa-{typeflag.decode()}.tar"
        t.write_bytes(header(b"x.png", typeflag, huge) + b"\0" * 1024)
        code, records, lines = detect(t, good)
        assert code == 1 and len(errors_of(lines)) == 1 and errors_of(lines)[0].startswith(f"{t}: ")
        assert records[-1]["path"] == str(good) and records[-1]["error"] is None
    # a negative base-256 size, after a good member
    t = tmp_path / "negative.tar"
    t.write_bytes(header(b"a.png", b"0", b"%011o\0" % len(png(1))) + png(1).ljust(-(-len(png(1)) // 512) * 512, b"\0")
                  + header(b"n.png", b"0", b"\xff" * 11 + b"\xfe") + b"\0" * 1024)
    code, records, lines = detect(t, good)
    assert_partial(code, records, lines, [str(good), f"{t}::a.png"],
                   {f"{t}::n.png": "member declares a negative size (-2)"})


# ------------------------------------------------------------------------------------ hostile names


def test_zip_and_tar_members_with_dotdot_or_absolute_names_are_refused(tmp_path, good):
    evil = ["../escape.png", "../../etc/x.png", "/abs/path.png", "ok/../../up.png", "C:/win.png"]
    z = tmp_path / "names.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("fine.png", png(1))
        for n in evil:
            zf.writestr(zipfile.ZipInfo(n), png(2))  # ZipInfo keeps the name as given
    assert sorted(zipfile.ZipFile(z).namelist()) == sorted(evil + ["fine.png"])
    t = tmp_path / "names.tar"
    with tarfile.open(t, "w") as tf:
        for n in evil + ["fine.png"]:
            data = png(1)
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    before = set(os.listdir(tmp_path.parent))
    code, records, lines = detect(z, t, good)
    assert set(os.listdir(tmp_path.parent)) == before  # nothing written anywhere
    bad = {}
    for arch in (z, t):
        for n in evil:
            why = "an absolute path" if n.startswith(("/", "C:")) else "a '..' component"
            bad[f"{arch}::{n}"] = f"unsafe member name ({why}): not read"
    assert_partial(code, records, lines, [str(good), f"{z}::fine.png", f"{t}::fine.png"], bad)


def test_control_characters_in_member_names_stay_on_one_line(tmp_path, good):
    z = tmp_path / "ctl.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a\nrealjudge: error: forged.png", b"not an image")
        zf.writestr("b\x1b[2J.png", b"not an image")
    code, records, lines = detect(z, good)
    errors = errors_of(lines)
    assert code == 1 and len(errors) == 2 and len(lines) == 2
    assert any("a\\nrealjudge: error: forged.png" in e for e in errors)
    assert any("b\\x1b[2J.png" in e for e in errors)


# ------------------------------------------------------------------------------------------ symlinks


def test_symlinks_and_hard_links_in_tars_are_not_followed(tmp_path, good):
    t = tmp_path / "links.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        data = png(1)
        info = tarfile.TarInfo("real.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for name, kind, target in (("passwd.png", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("up.png", tarfile.SYMTYPE, "../../secret.png"),
                                   ("loop1.png", tarfile.SYMTYPE, "loop2.png"), ("loop2.png", tarfile.SYMTYPE, "loop1.png"),
                                   ("hard.png", tarfile.LNKTYPE, "real.png"), ("fifo.png", tarfile.FIFOTYPE, ""),
                                   ("dev.png", tarfile.CHRTYPE, "")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    code, records, lines = detect(t, good)
    bad = {f"{t}::{n}": "symbolic link member" for n in ("passwd.png", "up.png", "loop1.png", "loop2.png")}
    bad[f"{t}::hard.png"] = "hard link member (to 'real.png'): links in archives are not followed"
    bad[f"{t}::fifo.png"] = bad[f"{t}::dev.png"] = "not a regular file member"
    assert_partial(code, records, lines, [str(good), f"{t}::real.png"], bad)


def test_zip_symlink_members_are_not_followed(tmp_path, good):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("passwd.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("ok.png", png(1))
    code, records, lines = detect(z, good)
    assert_partial(code, records, lines, [str(good), f"{z}::ok.png"],
                   {f"{z}::passwd.png": "symbolic link member: links in archives are not followed"})


@pytest.mark.skipif(not hasattr(os, "symlink") or not hasattr(os, "mkfifo"), reason="POSIX links and FIFOs")
def test_symlinks_fifos_and_loops_in_a_folder(tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(5))
    (d / "a.png").write_bytes(png(1))
    (d / "sub" / "b.png").write_bytes(png(2))
    os.symlink(outside, d / "linked.png")  # a link to a regular file is read like one
    os.symlink("/dev/zero", d / "zero.png")  # endless: refused as not a regular file
    os.symlink(d / "nowhere.png", d / "dangling.png")
    os.symlink(d / "self.png", d / "self.png")  # a link loop
    os.symlink("..", d / "sub" / "up")  # folder loops: not descended
    os.symlink(".", d / "sub" / "here")
    os.mkfifo(d / "fifo.png")  # would block a plain open() forever
    done = threading.Event()
    result: list = []
    threading.Thread(target=lambda: (result.append(detect(d)), done.set()), daemon=True).start()
    assert done.wait(120), "detect blocked on a FIFO or looped on a link"
    code, records, lines = result[0]
    good = [str(d / "a.png"), str(d / "sub" / "b.png"), str(d / "linked.png")]
    assert_partial(code, records, lines, good, {
        str(d / "zero.png"): "not a regular file (a device, FIFO or socket): not read",
        str(d / "fifo.png"): "not a regular file (a device, FIFO or socket): not read",
        str(d / "dangling.png"): "no such file",
        str(d / "self.png"): "cannot read (Too many levels of symbolic links)",
    })
    assert len(records) == 7  # each file once: no path through the folder loops


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="POSIX links")
def test_recursive_glob_over_a_symlink_loop_ends(tmp_path):
    """The standard library's `glob('**')` follows links to folders: two links to `.` never end."""
    d = tmp_path / "d"
    (d / "deep").mkdir(parents=True)
    (d / "a.png").write_bytes(png(1))
    (d / "deep" / "b.png").write_bytes(png(2))
    os.symlink(".", d / "l1")
    os.symlink(".", d / "l2")
    t = time.monotonic()
    assert expand_glob(f"{d}/**/*.png") == [str(d / "a.png"), str(d / "deep" / "b.png")]
    # the links are named (as glob names them) but not walked into
    assert expand_glob(f"{d}/**") == sorted([f"{d}/"] + [str(d / n) for n in ("a.png", "deep", "deep/b.png", "l1", "l2")])
    samples, missing = expand_inputs([f"{d}/**/*.png"])
    assert [s.locator for s in samples] == [str(d / "a.png"), str(d / "deep" / "b.png")] and not missing
    assert time.monotonic() - t < 10


def test_expand_glob_matches_the_standard_glob_without_links(tmp_path, monkeypatch):
    import glob

    for rel in ("a.png", "x/b.png", "x/y/c.jpg", ".hidden/d.png", "x/.e.png", "z [1]/f.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for pattern in ("**/*.png", "**/*.jpg", "x/**/*", "**", "x/**", "*/**/c.*", "**/[ab].png", "**/[!a].png",
                    f"{tmp_path}/**/*.png", "z [[]1]/**/*.png"):
        assert expand_glob(pattern) == sorted(glob.glob(pattern, recursive=True)), pattern


# ------------------------------------------------------------------------------------ nested archives


def _zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in members:
            zf.writestr(n, data)
    return buf.getvalue()


def test_nested_archives_are_scored_one_level_deep(tmp_path, good):
    deepest = _zip_bytes([("d.png", png(4))])
    inner = _zip_bytes([("c.png", png(3)), ("deeper.zip", deepest)])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = png(6)
        info = tarfile.TarInfo("t.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    z = tmp_path / "outer.zip"
    z.write_bytes(_zip_bytes([("a.png", png(1)), ("inner.zip", inner), ("inner.tar", buf.getvalue())]))
    code, records, lines = detect(z, good)
    assert_partial(code, records, lines,
                   [str(good), f"{z}::a.png", f"{z}::inner.zip::c.png", f"{z}::inner.tar::t.png"],
                   {f"{z}::inner.zip::deeper.zip": "nested archive not opened: the depth limit is 1 "
                                                    "(REALJUDGE_ARCHIVE_MAX_DEPTH)"})
    code, records, lines = detect(z, good, env={ENV_VARS["max_depth"]: "0"})
    assert_partial(code, records, lines, [str(good), f"{z}::a.png"],
                   {f"{z}::inner.zip": "the depth limit is 0", f"{z}::inner.tar": "the depth limit is 0"})
    code, records, lines = detect(z, good, env={ENV_VARS["max_depth"]: "2"})
    assert code == 0 and {r["path"] for r in records} >= {f"{z}::inner.zip::deeper.zip::d.png"}


def test_nested_archives_share_the_outer_budget(tmp_path, good):
    """42.zip-like: every nested archive's declared bytes and entries count against the outer limits."""
    inner = _zip_bytes([(f"i{i}.png", b"\0" * 300_000) for i in range(2)])  # declares 600 kB
    z = tmp_path / "nest.zip"
    z.write_bytes(_zip_bytes([(f"n{i}.zip", inner) for i in range(4)]))
    code, records, lines = detect(z, good, env={ENV_VARS["max_total_bytes"]: "1500000"})
    errors = errors_of(lines)
    assert code == 1 and records[-1]["path"] == str(good) and records[-1]["error"] is None
    over = [e for e in errors if "its members declare more than 1500000 bytes" in e]
    assert over and all(e.startswith(f"{z}::n") for e in over) and len(errors) == len(records) - 1


# -------------------------------------------------------------------------------- 100,000 members


def many_member_zip(path: Path, n: int, declared: int | None = None) -> None:
    """A zip64 archive of `n` empty stored members, written directly (zipfile takes ~10 s for this)."""
    local, central = bytearray(), bytearray()
    for i in range(n):
        name = b"f%06d.txt" % i
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0,
                               0, len(local)) + name
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    count = n if declared is None else declared
    cd_at, cd_size = len(local), len(central)
    z64_at = cd_at + cd_size
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_at)
    locator = struct.pack("<IIQI", 0x07064B50, 0, z64_at, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(local + central) + z64 + locator + end)


def test_a_zip_with_100000_members_is_bounded(tmp_path, good):
    z = tmp_path / "many.zip"
    many_member_zip(z, 100_000)
    assert len(zipfile.ZipFile(z).infolist()) == 100_000
    containers.close_containers()
    # over a lowered member limit: refused from the count its end record declares, before parsing
    t = time.monotonic()
    code, records, lines = detect(z, good, env={ENV_VARS["max_members"]: "10000"})
    assert_partial(code, records, lines, [str(good)],
                   {str(z): "its directory declares 100000 entries; the limit is 10000 (REALJUDGE_ARCHIVE_MAX_MEMBERS)"})
    t_refuse = time.monotonic() - t
    with pytest.raises(LimitExceeded):
        open_container(z, ArchiveLimits(max_members=10_000))
    # an end record that lies about the count (5) is caught by the count parsed
    liar = tmp_path / "liar.zip"
    many_member_zip(liar, 20_000, declared=5)
    with pytest.raises(LimitExceeded, match="more than 10000 entries"):
        open_container(liar, ArchiveLimits(max_members=10_000))
    # within the default limit (250,000) it is listed in bounded time: no images, only the good one scored
    t = time.monotonic()
    samples, missing = expand_inputs([str(z), str(good)])
    assert [s.locator for s in samples] == [str(good)] and not missing
    assert time.monotonic() - t < 120 and t_refuse < 60


# --------------------------------------------------------------------------- sizes that lie


def _patch_zip_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Set the uncompressed size of member `name` in its local header and directory entry."""
    out = bytearray(data)
    loc = out.find(b"PK\x03\x04" + b"")
    while loc >= 0:
        n = struct.unpack("<H", out[loc + 26:loc + 28])[0]
        if out[loc + 30:loc + 30 + n] == name:
            out[loc + 22:loc + 26] = struct.pack("<I", size)
        loc = out.find(b"PK\x03\x04", loc + 4)
    cen = out.find(b"PK\x01\x02")
    while cen >= 0:
        n = struct.unpack("<H", out[cen + 28:cen + 30])[0]
        if out[cen + 46:cen + 46 + n] == name:
            out[cen + 24:cen + 28] = struct.pack("<I", size)
        cen = out.find(b"PK\x01\x02", cen + 4)
    return bytes(out)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_members_whose_declared_size_lies(tmp_path, good, compression):
    real = png(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        zf.writestr("ok.png", png(2))
        zf.writestr("small.png", real)
        zf.writestr("large.png", real)
    data = _patch_zip_sizes(buf.getvalue(), b"small.png", len(real) // 2)  # declares less than it holds
    data = _patch_zip_sizes(data, b"large.png", len(real) * 3)  # declares more than it holds
    z = tmp_path / "sizes.zip"
    z.write_bytes(data)
    code, records, lines = detect(z, good)
    # less: inflating stops at the declared size and the CRC fails; more: the data ends before it
    assert_partial(code, records, lines, [str(good), f"{z}::ok.png"],
                   {f"{z}::small.png": "cannot read archive member (Bad CRC-32 for file 'small.png')",
                    f"{z}::large.png": f"member holds {len(real)} bytes but declares {len(real) * 3}"})


def test_tar_members_whose_declared_size_lies(tmp_path, good):
    def tar_with(sizes: dict[str, int]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name in ("a.png", "b.png", "c.png"):
                data = png(len(name) + ord(name[0]))
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        raw = bytearray(buf.getvalue())
        for at in range(0, len(raw), 512):
            name = raw[at:at + 100].rstrip(b"\0").decode(errors="replace")
            if raw[at + 257:at + 262] == b"ustar" and name in sizes:
                raw[at + 124:at + 136] = b"%011o\0" % sizes[name]
                raw[at + 148:at + 156] = b" " * 8
                raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])
        return bytes(raw)

    larger = tmp_path / "larger.tar"
    larger.write_bytes(tar_with({"c.png": 1 << 20})[:-1024])  # the last member claims 1 MiB; the file ends
    smaller = tmp_path / "smaller.tar"
    smaller.write_bytes(tar_with({"a.png": 100}))  # the rest of a.png is read as a (bad) header
    code, records, lines = detect(larger, smaller, good)
    errors = errors_of(lines)
    assert code == 1 and records[-1]["path"] == str(good) and records[-1]["error"] is None
    assert {r["path"] for r in records if not r["error"]} >= {f"{larger}::a.png", f"{larger}::b.png", str(good)}
    assert any(e.startswith(f"{larger}::c.png: ") for e in errors)
    assert any(e.startswith(f"{smaller}::a.png: ") for e in errors)
    assert len(errors) == sum(1 for r in records if r["error"])


# ------------------------------------------------------------------------------------ unreadable files


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_files_and_folders(tmp_path):
    d = tmp_path / "d"
    (d / "locked").mkdir(parents=True)
    (d / "a.png").write_bytes(png(1))
    (d / "secret.png").write_bytes(png(2))
    (d / "locked" / "c.png").write_bytes(png(3))
    os.chmod(d / "secret.png", 0)
    os.chmod(d / "locked", 0)
    try:
        code, records, lines = detect(d)
    finally:
        os.chmod(d / "secret.png", 0o644)
        os.chmod(d / "locked", 0o755)
    assert_partial(code, records, lines, [str(d / "a.png")], {
        str(d / "secret.png"): "permission denied", str(d / "locked"): "folder not read (Permission denied)"})


def test_unreadable_files_and_folders_simulated(tmp_path, monkeypatch):
    """The same errors where the test runs as root: the operating system's refusals, simulated."""
    d = tmp_path / "d"
    (d / "locked").mkdir(parents=True)
    (d / "a.png").write_bytes(png(1))
    (d / "secret.png").write_bytes(png(2))
    (d / "locked" / "c.png").write_bytes(png(3))
    real_open, real_scandir = os.open, os.scandir

    def refusing_open(path, *a, **k):
        if str(path).endswith("secret.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    def refusing_scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "scandir", refusing_scandir)
    code, records, lines = detect(d)
    assert_partial(code, records, lines, [str(d / "a.png")], {
        str(d / "secret.png"): "permission denied", str(d / "locked"): "folder not read (Permission denied)"})


def test_a_file_over_the_size_limit_is_not_read(tmp_path, good):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(300 << 20)  # sparse: no disk used
    code, records, lines = detect(big, good)
    assert_partial(code, records, lines, [str(good)],
                   {str(big): "file is 314572800 bytes; the limit is 268435456 (REALJUDGE_ARCHIVE_MAX_MEMBER_BYTES)"})


# ---------------------------------------------------------------------- a folder that changes


def test_a_folder_that_changes_while_it_is_read(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    for n in ("a.png", "gone.png", "dir.png", "cut.png", "keep.png"):
        (d / n).write_bytes(png(len(n)))
    z = tmp_path / "arch.zip"
    z.write_bytes(_zip_bytes([("x.png", png(1)), ("y.png", png(2))]))
    from realjudge.data import inputs

    real = inputs.expand_inputs

    def listing_then_changes(paths, limits=None):
        out = real(paths, limits)
        (d / "gone.png").unlink()  # deleted after listing
        (d / "dir.png").unlink()
        (d / "dir.png").mkdir()  # replaced by a folder
        (d / "cut.png").write_bytes((d / "cut.png").read_bytes()[:40])  # truncated
        (d / "new.png").write_bytes(png(9))  # added: not in the listing, not scored
        z.write_bytes(_zip_bytes([("x.png", png(1))]))  # the archive rewritten without y.png
        return out

    monkeypatch.setattr(inputs, "expand_inputs", listing_then_changes)
    code, records, lines = detect(d, z)
    assert_partial(code, records, lines, [str(d / "a.png"), str(d / "keep.png"), f"{z}::x.png"], {
        str(d / "gone.png"): "no such file", str(d / "dir.png"): "is a directory",
        str(d / "cut.png"): "", f"{z}::y.png": "no such member in the archive"})
    assert str(d / "new.png") not in {r["path"] for r in records}


def test_an_archive_deleted_after_listing_gives_errors_not_a_crash(tmp_path):
    z = tmp_path / "a.zip"
    z.write_bytes(_zip_bytes([("x.png", png(1)), ("y.png", png(2))]))
    samples, _ = expand_inputs([str(z)])
    containers.close_containers()
    z.unlink()
    got = list(iter_sample_bytes(samples))
    assert len(got) == 2 and all(isinstance(b, DecodeError) and "no such file or folder" in str(b) for _, b in got)
    for s in samples:
        with pytest.raises(DecodeError, match="no such file or folder"):
            s.read_bytes()


def test_corrupt_archives_are_source_errors_and_nothing_else(tmp_path):
    for name, data in (("a.zip", b"PK\x05\x06" + b"\0" * 18), ("b.tar", b"\0" * 10), ("c.tar.gz", b"\x1f\x8b junk"),
                       ("d.tgz", b"not gzip"), ("e.zip", b"")):
        p = tmp_path / name
        p.write_bytes(data)
        try:
            c = open_container(p)
        except SourceError as err:
            assert "\n" not in str(err) and str(err).startswith(f"{p}: ")
            continue
        assert c.names() == [] or all(isinstance(n, str) for n in c.names())


# ------------------------------------------------------------------------------------------ decoder


def test_the_decoder_opens_only_its_formats_whatever_the_name():
    from realjudge.data.decode import decode_bytes

    im = Image.fromarray(make_images(1, 2)[0][0])
    for fmt in ("TGA", "PCX", "SGI"):  # Pillow reads these; realjudge does not try them
        buf = io.BytesIO()
        im.save(buf, fmt)
        with pytest.raises(DecodeError, match="not an image, or not in a format realjudge reads"):
            decode_bytes(buf.getvalue(), "x.png")
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "ICO"):
        buf = io.BytesIO()
        im.save(buf, fmt)
        assert decode_bytes(buf.getvalue(), f"x.{fmt.lower()}").pixels.shape == (32, 32, 3), fmt


def test_malformed_files_never_raise_anything_but_decode_error():
    """What Pillow's readers raise besides OSError (struct.error from a GIF cut inside a frame header
    while counting frames, found by benchmarks/fuzz.py) is a DecodeError too, and no Python warning."""
    import warnings

    from realjudge.data.decode import decode_bytes

    buf = io.BytesIO()
    Image.new("P", (8, 8)).save(buf, "GIF")
    gif = buf.getvalue()
    assert gif.endswith(b";")
    cut = gif[:-1] + b"\x2c\x00\x00\x00"  # a second frame's descriptor cut after 3 of its 9 bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DecodeError, match=r"cut.gif: cannot decode image \(unpack_from requires"):
            decode_bytes(cut, "cut.gif")


def test_corrupt_compressed_data_is_a_member_error(tmp_path, good):
    """Found by benchmarks/fuzz.py: zlib.error and LZMAError from a member's damaged compressed data,
    and zlib.error from a damaged tar.gz, escaped the archive readers as tracebacks."""
    data = png(1) * 8
    members = {}
    for method, name in ((zipfile.ZIP_DEFLATED, "deflated.png"), (zipfile.ZIP_LZMA, "lzma.png"),
                         (zipfile.ZIP_BZIP2, "bzip2.png")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            zf.writestr(name, data)
        raw = bytearray(buf.getvalue())
        start = 30 + len(name) + 20  # inside the compressed stream, past its first bytes
        for i in range(start, start + 40):
            raw[i] ^= 0x55
        members[name] = bytes(raw)
    for name, raw in members.items():
        z = tmp_path / f"{name}.zip"
        z.write_bytes(raw)
        with pytest.raises(DecodeError, match=f"{name}: cannot read archive member"):
            open_container(z).read(name)
    t = tmp_path / "bad.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(3):
            blob = png(i) * 4
            info = tarfile.TarInfo(f"m{i}.png")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    raw = bytearray(buf.getvalue())
    for i in range(len(raw) // 2, len(raw) // 2 + 30):
        raw[i] ^= 0x55
    t.write_bytes(bytes(raw))
    code, records, lines = detect(t, good)
    assert code == 1 and records[-1]["path"] == str(good) and records[-1]["error"] is None
    assert len(errors_of(lines)) == sum(1 for r in records if r["error"]) >= 1


def test_a_zip_entry_with_an_empty_name(tmp_path, good):
    """Found by benchmarks/fuzz.py: ZipInfo.is_dir() raised IndexError on an entry named ''."""
    z = tmp_path / "empty-name.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
        zf.writestr("a.png", png(1))
    code, records, lines = detect(z, good)
    assert code == 0 and [r["path"] for r in records] == [f"{z}::a.png", str(good)] and not errors_of(lines)


def test_hostile_manifests_are_source_errors(tmp_path):
    """Found by benchmarks/fuzz.py: a stray CR in a manifest raised csv.Error; a short row, TypeError."""
    from realjudge.data.layouts import open_source

    for i, text in enumerate((b"path,label\r\nimgs/a.png,real\rX\n", b"path,label\nimgs/a.png\n",
                              b"path,label\nimgs/a.png,real,extra,cells\n", b'path,label\n"' + b"a" * 200_000 + b'",real\n',
                              b"path,label\n,real\n")):
        z = tmp_path / f"m{i}.zip"
        z.write_bytes(_zip_bytes([("manifest.csv", text), ("imgs/a.png", png(1))]))
        try:
            samples = open_source(z)
        except SourceError as err:
            assert "\n" not in str(err) and str(err).startswith(f"{z}: ")
            continue
        assert [s.locator for s in samples] == [f"{z}::imgs/a.png"]
