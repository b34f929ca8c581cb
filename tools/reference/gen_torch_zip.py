"""Fixtures for the torch.save zip reader (src/io/torch_zip.c): tests/data/torch_zip/.

  tiny.bin            torch.save of a small state dict: F32, F16, BF16, I64, a 0-d scalar, an empty
                      tensor, non-contiguous views saved as such (a transpose, a step slice, an
                      expanded dim: torch writes the storage and the strides), two tensors sharing
                      one storage at different offsets, an nn.Parameter, and state_dict's _metadata
  tiny.safetensors    the same tensors, contiguous, for bit-exact parity
  tiny_proto4.bin     the same with pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE)
  tiny_deflate.bin    tiny.bin re-zipped with every entry deflated
  tiny_zip64.bin      tiny.bin re-zipped with ZIP64 sizes/offsets in every entry and a ZIP64 end record
  tiny_unaligned.bin  tiny.bin re-zipped without alignment padding (storages at odd offsets)
  sharded/            tiny split into two torch.save shards + pytorch_model.bin.index.json
  unet_bin/           tests/data/unet/v22_hint loaded with diffusers and re-saved with
                      save_pretrained(safe_serialization=False): config.json + diffusion_pytorch_model.bin
  lightning.ckpt      a PyTorch Lightning checkpoint as ldm's vae.ckpt is one (Kandinsky 2.0): the
                      weights under "state_dict" beside epoch, optimizer states, callbacks and
                      hyper-parameters that hold objects the reader must skip without building them
                      (a class of this script, argparse.Namespace, datetime, a set, a frozenset,
                      bytes); the reader must give exactly state_dict's tensors
  malformed/*.bin     files the reader must refuse, and malformed/cases.txt: "<file> <STATUS> <substring>"

The re-zipped variants and the malformed files come from our own small zip and pickle writers below
(written for this script from the ZIP application note and pickletools' opcode list). torch.load
must accept every valid variant (checked here) and must refuse the malformed ones or, for the
pickle attacks, is never called on them.

torch.save writes a random .data/serialization_id; it is replaced by a fixed one (and its CRCs
patched) so that running the script twice gives byte-identical files.
Usage: python tools/reference/gen_torch_zip.py [--out tests/data]
"""
import argparse
import collections
import io
import json
import os
import re
import shutil
import struct
import zipfile
import zlib

import torch
from safetensors.torch import save_file

# ---- our own zip writer --------------------------------------------------------------------


def _local(name, data, *, method, crc, csize, usize, zip64, align, at):
    nm = name.encode()
    extra = b""
    lcs, lus = csize, usize
    if zip64:
        extra += struct.pack("<HHQQ", 1, 16, usize, csize)
        lcs = lus = 0xFFFFFFFF
    if align:
        base = at + 30 + len(nm) + len(extra)
        pad = (-(base + 4)) % align
        extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # 'FB' padding field, as torch does
    hdr = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, method, 0, 0x21, crc, lcs, lus, len(nm), len(extra))
    return hdr + nm + extra


def write_zip(path, entries, *, align=64, deflate=False, zip64=False, fix=None):
    """entries: list of (name, bytes) or dicts {name, data, method, comp, usize, crc}. fix(parts) may
    edit the pieces before they are joined (for malformed files)."""
    out = bytearray()
    central = []
    for en in entries:
        if isinstance(en, tuple):
            en = {"name": en[0], "data": en[1]}
        data = en["data"]
        method = en.get("method", 8 if deflate else 0)
        if "comp" in en:
            comp = en["comp"]
        elif method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        else:
            comp = data
        usize = en.get("usize", len(data))
        crc = en.get("crc", zlib.crc32(data) & 0xFFFFFFFF)
        lho = len(out)
        out += _local(en["name"], data, method=method, crc=crc, csize=len(comp), usize=usize, zip64=zip64,
                      align=align if method == 0 else 0, at=lho)
        out += comp
        central.append((en["name"].encode(), method, crc, len(comp), usize, lho))
    cd_off = len(out)
    for nm, method, crc, csize, usize, lho in central:
        extra = b""
        cs, us, lo = csize, usize, lho
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, lho)
            cs = us = lo = 0xFFFFFFFF
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45 if zip64 else 20, 0, method, 0, 0x21, crc, cs,
                           us, len(nm), len(extra), 0, 0, 0, 0, lo)
        out += nm + extra
    cd_size = len(out) - cd_off
    n = len(central)
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n, cd_size, cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0)
    if fix:
        out = fix(out)
    if path:
        with open(path, "wb") as f:
            f.write(bytes(out))
    return bytes(out)


def entries_of(path):
    """(name, bytes) of a zip in directory order."""
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


FIXED_ID = b"0" * 20 + b"1234567890" * 2


def fix_serialization_id(path):
    """Replaces torch.save's random .data/serialization_id by a fixed one of the same length and
    patches the CRC in the data descriptor and the central directory."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/.data/serialization_id"))
    nl, xl = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    at = info.header_offset + 30 + nl + xl
    assert len(FIXED_ID) == info.file_size
    data[at:at + info.file_size] = FIXED_ID
    crc = zlib.crc32(FIXED_ID)
    end = at + info.file_size
    if data[end:end + 4] == b"PK\x07\x08":  # data descriptor with signature
        data[end + 4:end + 8] = struct.pack("<I", crc)
    else:
        assert not (info.flag_bits & 8), "descriptor without signature"
    # central directory entry: find by name after the last local data
    nm = info.filename.encode()
    pos = data.rfind(struct.pack("<I", 0x02014B50), 0, data.rfind(nm))
    assert data[pos + 46:pos + 46 + len(nm)] == nm
    data[pos + 16:pos + 20] = struct.pack("<I", crc)
    if info.flag_bits & 8 and data[end:end + 4] != b"PK\x07\x08":
        raise AssertionError
    open(path, "wb").write(bytes(data))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None


def tsave(obj, path, **kw):
    torch.save(obj, path, **kw)
    fix_serialization_id(path)


# ---- our own pickle writer (protocol 2, the opcodes torch.save uses) ---------------------------


class Pickle:
    def __init__(self, proto=2):
        self.b = bytearray(b"\x80" + bytes([proto]))

    def raw(self, b):
        self.b += b
        return self

    def s(self, text):
        u = text.encode()
        return self.raw(b"X" + struct.pack("<I", len(u)) + u)

    def i(self, v):
        if 0 <= v < 256:
            return self.raw(b"K" + bytes([v]))
        if 0 <= v < 65536:
            return self.raw(b"M" + struct.pack("<H", v))
        if -(2 ** 31) <= v < 2 ** 31:
            return self.raw(b"J" + struct.pack("<i", v))
        n = (v.bit_length() + 8) // 8
        return self.raw(b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True))

    def glob(self, mod, name):
        return self.raw(b"c" + mod.encode() + b"\n" + name.encode() + b"\n")

    def tup(self, vals):
        if not vals:
            return self.raw(b")")
        if len(vals) <= 3:
            for v in vals:
                self.i(v)
            return self.raw(bytes([0x84 + len(vals)]))
        self.raw(b"(")
        for v in vals:
            self.i(v)
        return self.raw(b"t")

    def storage(self, key, stype="FloatStorage", numel=6, typename="storage"):
        self.raw(b"(").s(typename).glob("torch", stype).s(key).s("cpu").i(numel).raw(b"t")
        return self.raw(b"Q")

    def tensor(self, key, stype="FloatStorage", numel=6, offset=0, size=(2, 3), stride=(3, 1)):
        self.glob("torch._utils", "_rebuild_tensor_v2").raw(b"(")
        self.storage(key, stype, numel)
        self.i(offset).tup(list(size)).tup(list(stride)).raw(b"\x89")
        self.glob("collections", "OrderedDict").raw(b")R")
        return self.raw(b"tR")

    def state_dict(self, items):
        """items: list of (name, callable emitting the value)."""
        self.glob("collections", "OrderedDict").raw(b")R(")
        for name, emit in items:
            self.s(name)
            emit(self)
        return self.raw(b"u.")


def archive(pkl, storages, *, arch="archive", byteorder=b"little", version=b"3\n", extra=()):
    ents = [(f"{arch}/data.pkl", bytes(pkl.b if isinstance(pkl, Pickle) else pkl))]
    if byteorder is not None:
        ents.append((f"{arch}/byteorder", byteorder))
    ents += [(f"{arch}/data/{k}", v) for k, v in storages]
    if version is not None:
        ents.append((f"{arch}/version", version))
    return ents + list(extra)


F6 = struct.pack("<6f", *range(6))  # a float storage of 6 elements


def one_tensor(**kw):
    return Pickle().state_dict([("w", lambda p: p.tensor("0", **kw))])


# ---- fixtures -----------------------------------------------------------------------------


def tiny_state_dict():
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(2, 3, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 2, generator=g).bfloat16()
    sd["i64"] = torch.tensor([1, -2, 2 ** 40], dtype=torch.int64)
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 3)
    base = torch.randn(3, 4, generator=g)
    sd["transposed"] = base.t()                       # [4, 3], stride (1, 4)
    sd["step"] = torch.randn(10, generator=g)[1::3]   # [3], offset 1, stride 3
    sd["expanded"] = torch.randn(3, generator=g).expand(2, 3)  # stride (0, 1)
    shared = torch.randn(12, generator=g).half()
    sd["shared_a"] = shared[2:6]                       # two views of one storage
    sd["shared_b"] = shared[6:12].view(2, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, generator=g), requires_grad=False)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def gen_tiny(out):
    sd = tiny_state_dict()
    tsave(sd, os.path.join(out, "tiny.bin"))
    tsave(sd, os.path.join(out, "tiny_proto4.bin"), pickle_protocol=4)
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, os.path.join(out, "tiny.safetensors"))
    ents = entries_of(os.path.join(out, "tiny.bin"))
    write_zip(os.path.join(out, "tiny_deflate.bin"), ents, deflate=True)
    write_zip(os.path.join(out, "tiny_zip64.bin"), ents, zip64=True)
    write_zip(os.path.join(out, "tiny_unaligned.bin"), ents, align=0)
    for name in ("tiny.bin", "tiny_proto4.bin", "tiny_deflate.bin", "tiny_zip64.bin", "tiny_unaligned.bin"):
        # torch's weights_only unpickler does not know FRAME; the file is ours, so load it fully
        back = torch.load(os.path.join(out, name), weights_only=name != "tiny_proto4.bin")
        assert list(back) == list(sd), name
        for k in sd:
            assert torch.equal(back[k], sd[k]) and back[k].stride() == sd[k].stride(), (name, k)

    d = os.path.join(out, "sharded")
    os.makedirs(d, exist_ok=True)
    keys = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[:6], "pytorch_model-00002-of-00002.bin": keys[6:]}
    wmap = {}
    total = sum(v.numel() * v.element_size() for v in sd.values())
    for fname, ks in shards.items():
        tsave(collections.OrderedDict((k, sd[k]) for k in ks), os.path.join(d, fname))
        wmap.update({k: fname for k in ks})
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)


class LossConfig:
    """Stands for any user class a Lightning checkpoint's hyper-parameters name (pickled as
    __main__.LossConfig through NEWOBJ + BUILD)."""

    def __init__(self):
        self.weight = 0.5
        self.kind = "lpips"


def lightning_checkpoint(state_dict):
    import argparse
    import datetime
    return {"epoch": 7, "global_step": 123456, "pytorch-lightning_version": "1.6.0",
            "state_dict": state_dict,
            "optimizer_states": [{"state": {0: {"step": 10, "exp_avg": torch.ones(3)}},
                                  "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.9), "params": [0, 1]}]}],
            "lr_schedulers": [],
            "callbacks": {"ModelCheckpoint{'monitor': 'val/rec_loss'}": {"best_model_score": torch.tensor(0.25),
                                                                          "dirpath": "/logs"}},
            "hyper_parameters": {"ns": argparse.Namespace(lr=1e-4), "cfg": LossConfig(), "tags": {3, 1, 2},
                                 "frozen": frozenset({1}), "blob": b"\x00\x01",
                                 "when": datetime.datetime(2022, 11, 1)}}


def gen_lightning(out):
    g = torch.Generator().manual_seed(11)
    sd = collections.OrderedDict([("encoder.conv_in.weight", torch.randn(4, 3, 3, 3, generator=g)),
                                  ("encoder.conv_in.bias", torch.randn(4, generator=g)),
                                  ("loss.logvar", torch.zeros(()))])
    path = os.path.join(out, "lightning.ckpt")
    tsave(lightning_checkpoint(sd), path)
    back = torch.load(path, weights_only=False)
    assert all(torch.equal(back["state_dict"][k], sd[k]) for k in sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "lightning_state_dict.safetensors"))


def gen_unet(out, data):
    from diffusers import UNet2DConditionModel

    src = os.path.join(data, "unet", "v22_hint")
    model = UNet2DConditionModel.from_pretrained(src, torch_dtype=torch.float16)
    dst = os.path.join(out, "unet_bin")
    shutil.rmtree(dst, ignore_errors=True)
    model.save_pretrained(dst, safe_serialization=False)
    assert os.path.exists(os.path.join(dst, "diffusion_pytorch_model.bin"))
    fix_serialization_id(os.path.join(dst, "diffusion_pytorch_model.bin"))
    # from_pretrained recorded where it loaded from (an absolute path on this machine)
    cfg_path = os.path.join(dst, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.pop("_name_or_path", None)
    with open(cfg_path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def gen_malformed(out):
    d = os.path.join(out, "malformed")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cases = []

    def case(name, status, substring):
        cases.append(f"{name} {status} {substring}")

    def put(name, entries, status, substring, **kw):
        write_zip(os.path.join(d, name), entries, **kw)
        case(name, status, substring)

    good = archive(one_tensor(), [("0", F6)])
    blob = write_zip(None, good)
    # truncated archives: inside the first entry, halfway, in the central directory, last byte gone
    cd = blob.rfind(b"PK\x01\x02")
    for tag, cut in (("100", 100), ("half", len(blob) // 2), ("cd", cd + 20), ("end1", len(blob) - 1)):
        open(os.path.join(d, f"truncated_{tag}.bin"), "wb").write(blob[:cut])
        case(f"truncated_{tag}.bin", "FORMAT", "end-of-central-directory")

    def bump_cd_offset(b):
        e = b.rfind(b"PK\x05\x06")
        off = struct.unpack_from("<I", b, e + 16)[0]
        struct.pack_into("<I", b, e + 16, off + 4)
        return b

    put("cd_offset.bin", good, "FORMAT", "does not end where the end record begins", fix=bump_cd_offset)

    def bump_lho(b):
        c = b.find(b"PK\x01\x02")
        lho = struct.unpack_from("<I", b, c + 42)[0]
        struct.pack_into("<I", b, c + 42, lho + 4)
        return b

    put("local_offset.bin", good, "FORMAT", "no local header signature", fix=bump_lho)

    def bump_count(b):
        e = b.rfind(b"PK\x05\x06")
        n = struct.unpack_from("<H", b, e + 10)[0]
        struct.pack_into("<HH", b, e + 8, n - 1, n - 1)
        return b

    put("entry_count.bin", good, "FORMAT", "follow the last of the", fix=bump_count)
    put("short_storage.bin", archive(one_tensor(numel=7), [("0", F6)]), "FORMAT",
        "has 24 bytes but its storage of 7 float32 elements needs 28")
    put("offset_beyond.bin", archive(one_tensor(offset=7, size=(0,), stride=(1,)), [("0", F6)]), "FORMAT",
        "storage offset 7 is beyond the end")
    put("offset_extent.bin", archive(one_tensor(offset=1), [("0", F6)]), "FORMAT",
        "storage offset 1 + extent 5 reaches element 6")
    put("stride_outside.bin", archive(one_tensor(size=(2, 3), stride=(4, 1)), [("0", F6)]), "FORMAT",
        "reaches element 6 but storage")
    put("stride_overflow.bin", archive(one_tensor(size=(4, 3), stride=(2 ** 63 - 1, 1)), [("0", F6)]), "FORMAT",
        "overflows")
    put("negative_stride.bin", archive(one_tensor(size=(3,), stride=(-1,)), [("0", F6)]), "FORMAT",
        "must be non-negative integers")
    put("missing_storage.bin", archive(one_tensor(), [("1", F6)]), "FORMAT", "has no zip entry 'archive/data/0'")
    two = Pickle().state_dict([("a", lambda p: p.tensor("0")), ("b", lambda p: p.tensor("0", "HalfStorage", 12))])
    put("two_types.bin", archive(two, [("0", F6)]), "FORMAT", "torch never saves one storage with two types")
    p = Pickle().state_dict([("w", lambda p: p.tensor("0", "DoubleStorage", 3, size=(3,), stride=(1,)))])
    put("float64.bin", archive(p, [("0", F6)]), "UNSUPPORTED", "tensor 'w': dtype float64 is not supported")
    p = Pickle().state_dict([("w", lambda p: p.tensor("0")), ("w", lambda p: p.tensor("0"))])
    put("dup_tensor.bin", archive(p, [("0", F6)]), "FORMAT", "duplicate tensor name 'w'")
    p = Pickle().state_dict([("w", lambda p: p.i(5))])
    put("not_tensor.bin", archive(p, [("0", F6)]), "FORMAT", "'w' is an int, expected a tensor")
    put("not_dict.bin", archive(Pickle().raw(b"]."), []), "FORMAT", "holds a list, expected a state dict")

    # pickle attacks
    p = Pickle().glob("os", "system").s("touch /tmp/kd_pwned").raw(b"\x85R.")
    put("os_system.bin", archive(p, []), "FORMAT", "global 'os.system' is not allowed")
    p = Pickle().glob("posix", "system").s("touch /tmp/kd_pwned").raw(b"\x85R.")
    put("posix_system.bin", archive(p, []), "FORMAT", "global 'posix.system' is not allowed")
    p = Pickle().glob("builtins", "eval").s("__import__('os').system('touch /tmp/kd_pwned')").raw(b"\x85R.")
    put("builtins_eval.bin", archive(p, []), "FORMAT", "global 'builtins.eval' is not allowed")
    p = Pickle(4).s("subprocess").s("Popen").raw(b"\x93").s("true").raw(b"\x85R.")
    put("subprocess_stack_global.bin", archive(p, []), "FORMAT", "global 'subprocess.Popen' is not allowed")
    # the dict is built, then a tensor's storage tuple smuggles a call in the storage-type slot
    p = Pickle().state_dict([("w", lambda p: p.glob("torch._utils", "_rebuild_tensor_v2").raw(b"(").raw(b"(").s("storage")
                                          .glob("builtins", "exec").s("0").s("cpu").i(6).raw(b"tQ"))])
    put("exec_in_persid.bin", archive(p, [("0", F6)]), "FORMAT", "global 'builtins.exec' is not allowed")
    p = Pickle().glob("torch", "FloatStorage").s("x").raw(b"\x85R.")
    put("call_storage_type.bin", archive(p, []), "FORMAT", "calls a torch storage type")
    p = Pickle().glob("__torch__", "Model").raw(b")\x81.")  # NEWOBJ: a TorchScript-style object
    put("torchscript_global.bin", archive(p, []), "FORMAT", "global '__torch__.Model' is not allowed")
    put("unknown_opcode.bin", archive(Pickle().raw(b"\xff."), []), "FORMAT", "unknown opcode 0xff")
    put("inst_opcode.bin", archive(Pickle().raw(b"(ios\nsystem\n."), []), "FORMAT", "opcode INST is not allowed")
    # (deflated: the reader inflates data.pkl like any entry, and the files stay small)
    put("deep_marks.bin", archive(Pickle().raw(b"(" * 10000 + b"."), []), "FORMAT", "MARKs open (nesting too deep)",
        deflate=True)
    nested = Pickle().raw(b"]" * 10000 + b"a" * 9999 + b".")
    put("nested_lists.bin", archive(nested, []), "FORMAT", "holds a list, expected a state dict", deflate=True)
    put("memo_range.bin", archive(Pickle().raw(b"}q\x00h\xc8."), []), "FORMAT", "memo index 200 out of range")
    put("memo_skip.bin", archive(Pickle().raw(b"}r\x00\x00\x00\x10."), []), "FORMAT", "skips ahead of the memo")
    put("huge_long1.bin", archive(Pickle().raw(b"\x8a\xff" + b"\x7f" * 255 + b"."), []), "FORMAT",
        "integer of 255 bytes does not fit in 64 bits")
    put("stack_underflow.bin", archive(Pickle().raw(b"}s."), []), "FORMAT", "needs 3 values on the stack")
    put("no_stop.bin", archive(Pickle().raw(b"}"), []), "FORMAT", "without STOP")
    put("string_truncated.bin", archive(Pickle().raw(b"X\xff\xff\x00\x00abc"), []), "FORMAT", "truncated")
    put("bad_utf8.bin", archive(Pickle().raw(b"X\x02\x00\x00\x00\xc3\x28."), []), "FORMAT", "not valid UTF-8")
    put("proto_9.bin", archive(b"\x80\x09}.", []), "UNSUPPORTED", "pickle protocol 9")

    # records and container
    put("big_endian.bin", archive(one_tensor(), [("0", F6)], byteorder=b"big"), "UNSUPPORTED", "big-endian")
    put("bad_version.bin", archive(one_tensor(), [("0", F6)], version=b"x\n"), "FORMAT", "expected a version number")
    put("future_version.bin", archive(one_tensor(), [("0", F6)], version=b"99\n"), "UNSUPPORTED", "versions above")
    put("no_version.bin", archive(one_tensor(), [("0", F6)], version=None), "FORMAT", "no 'archive/version' record")
    put("no_pickle.bin", archive(one_tensor(), [("0", F6)])[1:], "FORMAT", "no 'archive/data.pkl' entry")
    put("dup_entry.bin", good + [("archive/data/0", F6)], "FORMAT", "duplicate zip entry 'archive/data/0'")
    put("outside_folder.bin", good + [("other/x", b"")], "FORMAT", "zip entry 'other/x' is outside the archive folder")
    ents = [dict(name=n, data=v) for n, v in good]
    ents[0]["crc"] = 0x12345678
    put("bad_crc.bin", ents, "FORMAT", "CRC-32")
    ents = [dict(name=n, data=v) for n, v in good]
    ents[-1]["method"] = 12
    put("bzip2.bin", ents, "UNSUPPORTED", "compression method 12")

    # zip bombs: a storage whose deflate stream inflates far beyond its declared 24 bytes, and a
    # declared size no deflate stream can reach from its compressed size
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(b"\0" * (1 << 20)) + c.flush()
    ents = [dict(name=n, data=v) for n, v in good]
    ents[2] = dict(name="archive/data/0", data=F6, method=8, comp=bomb)
    put("zip_bomb.bin", ents, "FORMAT", "inflates beyond its declared size")
    n_big = 0xC0000000 // 4
    p = one_tensor(numel=n_big, size=(n_big,), stride=(1,))
    ents = [dict(name=n, data=v) for n, v in archive(p, [("0", b"")])]
    ents[2] = dict(name="archive/data/0", data=b"", method=8, comp=bomb[:64], usize=0xC0000000, crc=0)
    put("zip_bomb_ratio.bin", ents, "FORMAT", "beyond deflate's maximum ratio")

    def overlap(b):  # the first entry's data runs over the second entry's local header
        c1 = b.find(b"PK\x01\x02")
        n = struct.unpack_from("<I", b, c1 + 20)[0]
        struct.pack_into("<II", b, c1 + 20, n + 64, n + 64)
        return b

    put("overlap.bin", good, "FORMAT", "overlap", fix=overlap)
    # a Lightning checkpoint whose state dict holds an object instead of a tensor
    tsave(lightning_checkpoint(collections.OrderedDict([("w", torch.ones(2)), ("cfg", LossConfig())])),
          os.path.join(d, "lightning_object.bin"))
    case("lightning_object.bin", "FORMAT", "'cfg': global '__main__.LossConfig' is not allowed")
    # not zips
    # the legacy format names storages by address: rename the one storage "0" to keep the file stable
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
    leg = re.sub(rb"X(....)(\d{6,20})(?=q)", lambda mt: b"X" + struct.pack("<I", 1) + b"0", buf.getvalue())
    assert leg.count(b"X\x01\x00\x00\x000") == 2, "expected the key in the pickle and in the key list"
    assert torch.equal(torch.load(io.BytesIO(leg), weights_only=True)["w"], torch.zeros(2))
    open(os.path.join(d, "legacy.bin"), "wb").write(leg)
    case("legacy.bin", "UNSUPPORTED", "legacy PyTorch pickles are not supported yet")
    open(os.path.join(d, "lfs_pointer.bin"), "wb").write(
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 5135890710\n")
    case("lfs_pointer.bin", "UNSUPPORTED", "Git LFS pointer")
    open(os.path.join(d, "text.bin"), "wb").write(b"hello, not weights\n" * 4)
    case("text.bin", "UNSUPPORTED", "not a zip archive")

    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("# <file> <kd_status without KD_ERR_> <message substring>; written by tools/reference/gen_torch_zip.py\n")
        f.write("\n".join(cases) + "\n")
    # For the record: which of these torch.load itself accepts (only files without pickle attacks).
    for line in cases:
        name = line.split()[0]
        if any(w in name for w in ("system", "eval", "exec", "subprocess", "torchscript", "bomb", "lightning")):
            continue
        try:
            torch.load(os.path.join(d, name), weights_only=True)
            print(f"  note: torch.load accepts malformed/{name}")
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    args = ap.parse_args()
    torch.manual_seed(0)
    out = os.path.join(args.out, "torch_zip")
    os.makedirs(out, exist_ok=True)
    gen_tiny(out)
    gen_lightning(out)
    gen_unet(out, args.out)
    gen_malformed(out)


if __name__ == "__main__":
    main()
