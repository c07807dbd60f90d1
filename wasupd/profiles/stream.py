"""The encrypted framing of a sealed archive: an authenticated header, then AES-256-GCM chunks.

Format version 2 (docs/profiles.md is the reference)::

    header = "WASUPARC" | u8 version | u32 chunk size | u64 sealed at (unix ms)
             | u8 n | key id (n ASCII bytes) | u8 m | session (m UTF-8 bytes)
             | 8-byte random nonce prefix | u32 CRC-32 of all the bytes before it
    chunk  = u32 (final flag << 31 | ciphertext length) | ciphertext (with its 16-byte tag)
    nonce  = nonce prefix | u32 chunk index
    AAD    = SHA-256(header) | u32 chunk index | u8 final flag
    plain  = u8 codec (0 stored, 1 zlib) | payload (at most chunk size bytes once decoded)

Every chunk's tag covers the whole header (key id, session, nonce prefix), its own index and
whether it is the last one, so a flipped bit, a reordered or swapped chunk, a chunk taken from
another archive and a file cut at a chunk boundary are all detected. The CRC authenticates
nothing; it only lets a damaged header be reported as damage rather than as a wrong key.
Both directions hold one chunk at a time: memory stays flat whatever the profile's size.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wasupd.errors import ProfileError

MAGIC = b"WASUPARC"
VERSION = 2
CHUNK_SIZE = 1 << 20
MIN_CHUNK, MAX_CHUNK = 4096, 64 << 20
TAG = 16
FINAL = 1 << 31
STORED, ZLIB = 0, 1
_FIXED = struct.Struct(">8sBIQ")
_U32 = struct.Struct(">I")
# Compress a chunk only when two 2 KiB samples shrink to half: text, JSON and SQLite pages do
# (and zlib runs fast on them); LevelDB tables (snappy) and base64 media do not, and zlib over
# them costs 10-30x the encryption for a 10-25% gain (measured: docs/profiles.md).
SAMPLE, WORTH_IT = 2048, 0.5
# zlib spends ~80 us on 2 KiB of random bytes (a third of what sealing the whole 1 MiB chunk
# costs); counting distinct byte values in 1 KiB takes ~11 us. Uniform bytes show ~251 of 256,
# text, JSON and page data far fewer: those still go to zlib, which has the last word.
PEEK, RANDOM_LOOKING = 1024, 240
# A chunk's codec is decided on its first DECIDE bytes (staged); a stored chunk's remaining bytes
# are read BLOCK at a time and encrypted while still in the CPU cache (see `ChunkWriter`).
DECIDE = 64 << 10
BLOCK = 128 << 10


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed header of an archive (authenticated by every chunk's tag)."""

    version: int
    chunk_size: int
    sealed_at: float
    key_id: str
    session: str
    nonce_prefix: bytes
    raw: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256 of the header bytes, part of every chunk's AAD."""
        return hashlib.sha256(self.raw).digest()


def make_header(key_id: str, session: str, chunk_size: int = CHUNK_SIZE) -> Header:
    """A fresh header with a random nonce prefix (unique per archive, so nonces never repeat)."""
    kid, name = key_id.encode("ascii"), session.encode()
    prefix = secrets.token_bytes(8)
    now = int(time.time() * 1000)
    body = (
        _FIXED.pack(MAGIC, VERSION, chunk_size, now)
        + bytes([len(kid)])
        + kid
        + bytes([len(name)])
        + name
        + prefix
    )
    raw = body + _U32.pack(zlib.crc32(body))
    return Header(VERSION, chunk_size, now / 1000, key_id, session, prefix, raw)


def _read_exact(fh: BinaryIO, n: int, what: str, path: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ProfileError(f"{path}: archive truncated inside its {what}", path=path)
    return data


def read_header(fh: BinaryIO, path: str) -> Header:
    """Parse and check the header at the start of `fh`; `ProfileError` naming what is wrong."""
    first = fh.read(_FIXED.size)
    if not first:
        raise ProfileError(f"{path} is empty: not a wasupd profile archive", path=path)
    head = first[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise ProfileError(f"{path} is not a wasupd profile archive (bad magic)", path=path)
    if len(first) < _FIXED.size:
        raise ProfileError(f"{path}: archive truncated inside its header", path=path)
    _, version, chunk_size, sealed_ms = _FIXED.unpack(first)
    if version != VERSION:
        raise ProfileError(
            f"{path} has archive format {version}; this wasupd reads format {VERSION}", path=path
        )
    kid = _read_exact(fh, _read_exact(fh, 1, "header", path)[0], "header", path)
    name_len = _read_exact(fh, 1, "header", path)
    name = _read_exact(fh, name_len[0], "header", path)
    prefix = _read_exact(fh, 8, "header", path)
    body = first + bytes([len(kid)]) + kid + name_len + name + prefix
    crc = _read_exact(fh, 4, "header", path)
    if _U32.unpack(crc)[0] != zlib.crc32(body):
        raise ProfileError(f"{path}: the archive header is damaged (checksum mismatch)", path=path)
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ProfileError(f"{path}: impossible chunk size {chunk_size} in header", path=path)
    return Header(
        version,
        chunk_size,
        sealed_ms / 1000,
        kid.decode("ascii", errors="replace"),
        name.decode(errors="replace"),
        prefix,
        body + crc,
    )


def _nonce(header: Header, index: int) -> bytes:
    return header.nonce_prefix + _U32.pack(index)


def _aad(header: Header, index: int, final: bool) -> bytes:
    return header.digest + _U32.pack(index) + bytes([final])


def _packed_size(sample: memoryview) -> int:
    """About what zlib level 1 makes of `sample`, without running it on random-looking bytes."""
    if len(sample) >= PEEK and len(set(bytes(sample[:PEEK]))) >= RANDOM_LOOKING:
        return len(sample)
    return len(zlib.compress(sample, 1))


def _worth_compressing(view: memoryview) -> bool:
    n = len(view)
    if n <= 2 * SAMPLE:
        return n > 64 and _packed_size(view) < n * WORTH_IT
    picks = (view[n // 3 : n // 3 + SAMPLE], view[2 * n // 3 : 2 * n // 3 + SAMPLE])
    return sum(_packed_size(p) for p in picks) < 2 * SAMPLE * WORTH_IT


class _Buffers(threading.local):
    """Each thread's spare chunk-sized buffers, handed from one writer to the next.

    Allocating and zeroing 2 MiB per archive cost a fifth of sealing a typical 8 MB profile
    (fresh pages faulted in each time); a checkpointing daemon seals the same sizes over and
    over. A buffer is taken out while in use, so writers nested in one thread never share one.
    """

    def __init__(self) -> None:
        self.spare: dict[int, list[bytearray]] = {}

    def take(self, size: int) -> bytearray:
        free = self.spare.get(size)
        return free.pop() if free else bytearray(size)

    def give(self, buf: bytearray) -> None:
        free = self.spare.setdefault(len(buf), [])
        if len(free) < 2:
            free.append(buf)


_buffers = _Buffers()


class _Cipher:
    """AES-256-GCM for one archive, a chunk at a time, into buffers it reuses.

    The streaming interface of `cryptography` writes ciphertext (or plaintext) straight into a
    preallocated buffer: no 1 MiB allocation per chunk, and the input can arrive in pieces
    (record headers, file blocks still hot in the CPU cache) instead of one joined copy. The
    output equals `AESGCM.encrypt(nonce, plain, aad)` byte for byte.
    """

    def __init__(self, header: Header, key: bytes) -> None:
        self._header, self._aes = header, algorithms.AES(key)

    def encryptor(self, index: int, final: bool) -> Any:
        enc = Cipher(self._aes, modes.GCM(_nonce(self._header, index))).encryptor()
        enc.authenticate_additional_data(_aad(self._header, index, final))
        return enc

    def decrypt_into(self, index: int, final: bool, ct: memoryview, out: memoryview) -> int:
        """Decrypt `ct` (ciphertext + tag) into `out`; the plaintext length. Raises `InvalidTag`
        before the caller may look at `out`: nothing unauthenticated is ever used."""
        body, tag = ct[:-TAG], ct[-TAG:]
        dec = Cipher(self._aes, modes.GCM(_nonce(self._header, index), bytes(tag))).decryptor()
        dec.authenticate_additional_data(_aad(self._header, index, final))
        n = int(dec.update_into(body, out))
        dec.finalize()
        return n


class ChunkWriter:
    """Encrypts a byte stream into chunks written to `out` (after the header it writes first).

    `write` for small pieces, `fill_from` to read a file into the stream; `close` writes the
    final chunk (possibly empty). `out` is not closed.

    Each chunk starts by staging its first `DECIDE` bytes. If a sample of them compresses well
    the whole chunk is staged and compressed (zlib costs far more than the copy); otherwise the
    chunk is "stored" and everything after the staged part is read in `BLOCK`-sized pieces and
    encrypted as it comes, so the bulk of a profile (LevelDB tables, already compressed) is
    copied once, from the page cache into the cipher, not twice.
    """

    def __init__(self, out: BinaryIO, header: Header, key: bytes, *, level: int = 1) -> None:
        self._out, self._level, self._size = out, level, header.chunk_size
        self._cipher = _Cipher(header, key)
        self._stage = _buffers.take(header.chunk_size + 1)  # byte 0 holds the codec
        self._stage_view = memoryview(self._stage)
        # length word | ciphertext (codec + payload) | tag, plus the block size update_into wants
        self._sealed = _buffers.take(4 + header.chunk_size + 1 + TAG + 16)
        self._sealed_view = memoryview(self._sealed)
        self._block_buf = _buffers.take(BLOCK)
        self._block = memoryview(self._block_buf)
        self._index = 0
        # Chunks left to store without trying zlib, and the next such penalty: a chunk whose
        # samples promised much but which shrank by less than an eighth (text records between
        # random-looking values) makes the next ones skip the attempt, 1, 2, 4... up to 16.
        self._cooldown, self._penalty = 0, 1
        self._start_chunk()
        out.write(header.raw)

    @property
    def _trying(self) -> bool:
        """Whether the current chunk may be compressed at all."""
        return bool(self._level) and not self._cooldown

    def _start_chunk(self) -> None:
        self._fill = 1  # staged bytes, codec byte included
        self._payload = 0  # payload bytes in this chunk, staged or streamed
        self._enc: Any = None  # set once the chunk is known to be stored: streaming
        self._compress = False  # set once the chunk is known to be worth compressing
        self._at = 4  # next ciphertext byte in `_sealed`

    def write(self, data: bytes | memoryview) -> None:
        """Append `data` to the stream."""
        view = memoryview(data)
        while view:
            n = min(len(view), self._size - self._payload)
            self._take(view[:n])
            view = view[n:]
            if self._payload == self._size:
                self._finish(final=False)

    def fill_from(self, fh: io.RawIOBase, size: int) -> int:
        """Append up to `size` bytes read from `fh`; the number read (short only at EOF)."""
        done = 0
        while done < size:
            want = min(size - done, self._size - self._payload)
            if self._enc is not None:
                target = self._block[: min(want, BLOCK)]
            else:  # staging: up to the decision point, or the whole chunk when compressing
                if not self._compress and self._trying:
                    want = min(want, max(DECIDE - self._payload, 1))
                target = self._stage_view[self._fill : self._fill + want]
            n = fh.readinto(target)
            if not n:
                return done
            if self._enc is not None:
                self._payload += n
                self._stream(target[:n])
            else:
                self._fill += n
                self._staged(n)
            done += n
            if self._payload == self._size:
                self._finish(final=False)
        return done

    def close(self) -> None:
        """Write the final chunk; the writer is unusable afterwards."""
        self._finish(final=True)
        for buf in (self._stage, self._sealed, self._block_buf):
            _buffers.give(buf)

    def _take(self, piece: memoryview) -> None:
        if self._enc is not None:
            self._payload += len(piece)
            self._stream(piece)
            return
        self._stage_view[self._fill : self._fill + len(piece)] = piece
        self._fill += len(piece)
        self._staged(len(piece))

    def _staged(self, n: int) -> None:
        """Account `n` freshly staged bytes; decide the chunk's codec once enough are in."""
        self._payload += n
        if self._compress or (self._trying and self._payload < DECIDE):
            return
        if self._trying and _worth_compressing(self._stage_view[1 : self._fill]):
            self._compress = True
            return
        # Stored: encrypt what is staged, then stream the rest of the chunk as it comes.
        self._stage[0] = STORED
        self._enc = self._cipher.encryptor(self._index, final=False)
        self._stream(self._stage_view[: self._fill])

    def _stream(self, piece: memoryview) -> None:
        self._at += self._enc.update_into(piece, self._sealed_view[self._at :])

    def _finish(self, *, final: bool) -> None:
        self._cooldown = max(self._cooldown - 1, 0)
        if self._enc is None:
            self.emit_plain(self._plain(), final=final)
        else:
            self._write_sealed(self._enc, self._at, final=False)
            if final:
                # The final flag is in the AAD, which GCM takes before the first byte: a chunk
                # being streamed was begun as not final. An empty final chunk closes the stream.
                self._start_chunk()
                self._stage[0] = STORED
                self.emit_plain(self._stage_view[:1], final=True)
        self._start_chunk()

    def _plain(self) -> bytes | memoryview:
        """The staged chunk as plaintext: codec byte and payload, compressed when it pays."""
        payload = self._stage_view[1 : self._fill]
        self._stage[0] = STORED
        if self._compress or (self._trying and _worth_compressing(payload)):
            packed = zlib.compress(payload, self._level)
            if len(packed) > len(payload) - len(payload) // 8:
                self._cooldown, self._penalty = self._penalty, min(self._penalty * 2, 16)
            else:
                self._penalty = 1
            if len(packed) < len(payload):
                return bytes([ZLIB]) + packed
        return self._stage_view[: self._fill]

    def emit_plain(self, plain: bytes | memoryview, *, final: bool) -> None:
        """Encrypt one already-framed chunk plaintext (codec byte + payload) as the next chunk."""
        enc = self._cipher.encryptor(self._index, final=final)
        self._write_sealed(enc, 4 + enc.update_into(plain, self._sealed_view[4:]), final=final)

    def _write_sealed(self, enc: Any, end: int, *, final: bool) -> None:
        """Finish the chunk whose ciphertext fills `_sealed[4:end]` and write it, framed."""
        enc.finalize()
        self._sealed_view[end : end + TAG] = enc.tag
        _U32.pack_into(self._sealed, 0, (end - 4 + TAG) | (FINAL if final else 0))
        self._out.write(self._sealed_view[: end + TAG])
        self._index += 1


class ChunkReader:
    """Decrypts and checks the chunks after a header, one at a time.

    `read(n)` returns up to n bytes of the plaintext stream (empty at its authenticated end).
    Every failure is a `ProfileError` naming the chunk: truncation, an impossible length,
    a tag that does not verify, bad compressed data, bytes after the final chunk.
    """

    def __init__(self, fh: BinaryIO, header: Header, key: bytes, path: str) -> None:
        self._fh, self._header, self.path = fh, header, path
        self._cipher = _Cipher(header, key)
        self._ct = memoryview(bytearray(header.chunk_size + 1 + TAG))
        self._plainbuf = memoryview(bytearray(header.chunk_size + 1 + 16))
        self.index = 0
        self.done = False
        self._chunk = memoryview(b"")
        self._pos = 0

    def _fail(self, what: str) -> ProfileError:
        return ProfileError(f"{self.path}: {what}", path=self.path, chunk=self.index)

    def next_plain(self) -> tuple[memoryview, bool]:
        """Read and authenticate the next chunk: its plaintext (codec + payload, a view valid
        until the next call), final flag."""
        word = self._fh.read(4)
        if not word:
            raise self._fail(
                f"archive truncated after chunk {self.index - 1} (its final chunk is missing)"
                if self.index
                else "archive truncated after its header (no chunk)"
            )
        if len(word) < 4:
            raise self._fail(f"archive truncated inside chunk {self.index}")
        value = _U32.unpack(word)[0]
        final, size = bool(value & FINAL), value & ~FINAL
        if not TAG < size <= self._header.chunk_size + 1 + TAG:
            raise self._fail(f"chunk {self.index} has an impossible length {size} (damaged)")
        ct = self._ct[:size]
        got = 0
        while got < size and (n := self._fh.readinto(ct[got:])):  # type: ignore[attr-defined]
            got += n
        if got < size:
            raise self._fail(f"archive truncated inside chunk {self.index}")
        try:
            n = self._cipher.decrypt_into(self.index, final, ct, self._plainbuf)
        except InvalidTag:
            raise self._fail(
                f"chunk {self.index} fails authentication (damaged, reordered, or not sealed"
                " with this key)"
            ) from None
        self.index += 1
        if final:
            self.done = True
            if self._fh.read(1):
                raise self._fail(f"unexpected data after the final chunk {self.index - 1}")
        return self._plainbuf[:n], final

    def _decode(self, plain: memoryview) -> bytes | memoryview:
        codec, body = plain[0], plain[1:]
        if codec == STORED:
            return body
        if codec != ZLIB:
            raise self._fail(f"chunk {self.index - 1} has an unknown codec {codec}")
        d = zlib.decompressobj()
        try:
            out = d.decompress(body, self._header.chunk_size + 1)
        except zlib.error:
            raise self._fail(f"chunk {self.index - 1} holds bad compressed data") from None
        if len(out) > self._header.chunk_size or not d.eof or d.unconsumed_tail:
            raise self._fail(f"chunk {self.index - 1} holds bad compressed data")
        return out

    def read(self, n: int) -> memoryview:
        """Up to `n` bytes of plaintext (a view valid until the next call); empty at the end."""
        while self._pos >= len(self._chunk):
            if self.done:
                return memoryview(b"")
            self._chunk, self._pos = memoryview(self._decode(self.next_plain()[0])), 0
        out = self._chunk[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly `n` bytes; `ProfileError` if the stream ends first."""
        parts = []
        left = n
        while left:
            piece = self.read(left)
            if not piece:
                raise self._fail(f"contents end inside {what}")
            parts.append(bytes(piece))
            left -= len(piece)
        return b"".join(parts)

    def at_end(self) -> bool:
        """True when the final chunk has been read and fully consumed."""
        return self.done and self._pos >= len(self._chunk)


def reencrypt(reader: ChunkReader, writer: ChunkWriter) -> int:
    """Move every remaining chunk of `reader` to `writer` (another key, name or nonce prefix),
    authenticating each on the way; the number of chunks. Nothing is decompressed, and no
    plaintext touches the disk. Both headers must have the same chunk size."""
    count = 0
    while not reader.done:
        plain, final = reader.next_plain()
        writer.emit_plain(plain, final=final)
        count += 1
    return count
