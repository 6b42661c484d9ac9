"""Cloud Storage naming rules for buckets and objects."""

from __future__ import annotations

import re

from emulator.errors import InvalidArgument

_BUCKET_CHARS = re.compile(r"^[a-z0-9_.-]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def validate_bucket_name(name: str) -> None:
    """Cloud Storage bucket naming rules; 400 INVALID_ARGUMENT naming the rule that is broken."""

    def bad(rule: str) -> InvalidArgument:
        return InvalidArgument(f"Invalid bucket name: '{name}'. {rule}")

    if not _BUCKET_CHARS.match(name):
        raise bad("Bucket names must contain only lowercase letters, numeric characters, dashes (-), "
                  "underscores (_), and dots (.).")
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise bad("Bucket names must start and end with a number or letter.")
    if "." in name:
        if not 3 <= len(name) <= 222:
            raise bad("Bucket names containing dots must contain 3-222 characters.")
        if any(not 1 <= len(part) <= 63 for part in name.split(".")):
            raise bad("Each dot-separated component of a bucket name must contain 1-63 characters.")
        if _IPV4.match(name):
            raise bad("Bucket names cannot be represented as an IP address in dotted-decimal notation.")
    elif not 3 <= len(name) <= 63:
        raise bad("Bucket names must contain 3-63 characters.")
    if name.startswith("goog"):
        raise bad('Bucket names cannot begin with the "goog" prefix.')
    if "google" in name or "g00gle" in name:
        raise bad('Bucket names cannot contain "google" or close misspellings, such as "g00gle".')


def validate_object_name(name: str) -> None:
    """Cloud Storage object naming rules (1-1024 bytes of UTF-8, no CR/LF, not `.` or `..`)."""
    if not name:
        raise InvalidArgument("Required: object name.")
    if len(name.encode("utf-8", "surrogatepass")) > 1024:
        raise InvalidArgument("Object names must contain 1-1024 bytes when UTF-8 encoded.")
    if "\r" in name or "\n" in name:
        raise InvalidArgument("Object names cannot contain Carriage Return or Line Feed characters.")
    if name in (".", ".."):
        raise InvalidArgument("Object names cannot be named . or ...")
    if name.startswith(".well-known/acme-challenge/"):
        raise InvalidArgument("Object names cannot start with .well-known/acme-challenge/.")
