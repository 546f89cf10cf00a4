"""The files of a POST /api/predict request: its size checked from Content-Length before a
byte is read, the body read within the timeout, then either one raw image or the file
fields of a multipart/form-data form (parsed by python-multipart through Starlette)."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from clipadapt.serve.settings import ServeSettings
from clipadapt.serve.uploads import EMPTY_BODY, Upload, UploadError

# Bytes of an oversized body read and dropped before the 413 answer, so a client still
# sending gets the answer rather than a reset connection; past this the rest is not waited for.
DRAIN_LIMIT = 256 * 2**20


async def read_uploads(request: Request, settings: ServeSettings, name: str | None = None) -> list[Upload]:
    """The uploaded files, in order. A raw body is one image named `name` (or 'upload').

    Raises:
        UploadError: no body (400), a chunked body (411), a body over the limit (413),
            a body that stalls past the timeout (408) or ends early (400), a form without
            files (400) or with more than `max_batch` of them (413).
    """
    size = _declared_size(request)
    if size > settings.max_upload_bytes:
        await _drain(request, size, settings.request_timeout)
        raise UploadError(413, f"The upload is {size / 2**20:.3g} MB; at most {settings.max_upload_mb:g} MB are "
                               "accepted (--max-upload-mb). Send a smaller image or fewer images.")
    try:
        body = await asyncio.wait_for(request.body(), settings.request_timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise UploadError(408, f"The body did not arrive within {settings.request_timeout:g} s (--timeout); "
                               "resend it.") from None
    except ClientDisconnect:
        raise UploadError(400, f"The body ended before its {size} bytes (Content-Length) arrived; resend it.") from None
    if not body:
        raise UploadError(400, EMPTY_BODY)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return [Upload(name or "upload", body)]
    if "boundary=" not in content_type:
        raise UploadError(400, "multipart/form-data without a boundary: let your HTTP client build the form "
                               "(e.g. curl -F image=@photo.jpg).")
    return await _form_files(request, settings.max_batch)


def _declared_size(request: Request) -> int:
    length = request.headers.get("content-length")
    if length is None:
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            raise UploadError(411, "Content-Length is required (chunked uploads are not accepted).")
        raise UploadError(400, EMPTY_BODY)  # `curl -X POST URL` sends neither a body nor its length
    try:
        return int(length)
    except ValueError:
        raise UploadError(400, f"Content-Length is not a number: {length!r}.") from None


async def _drain(request: Request, size: int, timeout: float) -> None:
    """Read and drop an oversized body (at most DRAIN_LIMIT bytes, within `timeout`)."""
    async def drop():
        left = min(size, DRAIN_LIMIT)
        async for chunk in request.stream():
            left -= len(chunk)
            if left <= 0:
                return

    try:
        await asyncio.wait_for(drop(), timeout)
    except (asyncio.TimeoutError, TimeoutError, ClientDisconnect):
        pass


async def _form_files(request: Request, max_files: int) -> list[Upload]:
    """The file fields of a multipart form (a field with a file name), in order."""
    try:
        # python-multipart's own bounds: more files than allowed stop the parse early
        form = await request.form(max_files=max_files, max_fields=max_files)
    except HTTPException as exc:
        if "files" in str(exc.detail).lower():
            raise UploadError(413, f"More than {max_files} images in one request; at most {max_files} are allowed "
                                   "(--max-batch). Split the batch into smaller requests.") from None
        raise UploadError(400, f"The multipart/form-data body could not be parsed ({exc.detail}); "
                               "let your HTTP client build the form (e.g. curl -F image=@photo.jpg).") from None
    try:
        files = [(field, value) for field, value in form.multi_items() if not isinstance(value, str)]
        if not files:
            raise UploadError(400, "The form holds no files: add the image(s) as file fields with a file name "
                                   "(field name 'image'), e.g. curl -F image=@photo.jpg.")
        return [Upload(value.filename or field or f"image{i}", await value.read())
                for i, (field, value) in enumerate(files)]
    finally:
        await form.close()
