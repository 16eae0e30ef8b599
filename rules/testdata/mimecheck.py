#!/usr/bin/env python3
"""An independent MIME parser's view of messages, for rules' tests.

For each file given, prints one JSON line: the leaf parts as Python's email
package sees them (type, disposition, sha256 of the decoded payload, the
decoded text of text parts) and the parser's defects.
"""
import email
import email.policy
import hashlib
import json
import sys

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    parts = []
    defects = [type(d).__name__ for d in msg.defects]
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        entry = {
            "type": part.get_content_type(),
            "disposition": part.get_content_disposition() or "",
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        if part.get_content_maintype() == "text":
            try:
                entry["text"] = part.get_content()
            except Exception as e:  # an unknown charset, say
                entry["text"] = payload.decode("utf-8", "replace")
        parts.append(entry)
    print(json.dumps({"file": path, "parts": parts, "defects": defects, "subject": str(msg.get("subject", ""))}))
