#!/usr/bin/env python3
"""Differential check of Probity's pickle machine against CPython.

Writes a generated set of pickles to OUT/NNNN.pkl and CPython's view of each
to OUT/cpython.json; tests/pickle_diff.rs compares the machine's view with it.

    python3 scripts/fuzz/pickle_diff.py OUT [--n 600] [--seed 1]

The set: `pickle.dumps` of ordinary data at every protocol (recursive
structures, sets, OrderedDicts, instances of a class, bytes), and streams
from an opcode grammar with the features known to have fooled scanners:
memo indirection, STACK_GLOBAL with names fetched from the memo, INST and
OBJ, NEWOBJ and NEWOBJ_EX, BUILD, EXT1/EXT2/EXT4 codes, FRAME, persistent
ids, nested pickles inside bytes, several streams in one file.

CPython's view comes from `pickle.Unpickler` itself, with `find_class`
overridden to record each (module, name) and return an inert stub class
instead of importing anything; `persistent_load` returns a stub too.
Nothing is imported and no callable from a stream runs: calls land on
stubs, which count them. Recorded per file: the globals in the order the
loader resolved them, the number of calls, whether the load finished, the
error otherwise, and `pickletools.genops`' opcode names (its own parse).
Standard library only; deterministic for a seed.
"""

import collections
import io
import json
import os
import pickle
import pickletools
import random
import struct
import sys


class Recorder:
    def __init__(self):
        self.imports = []
        self.calls = 0


def make_stub(rec, full):
    class StubMeta(type):
        # a call of the class (REDUCE, INST, OBJ): counted once, without
        # going through __new__, which counts direct calls (NEWOBJ)
        def __call__(cls, *a, **k):
            rec.calls += 1
            return object.__new__(cls)

    class Stub(metaclass=StubMeta):
        def __new__(cls, *a, **k):
            rec.calls += 1
            return object.__new__(cls)

        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            rec.calls += 1
            return object.__new__(Stub)

        def __setstate__(self, state):
            pass

        def append(self, x):
            pass

        def extend(self, xs):
            pass

        def __setitem__(self, k, v):
            pass

    Stub.__qualname__ = Stub.__name__ = full
    return Stub


class RecordingUnpickler(pickle.Unpickler):
    def __init__(self, f, rec):
        super().__init__(f)
        self.rec = rec

    def find_class(self, module, name):
        full = "%s.%s" % (module, name)
        self.rec.imports.append(full)
        return make_stub(self.rec, full)

    def persistent_load(self, pid):
        return object.__new__(make_stub(self.rec, "persistent"))


class NewObjProbe:
    """Instances pickle through __reduce_ex__ with NEWOBJ."""

    def __init__(self, x):
        self.x = x


def cpython_view(data):
    rec = Recorder()
    view = {"imports": [], "calls": 0, "loaded": False, "error": None, "ops": []}
    try:
        view["ops"] = [op.name for op, _, _ in pickletools.genops(io.BytesIO(data))]
    except Exception as e:  # noqa: BLE001 - any parse failure is the datum
        view["ops_error"] = "%s: %s" % (type(e).__name__, e)
    try:
        RecordingUnpickler(io.BytesIO(data), rec).load()
        view["loaded"] = True
    except Exception as e:  # noqa: BLE001
        view["error"] = "%s: %s" % (type(e).__name__, e)
    view["imports"] = rec.imports
    view["calls"] = rec.calls
    return view


# ------------------------------------------------------------- the grammar

POOL = [
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy", "dtype"),
    ("os", "system"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("subprocess", "Popen"),
    ("operator", "attrgetter"),
    ("copyreg", "_reconstructor"),
    ("mypkg.sub", "Thing"),
]


class Gen:
    def __init__(self, rng, proto):
        self.r = rng
        self.proto = proto
        self.out = bytearray()
        self.memo = 0
        self.strings = []

    def put_memo(self):
        i = self.memo
        self.memo += 1
        if self.proto >= 4 and self.r.random() < 0.5:
            self.out += b"\x94"  # MEMOIZE
        elif i < 256:
            self.out += b"q" + bytes([i])  # BINPUT
        else:
            self.out += b"r" + struct.pack("<I", i)  # LONG_BINPUT
        return i

    def get(self, i):
        self.out += (b"h" + bytes([i])) if i < 256 else (b"j" + struct.pack("<I", i))

    def string(self, s):
        b = s.encode()
        if self.proto >= 4 and len(b) < 256 and self.r.random() < 0.5:
            self.out += b"\x8c" + bytes([len(b)]) + b
        else:
            self.out += b"X" + struct.pack("<I", len(b)) + b
        if self.r.random() < 0.4:
            i = self.put_memo()
            self.out += b"0"  # POP
            self.get(i)

    def glob(self):
        m, n = self.r.choice(POOL)
        k = self.r.random()
        if k < 0.4 or self.proto < 4:
            self.out += b"c" + ("%s\n%s\n" % (m, n)).encode()
        else:
            self.string(m)
            self.string(n)
            self.out += b"\x93"  # STACK_GLOBAL
        if self.r.random() < 0.3:
            i = self.put_memo()
            self.out += b"0"
            self.get(i)

    def value(self, depth=0):
        k = self.r.randrange(16 if depth < 4 else 4)
        if k == 0:
            self.out += b"N"
        elif k == 1:
            self.out += b"K" + bytes([self.r.randrange(256)])
        elif k == 2:
            self.string("s%d" % self.r.randrange(100))
        elif k == 3:
            self.out += b"G" + struct.pack(">d", 0.25)
        elif k == 4:
            self.out += b"("
            for _ in range(self.r.randrange(4)):
                self.value(depth + 1)
            self.out += b"t"
        elif k == 5:
            self.out += b"}("
            for _ in range(self.r.randrange(3)):
                self.string("k%d" % self.r.randrange(9))
                self.value(depth + 1)
            self.out += b"u"
        elif k == 6:
            self.glob()
            self.out += b"("
            for _ in range(self.r.randrange(3)):
                self.value(depth + 1)
            self.out += b"tR"  # REDUCE
        elif k == 7:
            self.glob()
            self.out += b")\x81"  # NEWOBJ
        elif k == 8 and self.proto >= 4:
            self.glob()
            self.out += b")}\x92"  # NEWOBJ_EX
        elif k == 9:
            self.glob()
            self.out += b")R}b"  # REDUCE then BUILD
        elif k == 10:
            m, n = self.r.choice(POOL)
            self.out += b"("
            for _ in range(self.r.randrange(2)):
                self.value(depth + 1)
            self.out += b"i" + ("%s\n%s\n" % (m, n)).encode()  # INST
        elif k == 11:
            self.out += b"("
            self.glob()
            for _ in range(self.r.randrange(2)):
                self.value(depth + 1)
            self.out += b"o"  # OBJ
        elif k == 12:
            code = self.r.choice([1, 300, 70000])
            if code < 256:
                self.out += b"\x82" + bytes([code])
            elif code < 65536:
                self.out += b"\x83" + struct.pack("<H", code)
            else:
                self.out += b"\x84" + struct.pack("<I", code)
        elif k == 13:
            self.out += b"("
            self.string("storage")
            self.value(depth + 1)
            self.out += b"tQ"  # BINPERSID
        elif k == 14:
            inner = Gen(self.r, self.proto).stream()
            self.out += b"B" + struct.pack("<I", len(inner)) + inner  # BINBYTES
        else:
            self.out += b"]"
            self.value(depth + 1)
            self.out += b"a"

    def stream(self):
        self.out += b"\x80" + bytes([self.proto])
        if self.proto >= 4 and self.r.random() < 0.5:
            self.out += b"\x95" + struct.pack("<Q", 0)  # FRAME
        self.out += b"]"
        for _ in range(1 + self.r.randrange(5)):
            self.value()
            self.out += b"a"
        self.out += b"."
        return bytes(self.out)


def ordinary(rng, i):
    proto = i % 6
    rec = [1, 2]
    rec.append(rec)
    objs = [
        {"a": 1, "b": [1.5, None, True], "c": (1, 2, "x")},
        collections.OrderedDict([("w", b"\x00\x01"), ("n", 2**70)]),
        {frozenset([1, 2]), (3, 4)},
        rec,
        [complex(1, 2), bytearray(b"ab"), "\u00e9\u4e2d"],
        NewObjProbe([1, {"k": "v"}]),
        [NewObjProbe(i) for i in range(3)],
    ]
    return pickle.dumps(objs[rng.randrange(len(objs))], protocol=proto)


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = args[0]
    n = int(args[args.index("--n") + 1]) if "--n" in args else 600
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    views = {}
    for i in range(n):
        if i % 4 == 0:
            data = ordinary(rng, i)
        else:
            data = Gen(rng, rng.choice([2, 3, 4, 5])).stream()
            if i % 7 == 0:
                # several streams in one file
                data += Gen(rng, 4).stream()
        name = "%04d.pkl" % i
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        views[name] = cpython_view(data)
    with open(os.path.join(out, "cpython.json"), "w") as f:
        json.dump(views, f, indent=1, sort_keys=True)
    loaded = sum(1 for v in views.values() if v["loaded"])
    print("%d pickles, %d loaded by CPython with stubs" % (n, loaded), file=sys.stderr)


if __name__ == "__main__":
    main()
