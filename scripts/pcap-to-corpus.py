#!/usr/bin/env python3
"""Copies the DHCP payloads of captured packets into the fuzz corpora.

Usage: scripts/pcap-to-corpus.py dhcp-core/tests/fixtures/captured/*.pcap
Writes fuzz/corpus/{decode,engine}/captured-<capture>-<n>, one file per UDP datagram to or
from port 67 (requests and replies: the decoder must take both, the engine must drop replies).
"""
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def datagrams(path):
    data = path.read_bytes()
    magic, = struct.unpack_from("<I", data, 0)
    if magic != 0xA1B2C3D4:
        sys.exit(f"{path}: not a little-endian microsecond pcap")
    at = 24
    while at + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, at)
        frame = data[at + 16 : at + 16 + incl]
        at += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        sport, dport, length = struct.unpack_from(">HHH", udp, 0)
        if 67 in (sport, dport):
            yield udp[8:length]


def main():
    for arg in sys.argv[1:]:
        path = pathlib.Path(arg)
        for n, payload in enumerate(datagrams(path)):
            for target in ("decode", "engine"):
                out = ROOT / "fuzz" / "corpus" / target / f"captured-{path.stem}-{n:02}"
                out.write_bytes(payload)


if __name__ == "__main__":
    main()
