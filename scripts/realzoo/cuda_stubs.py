#!/usr/bin/env python3
"""Makes PyPI's CUDA build of torch import and run on CPU without the
NVIDIA wheels (about 1.9 GB of downloads and 2.7 GB on disk saved).

PyPI's Linux torch wheel links libtorch_cuda.so, libtorch_python.so and a few
others against libcudart, libcublas, libcudnn, libnccl, ... from the nvidia-*
wheels. Installed with --no-deps, `import torch` fails on the missing sonames.
This writes one tiny stub library per missing soname into torch/lib (which is
on the libraries' RPATH as $ORIGIN): it defines every symbol torch needs from
that library, under the same symbol versions. Each stub function returns a
non-null pointer to a message: callers that expect an error code see a
non-zero code (so torch.cuda.is_available() is False), callers that expect a
string get the message. Nothing here is called on the CPU path.

    python cuda_stubs.py SITE_PACKAGES/torch/lib      # needs readelf and gcc
"""
import os
import re
import subprocess
import sys
import tempfile

SYSTEM = re.compile(r"^(libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so|"
                    r"ld-linux|libgomp\.so|libutil\.so)")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def readelf_free_ldconfig():
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def main(lib):
    present = set(os.listdir(lib))
    libs = [f for f in sorted(present) if re.search(r"\.so(\.\d+)*$", f) and not f.startswith("libcu")
            and not f.startswith("libnv") and not f.startswith("libnccl")]
    needed, ver_file, versioned, unversioned, defined = set(), {}, {}, set(), set()
    for f in libs:
        path = os.path.join(lib, f)
        for m in re.finditer(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", path)):
            needed.add(m.group(1))
        cur = None
        for line in readelf("-V", path).splitlines():
            m = re.search(r"File: (\S+)", line)
            if m:
                cur = m.group(1)
                continue
            m = re.search(r"Name: (\S+)", line)
            if m and cur:
                ver_file[m.group(1)] = cur
        for line in readelf("--dyn-syms", path).splitlines():
            p = line.split()
            if len(p) < 8 or not p[0].rstrip(":").isdigit():
                continue
            name = p[7].split("@")[0]
            if p[6] != "UND":
                defined.add(name)
            elif "@" in p[7]:
                ver = p[7].split("@")[-1].split(" ")[0]
                versioned.setdefault(ver, set()).add(name)
            elif p[4] != "WEAK":
                unversioned.add(name)
    # only what `import torch` loads, and nothing the system itself provides
    system = readelf_free_ldconfig()
    missing = sorted(n for n in needed if n not in present and n not in system and not SYSTEM.match(n)
                     and n != "libcuda.so.1")
    # unversioned undefined symbols of the CUDA libraries (cuFile, cuSPARSELt,
    # NCCL, the driver API); the rest come from the interpreter or libstdc++
    loose = sorted(n for n in unversioned - defined if n.startswith(("cu", "nccl", "nvshmem")))
    tmp = tempfile.mkdtemp()
    for so in missing:
        vers = sorted(v for v, f in ver_file.items() if f == so)
        syms = {}
        for v in vers:
            for s in versioned.get(v, ()):
                syms[s] = v
        for s in loose:
            syms.setdefault(s, vers[0] if vers else None)
        c = ['static const char msg[] = "CUDA is not available (probity realzoo stub library)";']
        c += [f"const void *{s}(void) {{ return msg; }}" for s in sorted(syms)]
        src = os.path.join(tmp, so + ".c")
        open(src, "w").write("\n".join(c) + "\n")
        cmd = ["gcc", "-shared", "-fPIC", "-w", "-o", os.path.join(lib, so), src, f"-Wl,-soname,{so}"]
        if vers:
            script = os.path.join(tmp, so + ".map")
            with open(script, "w") as fh:
                for v in vers:
                    mine = sorted(s for s, sv in syms.items() if sv == v)
                    fh.write(f"{v} {{ global: {' '.join(x + ';' for x in mine)} }};\n")
            cmd.append(f"-Wl,--version-script={script}")
        subprocess.run(cmd, check=True)
        print(f"stub {so}: {len(syms)} symbols, versions {vers}")


if __name__ == "__main__":
    main(sys.argv[1])
