"""Reading a binary checkpoint forward, for the GGUF and CTranslate2 readers: a cursor over a buffer whose reads
past the end raise Truncated, which each reader turns into a UserError naming its file."""

import struct


class Truncated(Exception):
  """A read ran past the end of the file."""


class Cursor:
  """Reads little-endian values forward from a buffer; each format's reader adds how it stores strings."""

  def __init__(self, buf: memoryview):
    self.buf = buf
    self.pos = 0

  def take(self, n: int) -> memoryview:
    if self.pos + n > len(self.buf):
      raise Truncated(f"{n} bytes wanted at offset {self.pos}, past the end of the file ({len(self.buf)} bytes)")
    out = self.buf[self.pos:self.pos + n]
    self.pos += n
    return out

  def unpack(self, fmt: str):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
