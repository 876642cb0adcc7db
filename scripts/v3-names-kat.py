#!/usr/bin/env python3
"""Known answers of a layout-3 symlink target and xattr value (docs/FORMAT.md §15.4).

Computed independently of coffer's Rust code: HKDF-SHA256 with Python's hmac, AES-256-EAX and
AES-256-SIV with pycryptodome. The numbers are pinned in tests/vault/kat.rs
(`v3_symlink_target_and_xattr_value_are_pinned`). Run: python3 scripts/v3-names-kat.py
"""
import base64
import hashlib
import hmac

from Crypto.Cipher import AES


def hkdf(ikm, info, length):
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()  # no salt: 32 zero bytes
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def eax(key, nonce, aad, plain):
    c = AES.new(key, AES.MODE_EAX, nonce=nonce, mac_len=16)
    c.update(aad)
    ct, tag = c.encrypt_and_digest(plain)
    return nonce + ct + tag


def pad(name):
    k = 16 - len(name) % 16
    return name + bytes([k]) * k


def siv(key, ad, plain):
    c = AES.new(key, AES.MODE_SIV)
    c.update(ad)
    ct, tag = c.encrypt_and_digest(plain)
    return tag + ct


epoch_key = bytes(range(32))                     # 00 01 .. 1f
epoch_id = bytes.fromhex("a1b2c3d4")
nonce = epoch_id + bytes(range(0x40, 0x4c))      # epoch ID | 40 41 .. 4b

symlink_key = hkdf(epoch_key, b"coffer v3 symlink targets", 32)
target = b"../coffer/v3 target"
sealed = eax(symlink_key, nonce, b"coffer symlink v3", target)
print("symlink sealed ", sealed.hex())
print("symlink backing", b64url(sealed))

xname_key = hkdf(epoch_key, b"coffer v3 xattr names", 64)
xvalue_key = hkdf(epoch_key, b"coffer v3 xattr values", 32)
owner = bytes(range(0x60, 0x70))                 # 60 61 .. 6f (a directory's IV)
name = b"user.kat"
value = b"coffer v3 xattr value"
cipher_name = siv(xname_key, b"coffer xattr name v1", pad(name))
print("xattr backing  ", "user.coffer." + b64url(cipher_name))
sealed = eax(xvalue_key, nonce, b"coffer xattr v3" + owner + cipher_name, value)
print("xattr sealed   ", sealed.hex())
