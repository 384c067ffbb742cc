#!/usr/bin/env python3
"""Write a realistic PyTorch zip checkpoint (torch.save layout) without torch.

Usage:
    python3 scripts/bench/make_checkpoint.py SIZE_GB OUT [--layers N] [--seed S]
                                             [--urandom] [--verify] [--quiet]

    python3 scripts/bench/make_checkpoint.py 2 /tmp/probity-bench-2g.pt
    python3 scripts/bench/make_checkpoint.py 0.05 /tmp/ckpt.pt --verify

SIZE_GB is decimal (1 GB = 1e9 bytes); the file comes out within a few percent.
The model is a GPT-like state dict: token/position embeddings, N transformer
blocks of 12 tensors each (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
mlp.c_proj; weight + bias), final ln_f: 12*N + 4 tensors (default N=16 -> 196).
The hidden size is chosen to reach SIZE_GB.

Layout, as torch.save (torch >= 2.4, "new zipfile serialization") writes it:
  archive/data.pkl               protocol-2 pickle of an OrderedDict (with the
                                 `_metadata` attribute set by state_dict()),
                                 each tensor as
                                 torch._utils._rebuild_tensor_v2(
                                     BINPERSID ('storage', torch.FloatStorage,
                                                '<key>', 'cpu', numel),
                                     0, size, stride, False, OrderedDict())
  archive/.format_version        "1"
  archive/.storage_alignment     "64"
  archive/byteorder              "little"
  archive/data/<key>             raw little-endian float32, key = 0..N-1
  archive/version                "3\\n"
  archive/.data/serialization_id 40 decimal digits
All members are STORED (no compression); like torch's writer, every member's
data starts on a 64-byte boundary, padded through an "FB" (0x4246) extra field
in the local header. Zip64 records are written when offsets or the entry count
need them (files >= 4 GiB).

Tensor data: float32 values with random sign and magnitude 2^-7..2^-5 (typical
weight scale), cut at random offsets from a 64 MiB random pool (os.urandom is
~100 MB/s here, too slow for multi-GB files); --urandom draws fresh random bytes
for everything instead. Memory use stays ~70 MiB whatever the size (with
--urandom: about the largest tensor, the token embedding).

The torch GLOBALs are emitted with the standard pickle module by registering
stand-in `torch` / `torch._utils` modules in sys.modules whose objects have
matching __module__ / __qualname__.

--verify re-opens OUT: zipfile listing, CRC check of the small members, data
alignment check, a pickletools.dis of data.pkl (head printed), and a
weights_only-style unpickle that checks every storage's numel against its
member size.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import pickletools
import random
import struct
import sys
import time
import types
import zipfile
import zlib

ALIGN = 64
POOL_BYTES = 64 << 20
CHUNK = 1 << 20


# ------------------------------------------------------------------ fake torch


def _install_fake_torch():
    """Stand-ins whose (module, qualname) pickle as torch's own globals."""
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
        raise RuntimeError("stand-in only")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:  # only ever pickled as a GLOBAL reference
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch, saved


def _restore_modules(saved):
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


class _Storage:
    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class _Tensor:
    def __init__(self, torch, storage, shape):
        self.torch = torch
        self.storage = storage
        self.shape = tuple(shape)

    def __reduce_ex__(self, proto):
        stride = []
        acc = 1
        for d in reversed(self.shape):
            stride.append(acc)
            acc *= d
        return (
            self.torch._utils._rebuild_tensor_v2,
            (self.storage, 0, self.shape, tuple(reversed(stride)), False, collections.OrderedDict()),
        )


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch):
        super().__init__(f, protocol=2)
        self.torch = torch

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", self.torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


# ------------------------------------------------------------------ model shape


def model_spec(size_bytes, layers, vocab=32000, ctx=2048):
    """[(name, shape)] for a GPT-like model of about size_bytes float32."""
    # 4 bytes * (layers*(12 h^2 + 13 h) + vocab*h + ctx*h + 2h) = size
    a = 4 * 12 * layers
    b = 4 * (13 * layers + vocab + ctx + 2)
    h = (-b + (b * b + 4 * a * size_bytes) ** 0.5) / (2 * a)
    h = max(64, int(round(h / 64.0)) * 64)
    spec = [("transformer.wte.weight", (vocab, h)), ("transformer.wpe.weight", (ctx, h))]
    for i in range(layers):
        p = f"transformer.h.{i}."
        spec += [
            (p + "ln_1.weight", (h,)), (p + "ln_1.bias", (h,)),
            (p + "attn.c_attn.weight", (3 * h, h)), (p + "attn.c_attn.bias", (3 * h,)),
            (p + "attn.c_proj.weight", (h, h)), (p + "attn.c_proj.bias", (h,)),
            (p + "ln_2.weight", (h,)), (p + "ln_2.bias", (h,)),
            (p + "mlp.c_fc.weight", (4 * h, h)), (p + "mlp.c_fc.bias", (4 * h,)),
            (p + "mlp.c_proj.weight", (h, 4 * h)), (p + "mlp.c_proj.bias", (h,)),
        ]
    spec += [("transformer.ln_f.weight", (h,)), ("transformer.ln_f.bias", (h,))]
    return spec, h


def build_pickle(spec):
    torch, saved = _install_fake_torch()
    try:
        sd = collections.OrderedDict()
        meta = collections.OrderedDict()
        meta[""] = {"version": 1}
        storages = []
        for key, (name, shape) in enumerate(spec):
            numel = 1
            for d in shape:
                numel *= d
            st = _Storage(str(key), numel)
            storages.append(st)
            sd[name] = _Tensor(torch, st, shape)
            mod = name.rsplit(".", 1)[0]
            meta.setdefault(mod, {"version": 1})
        sd._metadata = meta
        buf = io.BytesIO()
        _Pickler(buf, torch).dump(sd)
        return buf.getvalue(), storages
    finally:
        _restore_modules(saved)


# ------------------------------------------------------------------ zip writer


class ZipWriter:
    """Minimal STORED zip writer with torch-style 64-byte data alignment."""

    def __init__(self, f):
        self.f = f
        self.pos = 0
        self.entries = []  # (name, crc, size, offset)

    def _w(self, b):
        self.f.write(b)
        self.pos += len(b)

    def add(self, name, chunks, size, crc):
        """chunks: iterable of bytes-like, total `size`, CRC-32 `crc`."""
        nb = name.encode("utf-8")
        offset = self.pos
        base = offset + 30 + len(nb)
        extra = b""
        if base % ALIGN:
            pad = (-(base + 4)) % ALIGN
            extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        z64 = size >= 0xFFFFFFFF
        if z64:  # never for tensors < 4 GiB; kept for completeness
            extra = struct.pack("<HHQQ", 0x0001, 16, size, size) + extra
            base2 = offset + 30 + len(nb) + len(extra)
            if base2 % ALIGN:
                pad = (-(base2 + 4)) % ALIGN
                extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        hdr = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 45 if z64 else 20, 0, 0, 0, 0x21, crc,
            0xFFFFFFFF if z64 else size, 0xFFFFFFFF if z64 else size, len(nb), len(extra),
        )
        self._w(hdr + nb + extra)
        assert self.pos % ALIGN == 0, (name, self.pos)
        n = 0
        for c in chunks:
            self._w(c)
            n += len(c)
        assert n == size, (name, n, size)
        self.entries.append((nb, crc, size, offset))

    def add_bytes(self, name, data):
        self.add(name, [data], len(data), zlib.crc32(data))

    def close(self):
        cd_start = self.pos
        for nb, crc, size, offset in self.entries:
            z = []
            if size >= 0xFFFFFFFF:
                z += [size, size]
            if offset >= 0xFFFFFFFF:
                z.append(offset)
            extra = struct.pack("<HH", 0x0001, 8 * len(z)) + struct.pack(f"<{len(z)}Q", *z) if z else b""
            s32 = 0xFFFFFFFF if size >= 0xFFFFFFFF else size
            o32 = 0xFFFFFFFF if offset >= 0xFFFFFFFF else offset
            ver = 45 if z else 20
            self._w(struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, ver, ver, 0, 0, 0, 0x21, crc, s32, s32,
                len(nb), len(extra), 0, 0, 0, 0, o32) + nb + extra)
        cd_size = self.pos - cd_start
        n = len(self.entries)
        if n >= 0xFFFF or cd_start >= 0xFFFFFFFF or cd_size >= 0xFFFFFFFF:
            z64_eocd = self.pos
            self._w(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start))
            self._w(struct.pack("<IIQI", 0x07064B50, 0, z64_eocd, 1))
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                min(cd_size, 0xFFFFFFFF), 0xFFFFFFFF, 0))
        else:
            self._w(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, 0))


# ------------------------------------------------------------------ data


_EXP_TABLE = bytes(((x & 0x80) | 0x3C) for x in range(256))


def weightify(buf: bytearray):
    """Random bytes -> float32 with random sign, |x| in [2^-7, 2^-5)."""
    buf[3::4] = buf[3::4].translate(_EXP_TABLE)
    return buf


class DataSource:
    def __init__(self, seed, fresh):
        self.fresh = fresh
        self.rng = random.Random(seed)
        if not fresh:
            self.pool = memoryview(weightify(bytearray(os.urandom(POOL_BYTES))))

    def chunks(self, size):
        left = size
        while left:
            n = min(CHUNK, left)
            if self.fresh:
                yield bytes(weightify(bytearray(os.urandom(n))))
            else:
                off = self.rng.randrange(0, (POOL_BYTES - n) // 4 + 1) * 4
                yield self.pool[off:off + n]
            left -= n


# ------------------------------------------------------------------ main


def write_checkpoint(out, size_gb, layers, seed, fresh, quiet=False):
    spec, hidden = model_spec(size_gb * 1e9, layers)
    pkl, storages = build_pickle(spec)
    src = DataSource(seed, fresh)
    rng = random.Random(seed ^ 0x5EED)
    t0 = time.monotonic()
    tmp = out + ".partial"
    total = 0
    with open(tmp, "wb", buffering=8 << 20) as f:
        z = ZipWriter(f)
        z.add_bytes("archive/data.pkl", pkl)
        z.add_bytes("archive/.format_version", b"1")
        z.add_bytes("archive/.storage_alignment", b"64")
        z.add_bytes("archive/byteorder", b"little")
        for st in storages:
            size = st.numel * 4
            # CRC pass and write pass over the same chunks: regenerate them
            # from a cloned RNG state so nothing large is held in memory.
            state = src.rng.getstate()
            if src.fresh:
                chunks = [bytes(c) for c in src.chunks(size)]  # <= one tensor in memory
                crc = 0
                for c in chunks:
                    crc = zlib.crc32(c, crc)
                z.add(f"archive/data/{st.key}", chunks, size, crc)
            else:
                crc = 0
                for c in src.chunks(size):
                    crc = zlib.crc32(c, crc)
                src.rng.setstate(state)
                z.add(f"archive/data/{st.key}", src.chunks(size), size, crc)
            total += size
        z.add_bytes("archive/version", b"3\n")
        z.add_bytes("archive/.data/serialization_id",
                    "".join(str(rng.randrange(10)) for _ in range(40)).encode())
        z.close()
        f.flush()
        nbytes = z.pos
    os.replace(tmp, out)
    dt = time.monotonic() - t0
    if not quiet:
        print(f"wrote {out}: {nbytes} bytes ({nbytes / 1e9:.3f} GB), {len(storages)} tensors, "
              f"hidden={hidden}, layers={layers}, data.pkl {len(pkl)} bytes, "
              f"{dt:.1f}s ({nbytes / 1e6 / max(dt, 1e-9):.0f} MB/s)")
    return nbytes


def verify(out, dis_lines=40):
    """Listing, small-member CRCs, alignment, pickletools.dis and storage check."""
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        print(f"zipfile: {len(infos)} members, first/last:")
        for zi in infos[:6] + [None] + infos[-3:]:
            if zi is None:
                print("    ...")
                continue
            print(f"    {zi.filename:40s} {zi.file_size:>12d}  compress_type={zi.compress_type}")
        assert all(zi.compress_type == zipfile.ZIP_STORED for zi in infos)
        names = [zi.filename for zi in infos]
        for need in ("archive/data.pkl", "archive/byteorder", "archive/version",
                     "archive/.data/serialization_id"):
            assert need in names, need
        for zi in infos:  # CRC check for the small members (zipfile checks on read)
            if zi.file_size <= 1 << 20:
                zf.read(zi)
        pkl = zf.read("archive/data.pkl")
        sizes = {zi.filename: zi.file_size for zi in infos}
    # alignment: parse each local header ourselves
    misaligned = 0
    with open(out, "rb") as f:
        for zi in infos:
            f.seek(zi.header_offset)
            h = f.read(30)
            sig, = struct.unpack("<I", h[:4])
            assert sig == 0x04034B50
            nlen, xlen = struct.unpack("<HH", h[26:30])
            data_off = zi.header_offset + 30 + nlen + xlen
            misaligned += data_off % ALIGN != 0
    print(f"alignment: {len(infos) - misaligned}/{len(infos)} members start on a {ALIGN}-byte boundary")
    sio = io.StringIO()
    pickletools.dis(pkl, out=sio)
    lines = sio.getvalue().splitlines()
    print(f"pickletools.dis(data.pkl): {len(lines)} lines, head:")
    for l in lines[:dis_lines]:
        print("    " + l)
    print("    ...")
    for l in lines[-3:]:
        print("    " + l)
    ops = {}
    for op, arg, pos in pickletools.genops(pkl):
        ops[op.name] = ops.get(op.name, 0) + 1
        if op.name in ("GLOBAL", "STACK_GLOBAL"):
            ops.setdefault("globals", set()).add(arg)
    print(f"globals: {sorted(ops.get('globals', []))}; BINPERSID x{ops.get('BINPERSID', 0)}")

    # weights_only-style load: only the expected globals, persistent ids checked
    allowed = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
               ("torch", "FloatStorage")}
    tensors = {}

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if (mod, name) not in allowed:
                raise pickle.UnpicklingError(f"unexpected global {mod}.{name}")
            if (mod, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if name == "FloatStorage":
                return "FloatStorage"
            return lambda st, off, size, stride, rg, hooks, *m: ("tensor", st, off, size, stride)

        def persistent_load(self, pid):
            kind, typ, key, loc, numel = pid
            assert kind == "storage" and typ == "FloatStorage" and loc == "cpu", pid
            member = f"archive/data/{key}"
            assert sizes[member] == numel * 4, (member, sizes[member], numel)
            return (key, numel)

    sd = U(io.BytesIO(pkl)).load()
    for k, v in sd.items():
        _, (key, numel), off, size, stride = v
        n = 1
        for d in size:
            n *= d
        assert off == 0 and n == numel, (k, size, numel)
        tensors[k] = size
    print(f"unpickle check: {len(sd)} tensors, every storage matches its data/<key> size; "
          f"e.g. {next(iter(tensors.items()))}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("size_gb", type=float, help="target size in GB (1e9 bytes), e.g. 2 or 0.05")
    ap.add_argument("out", help="output path")
    ap.add_argument("--layers", type=int, default=16, help="transformer blocks (12 tensors each; default 16)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--urandom", action="store_true", help="fresh os.urandom data for every byte (slow)")
    ap.add_argument("--verify", action="store_true", help="check the written file (see docstring)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.size_gb <= 0 or a.layers < 1:
        ap.error("size_gb must be > 0 and layers >= 1")
    write_checkpoint(a.out, a.size_gb, a.layers, a.seed, a.urandom, a.quiet)
    if a.verify:
        verify(a.out)


if __name__ == "__main__":
    main()
