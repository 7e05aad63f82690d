"""A small S3 server on loopback that lists whatever keys a test gives it.

MinIO refuses keys holding '..' or a leading '/', but other S3-compatible
stores accept them, so a hostile or broken listing is served from here:
ListObjectsV2 (the XML shape S3 documents, no EncodingType), HeadObject
(size and single-part ETag) and GetObject with Range. No signature is checked: the client's requests only have to
parse."""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


class S3Stub:
    def __init__(self, bucket: str, objects: dict[str, bytes]):
        self.bucket, self.objects = bucket, objects
        self.gets: list[str] = []  # keys whose content was asked for
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                path = urllib.parse.unquote(url.path)
                if path.rstrip("/") == f"/{stub.bucket}" and query.get("list-type") == ["2"]:
                    return self.list(query.get("prefix", [""])[0])
                key = path[len(f"/{stub.bucket}/"):]
                if not path.startswith(f"/{stub.bucket}/") or key not in stub.objects:
                    return self.send(404, b"<Error><Code>NoSuchKey</Code></Error>")
                stub.gets.append(key)
                data = stub.objects[key]
                rng = self.headers.get("Range")
                if rng:
                    start, end = rng.split("=", 1)[1].split("-")
                    data = data[int(start):int(end) + 1]
                    return self.send(206, data, "application/octet-stream")
                return self.send(200, data, "application/octet-stream")

            def do_HEAD(self):  # noqa: N802 - http.server's name
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                key = path[len(f"/{stub.bucket}/"):]
                if not path.startswith(f"/{stub.bucket}/") or key not in stub.objects:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                data = stub.objects[key]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')  # noqa: S324 - S3's single-part ETag
                self.end_headers()

            def list(self, prefix: str):
                rows = "".join(
                    f"<Contents><Key>{escape(k)}</Key><LastModified>2026-11-26T00:00:00.000Z</LastModified>"
                    f"<ETag>&quot;{hashlib.md5(v).hexdigest()}&quot;</ETag><Size>{len(v)}</Size>"  # noqa: S324
                    "<StorageClass>STANDARD</StorageClass></Contents>"
                    for k, v in sorted(stub.objects.items()) if k.startswith(prefix))
                body = ('<?xml version="1.0" encoding="UTF-8"?>'
                        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                        f"<Name>{escape(stub.bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                        f"<KeyCount>{rows.count('<Contents>')}</KeyCount><MaxKeys>1000</MaxKeys>"
                        f"<IsTruncated>false</IsTruncated>{rows}</ListBucketResult>")
                self.send(200, body.encode(), "application/xml")

            def send(self, status: int, body: bytes, ctype: str = "application/xml"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "S3Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
