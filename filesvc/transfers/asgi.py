"""Pure ASGI: names tracked transfers in their responses and counts download bytes as
they are sent, so FileResponse and StreamingResponse are counted alike."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from filesvc.transfers.dependencies import TRANSFER_STATE
from filesvc.transfers.service import ClientGone, Transfer


class TransferMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        download: Transfer | None = None

        async def send_counted(message: Message) -> None:
            nonlocal download
            if message["type"] == "http.response.start":
                # The route ran by now: a tracked request left its transfer in the state.
                transfer = scope.get("state", {}).get(TRANSFER_STATE)
                if isinstance(transfer, Transfer):
                    MutableHeaders(scope=message)["x-transfer-id"] = transfer.id
                    if transfer.direction == "download" and not transfer.finished:
                        length = MutableHeaders(scope=message).get("content-length")
                        transfer.total = int(length) if length and length.isdigit() else None
                        download = transfer
                await send(message)
                if download is not None:
                    await download.advance(0)
                return
            await send(message)
            if download is not None and message["type"] == "http.response.body":
                await download.advance(len(message.get("body", b"")))
                if not message.get("more_body", False):
                    await download.complete()

        try:
            await self.app(scope, receive, send_counted)
        except BaseException as exc:
            if download is not None and not download.finished:
                await download.fail_with(exc)
            raise
        if download is not None and not download.finished:
            if download.total is not None and download.bytes == download.total:
                # Every byte went out, but the client left before the response's closing
                # (empty) message, as curl does once it has Content-Length bytes, and the
                # response stopped quietly on hearing it: the download is done.
                await download.complete()
            else:
                # FileResponse and StreamingResponse stop quietly on a disconnect.
                await download.fail_with(ClientGone())
