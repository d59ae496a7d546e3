#!/usr/bin/python3
"""serdes_peer.py - the independent peer of tests/test_interop_serdes.c.

It knows protocol `test` (tests/util/test_proto.h) by heart and speaks the
msgwire wire formats with Python's own json, struct and msgpack modules only.

  serdes_peer.py decode SERDES FILE  FILE holds one hex payload per line (made
                                     by C). Prints one canonical line per
                                     payload, or {"error": "..."} when the
                                     payload breaks the wire format.
  serdes_peer.py encode SERDES FILE  FILE holds canonical lines. Prints
                                     "INDEX VARIANT HEX" for every way Python
                                     encodes message INDEX (0-based).
  serdes_peer.py bad SERDES          Prints "LABEL HEX" for malformed payloads.

SERDES is text, fixed, msgpack or msgpack-array. A canonical line is compact
JSON, "type" first, then the fields in declaration order: ints exact, bool
true/false, f64 its IEEE bits as 16 hex digits (so -0.0 and NaN payloads
compare exactly), chars the UTF-8 bytes before the first NUL in hex, bytes hex.
"""
import json
import re
import struct
import sys

import msgpack

INT_CODES = {"i8": "b", "i16": "h", "i32": "i", "i64": "q",
             "u8": "B", "u16": "H", "u32": "I", "u64": "Q", "enum": "B"}


def f(name, kind, n=0):
    return (name, kind, n)


SCHEMA = {
    "all_kinds": (1, [f("i8", "i8"), f("i16", "i16"), f("i32", "i32"), f("i64", "i64"),
                      f("u8", "u8"), f("u16", "u16"), f("u32", "u32"), f("u64", "u64"),
                      f("f64", "f64"), f("flag", "bool"), f("sym", "chars", 8),
                      f("raw", "bytes", 4), f("side", "enum", 3)]),
    "ping": (2, [f("seq", "u64"), f("sent_ns", "u64")]),
    "heartbeat": (3, [f("unused", "bool")]),
}
BY_TAG = {tag: name for name, (tag, _) in SCHEMA.items()}


class Bad(Exception):
    pass


def int_range(kind, n):
    if kind == "enum":
        return 0, n - 1
    bits = 8 * struct.calcsize(INT_CODES[kind])
    return (-(1 << bits - 1), (1 << bits - 1) - 1) if kind[0] == "i" else (0, (1 << bits) - 1)


def check(name, vals):
    """Checks that vals (field -> Python value) is exactly a valid `name`."""
    if name not in SCHEMA:
        raise Bad("unknown type %r" % (name,))
    fields = SCHEMA[name][1]
    if set(vals) != {fl[0] for fl in fields}:
        raise Bad("fields %s, want %s" % (sorted(vals), [fl[0] for fl in fields]))
    for fname, kind, n in fields:
        v = vals[fname]
        ok = {"f64": type(v) is float, "bool": type(v) is bool,
              "chars": type(v) is str and "\0" not in v and len(v.encode()) <= n,
              "bytes": type(v) is bytes and len(v) == n}.get(kind)
        if ok is None:
            lo, hi = int_range(kind, n)
            ok = type(v) is int and lo <= v <= hi
        if not ok:
            raise Bad("field %s (%s): bad value %r" % (fname, kind, v))


def to_canon(name, vals):
    out = {"type": name}
    for fname, kind, _ in SCHEMA[name][1]:
        v = vals[fname]
        out[fname] = (struct.pack(">d", v).hex() if kind == "f64" else
                      v.encode().hex() if kind == "chars" else
                      v.hex() if kind == "bytes" else v)
    return json.dumps(out, separators=(",", ":"))


def from_canon(line):
    obj = json.loads(line)
    name = obj.pop("type")
    for fname, kind, _ in SCHEMA[name][1]:
        v = obj[fname]
        obj[fname] = (struct.unpack(">d", bytes.fromhex(v))[0] if kind == "f64" else
                      bytes.fromhex(v).decode() if kind == "chars" else
                      bytes.fromhex(v) if kind == "bytes" else v)
    return name, obj


# ---- decoders: wire bytes -> (name, vals), raising on anything off-spec ----

def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Bad("duplicate member in %s" % keys)
    return dict(pairs)


def reject_constant(tok):
    raise Bad("non-finite number %s" % tok)


def dec_text(raw):
    obj = json.loads(raw.decode("utf-8"), object_pairs_hook=no_dups,
                     parse_constant=reject_constant)
    if type(obj) is not dict or type(obj.get("type")) is not str:
        raise Bad("not an object with a string \"type\"")
    name = obj.pop("type")
    for fname, kind, n in SCHEMA.get(name, (0, []))[1]:
        v = obj.get(fname)
        if kind == "bytes" and type(v) is str:
            if not re.fullmatch("[0-9a-f]{%d}" % (2 * n), v):
                raise Bad("field %s: %r is not %d lowercase hex digits" % (fname, v, 2 * n))
            obj[fname] = bytes.fromhex(v)
    return name, obj


def fixed_format(fields):
    return "<H" + "".join("%ds" % n if kind in ("chars", "bytes") else
                          "d" if kind == "f64" else "B" if kind == "bool" else INT_CODES[kind]
                          for _, kind, n in fields)


def dec_fixed(raw):
    (tag,) = struct.unpack_from("<H", raw)
    name = BY_TAG.get(tag)
    if name is None:
        raise Bad("unknown tag %d" % tag)
    fields = SCHEMA[name][1]
    vals = {}
    for (fname, kind, _), v in zip(fields, struct.unpack(fixed_format(fields), raw)[1:]):
        if kind == "bool":
            if v not in (0, 1):
                raise Bad("field %s: bool byte %d" % (fname, v))
            v = bool(v)
        elif kind == "chars":
            text, _, pad = v.partition(b"\0")
            if pad.strip(b"\0"):
                raise Bad("field %s: %r is not NUL-padded" % (fname, v))
            v = text.decode("utf-8")
        vals[fname] = v
    return name, vals


def dec_msgpack(raw, array):
    obj = msgpack.unpackb(raw, raw=False, object_pairs_hook=no_dups)
    if array:
        if type(obj) is not list or not obj or obj[0] not in BY_TAG:
            raise Bad("not an array starting with a known tag")
        name = BY_TAG[obj[0]]
        fields = SCHEMA[name][1]
        if len(obj) != 1 + len(fields):
            raise Bad("%d elements, want 1 + %d" % (len(obj), len(fields)))
        vals = {fl[0]: v for fl, v in zip(fields, obj[1:])}
    else:
        if type(obj) is not dict or type(obj.get("type")) is not str:
            raise Bad("not a map with a string \"type\"")
        name = obj.pop("type")
        vals = obj
    for fname, kind, _ in SCHEMA.get(name, (0, []))[1]:
        v = vals.get(fname)
        # msgpack.unpackb gives a float for float32 too: the spec says float64.
        if kind == "f64" and type(v) is float and b"\xcb" + struct.pack(">d", v) not in raw:
            raise Bad("field %s: %r is not a float64" % (fname, v))
    return name, vals


DECODERS = {"text": dec_text, "fixed": dec_fixed,
            "msgpack": lambda raw: dec_msgpack(raw, False),
            "msgpack-array": lambda raw: dec_msgpack(raw, True)}


def cmd_decode(serdes, path):
    for line in open(path):
        try:
            name, vals = DECODERS[serdes](bytes.fromhex(line.strip()))
            check(name, vals)
            print(to_canon(name, vals))
        except Exception as e:  # the error goes back to C as a failed comparison
            print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))


# ---- encoders: (name, vals) -> [(variant, bytes)] --------------------------

def as_obj(name, vals, hexbytes):
    obj = {"type": name}
    for fname, kind, _ in SCHEMA[name][1]:
        v = vals[fname]
        obj[fname] = v.hex() if hexbytes and kind == "bytes" else v
    return obj


def esc_all(s):
    """A JSON string with every character escaped as \\uXXXX (upper-case hex,
    surrogate pairs beyond the BMP)."""
    u = s.encode("utf-16-be")
    return '"' + "".join("\\u%02X%02X" % (u[i], u[i + 1]) for i in range(0, len(u), 2)) + '"'


def enc_text(name, vals):
    obj = as_obj(name, vals, True)
    items = list(obj.items())
    mid = items[1:2] + items[:1] + items[2:]  # "type" second
    chars = [fl[0] for fl in SCHEMA[name][1] if fl[1] == "chars"]
    escaped = "{ \t" + " ,\r\n\t".join(
        '%s :  %s' % (json.dumps(k), esc_all(v) if k in chars else json.dumps(v))
        for k, v in mid) + "\n}"
    return [("compact_utf8", json.dumps(obj, separators=(",", ":"), ensure_ascii=False)),
            ("compact_ascii", json.dumps(obj, separators=(",", ":"), ensure_ascii=True)),
            ("indented_sorted", json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)),
            ("reversed_ascii", json.dumps(dict(reversed(items)), ensure_ascii=True)),
            ("escaped_spaced", escaped)]


def pack_wide(o):
    """msgpack in the widest forms: ints as int64/uint64, str16, bin16,
    map16, array16. Valid msgpack that a decoder must accept."""
    if type(o) is int:
        return b"\xcf" + struct.pack(">Q", o) if o >= 0 else b"\xd3" + struct.pack(">q", o)
    if type(o) is str:
        return b"\xda" + struct.pack(">H", len(o.encode())) + o.encode()
    if type(o) is bytes:
        return b"\xc5" + struct.pack(">H", len(o)) + o
    if type(o) is dict:
        return b"\xde" + struct.pack(">H", len(o)) + b"".join(
            pack_wide(k) + pack_wide(v) for k, v in o.items())
    if type(o) is list:
        return b"\xdc" + struct.pack(">H", len(o)) + b"".join(map(pack_wide, o))
    return msgpack.packb(o)


def enc_msgpack(name, vals):
    obj = as_obj(name, vals, False)
    return [("packb", msgpack.packb(obj)),
            ("packb_type_last", msgpack.packb(dict(reversed(obj.items())))),
            ("wide_forms", pack_wide(obj))]


def enc_msgpack_array(name, vals):
    arr = [SCHEMA[name][0]] + [vals[fl[0]] for fl in SCHEMA[name][1]]
    return [("packb", msgpack.packb(arr)), ("wide_forms", pack_wide(arr))]


def enc_fixed(name, vals):
    tag, fields = SCHEMA[name]
    return [("struct", struct.pack(fixed_format(fields), tag,
                                   *(vals[fl[0]].encode() if fl[1] == "chars" else vals[fl[0]]
                                     for fl in fields)))]


ENCODERS = {"text": enc_text, "fixed": enc_fixed,
            "msgpack": enc_msgpack, "msgpack-array": enc_msgpack_array}


def cmd_encode(serdes, path):
    for i, line in enumerate(open(path)):
        for variant, data in ENCODERS[serdes](*from_canon(line)):
            if type(data) is str:
                data = data.encode()
            print(i, variant, data.hex())


# ---- malformed payloads ------------------------------------------------------

SAMPLE = {"i8": -5, "i16": 300, "i32": -70000, "i64": 1 << 40, "u8": 200, "u16": 60000,
          "u32": 1 << 31, "u64": 1 << 63, "f64": 2.5, "flag": True, "sym": "ab\u00e9",
          "raw": b"\x01\x02\x03\x04", "side": 2}


def with_(**kw):
    d = dict(SAMPLE)
    d.update(kw)
    return d


def without(key):
    d = dict(SAMPLE)
    del d[key]
    return d


# label -> field values, for the formats that carry names or positions.
VALUE_CASES = {
    "missing_field": without("u32"),
    "extra_field": with_(zzz=1),
    "i8_over_max": with_(i8=128), "i8_under_min": with_(i8=-129),
    "u8_negative": with_(u8=-1), "u16_over_max": with_(u16=65536),
    "i32_over_max": with_(i32=1 << 31), "u64_negative": with_(u64=-1),
    "i64_over_max": with_(i64=1 << 63), "enum_over_max": with_(side=3),
    "int_as_string": with_(i32="5"), "int_as_nil": with_(i16=None),
    "int_as_float": with_(i32=1.5), "bool_as_int": with_(flag=1),
    "f64_as_string": with_(f64="0.5"), "chars_as_int": with_(sym=5),
    "chars_too_long": with_(sym="ABCDEFGHI"), "chars_utf8_too_long": with_(sym="ABCDEFG\u20ac"),
}


def text_cases():
    def js(vals, name="all_kinds", **kw):
        obj = {"type": name}
        obj.update({k: v.hex() if type(v) is bytes else v for k, v in vals.items()})
        return json.dumps(obj, separators=(",", ":"), **kw)
    good = js(SAMPLE, ensure_ascii=False)
    cases = [(k, js(v)) for k, v in VALUE_CASES.items()]
    cases += [("unknown_type", js(SAMPLE, "nope")),
              ("u64_over_max", js(with_(u64=1 << 64))),
              ("i64_under_min", js(with_(i64=-(1 << 63) - 1))),
              ("bytes_too_long", js(with_(raw=b"\0\1\2\3\4"))),
              ("bytes_as_int", js(with_(raw=7))),
              ("duplicate_field", good[:-1] + ',"i8":1}'),
              ("f64_nan", js(with_(f64=float("nan")))),
              ("f64_inf", js(with_(f64=float("inf")))),
              ("f64_minus_inf", js(with_(f64=float("-inf")))),
              ("f64_overflow", good.replace('"f64":2.5', '"f64":1e999')),
              ("leading_zero", good.replace('"i8":-5', '"i8":-05')),
              ("missing_comma", good.replace(',"i16"', ' "i16"')),
              ("bad_escape", good.replace('"ab\u00e9"', '"a\\qb"')),
              ("lone_surrogate", good.replace('"ab\u00e9"', '"a\\ud800"')),
              ("not_json", "hello"),
              ("trailing_garbage", good + "x"),
              ("trailing_object", good + "{}")]
    cases = [(k, v.encode()) for k, v in cases]
    cases.append(("invalid_utf8", good.encode().replace(b"ab\xc3\xa9", b"ab\xff")))
    raw = good.encode()
    cases += [("trunc/%d" % n, raw[:n]) for n in range(1, len(raw))]
    return cases


def msgpack_cases(array):
    def pk(vals, head="all_kinds"):
        if array:
            arr = [head] + [vals[fl[0]] for fl in SCHEMA["all_kinds"][1] if fl[0] in vals]
            return msgpack.packb(arr + ([vals["zzz"]] if "zzz" in vals else []))
        obj = {"type": head}
        obj.update(vals)
        return msgpack.packb(obj)
    tag_or_name = 1 if array else "all_kinds"
    good = pk(SAMPLE, tag_or_name)
    cases = [(k, pk(v, tag_or_name)) for k, v in VALUE_CASES.items()]
    cases += [("unknown_type", pk(SAMPLE, 99 if array else "nope")),
              ("bytes_too_long", pk(with_(raw=b"\0\1\2\3\4"), tag_or_name)),
              ("chars_as_bin", pk(with_(sym=b"ab"), tag_or_name)),
              ("bytes_as_str", pk(with_(raw="abcd"), tag_or_name)),
              ("invalid_utf8", pk(with_(sym="@@"), tag_or_name).replace(b"\xa2@@", b"\xa2\xff\xfe")),
              ("not_msgpack", b"\xc1"),
              ("trailing_garbage", good + b"\xc0")]
    if not array:  # a map with "i8" twice: built by hand, a dict cannot hold it
        body = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in
                        [("type", "all_kinds")] + list(SAMPLE.items()) + [("i8", 1)])
        cases.append(("duplicate_field", b"\xde" + struct.pack(">H", len(SAMPLE) + 2) + body))
    cases += [("trunc/%d" % n, good[:n]) for n in range(1, len(good))]
    return cases


def fixed_cases():
    def fx(vals):  # CHARS already bytes, so invalid UTF-8 can be packed
        fields = SCHEMA["all_kinds"][1]
        return struct.pack(fixed_format(fields), 1, *(vals[fl[0]] for fl in fields))
    b = dict(SAMPLE, sym=SAMPLE["sym"].encode())
    good = fx(b)
    ping = enc_fixed("ping", {"seq": 1, "sent_ns": 2})[0][1]
    cases = [("unknown_type", struct.pack("<H", 99) + ping[2:]),
             ("tag_zero", struct.pack("<H", 0) + ping[2:]),
             ("enum_over_max", fx(dict(b, side=3))),
             ("bool_not_0_or_1", fx(dict(b, flag=2))),
             ("invalid_utf8", fx(dict(b, sym=b"a\xffb"))),
             ("overlong_utf8", fx(dict(b, sym=b"\xc0\x80"))),
             ("surrogate_utf8", fx(dict(b, sym=b"\xed\xa0\x80"))),
             ("trailing_garbage", good + b"\0")]
    cases += [("trunc/%d" % n, good[:n]) for n in range(1, len(good))]
    return cases


BAD = {"text": text_cases, "fixed": fixed_cases,
       "msgpack": lambda: msgpack_cases(False), "msgpack-array": lambda: msgpack_cases(True)}


def main(argv):
    if len(argv) == 4 and argv[1] == "decode" and argv[2] in DECODERS:
        cmd_decode(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "encode" and argv[2] in ENCODERS:
        cmd_encode(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "bad" and argv[2] in BAD:
        for label, data in BAD[argv[2]]():
            print(label, data.hex())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
