"""S/MIME opaque-signed mail: the signed MIME entity read out of its CMS SignedData, unchecked.

Outlook with clear-signing off sends the whole body as ``application/pkcs7-mime;
smime-type=signed-data; name="smime.p7m"`` (RFC 8551 section 3.5.2): a CMS ``ContentInfo``
(RFC 5652 section 3) holding ``SignedData`` (section 5.1), whose ``encapContentInfo``
(section 5.2) carries the signed MIME entity as ``eContent``, an OCTET STRING. Mail programs
that cannot check the signature still show that entity; so does intake.

:func:`signed_content` reads the entity and does **not** check the signature: no digest,
certificate or signer is looked at, so what it gives is never authenticated. The sender stays
who the top-level header says, authenticated (or not) by :mod:`~asm_email_rules.auth` like any
other mail.

The BER reader (X.690 section 8.1) is small, bounded and linear. It reads each TLV header
once and never recurses: it walks the path to ``eContent`` (``ContentInfo``, ``[0]``,
``SignedData``, ``encapContentInfo``, ``[0]``), skips the two fields before
``encapContentInfo`` (a definite length is jumped over, an indefinite one walked once), and
collects ``eContent``, primitive or constructed (streaming signers such as ``openssl cms
-stream`` write chunks of OCTET STRINGs, possibly nested, with indefinite lengths). Nesting
deeper than :data:`MAX_DEPTH`, a length past the end of its parent, or any other shape raises
:class:`~asm_email_rules.errors.DerError`; nothing else is raised.
"""

from __future__ import annotations

import io
from typing import NamedTuple

from asm_email_rules.errors import DerError

__all__ = ["MAX_DEPTH", "cms_content_type", "locate_signed_content", "signed_content"]

MAX_DEPTH = 32
"""Nesting depth of BER elements the reader follows (the path to eContent is 6 deep)."""
_MAX_LENGTH_OCTETS = 4  # a length needs at most 4 octets (4 GiB): more is refused

_SEQUENCE = 0x30
_OID = 0x06
_INTEGER = 0x02
_SET = 0x31
_EXPLICIT_0 = 0xA0  # [0] constructed, context-specific
_OCTET_STRING = 0x04
_CONSTRUCTED_OCTET_STRING = 0x24

_PKCS7 = bytes.fromhex("2a864886f70d0107")  # 1.2.840.113549.1.7
_SMIME_CT = bytes.fromhex("2a864886f70d01091001")  # 1.2.840.113549.1.9.16.1
_CONTENT_TYPES = {
    _PKCS7 + b"\x01": "data",
    _PKCS7 + b"\x02": "signed-data",
    _PKCS7 + b"\x03": "enveloped-data",
    _SMIME_CT + b"\x09": "compressed-data",  # RFC 3274
    _SMIME_CT + b"\x17": "authenveloped-data",  # RFC 5083
}
"""Content-type OIDs (their encoded bytes) by the ``smime-type`` name RFC 8551 gives them."""


class _Header(NamedTuple):
    """One BER element's identifier and where its contents lie in the input (a named tuple:
    one is made per element read, and a tuple is made fastest)."""

    tag: int  # the first identifier octet: class, constructed bit, tag number (< 31)
    start: int  # offset of the contents
    end: int | None  # offset just past the contents; None for the indefinite form


def _header(data: bytes, pos: int, limit: int) -> _Header:
    """The element at ``data[pos:]``, which must lie within ``limit``; raises DerError."""
    if pos + 2 > limit:
        raise DerError("truncated element")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # high tag number form: base-128 octets, at most 4
        for _ in range(4):
            if pos >= limit:
                raise DerError("truncated tag")
            pos += 1
            if data[pos - 1] < 0x80:
                break
        else:
            raise DerError("tag number too large")
    if pos >= limit:
        raise DerError("truncated length")
    first = data[pos]
    pos += 1
    if first == 0x80:
        if not tag & 0x20:
            raise DerError("indefinite length on a primitive element")
        return _Header(tag, pos, None)
    length = first
    if first > 0x80:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or pos + count > limit:
            raise DerError("length too long")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if length > limit - pos:
        raise DerError("length past the end of its parent")
    return _Header(tag, pos, pos + length)


def _at_end(data: bytes, pos: int, end: int | None, limit: int) -> tuple[bool, int]:
    """Whether the contents of a constructed element end at ``pos``; and where reading goes
    on: past an end-of-contents ``00 00`` for the indefinite form (``end`` None)."""
    if end is not None:
        return pos >= end, pos
    if pos + 2 > limit:
        raise DerError("indefinite length without end-of-contents")
    if data[pos] == 0 and data[pos + 1] == 0:
        return True, pos + 2
    return False, pos


def _skip(data: bytes, pos: int, limit: int, depth: int) -> int:
    """The offset just past the element at ``pos``: a definite length is jumped over, an
    indefinite one walked once, iteratively (only its indefinite children are entered)."""
    header = _header(data, pos, limit)
    if header.end is not None:
        return header.end
    open_elements = 1
    pos = header.start
    while open_elements:
        done, pos = _at_end(data, pos, None, limit)
        if done:
            open_elements -= 1
            continue
        child = _header(data, pos, limit)
        if child.end is None:
            open_elements += 1
            if depth + open_elements > MAX_DEPTH:
                raise DerError("nested too deeply")
            pos = child.start
        else:
            pos = child.end
    return pos


def _octets(data: bytes, pos: int, limit: int, depth: int) -> tuple[bytes, int, int]:
    """Where the value of the OCTET STRING at ``pos`` lies, as ``(buffer, start, end)``:
    ``data`` and the contents' range for a primitive one (nothing copied), or the chunks of
    a constructed one (X.690 section 8.7.3, definite or indefinite, nested at most to
    MAX_DEPTH) joined in a new buffer.

    Chunks are copied into one growing buffer as they are read, not kept as a list of
    ``bytes``: a million chunks of two bytes took about 50 bytes of memory each as objects
    (32 times the data for a 14 MB part). The buffer is an ``io.BytesIO``, whose value is
    its own ``bytes`` (a ``bytearray`` would be copied whole once more to give ``bytes``)."""
    header = _header(data, pos, limit)
    if header.tag == _OCTET_STRING:
        return data, header.start, _within(header, limit)
    if header.tag != _CONSTRUCTED_OCTET_STRING:
        raise DerError("eContent is not an OCTET STRING")
    content = io.BytesIO()
    write = content.write
    view = memoryview(data)  # a chunk is written from a view: no slice copied
    # each open constructed string: (its end, None when indefinite; the limit it lies in)
    open_strings = [(header.end, _within(header, limit))]
    pos = header.start
    while open_strings:
        end, inner_limit = open_strings[-1]
        while pos + 2 <= inner_limit and data[pos] == _OCTET_STRING and data[pos + 1] < 0x80:
            start = pos + 2  # the common chunk, a primitive with a short length: read inline
            pos = start + data[pos + 1]
            write(view[start:pos])
        if pos > inner_limit:
            raise DerError("length past the end of its parent")
        done, pos = _at_end(data, pos, end, inner_limit)
        if done:
            open_strings.pop()
            continue
        child = _header(data, pos, inner_limit)
        if child.tag == _CONSTRUCTED_OCTET_STRING:
            if depth + len(open_strings) >= MAX_DEPTH:
                raise DerError("nested too deeply")
            open_strings.append((child.end, _within(child, inner_limit)))
            pos = child.start
        elif child.tag == _OCTET_STRING:
            pos = _within(child, inner_limit)  # a primitive element has a definite length
            write(view[child.start : pos])
        else:
            raise DerError("a constructed OCTET STRING holds something else")
    joined = content.getvalue()
    return joined, 0, len(joined)


def _within(header: _Header, limit: int) -> int:
    """Where an element's contents must end: its own end, or for the indefinite form the
    limit of its parent (its end-of-contents comes before)."""
    return limit if header.end is None else header.end


def _enter(data: bytes, pos: int, limit: int, tag: int, what: str) -> _Header:
    """The element at ``pos``, which must carry ``tag`` (raises DerError naming ``what``)."""
    header = _header(data, pos, limit)
    if header.tag != tag:
        raise DerError(f"{what} expected")
    return header


def _content_info(data: bytes) -> tuple[str, _Header, int]:
    """The ``ContentInfo`` at the start of ``data``: its content type's name (``"unknown"``
    for another OID), its ``[0]`` content's header, and the limit that content lies in."""
    info = _enter(data, 0, len(data), _SEQUENCE, "ContentInfo SEQUENCE")
    limit = _within(info, len(data))
    oid = _enter(data, info.start, limit, _OID, "contentType")
    name = _CONTENT_TYPES.get(data[oid.start : oid.end], "unknown")
    content = _enter(data, _within(oid, limit), limit, _EXPLICIT_0, "[0] content")
    return name, content, limit


def cms_content_type(data: bytes) -> str:
    """The CMS content type of a ``ContentInfo`` (RFC 5652 section 3) as RFC 8551 names it in
    ``smime-type`` (``signed-data``, ``enveloped-data``, ``authenveloped-data``,
    ``compressed-data``, ``data``), or ``"unknown"``. Raises DerError when ``data`` does not
    start with a ContentInfo."""
    return _content_info(data)[0]


def signed_content(data: bytes) -> bytes:
    """The encapsulated content (the signed MIME entity, RFC 8551 section 3.5.2) of a CMS
    ``SignedData`` (RFC 5652 sections 5.1 and 5.2), the signature **not** checked.

    ``data`` is the DER or BER ``ContentInfo`` (a decoded ``smime.p7m``). Raises DerError
    when it is not SignedData, when the content is detached (no ``eContent``) or of another
    type than ``id-data``, or when the encoding is broken or over the reader's limits.
    Linear in ``len(data)``; the result is a copy of the content's bytes.
    """
    buffer, start, end = locate_signed_content(data)
    return buffer[start:end]


def locate_signed_content(data: bytes) -> tuple[bytes, int, int]:
    """Where :func:`signed_content` lies, as ``(buffer, start, end)``: ``buffer[start:end]``
    is the content. A primitive ``eContent`` (DER, as most signers write it) is found in
    ``data`` itself and nothing is copied, so a large entity costs no second copy; the
    chunks of a constructed one (BER, streaming signers) are joined in a new buffer
    (``start`` 0). Raises DerError as :func:`signed_content` does.
    """
    name, content, limit = _content_info(data)  # depth 1: ContentInfo
    if name != "signed-data":
        raise DerError(f"not signed-data but {name}")
    limit = _within(content, limit)  # depth 2: [0]
    signed = _enter(data, content.start, limit, _SEQUENCE, "SignedData SEQUENCE")
    limit = _within(signed, limit)  # depth 3: SignedData
    version = _enter(data, signed.start, limit, _INTEGER, "SignedData version")
    digests = _within(version, limit)
    _enter(data, digests, limit, _SET, "digestAlgorithms SET")
    encap_at = _skip(data, digests, limit, 3)
    encap = _enter(data, encap_at, limit, _SEQUENCE, "encapContentInfo SEQUENCE")
    limit = _within(encap, limit)  # depth 4: encapContentInfo
    content_type = _enter(data, encap.start, limit, _OID, "eContentType")
    if _CONTENT_TYPES.get(data[content_type.start : content_type.end]) != "data":
        raise DerError("the signed content is not id-data")
    done, pos = _at_end(data, _within(content_type, limit), encap.end, limit)
    if done:
        raise DerError("no eContent: the signature is detached")
    wrapper = _enter(data, pos, limit, _EXPLICIT_0, "[0] eContent")
    return _octets(data, wrapper.start, _within(wrapper, limit), 5)  # depth 5: [0]
