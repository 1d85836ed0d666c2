#!/usr/bin/env python3
"""Writes the checked-in seed corpus (corpus/<target>/): issue 22's reproducers
and well-formed answers. Run from fuzz/: python3 make_seeds.py"""
import os, shutil, glob

CC = b"type.googleapis.com/envoy.service.status.v3.ClientConfig"

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def ld(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data

def node(id_):
    return ld(1, ld(1, id_.encode()))

def any_(value, type_url=CC):
    return ld(1, type_url) + ld(2, value)

def response(rows, type_url=b"istio.io/debug/syncz"):
    cp = b'{"Component":"istiod","ID":"istiod-a","Info":{"version":"1.30.0"}}'
    return ld(1, b"1") + b"".join(ld(2, r) for r in rows) + ld(4, type_url) + ld(5, b"n") + ld(6, ld(1, cp))

def stamp(seconds):
    ts = varint(1 << 3) + varint(seconds)
    return ld(3, ld(1, b"type.googleapis.com/envoy.config.cluster.v3.Cluster") + ld(5, ts))

good = [any_(node("good-%d.ns" % i) + stamp(100 + i)) for i in range(3)]
poison_1 = bytes.fromhex("0a38") + CC + bytes.fromhex("12140a0f0a0d706f69736f6e2d312e686e73311a01ff")
bad_utf8 = ld(1, b"\xff") + any_(node("utf8.ns"))
varint_xds = any_(node("v.ns") + bytes([0x10, 0x01]))
nested = any_(node("deep.ns")) + bytes([0x1b]) * 100 + bytes([0x1c]) * 100
dup = any_(node("good-0.ns") + stamp(500))
bad_stamp = any_(node("good-1.ns") + ld(3, ld(5, b"\xff")))

syncz = {
    "good": response(good),
    "poison_1": response(good[:1] + [poison_1]),
    "utf8_type_url": response(good[:1] + [bad_utf8]),
    "varint_xds_config": response(good[:1] + [varint_xds]),
    "nested_100_groups": response(good[:1] + [nested]),
    "duplicates": response(good + [dup]),
    "undecodable_stamp": response(good + [bad_stamp] * 3),
    "empty": response([]),
}
section = lambda name, value: any_(value, b"type.googleapis.com/envoy.admin.v3." + name)
config_dump = {
    "good": response([section(b"BootstrapConfigDump", b""), section(b"ClustersConfigDump", ld(1, b"v1"))], b"istio.io/debug/config_dump"),
    "bad_clusters": response([section(b"ClustersConfigDump", bytes([0x1a, 0x01, 0xff]))], b"istio.io/debug/config_dump"),
}

def write(target, name, data):
    os.makedirs("corpus/" + target, exist_ok=True)
    with open("corpus/%s/%s" % (target, name), "wb") as f:
        f.write(data)

for name, body in syncz.items():
    write("syncz_merge", "syncz_" + name, b"\x00" + body)
for name, body in config_dump.items():
    write("syncz_merge", "config_dump_" + name, b"\x01" + body)

def framed(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg

write("grpc_frames", "huge_prefix_then_silence", b"\x07" + bytes([0, 0xFF, 0xFF, 0xFF, 0xFF]) + b"abc")
write("grpc_frames", "two_messages", b"\x03" + framed(syncz["good"]) + framed(b""))
write("grpc_frames", "compressed", b"\x10" + b"\x01" + (3).to_bytes(4, "big") + b"abc")

os.makedirs("corpus/scenario_parse", exist_ok=True)
for path in sorted(glob.glob("../scenarios/*.yaml")):
    shutil.copy(path, "corpus/scenario_parse/" + os.path.basename(path))
write("scenario_parse", "control_characters.yaml",
      b'istiod: { version: 1.30.0 }\nreplicas:\n  - name: "evil\\e[31m\\0x"\n    address: "\\e]0;t\\a"\n')
write("scenario_parse", "long_name.yaml", b"istiod: { version: 1.30.0 }\nreplicas:\n  - name: " + b"a" * 100000 + b"\n")
write("scenario_parse", "duplicate_address.yaml",
      b"istiod: { version: 1.30.0 }\nreplicas:\n  - name: a\n    address: 127.0.0.5\n  - name: b\n    address: 127.0.0.5\n")
