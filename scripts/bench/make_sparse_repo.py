#!/usr/bin/env python3
"""Writes a model repository of about GB gigabytes as sparse files (zeros
cost no disk), for benchmarks of remote scans:

    make_sparse_repo.py GB OUT

OUT/ holds: two safetensors shards and their index (half of GB), a PyTorch
zip checkpoint with one storage record per 16 MiB (a third), a GGUF file
(the rest), config.json, and training_args.bin copied from the malicious
fixture fixtures/malicious/pytorch/zip_datapkl_os_system.pt.
"""

import json
import os
import shutil
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GIB = 1 << 30


class Sparse:
    """A writable file object that turns runs of zeros into holes."""

    def __init__(self, path):
        self.f = open(path, "wb")

    def write(self, b):
        b = bytes(b)
        if b.count(0) == len(b):
            self.f.seek(len(b), os.SEEK_CUR)
        else:
            self.f.write(b)
        return len(b)

    def tell(self):
        return self.f.tell()

    def seek(self, *a):
        return self.f.seek(*a)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.truncate(self.f.tell())
        self.f.close()


def safetensors(path, nbytes, names):
    per = nbytes // len(names) // 4 * 4
    header, off = {}, 0
    for n in names:
        header[n] = {"dtype": "F32", "shape": [per // 4], "data_offsets": [off, off + per]}
        off += per
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)
    return list(header)


def torch_zip(path, nbytes):
    src = os.path.join(REPO, "fixtures/benign/pytorch")
    first = sorted(p for p in os.listdir(src) if p.endswith((".pt", ".pth", ".bin")))[0]
    parts = max(1, nbytes // (16 << 20))
    zeros = bytes(8 << 20)
    with zipfile.ZipFile(os.path.join(src, first)) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        out = Sparse(path)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as w:
            for n in z.namelist():
                if "/data/" not in n:
                    w.writestr(n, z.read(n))
            for k in range(parts):
                with w.open(f"{prefix}data/{k}", "w", force_zip64=True) as m:
                    left = nbytes // parts
                    while left > 0:
                        n = min(left, len(zeros))
                        m.write(zeros[:n])
                        left -= n
        out.close()


def gguf(path, nbytes):
    def s(x):
        x = x.encode()
        return struct.pack("<Q", len(x)) + x

    n = nbytes // 4
    h = b"GGUF" + struct.pack("<IQQ", 3, 1, 2)
    h += s("general.architecture") + struct.pack("<I", 8) + s("llama")
    tmpl = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    h += s("tokenizer.chat_template") + struct.pack("<I", 8) + s(tmpl)
    h += s("token_embd.weight") + struct.pack("<IQIQ", 1, n, 0, 0)
    h += b"\0" * (-len(h) % 32)
    with open(path, "wb") as f:
        f.write(h)
        f.truncate(len(h) + n * 4)


def main():
    gb, out = float(sys.argv[1]), sys.argv[2]
    total = int(gb * GIB)
    os.makedirs(out, exist_ok=True)
    st = total // 2
    index = {"metadata": {"total_size": st}, "weight_map": {}}
    for i in (1, 2):
        shard = f"model-0000{i}-of-00002.safetensors"
        for t in safetensors(os.path.join(out, shard), st // 2, [f"layers.{i}.w{j}" for j in range(4)]):
            index["weight_map"][t] = shard
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=1)
    torch_zip(os.path.join(out, "pytorch_model.bin"), total // 3)
    gguf(os.path.join(out, "model-Q8_0.gguf"), total - st - total // 3)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write('{"model_type": "llama"}')
    shutil.copy(
        os.path.join(REPO, "fixtures/malicious/pytorch/zip_datapkl_os_system.pt"),
        os.path.join(out, "training_args.bin"),
    )


if __name__ == "__main__":
    main()
